package vault

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"

	"github.com/idvault/idvault/vault/audit"
)

// SubjectDocument is what the vault holds about one document of a subject:
// the answer to a member's subject-access request. It holds no secret and
// names no member of staff: views are counted by role.
type SubjectDocument struct {
	Info
	// Views counts the times the document was served, by the role of the
	// viewer (Config.Access.RoleOf). Refused attempts are not views.
	Views map[string]int
	// Expired is true when the document is past its expiry:
	// nobody can view it any more, and the next Sweep deletes it.
	Expired bool
}

// ListSubject answers a subject-access request: every document the vault
// holds about subject (found through the keyed subject index, so the raw
// ID is stored nowhere), each with its kind, upload and expiry times, hold
// status and how many times each role viewed it. Decoy documents are
// never listed. Documents are sorted by upload time.
//
// Authorisation is the caller's job: check that by may see subject's data
// (the member themself, or staff handling their request) before calling.
// The call is audited with by and the keyed hash of subject. An unknown
// subject gets an empty list and no error, like a subject whose documents
// were all deleted, so the answer never says whether a subject exists.
//
// View counts come from the audit log (redemptions served, in every log
// since the oldest listed upload), so the call reads that part of the log:
// it is meant for occasional requests, not for a hot path.
func (a Admin) ListSubject(ctx context.Context, subject string, by Actor) ([]SubjectDocument, error) {
	v := a.v
	if err := v.checkActor("list subject", by); err != nil {
		return nil, err
	}
	if subject == "" {
		return nil, fmt.Errorf("vault: list subject: subject required: %w", ErrInvalidArgument)
	}
	mac, entries := v.subjectIndex(ctx, subject, "list subject")
	var docs []SubjectDocument
	byID := map[string]int{}
	for e, err := range entries {
		if err != nil {
			return nil, err
		}
		id := e.id
		md, key, err := v.loadRecord(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue // deleted, or a Put that never finished
		}
		if err != nil {
			return nil, fmt.Errorf("vault: list subject: %w", err)
		}
		key.Destroy()
		if md.Canary {
			continue
		}
		byID[id.String()] = len(docs)
		docs = append(docs, SubjectDocument{Info: infoOf(md), Views: map[string]int{}, Expired: v.expired(md)})
	}
	if err := v.countViews(ctx, docs, byID); err != nil {
		return nil, err
	}
	slices.SortFunc(docs, func(a, b SubjectDocument) int { return a.Created.Compare(b.Created) })
	if err := v.audit(ctx, audit.Record{Event: EventSubjectAccess, Outcome: audit.OutcomeOK, Subject: mac,
		Principal: by.principal(), Detail: clip(fmt.Sprintf("listed %d documents: %s", len(docs), by.Reason), 500)}); err != nil {
		return nil, err
	}
	return docs, nil
}

// subjectEntry is one entry of the subject index: its key and the document
// it names.
type subjectEntry struct {
	key string
	id  objectID
}

// subjectIndex returns the keyed hash of subject (hex) and the entries of
// its subject index (keys that name no document are skipped); op names the
// call in a listing error.
func (v *Vault) subjectIndex(ctx context.Context, subject, op string) (mac string, entries iter.Seq2[subjectEntry, error]) {
	sys, _ := v.keyset()
	mac = hex.EncodeToString(sys.subjectMAC(subject))
	prefix := "index/subject/" + mac + "/"
	return mac, func(yield func(subjectEntry, error) bool) {
		for k, err := range v.st.List(ctx, prefix) {
			if err != nil {
				yield(subjectEntry{}, fmt.Errorf("vault: %s: %w", op, err))
				return
			}
			id, perr := parseObjectID(strings.TrimPrefix(k, prefix))
			if perr != nil {
				continue
			}
			if !yield(subjectEntry{k, id}, nil) {
				return
			}
		}
	}
}

// countViews adds to docs the redemptions served for each, by role: a
// redeem record with outcome ok exists exactly when plaintext was released
// (a replay or a missing document is one refusal and nothing else). The
// instance's own release records are folded into its log first.
func (v *Vault) countViews(ctx context.Context, docs []SubjectDocument, byID map[string]int) error {
	if len(docs) == 0 {
		return nil
	}
	v.fold.sync(ctx)
	since := docs[0].Created
	for _, d := range docs {
		if d.Created.Before(since) {
			since = d.Created
		}
	}
	// Records are stamped by the writer's clock: allow for skew.
	f := audit.Filter{Event: audit.EventRedeem, Outcome: audit.OutcomeOK, Since: since.Add(-MaxLeeway)}
	for r, err := range audit.Scan(ctx, v.st, f) {
		if err != nil {
			return fmt.Errorf("vault: list subject: reading the audit log: %w", err)
		}
		if i, ok := byID[r.Object]; ok {
			docs[i].Views[v.roleOf(r.Principal)]++
		}
	}
	return nil
}

func (v *Vault) roleOf(principal string) string {
	if v.cfg.Access.RoleOf == nil {
		return DefaultRole
	}
	if r := v.cfg.Access.RoleOf(principal); r != "" {
		return r
	}
	return DefaultRole
}
