package vault

import (
	"context"

	"github.com/idvault/idvault/kms"
)

// kekRing is the vault's KEK: it wraps with Config.KEK and, to open what
// was wrapped earlier (or by an instance already migrated), picks among
// Config.KEK and Config.Storage.DecryptKEKs by the KEK ID written in the clear
// header of every key record and of the keyset.
type kekRing struct {
	kms.KEK           // wraps everything new; its ID is the ring's ID
	others  []kms.KEK // open only
}

func newKEKRing(kek kms.KEK, others []kms.KEK) *kekRing {
	r := &kekRing{KEK: kek}
	for _, o := range others {
		if o != nil && o.ID() != kek.ID() {
			r.others = append(r.others, o)
		}
	}
	return r
}

// pick returns the KEK whose ID is id, or nil.
func (r *kekRing) pick(id string) kms.KEK {
	if id == r.KEK.ID() {
		return r.KEK
	}
	for _, o := range r.others {
		if o.ID() == id {
			return o
		}
	}
	return nil
}

// kekFor returns the KEK of the ring (or kek itself, when it is not a
// ring) that wrapped an object whose header names id; when none has that
// ID it returns kek, so the caller's ID check reports ErrWrongKEK.
func kekFor(kek kms.KEK, id string) kms.KEK {
	if r, ok := kek.(*kekRing); ok {
		if k := r.pick(id); k != nil {
			return k
		}
	}
	return kek
}

// Encrypt wraps under Config.KEK. (Spelled out so that the ring is a
// kms.KEK in its own right.)
func (r *kekRing) Encrypt(ctx context.Context, pt, ad []byte) ([]byte, error) {
	return r.KEK.Encrypt(ctx, pt, ad)
}

// String names the wrapping KEK only.
func (r *kekRing) String() string { return "vault.kekRing(" + r.KEK.ID() + ")" }
