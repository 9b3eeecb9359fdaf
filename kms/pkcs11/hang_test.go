package pkcs11

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/kms/pkcs11/softhsm"
)

// TestHungTokenBoundedByContext: when the token does not answer (here: its
// only session is held elsewhere, so the call cannot start), Encrypt and
// Decrypt return ErrUnavailable at the context's deadline, and the KEK
// works again once the session is back.
func TestHungTokenBoundedByContext(t *testing.T) {
	tok := softhsm.NewToken(t)
	ctx := context.Background()
	k0, err := NewOpener(Options{Sessions: 1}).Open(ctx, tok.URI)
	if err != nil {
		t.Fatal(err)
	}
	k := k0.(*kek)
	ct, err := k.Encrypt(ctx, []byte("data key"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	held, err := k.session()
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"encrypt", "decrypt"} {
		dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		start := time.Now()
		if op == "encrypt" {
			_, err = k.Encrypt(dctx, []byte("x"), nil)
		} else {
			_, err = k.Decrypt(dctx, ct, []byte("ad"))
		}
		took := time.Since(start)
		cancel()
		if !errors.Is(err, kms.ErrUnavailable) || errors.Is(err, kms.ErrDecrypt) || took > time.Second {
			t.Fatalf("%s with the token hung: %v after %v", op, err, took)
		}
	}
	k.put(held)
	if pt, err := k.Decrypt(ctx, ct, []byte("ad")); err != nil || string(pt) != "data key" {
		t.Fatalf("after the hang: %v", err)
	}
}
