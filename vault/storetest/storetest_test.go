package storetest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/vault/store"
	"github.com/idvault/idvault/vault/storetest"
)

const brokenEnv = "STORETEST_BROKEN"

// mutations are ways a backend can break the contract, each with the
// subtests of the suite that must catch it.
var mutations = []struct {
	mode     string
	subtests []string
}{
	{"ifabsent-ignored", []string{"IfAbsent"}},
	{"notfound-generic", []string{"GetAbsent", "Delete"}},
	{"delete-not-idempotent", []string{"Delete"}},
	{"size-unchecked", []string{"SizeMismatch"}},
	{"partial-on-error", []string{"FailingBody"}},
	{"put-deletes-first", []string{"FailingBody", "SizeMismatch"}},
	{"overwrite-keeps-tail", []string{"Overwrite"}},
	{"list-walk-order", []string{"ListOrder", "ListPrefix"}},
	{"list-ignores-prefix", []string{"ListPrefix", "ListMany"}},
	{"list-first-page-only", []string{"ListMany"}},
	{"list-ignores-break", []string{"ListMany"}},
	{"ctx-ignored", []string{"Cancel"}},
	{"invalid-keys-accepted", []string{"InvalidKeys"}},
	{"retention-ignored", []string{"Retention"}},
}

// TestSuiteCatchesBrokenStores runs parts of the suite, in child
// processes, against memstore wrapped to break one rule at a time, and
// checks that the subtests meant to catch each break fail.
func TestSuiteCatchesBrokenStores(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process per mutation")
	}
	run := func(mode, pattern string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenChild$/"+pattern, "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), brokenEnv+"="+mode)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// The control: the unbroken wrapper passes the whole suite.
	if out, err := run("none", ""); err != nil {
		t.Fatalf("the unbroken wrapper fails the suite: %v\n%s", err, out)
	}
	for _, m := range mutations {
		t.Run(m.mode, func(t *testing.T) {
			out, err := run(m.mode, "^("+strings.Join(m.subtests, "|")+")$")
			if err == nil {
				t.Fatalf("the suite passes a store with %s:\n%s", m.mode, out)
			}
			for _, sub := range m.subtests {
				if !strings.Contains(out, "--- FAIL: TestBrokenChild/"+sub+" ") {
					t.Errorf("subtest %s does not catch %s:\n%s", sub, m.mode, out)
				}
			}
		})
	}
}

// TestBrokenChild is the child process of TestSuiteCatchesBrokenStores.
func TestBrokenChild(t *testing.T) {
	mode := os.Getenv(brokenEnv)
	if mode == "" {
		t.Skip("runs only as a child of TestSuiteCatchesBrokenStores")
	}
	storetest.Run(t, func(t *testing.T) store.Store { return &broken{ms: memstore.New(), mode: mode} })
}

// broken is memstore with one rule broken, chosen by mode.
type broken struct {
	ms   *memstore.Store
	mode string
}

func (b *broken) key(key string) string {
	if b.mode == "invalid-keys-accepted" && store.ValidKey(key) != nil {
		return fmt.Sprintf("escaped/%x", key)
	}
	return key
}

func (b *broken) ctx(ctx context.Context) context.Context {
	if b.mode == "ctx-ignored" {
		return context.Background()
	}
	return ctx
}

func (b *broken) Put(ctx context.Context, key string, body io.Reader, size int64, opts store.PutOptions) error {
	key, ctx = b.key(key), b.ctx(ctx)
	switch b.mode {
	case "ifabsent-ignored":
		opts.IfAbsent = false
	case "retention-ignored":
		opts.RetainUntil = time.Time{}
	case "size-unchecked":
		size = -1
	case "partial-on-error":
		data, err := io.ReadAll(body)
		if err != nil {
			_ = b.ms.Put(ctx, key, bytes.NewReader(data), int64(len(data)), opts)
			return err
		}
		body = bytes.NewReader(data)
	case "put-deletes-first":
		if !opts.IfAbsent {
			if err := b.ms.Delete(ctx, key); err != nil {
				return err
			}
		}
	case "overwrite-keeps-tail":
		data, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		if old, ok := b.ms.Bytes(key); ok && len(old) > len(data) && !opts.IfAbsent {
			data = append(data, old[len(data):]...)
			size = int64(len(data))
		}
		body = bytes.NewReader(data)
	}
	return b.ms.Put(ctx, key, body, size, opts)
}

func (b *broken) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := b.ms.Get(b.ctx(ctx), b.key(key))
	if b.mode == "notfound-generic" && errors.Is(err, store.ErrNotFound) {
		return nil, errors.New("no such object")
	}
	return rc, err
}

func (b *broken) Delete(ctx context.Context, key string) error {
	key, ctx = b.key(key), b.ctx(ctx)
	if b.mode == "delete-not-idempotent" || b.mode == "notfound-generic" {
		if _, ok := b.ms.Bytes(key); !ok && store.ValidKey(key) == nil {
			if b.mode == "notfound-generic" {
				return errors.New("no such object")
			}
			return store.ErrNotFound
		}
	}
	return b.ms.Delete(ctx, key)
}

func (b *broken) List(ctx context.Context, prefix string) iter.Seq2[string, error] {
	ctx = b.ctx(ctx)
	switch b.mode {
	case "invalid-keys-accepted":
		if store.ValidPrefix(prefix) != nil {
			return func(func(string, error) bool) {}
		}
	case "list-ignores-prefix":
		prefix = ""
	case "list-walk-order", "list-first-page-only", "list-ignores-break":
		return func(yield func(string, error) bool) {
			var keys []string
			for k, err := range b.ms.List(ctx, prefix) {
				if err != nil {
					yield("", err)
					return
				}
				keys = append(keys, k)
			}
			switch b.mode {
			case "list-walk-order":
				// Compare segment by segment, as a naive directory walk does.
				slices.SortFunc(keys, func(x, y string) int {
					return slices.Compare(strings.Split(x, "/"), strings.Split(y, "/"))
				})
			case "list-first-page-only":
				keys = keys[:min(len(keys), 1000)]
			}
			for _, k := range keys {
				if !yield(k, nil) && b.mode != "list-ignores-break" {
					return
				}
			}
		}
	}
	return b.ms.List(ctx, prefix)
}
