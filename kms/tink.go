package kms

import (
	"context"
	"fmt"
	"strconv"

	"github.com/tink-crypto/tink-go/v2/tink"
)

// FromAEAD turns a Tink AEAD into a KEK named id.
//
// a is typically what a Tink KMS client returns for a key URI
// (client.GetAEAD("gcp-kms://…"), "aws-kms://…", "hcvault://…"), and id
// should be that URI: it is stored, in clear, in every key record the KEK
// wraps. If a also implements [tink.AEADWithContext] (as RPC-backed AEADs
// may), the context is passed on; otherwise ctx is only checked before the
// call, because tink.AEAD takes none.
//
// A Decrypt failure that [IsUnavailable] recognises as the KMS not
// answering (a transport error, a timeout, throttling, gRPC Unavailable,
// DeadlineExceeded or ResourceExhausted, an HTTP 429 or 5xx, the context
// ending) wraps [ErrUnavailable] and keeps the transport's message. Every
// other Decrypt failure is a verdict on the ciphertext and is reported as
// [ErrDecrypt] alone: Tink's message is dropped because it differs from one
// key type to another and would let a caller tell failure causes apart.
// Every Encrypt failure wraps ErrUnavailable (nothing is decided by a
// failed Encrypt) and keeps the underlying error for diagnosis.
//
// FromAEAD panics if a is nil or id is empty: both are programming errors.
// The returned KEK is safe for concurrent use if a is, as Tink's AEADs are.
func FromAEAD(id string, a tink.AEAD) KEK {
	if a == nil {
		panic("kms: FromAEAD with nil AEAD")
	}
	if id == "" {
		panic("kms: FromAEAD with empty id")
	}
	k := &tinkKEK{id: id, a: a}
	k.actx, _ = a.(tink.AEADWithContext)
	return k
}

// tinkKEK adapts a tink.AEAD to KEK.
type tinkKEK struct {
	id   string
	a    tink.AEAD
	actx tink.AEADWithContext // a itself when it takes a context, else nil
}

// Encrypt seals plaintext under the Tink AEAD with associatedData.
func (k *tinkKEK) Encrypt(ctx context.Context, plaintext, associatedData []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, unavailable("encrypt", err)
	}
	ct, err := k.call(ctx, false, plaintext, associatedData)
	if err != nil {
		return nil, unavailable(k.id+": encrypt", err)
	}
	return ct, nil
}

// Decrypt opens ciphertext under the Tink AEAD with associatedData.
func (k *tinkKEK) Decrypt(ctx context.Context, ciphertext, associatedData []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, unavailable("decrypt", err)
	}
	pt, err := k.call(ctx, true, ciphertext, associatedData)
	if err != nil {
		// A context that ended during the call is the caller's doing, not
		// an authentication failure; saying so reveals nothing about keys.
		if cerr := ctx.Err(); cerr != nil {
			return nil, unavailable("decrypt", cerr)
		}
		if IsUnavailable(err) {
			return nil, unavailable(k.id+": decrypt", err)
		}
		return nil, ErrDecrypt
	}
	return pt, nil
}

// call encrypts in (or, with open, decrypts it) under the AEAD, passing
// ctx when the AEAD takes one.
func (k *tinkKEK) call(ctx context.Context, open bool, in, associatedData []byte) ([]byte, error) {
	switch {
	case k.actx != nil && open:
		return k.actx.DecryptWithContext(ctx, in, associatedData)
	case k.actx != nil:
		return k.actx.EncryptWithContext(ctx, in, associatedData)
	case open:
		return k.a.Decrypt(in, associatedData)
	default:
		return k.a.Encrypt(in, associatedData)
	}
}

// ID returns the name given to FromAEAD.
func (k *tinkKEK) ID() string { return k.id }

// String names the KEK by its ID and nothing else.
func (k *tinkKEK) String() string {
	if k == nil {
		return "kms.FromAEAD(nil)"
	}
	return "kms.FromAEAD(" + k.id + ")"
}

// GoString is String: the wrapped AEAD is never printed.
func (k *tinkKEK) GoString() string { return k.String() }

// Format prints String for every verb, so that no fmt verb can reach the
// wrapped AEAD's fields.
func (k *tinkKEK) Format(f fmt.State, verb rune) { formatRedacted(f, verb, k.String()) }

// formatRedacted writes s for any verb; %q quotes it.
func formatRedacted(f fmt.State, verb rune, s string) {
	if verb == 'q' {
		s = strconv.Quote(s)
	}
	_, _ = f.Write([]byte(s))
}
