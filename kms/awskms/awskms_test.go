package awskms_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/kms/awskms"
	"github.com/idvault/idvault/kms/awskms/localkms"
)

// newKEK makes a key on srv and opens it; the KEK's ID is its URI.
func newKEK(t *testing.T, srv *localkms.Server) (kms.KEK, string) {
	t.Helper()
	k, uri := srv.NewKEK(t)
	if k.ID() != uri {
		t.Fatalf("ID %q, want the URI", k.ID())
	}
	return k, uri
}

// TestLocalKMS runs the KEK against local-kms over the AWS KMS protocol:
// round trip, every authentication failure as ErrDecrypt, a disabled key
// and a dead or hung server as ErrUnavailable within the context's
// deadline, never ErrDecrypt.
func TestLocalKMS(t *testing.T) {
	srv := localkms.Start(t)
	ctx := context.Background()
	a, uriA := newKEK(t, srv)
	b, _ := newKEK(t, srv)
	dk := []byte("0123456789abcdef0123456789abcdef")
	ad := []byte("record header")
	ct, err := a.Encrypt(ctx, dk, ad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct, dk) {
		t.Fatal("plaintext in ciphertext")
	}
	got, err := a.Decrypt(ctx, ct, ad)
	if err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("round trip: %v", err)
	}

	t.Run("authentication failures are ErrDecrypt", func(t *testing.T) {
		edited := bytes.Clone(ct)
		edited[len(edited)-5] ^= 1
		for name, try := range map[string]func() error{
			"wrong key":  func() error { _, err := b.Decrypt(ctx, ct, ad); return err },
			"wrong ad":   func() error { _, err := a.Decrypt(ctx, ct, []byte("other header")); return err },
			"no ad":      func() error { _, err := a.Decrypt(ctx, ct, nil); return err },
			"edited":     func() error { _, err := a.Decrypt(ctx, edited, ad); return err },
			"truncated":  func() error { _, err := a.Decrypt(ctx, ct[:len(ct)-1], ad); return err },
			"not at all": func() error { _, err := a.Decrypt(ctx, []byte("garbage"), ad); return err },
		} {
			err := try()
			if !errors.Is(err, kms.ErrDecrypt) || errors.Is(err, kms.ErrUnavailable) {
				t.Errorf("%s: %v", name, err)
			}
		}
	})

	t.Run("disabled key is ErrUnavailable", func(t *testing.T) {
		if err := srv.SetEnabled(ctx, uriA, false); err != nil {
			t.Fatal(err)
		}
		_, err := a.Decrypt(ctx, ct, ad)
		if !errors.Is(err, kms.ErrUnavailable) || errors.Is(err, kms.ErrDecrypt) {
			t.Fatalf("decrypt with a disabled key: %v", err)
		}
		if _, err := a.Encrypt(ctx, dk, ad); !errors.Is(err, kms.ErrUnavailable) {
			t.Fatalf("encrypt with a disabled key: %v", err)
		}
		if err := srv.SetEnabled(ctx, uriA, true); err != nil {
			t.Fatal(err)
		}
		if got, err := a.Decrypt(ctx, ct, ad); err != nil || !bytes.Equal(got, dk) {
			t.Fatalf("re-enabled: %v", err)
		}
	})

	t.Run("hung server is bounded by ctx", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() { // accept and never answer
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
			}
		}()
		hung, err := awskms.NewOpener(awskms.Options{KMS: localkms.Client("http://" + l.Addr().String())}).Open(ctx, uriA)
		if err != nil {
			t.Fatal(err)
		}
		checkBounded(t, hung, ct, ad, true)
	})

	t.Run("server down is ErrUnavailable within the deadline", func(t *testing.T) {
		srv.Stop()
		checkBounded(t, a, ct, ad, false)
	})
}

func checkBounded(t *testing.T, k kms.KEK, ct, ad []byte, hangs bool) {
	t.Helper()
	const deadline = 500 * time.Millisecond
	for _, op := range []string{"decrypt", "encrypt"} {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		start := time.Now()
		var err error
		if op == "decrypt" {
			_, err = k.Decrypt(ctx, ct, ad)
		} else {
			_, err = k.Encrypt(ctx, []byte("k"), ad)
		}
		took := time.Since(start)
		cancel()
		if !errors.Is(err, kms.ErrUnavailable) || errors.Is(err, kms.ErrDecrypt) {
			t.Fatalf("%s: %v", op, err)
		}
		t.Logf("%s: %v after %v", op, err, took.Round(time.Millisecond))
		if took < deadline/2 && hangs {
			t.Fatalf("%s returned after %v: not the hang under test", op, took)
		}
		if took > deadline+time.Second {
			t.Fatalf("%s took %v with a %v deadline", op, took, deadline)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Fatal("error mentions a secret")
		}
	}
}

func TestURIErrors(t *testing.T) {
	ctx := context.Background()
	op := awskms.NewOpener(awskms.Options{})
	for _, bad := range []string{"aws-kms://nope", "aws-kms://arn:aws:s3:eu-west-1:1:key/x", "aws-kms://arn:aws:kms::1:key/x"} {
		_, err := kms.Open(ctx, bad, kms.OpenOptions{Openers: []kms.Opener{op}})
		if !errors.Is(err, kms.ErrUnsupportedURI) || !strings.Contains(err.Error(), "aws-kms") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if op.Supported("pkcs11:token=x") || !op.Supported("aws-kms://arn:aws:kms:eu-west-1:1:key/x") {
		t.Fatal("Supported")
	}
}
