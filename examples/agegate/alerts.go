package main

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/idvault/idvault/vault"
)

// alertLog keeps the most recent alerts the vault reported through
// Config.OnAlert. The vault calls add synchronously on the request path, so
// it only appends under a mutex. It is safe for concurrent use.
type alertLog struct {
	mu  sync.Mutex
	max int
	a   []vault.Alert
}

func newAlertLog(max int) *alertLog { return &alertLog{max: max} }

// add is the vault's Config.OnAlert.
func (l *alertLog) add(a vault.Alert) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.a) == l.max {
		l.a = slices.Delete(l.a, 0, 1)
	}
	l.a = append(l.a, a)
}

// recent returns the alerts, newest first.
func (l *alertLog) recent() []vault.Alert {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := slices.Clone(l.a)
	slices.Reverse(out)
	return out
}

// ensureCanaries keeps want canaries planted: it plants as many as are
// missing (none at first, expired ones later). Canaries expire like real
// documents, so a long-running app calls this periodically.
func (a *App) ensureCanaries(ctx context.Context, want int) error {
	now := a.now()
	missing := want - len(a.state.liveCanaries(now))
	if missing <= 0 {
		return nil
	}
	infos, err := a.v.PlantCanaries(ctx, missing)
	fresh := make([]canary, 0, len(infos))
	for _, in := range infos {
		fresh = append(fresh, canary{ID: in.ID, Expires: in.Expires})
	}
	if serr := a.state.addCanaries(now, fresh); err == nil && serr != nil {
		err = fmt.Errorf("saving canaries: %w", serr)
	}
	return err
}
