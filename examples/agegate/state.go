package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// state is the app's own bookkeeping: which documents await review, the
// decisions taken, and the canaries planted. It never holds image data: a
// decision keeps only the outcome and the birth date the reviewer read.
// It is kept in memory and, when a path is given, in a JSON file rewritten
// atomically on every change. It is safe for concurrent use.
type state struct {
	mu   sync.Mutex
	path string
	d    stateData
}

type stateData struct {
	Pending   []submission        `json:"pending"`
	Decisions map[string]decision `json:"decisions"` // by member account
	Canaries  []canary            `json:"canaries"`
}

// submission is an uploaded document awaiting review.
type submission struct {
	ID        string    `json:"id"` // the vault's object ID
	Member    string    `json:"member"`
	Kind      string    `json:"kind"`
	Submitted time.Time `json:"submitted"`
	Expires   time.Time `json:"expires"`
}

// decision is all that is kept once a document has been reviewed.
type decision struct {
	Outcome   string    `json:"outcome"`              // outcomeApproved or outcomeRejected
	BirthDate string    `json:"birth_date,omitempty"` // YYYY-MM-DD, as the reviewer read it
	Reviewer  string    `json:"reviewer"`
	Decided   time.Time `json:"decided"`
}

// canary is a decoy document the vault listed in the review queue
// (vault.MixCanaries).
type canary struct {
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
}

const (
	outcomeApproved = "approved"
	outcomeRejected = "rejected"
)

var (
	errNotPending = errors.New("agegate: no such pending submission")
)

func loadState(path string) (*state, error) {
	s := &state{path: path, d: stateData{Decisions: map[string]decision{}}}
	if path == "" {
		return s, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	if s.d, err = parseState(b); err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	return s, nil
}

// parseState decodes a state file.
func parseState(b []byte) (stateData, error) {
	var d stateData
	if err := json.Unmarshal(b, &d); err != nil {
		return stateData{}, err
	}
	if d.Decisions == nil {
		d.Decisions = map[string]decision{}
	}
	return d, nil
}

// save writes the file atomically (temporary file in the same directory,
// then rename). Callers hold mu.
func (s *state) save() error {
	if s.path == "" {
		return nil
	}
	b, err := json.MarshalIndent(s.d, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(s.path), ".agegate-state-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), s.path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// submit records a new submission and returns the one it replaces (a
// member has at most one document pending), if any.
func (s *state) submit(sub submission) (replaced *submission, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range s.d.Pending {
		if p.Member == sub.Member {
			old := p
			replaced = &old
			s.d.Pending = slices.Delete(s.d.Pending, i, i+1)
			break
		}
	}
	s.d.Pending = append(s.d.Pending, sub)
	delete(s.d.Decisions, sub.Member) // a new upload asks for a new decision
	return replaced, s.save()
}

// pending returns the submissions awaiting review, oldest first.
func (s *state) pending() []submission {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.d.Pending)
	slices.SortFunc(out, func(a, b submission) int { return a.Submitted.Compare(b.Submitted) })
	return out
}

// lookup returns the pending submission with object ID id.
func (s *state) lookup(id string) (submission, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.d.Pending {
		if p.ID == id {
			return p, true
		}
	}
	return submission{}, false
}

// decide moves a pending submission to a decision, once: a second decision
// on the same document (two reviewers at once) fails with errNotPending.
func (s *state) decide(id string, d decision) (submission, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.d.Pending, func(p submission) bool { return p.ID == id })
	if i < 0 {
		return submission{}, errNotPending
	}
	sub := s.d.Pending[i]
	s.d.Pending = slices.Delete(s.d.Pending, i, i+1)
	s.d.Decisions[sub.Member] = d
	return sub, s.save()
}

// undecide puts back a submission decide took (the vault refused the
// decision: the reviewer had not opened the document).
func (s *state) undecide(sub submission) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.d.Decisions, sub.Member)
	if !slices.ContainsFunc(s.d.Pending, func(p submission) bool { return p.ID == sub.ID }) {
		s.d.Pending = append(s.d.Pending, sub)
	}
	return s.save()
}

// drop forgets a pending submission whose document is gone (expired and
// swept): the member sees "expired" and may upload again.
func (s *state) drop(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.d.Pending, func(p submission) bool { return p.ID == id })
	if i < 0 {
		return nil
	}
	s.d.Pending = slices.Delete(s.d.Pending, i, i+1)
	return s.save()
}

// memberStatus is what a member sees about their own verification.
type memberStatus struct {
	State     string // "none", "pending", "expired", outcomeApproved, outcomeRejected
	Submitted time.Time
	Expires   time.Time
	Decided   time.Time
}

func (s *state) status(member string, now time.Time) memberStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.d.Pending {
		if p.Member == member {
			if !now.Before(p.Expires) {
				return memberStatus{State: "expired", Submitted: p.Submitted, Expires: p.Expires}
			}
			return memberStatus{State: "pending", Submitted: p.Submitted, Expires: p.Expires}
		}
	}
	if d, ok := s.d.Decisions[member]; ok {
		return memberStatus{State: d.Outcome, Decided: d.Decided}
	}
	return memberStatus{State: "none"}
}

// decisionOf returns the decision recorded for member.
func (s *state) decisionOf(member string) (decision, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.d.Decisions[member]
	return d, ok
}

// liveCanaries returns the canaries not yet expired at now.
func (s *state) liveCanaries(now time.Time) []canary {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []canary
	for _, c := range s.d.Canaries {
		if now.Before(c.Expires) {
			out = append(out, c)
		}
	}
	return out
}

// addCanaries forgets the expired canaries and adds fresh ones.
func (s *state) addCanaries(now time.Time, fresh []canary) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d.Canaries = slices.DeleteFunc(s.d.Canaries, func(c canary) bool { return !now.Before(c.Expires) })
	s.d.Canaries = append(s.d.Canaries, fresh...)
	return s.save()
}
