package vault

import (
	"context"
	"sync"
)

// PlantDue plants, now, every canary due by the vault's clock (the
// replay's clock jumps; the planter would only notice within a second).
func PlantDue(v *Vault) {
	var wg sync.WaitGroup
	v.plantDue(context.Background(), &wg)
	wg.Wait()
}

// IsCanary reports whether id is one of v's canaries (by its ID's tag).
func IsCanary(v *Vault, id string) bool {
	oid, err := parseObjectID(id)
	return err == nil && v.isCanaryID(oid)
}
