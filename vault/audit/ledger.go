package audit

// The single-use ledger's ledger entries, and the check that ties them to
// the logs.
//
// A redemption is spent by ONE create-only write of redeemed/<token-id>
// whose body is a LedgerEntry: the canonical release record (event redeem,
// outcome ok) signed with the audit signing key. That write decides single
// use and makes the release record durable at once; the record is then
// folded into the writer's Merkle log by the group-committed Appender, off
// the redemption's critical path, and the folder notes the token under
// ledger-folded/. An entry left un-folded by a crash is adopted (folded) by
// the next Open or Sweep of any instance. An entry whose spend could not be
// confirmed (a store error, a spend past its deadline) serves nothing: its
// writer appends a refusal record for the token and notes the token as
// void under ledger-folded/, so it is never folded as a release.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/idvault/idvault/vault/store"
)

// Storage prefixes of the ledger.
const (
	// LedgerPrefix holds one ledger entry per redeemed token:
	// redeemed/<token-id, 32 hex digits>.
	LedgerPrefix = "redeemed/"
	// FoldedPrefix holds notes of folded (or voided) entries:
	// ledger-folded/<20-digit unix nanos>-<16 hex digits>, one token ID and
	// its state per line ("<hex> folded" or "<hex> void").
	FoldedPrefix = "ledger-folded/"
	// LedgerLog is the Log field of the record inside a ledger entry (the
	// folded copy carries the real log and sequence number).
	LedgerLog = "ledger"
)

const ledgerHeader = "idvault ledger v1\n"

// maxLedgerEntry bounds a ledger entry; readers refuse anything longer.
const maxLedgerEntry = 8 << 10

// LedgerEntry is one ledger entry: the release record of a redemption and
// the expiry of its token (which tells the sweeper when the entry may go).
type LedgerEntry struct {
	TokenID string    // 32 lower-case hex digits
	Expires time.Time // the token's expiry
	Record  Record    // Event redeem, Outcome ok, Log LedgerLog, Seq 0, TokenID equal to TokenID
}

// LedgerSigner signs ledger entries with the audit signing key.
type LedgerSigner struct{ s note.Signer }

// NewLedgerSigner returns a LedgerSigner for signerKey (from GenerateKey).
func NewLedgerSigner(signerKey string) (*LedgerSigner, error) {
	return newSigner[LedgerSigner](signerKey)
}

// String redacts: a LedgerSigner holds a private key.
func (*LedgerSigner) String() string { return "audit.LedgerSigner{REDACTED}" }

// Sign validates e and returns its encoding, a signed note:
//
//	idvault ledger v1
//	token <hex>
//	expires <unix nanoseconds>
//	record <base64 of Record.MarshalBinary>
//
//	— <signature>
func (ls *LedgerSigner) Sign(e LedgerEntry) ([]byte, error) { return signEntry(ls.s, &e) }

// noteText returns the text of e's note (e checked).
func (e *LedgerEntry) noteText() (string, error) {
	rb, err := e.Record.MarshalBinary()
	if err != nil {
		return "", err
	}
	return ledgerHeader + "token " + e.TokenID + "\nexpires " + strconv.FormatInt(e.Expires.UnixNano(), 10) +
		"\nrecord " + base64.StdEncoding.EncodeToString(rb) + "\n", nil
}

