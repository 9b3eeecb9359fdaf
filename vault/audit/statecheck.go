package audit

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/idvault/idvault/vault/store"
)

// maxStateClaims bounds the state heads one Verify run remembers as
// checked; past it, a head is checked again (one GET) each time it is met.
const maxStateClaims = 1024

// stateCheck is Verify's view of the state chain: read once, in order,
// keeping only its position and last hash, then followed further when a
// witness record vouches for entries written since.
type stateCheck struct {
	ctx  context.Context
	st   store.Store
	r    *StateReader
	prob *Problem
	ok   map[int64]StateHash // heads found in the chain
}

// readStateChain reads the whole chain and checks it against the head the
// caller verified before (zero: none). Only store errors are returned; what
// is wrong with the chain is its problem.
func readStateChain(ctx context.Context, st store.Store, known note.Verifiers, trusted StateHead) (*stateCheck, error) {
	sc := &stateCheck{ctx: ctx, st: st, r: &StateReader{st: st, known: known, next: 1}, ok: map[int64]StateHash{}}
	if err := sc.follow(); err != nil {
		return nil, err
	}
	// A gap: an entry missing while a later one exists. An entry written
	// after the reader stopped looks like one until it is read too.
	for attempt := 0; sc.prob == nil; attempt++ {
		err := sc.r.CheckGap(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrStateBroken) {
			return nil, err
		}
		before := sc.r.Len()
		if err := sc.follow(); err != nil {
			return nil, err
		}
		if sc.prob == nil && (sc.r.Len() == before || attempt >= 2) {
			sc.broken(err)
		}
	}
	if trusted.Length > 0 || trusted.Hash != (StateHash{}) {
		p, err := sc.vouch(trusted, "the head verified before")
		if err != nil {
			return nil, err
		}
		sc.fail(p)
	}
	return sc, nil
}

// follow reads the entries after the reader's position; a broken link
// becomes the chain's problem.
func (sc *stateCheck) follow() error {
	if sc.prob != nil {
		return nil
	}
	_, err := sc.r.Next(sc.ctx, nil)
	if errors.Is(err, ErrStateBroken) {
		sc.broken(err)
		return nil
	}
	return err
}

func (sc *stateCheck) broken(err error) {
	n := sc.r.Len() + 1
	sc.fail(&Problem{Seq: n, Key: StateKey(n), Class: ClassStateBroken,
		Detail: strings.TrimPrefix(err.Error(), ErrStateBroken.Error()+": ")})
}

// fail makes p the chain's problem, unless it has one.
func (sc *stateCheck) fail(p *Problem) {
	if sc.prob == nil && p != nil {
		sc.prob = p
	}
}

// vouch checks a head that by (a witness record, the caller) vouches for:
// the chain must hold at least h.Length entries, the last of them hashing
// to h.Hash. It returns the problem it finds, without making it the
// chain's: a witness record counts only once a checkpoint covers it. When
// the chain is already broken, nothing more is said about it.
func (sc *stateCheck) vouch(h StateHead, by string) (*Problem, error) {
	if sc.prob != nil {
		return nil, nil
	}
	fork := func() *Problem {
		return &Problem{Seq: h.Length, Key: StateKey(max(h.Length, 1)), Class: ClassFork,
			Detail: fmt.Sprintf("entry %d does not hash to what %s vouches for", h.Length, by)}
	}
	if h.Length == 0 {
		if h.Hash != (StateHash{}) {
			return fork(), nil
		}
		return nil, nil
	}
	if h.Length > sc.r.Len() {
		// Written since the chain was read?
		if err := sc.follow(); err != nil || sc.prob != nil {
			return nil, err
		}
		if h.Length > sc.r.Len() {
			return &Problem{Seq: sc.r.Len(), Key: StateKey(sc.r.Len() + 1), Class: ClassRollback,
				Detail: fmt.Sprintf("the chain holds %d entries; %s vouches for %d", sc.r.Len(), by, h.Length)}, nil
		}
	}
	got, ok := sc.ok[h.Length]
	switch {
	case ok:
	case h.Length == sc.r.Len():
		got = sc.r.Head()
	default:
		b, err := readSmall(sc.ctx, sc.st, StateKey(h.Length), maxStateEntryLen)
		if errors.Is(err, store.ErrNotFound) {
			return &Problem{Seq: h.Length, Key: StateKey(h.Length), Class: ClassRollback,
				Detail: fmt.Sprintf("entry %d, which %s vouches for, is gone", h.Length, by)}, nil
		}
		if err != nil {
			return nil, err
		}
		got = HashState(b)
	}
	if !ok && len(sc.ok) < maxStateClaims {
		sc.ok[h.Length] = got
	}
	if got != h.Hash {
		return fork(), nil
	}
	return nil, nil
}

func (sc *stateCheck) report() StateReport {
	return StateReport{StateHead: StateHead{Length: sc.r.Len(), Hash: sc.r.Head()}, Problem: sc.prob}
}
