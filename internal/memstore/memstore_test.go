package memstore_test

import (
	"testing"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/vault/store"
	"github.com/idvault/idvault/vault/storetest"
)

// TestConformance holds memstore to the same contract as the real
// backends, so unit tests above the Store interface see real semantics.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return memstore.New() })
}
