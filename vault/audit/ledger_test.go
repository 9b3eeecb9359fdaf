package audit

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/idvault/idvault/vault/fsstore"
	"github.com/idvault/idvault/vault/store"
)

func sampleEntry(t testing.TB) LedgerEntry {
	tok := strings.Repeat("ab", 16)
	return LedgerEntry{TokenID: tok, Expires: time.Date(2026, 11, 21, 9, 1, 0, 0, time.UTC), Record: Record{
		Time: time.Date(2026, 11, 21, 9, 0, 1, 5, time.UTC), Log: LedgerLog, Event: EventRedeem, Outcome: OutcomeOK,
		Object: strings.Repeat("cd", 16), Principal: "r", Purpose: "p", TokenID: tok,
		Detail: LedgerKeepUntilPrefix + "2026-11-21T10:01:20Z",
	}}
}

func TestLedgerEntryRoundTrip(t *testing.T) {
	skey, vkey, err := GenerateKey("ledger-test")
	if err != nil {
		t.Fatal(err)
	}
	ls, err := NewLedgerSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	e := sampleEntry(t)
	b, err := ls.Sign(e)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenLedgerEntry(b, vkey)
	if err != nil || got != e {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if exp, err := LedgerExpiry(b); err != nil || !exp.Equal(e.Expires) {
		t.Fatalf("expiry: %v %v", exp, err)
	}
	// Every flipped byte is refused (or, in the signature's base64
	// padding-free tail, still verifies only if the bytes are equal).
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		if got, err := OpenLedgerEntry(c, vkey); err == nil && got != e {
			t.Fatalf("flipped byte %d opened as a different entry", i)
		}
	}
	_, other, _ := GenerateKey("ledger-test")
	if _, err := OpenLedgerEntry(b, other); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("foreign key: %v", err)
	}
	bad := e
	bad.Record.TokenID = strings.Repeat("00", 16)
	if _, err := ls.Sign(bad); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("entry for another token: %v", err)
	}
	if !SameRelease(Record{Log: "x", Seq: 7, Time: e.Record.Time, Event: EventRedeem, Outcome: OutcomeOK, Object: e.Record.Object,
		Principal: "r", Purpose: "p", TokenID: e.TokenID, Detail: e.Record.Detail}, e) {
		t.Fatal("folded copy not recognised")
	}
}

func TestFoldedRoundTrip(t *testing.T) {
	in := map[string]string{strings.Repeat("a", 32): FoldFolded, strings.Repeat("b", 32): FoldVoid}
	out := map[string]string{}
	if err := ParseFolded(bytes.NewReader(EncodeFolded(in)), out); err != nil || len(out) != 2 || out[strings.Repeat("a", 32)] != FoldFolded {
		t.Fatalf("%v %v", out, err)
	}
	if err := ParseFolded(strings.NewReader("zz folded\n"), out); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("malformed: %v", err)
	}
}

// ledgerSetting opens a filesystem store in a temporary directory and makes
// an audit key pair.
func ledgerSetting(t *testing.T) (st *fsstore.Store, skey, vkey string) {
	t.Helper()
	st, err := fsstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	skey, vkey, err = GenerateKey("ledger-test")
	if err != nil {
		t.Fatal(err)
	}
	return st, skey, vkey
}

// TestCheckLedgerBothWays: an entry whose record is in no log (past the
// grace) and a release record whose entry vanished are both reported.
func TestCheckLedgerBothWays(t *testing.T) {
	ctx := context.Background()
	st, skey, vkey := ledgerSetting(t)
	ls, _ := NewLedgerSigner(skey)
	e := sampleEntry(t)
	b, _ := ls.Sign(e)
	if err := st.Put(ctx, LedgerPrefix+e.TokenID, bytes.NewReader(b), int64(len(b)), store.PutOptions{IfAbsent: true}); err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return e.Record.Time.Add(time.Minute) }
	rep, err := CheckLedger(ctx, st, vkey, LedgerCheckOptions{Now: now})
	if err != nil || rep.Pending != 1 || len(rep.Problems) != 0 {
		t.Fatalf("young entry: %+v %v", rep, err)
	}
	later := func() time.Time { return e.Record.Time.Add(time.Hour) }
	rep, err = CheckLedger(ctx, st, vkey, LedgerCheckOptions{Now: later})
	if err != nil || len(rep.Problems) != 1 {
		t.Fatalf("unfolded entry not reported: %+v %v", rep, err)
	}
	// fold appends the release record to a new log, as an adopter does.
	fold := func() {
		a, err := NewAppender(ctx, st, skey, AppenderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Append(ctx, e.Record); err != nil {
			t.Fatal(err)
		}
		a.Close(ctx)
	}
	fold()
	rep, err = CheckLedger(ctx, st, vkey, LedgerCheckOptions{Now: later})
	if err != nil || len(rep.Problems) != 0 || rep.Folded != 1 {
		t.Fatalf("folded entry: %+v %v", rep, err)
	}
	// A second fold of the same release (two adopters) is reported.
	fold()
	rep, err = CheckLedger(ctx, st, vkey, LedgerCheckOptions{Now: later})
	if err != nil || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "more than once") {
		t.Fatalf("double fold not reported: %+v %v", rep, err)
	}
	st.Delete(ctx, LedgerPrefix+e.TokenID)
	rep, err = CheckLedger(ctx, st, vkey, LedgerCheckOptions{Now: later})
	if err != nil || len(rep.Problems) != 2 { // both copies lack it
		t.Fatalf("release without its entry not reported: %+v %v", rep, err)
	}
	after := func() time.Time { return time.Date(2026, 11, 21, 10, 2, 0, 0, time.UTC) }
	rep, err = CheckLedger(ctx, st, vkey, LedgerCheckOptions{Now: after})
	if err != nil || len(rep.Problems) != 0 {
		t.Fatalf("entry swept after keep-until reported: %+v %v", rep, err)
	}
}

