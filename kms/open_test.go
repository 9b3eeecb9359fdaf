package kms

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestOpenLocalURI(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kek")
	secret := "correct horse battery staple"
	l, err := CreateLocal(path, []byte(secret), cheapOpts)
	if err != nil {
		t.Fatal(err)
	}
	pf := filepath.Join(dir, "pass")
	if err := os.WriteFile(pf, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("IDV_TEST_PASS", secret)
	ctx := context.Background()
	ct := mustEncrypt(t, l, []byte("data key"), []byte("ad"))
	for _, src := range []PassphraseSource{
		PassphraseFile(pf),
		PassphraseEnv("IDV_TEST_PASS"),
		PassphrasePrompt("pass: ", strings.NewReader(secret+"\r\n"), &bytes.Buffer{}),
	} {
		k, err := Open(ctx, "local:"+path, OpenOptions{Passphrase: src})
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if k.ID() != l.ID() {
			t.Fatalf("%s: ID %q, want %q", src, k.ID(), l.ID())
		}
		mustDecrypt(t, k, ct, []byte("ad"), []byte("data key"))
	}
	// A wrong passphrase is ErrWrongPassphrase, and the error holds neither
	// passphrase.
	t.Setenv("IDV_TEST_WRONG", "hunter2-wrong")
	_, err = Open(ctx, "local:"+path, OpenOptions{Passphrase: PassphraseEnv("IDV_TEST_WRONG")})
	if !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), secret) {
		t.Fatal("error holds the passphrase")
	}
	if _, err := Open(ctx, "local:"+path, OpenOptions{Passphrase: PassphraseEnv("IDV_TEST_UNSET_XYZ")}); !errors.Is(err, ErrNoPassphrase) {
		t.Fatalf("unset env: %v", err)
	}
	if _, err := Open(ctx, "local:"+path, OpenOptions{}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("no source: %v", err)
	}
}

type fakeOpener struct {
	prefix string
	kek    KEK
}

func (f fakeOpener) Supported(uri string) bool { return strings.HasPrefix(uri, f.prefix) }
func (f fakeOpener) Open(ctx context.Context, uri string) (KEK, error) {
	if f.kek == nil {
		return nil, errors.New("refused")
	}
	return f.kek, nil
}

func TestOpenDispatchAndErrors(t *testing.T) {
	ctx := context.Background()
	_, l := newTestLocal(t)
	secretURI := "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/SECRETISH"
	// No opener: unsupported, and the message names the scheme only.
	_, err := Open(ctx, secretURI, OpenOptions{})
	if !errors.Is(err, ErrUnsupportedURI) || !strings.Contains(err.Error(), "aws-kms") || strings.Contains(err.Error(), "SECRETISH") {
		t.Fatalf("no opener: %v", err)
	}
	// The first opener that supports the URI is used; others are not.
	got, err := Open(ctx, secretURI, OpenOptions{Openers: []Opener{fakeOpener{prefix: "gcp-kms://"}, fakeOpener{prefix: "aws-kms://", kek: l}}})
	if err != nil || got != KEK(l) {
		t.Fatalf("dispatch: %v %v", got, err)
	}
	_, err = Open(ctx, secretURI, OpenOptions{Openers: []Opener{fakeOpener{prefix: "aws-kms://"}}})
	if err == nil || strings.Contains(err.Error(), "SECRETISH") || !strings.Contains(err.Error(), "aws-kms") {
		t.Fatalf("opener error: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Open(cctx, secretURI, OpenOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestParsePKCS11URI(t *testing.T) {
	u, err := ParsePKCS11URI("pkcs11:token=idvault%20test;object=kek?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/x")
	if err != nil {
		t.Fatal(err)
	}
	want := &PKCS11URI{
		Path:  map[string]string{"token": "idvault test", "object": "kek"},
		Query: map[string]string{"module-path": "/usr/lib/softhsm/libsofthsm2.so", "pin-source": "file:/x"},
	}
	if !reflect.DeepEqual(u, want) {
		t.Fatalf("got %+v", u)
	}
	if got := u.KeyID(); got != "pkcs11:object=kek;token=idvault%20test" {
		t.Fatalf("KeyID %q", got)
	}
	for _, bad := range []string{
		"pkcs11:token=a?pin-value=1234", "pkcs11:pin-value=1234", "pkcs11:token=a;token=b", "pkcs11:=x",
		"pkcs11:token=%zz", "pkcs11:TOKEN=a", "pkcs11:token", "pkcs12:token=a",
	} {
		_, err := ParsePKCS11URI(bad)
		if err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), "1234") {
			t.Errorf("%q: error quotes the PIN", bad)
		}
	}
}

func FuzzParsePKCS11URI(f *testing.F) {
	// Seeds: testdata/fuzz/FuzzParsePKCS11URI.
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParsePKCS11URI(s)
		if err != nil {
			return
		}
		// The canonical form parses back to the same attributes.
		u2, err := ParsePKCS11URI(u.String())
		if err != nil {
			t.Fatalf("canonical form does not parse: %v", err)
		}
		if !reflect.DeepEqual(u, u2) {
			t.Fatalf("round trip changed %+v to %+v", u, u2)
		}
		if _, ok := u.Query["pin-value"]; ok {
			t.Fatal("pin-value accepted")
		}
	})
}

func FuzzParsePassphraseSource(f *testing.F) {
	// Seeds: testdata/fuzz/FuzzParsePassphraseSource.
	f.Fuzz(func(t *testing.T, s string) {
		src, err := ParsePassphraseSource(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if src.String() == "" {
			t.Fatal("source without a name")
		}
	})
}
