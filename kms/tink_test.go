package kms

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
)

func newTinkAEAD(t testing.TB) tink.AEAD {
	t.Helper()
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	a, err := aead.New(h)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// fakeAEAD counts calls and fails with a message that must never surface.
type fakeAEAD struct {
	mu              sync.Mutex
	calls, ctxCalls int
	err             error
}

const fakeSecret = "SECRET-KEY-MATERIAL-0123456789"

func (f *fakeAEAD) Encrypt(pt, ad []byte) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	return append([]byte("ct:"), pt...), nil
}

func (f *fakeAEAD) Decrypt(ct, ad []byte) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return nil, errors.New("tink: bad tag for key " + fakeSecret)
}

// fakeCtxAEAD also implements tink.AEADWithContext.
type fakeCtxAEAD struct{ fakeAEAD }

func (f *fakeCtxAEAD) EncryptWithContext(ctx context.Context, pt, ad []byte) ([]byte, error) {
	f.mu.Lock()
	f.ctxCalls++
	f.mu.Unlock()
	return append([]byte("ctx:"), pt...), nil
}

func (f *fakeCtxAEAD) DecryptWithContext(ctx context.Context, ct, ad []byte) ([]byte, error) {
	f.mu.Lock()
	f.ctxCalls++
	f.mu.Unlock()
	if ctx.Value(cancelMidCall{}) != nil {
		ctx.Value(cancelMidCall{}).(context.CancelFunc)()
		return nil, errors.New("rpc canceled")
	}
	return nil, errors.New("permission denied on " + fakeSecret)
}

type cancelMidCall struct{}

func TestFromAEADRoundTrip(t *testing.T) {
	k := FromAEAD("test-kms://key-1", newTinkAEAD(t))
	if k.ID() != "test-kms://key-1" {
		t.Fatalf("ID = %q", k.ID())
	}
	pt, ad := bytes.Repeat([]byte{3}, 32), bytes.Repeat([]byte{4}, 64)
	ct := mustEncrypt(t, k, pt, ad)
	mustDecrypt(t, k, ct, ad, pt)
}

func TestFromAEADDecryptFailures(t *testing.T) {
	k := FromAEAD("test-kms://a", newTinkAEAD(t))
	other := FromAEAD("test-kms://b", newTinkAEAD(t))
	_, local := newTestLocal(t)
	pt, ad := bytes.Repeat([]byte{3}, 32), []byte("ad")
	ct := mustEncrypt(t, k, pt, ad)
	// Exactly ErrDecrypt: nothing of Tink's message is wrapped.
	wantRefused(t, []decryptCase{
		{"other AD", k, ct, []byte("ad2")},
		{"no AD", k, ct, nil},
		{"other keyset", other, ct, ad},
		{"local keyset", local, ct, ad},
		{"local ciphertext", k, mustEncrypt(t, local, pt, ad), ad},
		{"truncated", k, ct[:len(ct)-1], ad},
		{"empty", k, nil, ad},
		{"fake AEAD hides its message", FromAEAD("fake://", &fakeAEAD{}), ct, ad},
		{"fake ctx AEAD hides its message", FromAEAD("fake://", &fakeCtxAEAD{}), ct, ad},
	}, true)
	wantBitFlipsRefused(t, k, ct, ad)
}

func TestFromAEADContext(t *testing.T) {
	done, cancel := context.WithCancel(context.Background())
	cancel()

	plain := &fakeAEAD{}
	k := FromAEAD("fake://plain", plain)
	if _, err := k.Encrypt(done, []byte("k"), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Encrypt: err = %v, want context.Canceled", err)
	}
	if _, err := k.Decrypt(done, []byte("ct"), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Decrypt: err = %v, want context.Canceled", err)
	}
	if plain.calls != 0 {
		t.Errorf("AEAD called %d times with a done context", plain.calls)
	}

	withCtx := &fakeCtxAEAD{}
	k = FromAEAD("fake://ctx", withCtx)
	ct := mustEncrypt(t, k, []byte("k"), nil)
	if !bytes.HasPrefix(ct, []byte("ctx:")) || withCtx.ctxCalls != 1 || withCtx.calls != 0 {
		t.Fatal("AEADWithContext not used when available")
	}

	// A context that ends during the call is reported as such, not as
	// ErrDecrypt.
	mid, cancelMid := context.WithCancel(context.Background())
	defer cancelMid()
	mid = context.WithValue(mid, cancelMidCall{}, cancelMid)
	if _, err := k.Decrypt(mid, []byte("ct"), nil); !errors.Is(err, context.Canceled) || errors.Is(err, ErrDecrypt) {
		t.Errorf("Decrypt canceled mid-call: err = %v, want context.Canceled", err)
	}
}

func TestFromAEADEncryptError(t *testing.T) {
	cause := errors.New("kms unreachable")
	k := FromAEAD("fake://down", &fakeAEAD{err: cause})
	if _, err := k.Encrypt(context.Background(), []byte("k"), nil); !errors.Is(err, cause) {
		t.Fatalf("Encrypt: err = %v, want the cause wrapped", err)
	}
}

func TestFromAEADPanics(t *testing.T) {
	tests := []struct {
		name string
		id   string
		a    tink.AEAD
	}{
		{"nil AEAD", "x", nil},
		{"empty id", "", newTinkAEAD(t)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			FromAEAD(tt.id, tt.a)
		})
	}
}

func TestFromAEADFormatRedacts(t *testing.T) {
	k := FromAEAD("fake://"+"key", &fakeAEAD{err: errors.New(fakeSecret)})
	want := "kms.FromAEAD(fake://key)"
	if k.(fmt.GoStringer).GoString() != want || fmt.Sprint((*tinkKEK)(nil)) != "kms.FromAEAD(nil)" {
		t.Error("GoString or nil String wrong")
	}
	for _, verb := range []string{"%s", "%v", "%+v", "%#v", "%x"} {
		got := fmt.Sprintf(verb, k)
		if got != want || strings.Contains(got, fakeSecret) {
			t.Errorf("Sprintf(%q) = %q, want %q", verb, got, want)
		}
	}
	if got := fmt.Sprintf("%+v", struct{ K KEK }{k}); got != "{K:"+want+"}" {
		t.Errorf("nested %%+v = %q", got)
	}
}

func TestFromAEADConcurrent(t *testing.T) {
	k := FromAEAD("test-kms://c", newTinkAEAD(t))
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := range 100 {
				pt := []byte{byte(w), byte(i)}
				ct, err := k.Encrypt(ctx, pt, pt)
				if err != nil {
					errs <- err
					return
				}
				if got, err := k.Decrypt(ctx, ct, pt); err != nil || !bytes.Equal(got, pt) {
					errs <- fmt.Errorf("worker %d: round trip failed", w)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