// FuzzOpenLedgerEntry: the parser never panics, and whatever opens signs
// back to the same bytes' meaning.
func FuzzOpenLedgerEntry(f *testing.F) {
	skey, vkey, _ := GenerateKey("ledger-fuzz")
	ls, _ := NewLedgerSigner(skey)
	b, _ := ls.Sign(sampleEntry(f))
	f.Add(b)
	f.Add([]byte(ledgerHeader))
	f.Add([]byte(ledgerHeader + "token x\nexpires 1\nrecord AA==\n\n— x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		LedgerExpiry(b)
		resigns(t, b, func(b []byte) (LedgerEntry, error) { return OpenLedgerEntry(b, vkey) }, ls.Sign)
	})
}

func FuzzParseFolded(f *testing.F) {
	f.Add(EncodeFolded(map[string]string{strings.Repeat("a", 32): FoldFolded}))
	f.Add([]byte("x void\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m := map[string]string{}
		if ParseFolded(bytes.NewReader(b), m) == nil {
			for k, v := range m {
				if len(k) != 32 || (v != FoldFolded && v != FoldVoid) {
					t.Fatalf("accepted %q %q", k, v)
				}
			}
		}
	})
}

// TestWitnessRecordsAreNotReleases: witness records and the state chain
// beside the single-use ledger, on a filesystem store: CheckLedger counts
// the one release once, Scan yields the witness records as records of
// their log (never the state chain's objects), Heads and Verify see one
// log and a chain of two entries. A guard: nothing here was wrong before
// witness records existed, and nothing may become so.
func TestWitnessRecordsAreNotReleases(t *testing.T) {
	ctx := context.Background()
	st, skey, vkey := ledgerSetting(t)
	ss, _ := NewStateSigner(skey)
	stored := writeChain(t, st, ss, 2)
	ls, _ := NewLedgerSigner(skey)
	e := sampleEntry(t)
	b, _ := ls.Sign(e)
	if err := st.Put(ctx, LedgerPrefix+e.TokenID, bytes.NewReader(b), int64(len(b)), store.PutOptions{IfAbsent: true}); err != nil {
		t.Fatal(err)
	}
	a, err := NewAppender(ctx, st, skey, AppenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	witness := []Record{
		{Event: EventWitness, Outcome: OutcomeOK, Reason: ReasonStateHead, Detail: FormatStateHead(2, HashState(stored[1]))},
		{Event: EventWitness, Outcome: OutcomeOK, Reason: ReasonLogHead, Detail: FormatLogHead("0123456789abcdef0123456789abcdef", 0)},
	}
	for _, r := range append(witness[:1:1], e.Record, witness[1]) {
		if _, err := a.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	later := func() time.Time { return e.Record.Time.Add(time.Hour) }
	rep, err := CheckLedger(ctx, st, vkey, LedgerCheckOptions{Now: later})
	if err != nil || rep.Entries != 1 || rep.Folded != 1 || len(rep.Problems) != 0 {
		t.Fatalf("CheckLedger: %+v, %v", rep, err)
	}
	var events []Event
	for r, err := range Scan(ctx, st, Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, r.Event)
	}
	if len(events) != 3 || events[0] != EventWitness || events[1] != EventRedeem || events[2] != EventWitness {
		t.Fatalf("Scan yields %v", events)
	}
	n := 0
	for r, err := range Scan(ctx, st, Filter{Event: EventRedeem, Outcome: OutcomeOK}) {
		if err != nil || r.TokenID != e.TokenID {
			t.Fatalf("Scan of releases: %+v, %v", r, err)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("%d releases", n)
	}
	if heads, err := Heads(ctx, st, vkey); err != nil || len(heads) != 1 || heads[0].Log != a.LogID() {
		t.Fatalf("Heads: %+v, %v", heads, err)
	}
	vrep, err := Verify(ctx, st, vkey, VerifyOptions{})
	if err != nil || len(vrep.Logs) != 1 || vrep.State.Length != 2 {
		t.Fatalf("Verify: %+v, %v", vrep, err)
	}
}