func (e *LedgerEntry) check() error {
	if len(e.TokenID) != 32 || !isLowerHex(e.TokenID) {
		return fmt.Errorf("%w: ledger token ID must be 32 lower-case hex digits", ErrInvalidRecord)
	}
	r := &e.Record
	if r.Event != EventRedeem || r.Outcome != OutcomeOK || r.Log != LedgerLog || r.Seq != 0 || r.TokenID != e.TokenID {
		return fmt.Errorf("%w: a ledger entry holds the release record of its own token", ErrInvalidRecord)
	}
	return nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// LedgerExpiry reads the token expiry of a ledger entry without checking
// its signature (the sweeper's input; a forged expiry can only make an
// entry stay longer or go sooner, and Verify reports a missing entry whose
// release record says it should still exist). Anything else than a spend
// entry gives an error wrapping ErrCorrupt.
func LedgerExpiry(b []byte) (time.Time, error) {
	_, exp, _, err := parseLedgerText(b)
	return exp, err
}

func parseLedgerText(b []byte) (string, time.Time, []byte, error) {
	if len(b) > maxLedgerEntry || !bytes.HasPrefix(b, []byte(ledgerHeader)) {
		return "", time.Time{}, nil, corruptf("not a ledger entry")
	}
	text, _, ok := bytes.Cut(b, []byte("\n\n"))
	if !ok || len(text) < len(ledgerHeader) {
		return "", time.Time{}, nil, corruptf("ledger entry without signature")
	}
	lines := strings.Split(string(text[len(ledgerHeader):]), "\n")
	if len(lines) != 3 {
		return "", time.Time{}, nil, corruptf("ledger entry has %d lines", len(lines))
	}
	tok, ok1 := strings.CutPrefix(lines[0], "token ")
	exps, ok2 := strings.CutPrefix(lines[1], "expires ")
	recs, ok3 := strings.CutPrefix(lines[2], "record ")
	if !ok1 || !ok2 || !ok3 || len(tok) != 32 || !isLowerHex(tok) {
		return "", time.Time{}, nil, corruptf("malformed ledger entry")
	}
	ns, err := strconv.ParseInt(exps, 10, 64)
	if err != nil || strconv.FormatInt(ns, 10) != exps {
		return "", time.Time{}, nil, corruptf("malformed ledger expiry")
	}
	rb, err := base64.StdEncoding.Strict().DecodeString(recs)
	if err != nil {
		return "", time.Time{}, nil, corruptf("malformed ledger record")
	}
	return tok, time.Unix(0, ns).UTC(), rb, nil
}

// OpenLedgerEntry checks the signature of a ledger entry with verifierKey
// and returns it. Every failure wraps ErrCorrupt.
func OpenLedgerEntry(b []byte, verifierKey string) (LedgerEntry, error) {
	known, err := parseVerifiers(verifierKey)
	if err != nil {
		return LedgerEntry{}, err
	}
	return openLedgerEntry(b, known)
}

func openLedgerEntry(b []byte, known note.Verifiers) (LedgerEntry, error) {
	tok, exp, rb, err := parseLedgerText(b)
	if err != nil {
		return LedgerEntry{}, err
	}
	if _, err := note.Open(b, known); err != nil {
		return LedgerEntry{}, corruptf("ledger entry signature does not verify")
	}
	r, err := ParseRecord(rb)
	if err != nil {
		return LedgerEntry{}, err
	}
	e := LedgerEntry{TokenID: tok, Expires: exp, Record: r}
	if err := e.check(); err != nil {
		return LedgerEntry{}, corruptf("ledger entry record does not match its token")
	}
	return e, nil
}

// SameRelease reports whether folded (a record read from a log) is the
// folded copy of the release record in entry: equal in every field but Log
// and Seq.
func SameRelease(folded Record, entry LedgerEntry) bool {
	a, b := folded, entry.Record
	a.Log, a.Seq, b.Log, b.Seq = "", 0, "", 0
	return a == b
}

// Fold states written under FoldedPrefix.
const (
	FoldFolded = "folded" // the release record is in a log
	FoldVoid   = "void"   // nothing was released; a refusal record says why
)

// EncodeFolded encodes one ledger-folded note: "<token hex> <state>\n" per
// token. states maps token IDs to FoldFolded or FoldVoid.
func EncodeFolded(states map[string]string) []byte {
	var b bytes.Buffer
	for tok, st := range states {
		b.WriteString(tok + " " + st + "\n")
	}
	return b.Bytes()
}

// ParseFolded decodes a ledger-folded note into states (added to it).
func ParseFolded(r io.Reader, states map[string]string) error {
	sc := bufio.NewScanner(io.LimitReader(r, 1<<20))
	for sc.Scan() {
		tok, st, ok := strings.Cut(sc.Text(), " ")
		if !ok || len(tok) != 32 || !isLowerHex(tok) || (st != FoldFolded && st != FoldVoid) {
			return corruptf("malformed ledger-folded line")
		}
		if states[tok] != FoldFolded {
			states[tok] = st
		}
	}
	return sc.Err()
}

// FoldedKey names a new ledger-folded note written at t.
func FoldedKey(t time.Time, rnd [8]byte) string {
	return fmt.Sprintf("%s%020d-%s", FoldedPrefix, t.UnixNano(), hex.EncodeToString(rnd[:]))
}

// LedgerReport is what CheckLedger found.
type LedgerReport struct {
	Entries  int // ledger entries read
	Folded   int // entries whose release record is in a log
	Void     int // entries voided (a spend-unconfirmed refusal of the token is in a log)
	Pending  int // entries younger than the grace, not yet in a log
	Problems []string
}

// LedgerCheckOptions tune CheckLedger. The zero value is ready to use.
type LedgerCheckOptions struct {
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Grace is how long an entry may wait to be folded before its absence
	// from every log is a problem (default 10 minutes: the vault adopts
	// entries older than 2 minutes at Open and Sweep).
	Grace time.Duration
}

// withDefaults returns o with its zero fields set to their defaults.
func (o LedgerCheckOptions) withDefaults() LedgerCheckOptions {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Grace <= 0 {
		o.Grace = 10 * time.Minute
	}
	return o
}

// ReasonSpendUnconfirmed is the Reason of the refusal a redeemer appends
// when its spend write failed ambiguously or answered too late: nothing was
// served, and the ledger entry (if it exists) is void.
const ReasonSpendUnconfirmed = "spend-unconfirmed"

// LedgerKeepUntilPrefix starts the Detail of a release record: the time
// until which its ledger entry must exist (RFC 3339, UTC).
const LedgerKeepUntilPrefix = "ledger-keep-until "

// CheckLedger checks the ledger against the logs both ways: every spend
// entry is signed and its release record is in a log (or, when voided, a
// spend-unconfirmed refusal of the token is), unless it is younger than
// the grace; and every release record in a log whose keep-until time has
// not passed still has its ledger entry. Problems say which token, never
// record contents. Memory is bounded by the number of ledger entries (the
// ledger keeps them about an hour past their tokens' expiry), not by the
// size of the logs, which are streamed once.
func CheckLedger(ctx context.Context, st store.Store, verifierKey string, opts LedgerCheckOptions) (*LedgerReport, error) {
	known, err := parseVerifiers(verifierKey)
	if err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	now := opts.Now()
	rep := &LedgerReport{}
	entries := map[string]*LedgerEntry{} // valid entries, by token
	for k, err := range st.List(ctx, LedgerPrefix) {
		if err != nil {
			return nil, fmt.Errorf("audit: check ledger: %w", err)
		}
		tok := strings.TrimPrefix(k, LedgerPrefix)
		b, err := getAll(ctx, st, k)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return nil, fmt.Errorf("audit: check ledger: %w", err)
		}
		rep.Entries++
		var e LedgerEntry
		if err == nil {
			e, err = openLedgerEntry(b, known)
		}
		if err != nil || e.TokenID != tok {
			if len(b) != 8 { // the former format (an expiry) holds no record
				rep.Problems = append(rep.Problems, "ledger entry "+tok+": not a valid signed entry")
			}
			entries[tok] = nil
			continue
		}
		entries[tok] = &e
	}
	folded := map[string]bool{}
	void := map[string]bool{}
	for r, err := range Scan(ctx, st, Filter{Event: EventRedeem}) {
		if err != nil {
			return nil, fmt.Errorf("audit: check ledger: %w", err)
		}
		if r.TokenID == "" {
			continue
		}
		e, present := entries[r.TokenID]
		switch {
		case r.Outcome == OutcomeOK && present && e != nil:
			if !SameRelease(r, *e) {
				rep.Problems = append(rep.Problems, "ledger entry "+r.TokenID+": differs from its folded release record")
			} else if folded[r.TokenID] {
				rep.Problems = append(rep.Problems, "release of token "+r.TokenID+": folded more than once")
			}
			folded[r.TokenID] = true
		case r.Outcome == OutcomeOK && !present:
			s, ok := strings.CutPrefix(r.Detail, LedgerKeepUntilPrefix)
			if !ok {
				continue // a release record of the former format: no ledger entry promised
			}
			if until, err := time.Parse(time.RFC3339, s); err != nil || now.Before(until) {
				rep.Problems = append(rep.Problems, "release of token "+r.TokenID+": its ledger entry is missing")
			}
		case r.Reason == ReasonSpendUnconfirmed && present:
			void[r.TokenID] = true
		}
	}
	for tok, e := range entries {
		switch {
		case e == nil:
		case folded[tok]:
			rep.Folded++
		case void[tok]:
			rep.Void++
		case now.Sub(e.Record.Time) < opts.Grace:
			rep.Pending++
		default:
			rep.Problems = append(rep.Problems, "ledger entry "+tok+": release record in no log")
		}
	}
	return rep, nil
}

func getAll(ctx context.Context, st store.Store, key string) ([]byte, error) {
	rc, err := st.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxLedgerEntry+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxLedgerEntry {
		return nil, corruptf("ledger entry too long")
	}
	return b, nil
}
