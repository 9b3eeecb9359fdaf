package vault

import (
	"github.com/idvault/idvault/vault/detect"
	"github.com/idvault/idvault/vault/store"
)

// NewStoreLimiter returns a Limiter kept in st, so that every Vault
// instance sharing the store enforces one count per principal. It is the
// default (on Config.Store) when Config.Detection.Limiter is nil.
//
// Counts are runs of empty create-only ticket objects under counts/, one
// run per key and time slot: a grant costs three or four conditional PUTs
// (its minute, hour and day counts, and a vault-wide shard) and a GET or
// two for slots it has not cached; nothing lists a growing window. Keys name
// no principal (keyed hashes). Sweep deletes slots past their keep time.
func NewStoreLimiter(st store.Store) Limiter { return detect.NewStoreCounter(st, "counts") }
