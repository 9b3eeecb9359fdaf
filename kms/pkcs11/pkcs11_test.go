package pkcs11_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/kms/pkcs11"
	"github.com/idvault/idvault/kms/pkcs11/softhsm"
)

func TestMain(m *testing.M) {
	code := m.Run()
	softhsm.Cleanup()
	os.Exit(code)
}

func openKEK(t *testing.T, uri string, opts pkcs11.Options) kms.KEK {
	t.Helper()
	k, err := kms.Open(context.Background(), uri, kms.OpenOptions{Openers: []kms.Opener{pkcs11.NewOpener(opts)}})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSoftHSM runs the KEK against SoftHSM2: round trip under
// CKM_AES_GCM; wrong key, edited ciphertext and wrong associated data as
// ErrDecrypt; a disabled key and a reset token as ErrUnavailable, with the
// KEK working again once the token is back.
func TestSoftHSM(t *testing.T) {
	ctx := context.Background()
	ta, tb := softhsm.NewToken(t), softhsm.NewToken(t)
	a := openKEK(t, ta.URI, pkcs11.Options{})
	b := openKEK(t, tb.URI, pkcs11.Options{})
	if strings.Contains(a.ID(), "pin") || strings.Contains(a.ID(), "module") || !strings.HasPrefix(a.ID(), "pkcs11:") {
		t.Fatalf("ID %q carries more than the key's name", a.ID())
	}
	dk := []byte("0123456789abcdef0123456789abcdef")
	ad := []byte("record header")
	ct, err := a.Encrypt(ctx, dk, ad)
	if err != nil {
		t.Fatal(err)
	}
	ct2, _ := a.Encrypt(ctx, dk, ad)
	if bytes.Equal(ct, ct2) || bytes.Contains(ct, dk) {
		t.Fatal("ciphertext repeats or holds the plaintext")
	}
	if got, err := a.Decrypt(ctx, ct, ad); err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("round trip: %v", err)
	}
	edited := bytes.Clone(ct)
	edited[20] ^= 1
	for name, try := range map[string]func() error{
		"wrong key": func() error { _, err := b.Decrypt(ctx, ct, ad); return err },
		"wrong ad":  func() error { _, err := a.Decrypt(ctx, ct, []byte("x")); return err },
		"edited":    func() error { _, err := a.Decrypt(ctx, edited, ad); return err },
		"truncated": func() error { _, err := a.Decrypt(ctx, ct[:len(ct)-1], ad); return err },
		"short":     func() error { _, err := a.Decrypt(ctx, ct[:5], ad); return err },
	} {
		if err := try(); !errors.Is(err, kms.ErrDecrypt) || errors.Is(err, kms.ErrUnavailable) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The KEK still works after authentication failures.
	if got, err := a.Decrypt(ctx, ct, ad); err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("after failures: %v", err)
	}

	if err := ta.SetKeyUsable(false); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Decrypt(ctx, ct, ad); !errors.Is(err, kms.ErrUnavailable) || errors.Is(err, kms.ErrDecrypt) {
		t.Fatalf("disabled key: %v", err)
	}
	if _, err := a.Encrypt(ctx, dk, ad); !errors.Is(err, kms.ErrUnavailable) {
		t.Fatalf("disabled key, encrypt: %v", err)
	}
	if err := ta.SetKeyUsable(true); err != nil {
		t.Fatal(err)
	}

	if err := ta.CloseAllSessions(); err != nil {
		t.Fatal(err)
	}
	_, err = a.Decrypt(ctx, ct, ad)
	if errors.Is(err, kms.ErrDecrypt) {
		t.Fatalf("reset token read as tampering: %v", err)
	}
	if got, err := a.Decrypt(ctx, ct, ad); err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("after the token reset: %v", err)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := a.Decrypt(cctx, ct, ad); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// TestPINSources: the PIN comes from a named source (file, env), a wrong
// PIN fails Open without echoing it, and a pin-value URI is refused.
func TestPINSources(t *testing.T) {
	ctx := context.Background()
	tok := softhsm.NewToken(t)
	pin, err := os.ReadFile(tok.PINFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("IDV_TEST_PIN", strings.TrimSpace(string(pin)))
	bare := "pkcs11:token=" + tok.Label + ";object=" + tok.Object
	k := openKEK(t, bare, pkcs11.Options{PIN: kms.PassphraseEnv("IDV_TEST_PIN"), Module: tok.Module})
	if k.ID() != openKEK(t, tok.URI, pkcs11.Options{}).ID() {
		t.Fatal("the ID depends on the module path or the PIN source")
	}
	// PKCS#11 login is per process and token: a wrong PIN only shows on
	// a token this process has not logged in to yet.
	fresh := softhsm.NewToken(t)
	bareFresh := "pkcs11:token=" + fresh.Label + ";object=" + fresh.Object
	t.Setenv("IDV_TEST_BADPIN", "00000000wrongpin")
	_, err = kms.Open(ctx, bareFresh, kms.OpenOptions{Openers: []kms.Opener{pkcs11.NewOpener(pkcs11.Options{PIN: kms.PassphraseEnv("IDV_TEST_BADPIN")})}})
	if err == nil || strings.Contains(err.Error(), "wrongpin") || !strings.Contains(err.Error(), "pkcs11") {
		t.Fatalf("wrong PIN: %v", err)
	}
	_, err = kms.Open(ctx, bare+"?pin-value=1234", kms.OpenOptions{Openers: []kms.Opener{pkcs11.NewOpener(pkcs11.Options{})}})
	if !errors.Is(err, kms.ErrUnsupportedURI) || strings.Contains(err.Error(), "1234") {
		t.Fatalf("pin-value: %v", err)
	}
	if _, err := kms.Open(ctx, bare, kms.OpenOptions{Openers: []kms.Opener{pkcs11.NewOpener(pkcs11.Options{})}}); !errors.Is(err, kms.ErrInvalidOptions) {
		t.Fatalf("no PIN source: %v", err)
	}
}
