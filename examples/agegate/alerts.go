package main

import (
	"slices"
	"sync"

	"github.com/idvault/idvault/vault"
)

// alertLog keeps the most recent alerts the vault reported through
// Config.Detection.OnAlert. The vault calls add synchronously on the request path, so
// it only appends under a mutex. It is safe for concurrent use.
type alertLog struct {
	mu  sync.Mutex
	max int
	a   []vault.Alert
}

func newAlertLog(max int) *alertLog { return &alertLog{max: max} }

// add is the vault's Config.Detection.OnAlert.
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
