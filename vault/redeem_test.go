package vault

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/internal/testenv"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

func TestGrantRedeemReplay(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			v := openTestVault(t, be.new(t), testKEK(t), nil)
			want := image(300<<10, "")
			info := putImage(t, v, want, "member-1")
			g := grant(t, v, info.ID, "reviewer-7")
			if !strings.HasPrefix(g.Token, "idv1_") || !g.ExpiresAt.Equal(v.clock.Now().Add(DefaultGrantTTL)) {
				t.Fatalf("grant: prefix/expiry wrong: expires %v", g.ExpiresAt)
			}
			if strings.Contains(g.String(), g.Token) || strings.Contains(g.GoString(), g.Token) {
				t.Fatal("Grant prints its token")
			}
			got, err := redeemAll(v, g.Token, "reviewer-7")
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("redeem: %v", err)
			}
			if _, err := redeemAll(v, g.Token, "reviewer-7"); !errors.Is(err, ErrTokenReplayed) {
				t.Fatalf("replay: %v, want ErrTokenReplayed", err)
			}
		})
	}
}

func TestGrantRules(t *testing.T) {
	v, _ := newMemVault(t)
	info := putImage(t, v, image(5000, ""), "member-1")
	ctx := context.Background()
	// A TTL above MaxGrantTTL is refused, not silently capped.
	if _, err := v.Grant(ctx, info.ID, Access{Principal: "r", Purpose: "p", TTL: DefaultMaxGrantTTL + time.Millisecond}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("TTL above MaxGrantTTL: %v, want ErrInvalidArgument", err)
	}
	g, err := v.Grant(ctx, info.ID, Access{Principal: "r", Purpose: "p", TTL: DefaultMaxGrantTTL})
	if err != nil || !g.ExpiresAt.Equal(v.clock.Now().Add(DefaultMaxGrantTTL)) {
		t.Fatalf("TTL of exactly MaxGrantTTL: %v %v", g.ExpiresAt, err)
	}
	if _, err := Open(ctx, Config{Store: v.st, KEK: testKEK(t), Access: AccessConfig{MaxGrantTTL: MaxGrantTTLLimit + time.Second}}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Open with MaxGrantTTL above the limit: %v", err)
	}
	for name, a := range map[string]Access{"no purpose": {Principal: "r"}, "no principal": {Purpose: "p"},
		"bad utf8": {Principal: "\xff", Purpose: "p"}, "long principal": {Principal: strings.Repeat("x", 257), Purpose: "p"}} {
		if _, err := v.Grant(ctx, info.ID, a); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, id := range []string{"", "00", strings.Repeat("0", 32), strings.Repeat("Z", 32), "../../system/keyset"} {
		if _, err := v.Grant(ctx, id, Access{Principal: "r", Purpose: "p"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("grant of %q: %v, want ErrNotFound", id, err)
		}
	}
	v.clock.Advance(DefaultRetention)
	if _, err := v.Grant(ctx, info.ID, Access{Principal: "r", Purpose: "p"}); !errors.Is(err, ErrExpired) {
		t.Errorf("grant of expired: %v", err)
	}
}

func TestRedeemRefusals(t *testing.T) {
	v, _ := newMemVault(t)
	other, _ := newMemVault(t)
	info := putImage(t, v, image(5000, ""), "member-1")
	oinfo := putImage(t, other, image(5000, ""), "member-1")
	g := grant(t, v, info.ID, "reviewer-7")
	og := grant(t, other, oinfo.ID, "reviewer-7")
	body := strings.TrimPrefix(g.Token, "idv1_")
	raw, _ := base64.RawURLEncoding.DecodeString(body)
	edited := bytes.Clone(raw)
	edited[len(edited)/2] ^= 1
	cases := []struct {
		name, tok, principal string
		want                 error
	}{
		{"wrong principal", g.Token, "reviewer-8", ErrWrongPrincipal},
		{"empty principal", g.Token, "", ErrWrongPrincipal},
		{"another vault's token", og.Token, "reviewer-7", ErrTokenInvalid},
		{"edited ciphertext", "idv1_" + base64.RawURLEncoding.EncodeToString(edited), "reviewer-7", ErrTokenInvalid},
		{"truncated", g.Token[:len(g.Token)-3], "reviewer-7", ErrTokenInvalid},
		{"prefix only", "idv1_", "reviewer-7", ErrTokenInvalid},
		{"garbled", "idv1_" + strings.Repeat("A", len(body)), "reviewer-7", ErrTokenInvalid},
		{"non-base64", "idv1_" + body[:10] + "!*%" + body[13:], "reviewer-7", ErrTokenInvalid},
		{"empty", "", "reviewer-7", ErrTokenInvalid},
		{"wrong prefix", "idv2_" + body, "reviewer-7", ErrTokenInvalid},
		{"oversized", "idv1_" + strings.Repeat("A", 5000), "reviewer-7", ErrTokenInvalid},
		{"jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", "reviewer-7", ErrTokenInvalid},
	}
	for _, c := range cases {
		rc, _, err := v.Redeem(context.Background(), c.tok, Requester{Principal: c.principal})
		if !errors.Is(err, c.want) || rc != nil {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
		if err != nil && len(c.tok) > 8 && strings.Contains(err.Error(), c.tok) {
			t.Errorf("%s: error message contains the token", c.name)
		}
	}
	// None of the refusals spent the token.
	if _, err := redeemAll(v, g.Token, "reviewer-7"); err != nil {
		t.Fatalf("token spent by a refused attempt: %v", err)
	}
	// Object gone after grant: not found.
	info2 := putImage(t, v, image(5000, ""), "member-1")
	g2 := grant(t, v, info2.ID, "r")
	id2, _ := parseObjectID(info2.ID)
	v.st.Delete(context.Background(), keyRecordKey(id2))
	if _, err := redeemAll(v, g2.Token, "r"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("redeem of deleted object: %v", err)
	}
}

func TestRedeemExpiryTable(t *testing.T) {
	v, _ := newMemVault(t)
	info := putImage(t, v, image(5000, ""), "member-1")
	leeway := v.cfg.Access.ClockLeeway
	cases := []struct {
		at   time.Duration // relative to the token's expiry
		want error
	}{
		{-time.Second, nil},
		{0, nil},
		{leeway, nil},
		{leeway + time.Nanosecond, ErrTokenExpired},
		{time.Hour, ErrTokenExpired},
	}
	for _, c := range cases {
		v.clock.Set(newClock().Now())
		g := grant(t, v, info.ID, "r")
		v.clock.Set(g.ExpiresAt.Add(c.at))
		_, err := redeemAll(v, g.Token, "r")
		if !errors.Is(err, c.want) && !(c.want == nil && err == nil) {
			t.Errorf("at exp%+v: err = %v, want %v", c.at, err, c.want)
		}
	}
	// A spent token stays spent when the clock jumps back 10 minutes.
	v.clock.Set(newClock().Now())
	g := grant(t, v, info.ID, "r")
	if _, err := redeemAll(v, g.Token, "r"); err != nil {
		t.Fatal(err)
	}
	v.clock.Advance(-10 * time.Minute)
	if _, err := redeemAll(v, g.Token, "r"); err == nil {
		t.Fatal("spent token redeemed again after the clock went back")
	}
	v.clock.Advance(10 * time.Minute)
	if _, err := redeemAll(v, g.Token, "r"); !errors.Is(err, ErrTokenReplayed) {
		t.Fatalf("spent token: %v", err)
	}
	// The document itself expiring between grant and redeem.
	v.clock.Set(newClock().Now().Add(DefaultRetention - 30*time.Second))
	g = grant(t, v, info.ID, "r")
	v.clock.Advance(31 * time.Second)
	if _, err := redeemAll(v, g.Token, "r"); !errors.Is(err, ErrExpired) {
		t.Fatalf("redeem after document expiry: %v", err)
	}
}

// TestRedeemRace: 64 goroutines redeem one token against MinIO: exactly one
// gets the bytes. Then two Vault instances sharing one bucket, 32 each.
// A redemption whose spend write answers after the spend window serves
// nothing (errSpendUnconfirmed): safe, and on a busy machine it happens. A
// round where the winning spend was unconfirmed cannot show "exactly one"
// (nobody got the bytes), so it runs again with a new token, up to 5
// times; no round may ever have two winners.
func TestRedeemRace(t *testing.T) {
	st := s3Backend(t)
	kek := testKEK(t)
	// Alerts only: 63 replays are a refusal burst, which would freeze "r"
	// and answer the rest ErrFrozen instead of ErrTokenReplayed.
	alertOnly := func(c *Config) { c.Detection.AlertOnly = true }
	a := openTestVault(t, st, kek, alertOnly)
	b := openTestVault(t, st, kek, alertOnly)
	want := image(64<<10, "")
	info := putImage(t, a, want, "member-1")
	race := func(vs []*testVault, perVault int) (wins, replays, unconfirmed int32) {
		g := grant(t, vs[0], info.ID, "r")
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, v := range vs {
			for range perVault {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					got, err := redeemAll(v, g.Token, "r")
					switch {
					case err == nil && bytes.Equal(got, want):
						atomic.AddInt32(&wins, 1)
					case errors.Is(err, ErrTokenReplayed):
						atomic.AddInt32(&replays, 1)
					case errors.Is(err, errSpendUnconfirmed):
						atomic.AddInt32(&unconfirmed, 1)
					default:
						t.Errorf("unexpected: %v", err)
					}
				}()
			}
		}
		close(start)
		wg.Wait()
		return wins, replays, unconfirmed
	}
	for _, c := range []struct {
		name     string
		vs       []*testVault
		perVault int
	}{{"one vault, 64 goroutines", []*testVault{a}, 64}, {"two vaults, 32 goroutines each", []*testVault{a, b}, 32}} {
		testenv.UntilChecked(t, 5, c.name+": the winning spend was unconfirmed", func(int) bool {
			w, r, u := race(c.vs, c.perVault)
			if w > 1 || w+r+u != 64 || (w == 0 && u == 0) {
				t.Fatalf("%s: %d wins, %d replays, %d unconfirmed", c.name, w, r, u)
			}
			if u > 0 {
				t.Logf("%s: %d wins, %d replays, %d spends unconfirmed (answered after the window)", c.name, w, r, u)
			}
			return w == 1
		})
	}
}

func TestRotateTokenKey(t *testing.T) {
	st := fsBackend(t)
	kek := testKEK(t)
	a := openTestVault(t, st, kek, nil)
	b := openTestVault(t, st, kek, nil)
	info := putImage(t, a, image(5000, ""), "m")
	before := grant(t, a, info.ID, "r")
	if err := a.Admin().RotateTokenKey(context.Background(), testActor, RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	after := grant(t, a, info.ID, "r")
	// b still has the old keyset: it must reload to open the new token.
	if _, err := redeemAll(b, after.Token, "r"); err != nil {
		t.Fatalf("token under the new key at another instance: %v", err)
	}
	if _, err := redeemAll(a, before.Token, "r"); err != nil {
		t.Fatalf("token under the old key: %v", err)
	}
}

// flakyStore fails writes under a prefix while down is set.
type flakyStore struct {
	store.Store
	prefix string
	down   atomic.Bool
	puts   atomic.Int64
	failAt int64 // when > 0, every Put after this many fails
}

func (f *flakyStore) Put(ctx context.Context, key string, body io.Reader, size int64, opts store.PutOptions) error {
	n := f.puts.Add(1)
	if (f.down.Load() && strings.HasPrefix(key, f.prefix)) || (f.failAt > 0 && n > f.failAt) {
		io.Copy(io.Discard, body)
		return errors.New("flaky: disk full")
	}
	return f.Store.Put(ctx, key, body, size, opts)
}

// TestFailClosed: with the store refusing writes, Redeem serves nothing;
// with only the audit log unwritable it serves, because the spend entry
// itself is the durable, signed release record (folded later); Grant and
// Put need the log and refuse. Once the store recovers, service resumes.
func TestFailClosed(t *testing.T) {
	fs := &flakyStore{Store: fsBackend(t), prefix: ""}
	v := openTestVault(t, fs, testKEK(t), nil)
	want := image(100<<10, "")
	info := putImage(t, v, want, "m")
	g := grant(t, v, info.ID, "r")
	fs.down.Store(true)
	rc, _, err := v.Redeem(context.Background(), g.Token, Requester{Principal: "r"})
	if err == nil || rc != nil {
		t.Fatalf("redeem with the store down: %v", err)
	}
	if _, err := v.Grant(context.Background(), info.ID, Access{Principal: "r", Purpose: "p"}); !errors.Is(err, ErrAuditUnavailable) {
		t.Fatalf("grant with audit down: %v", err)
	}
	if _, err := v.Put(context.Background(), Document{Body: bytes.NewReader(want), Size: int64(len(want)), Subject: "m"}); err == nil {
		t.Fatal("put with the store down succeeded")
	}
	fs.down.Store(false)
	g = grant(t, v, info.ID, "r")
	fs.prefix = "audit/"
	fs.down.Store(true)
	if got, err := redeemAll(v, g.Token, "r"); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("redeem with only the audit log down: %v", err)
	}
	if !auditHasRedeemOK(t, fs.Store, info.ID) {
		t.Fatal("served without a durable release record")
	}
	fs.down.Store(false)
	g = grant(t, v, info.ID, "r")
	if got, err := redeemAll(v, g.Token, "r"); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("after recovery: %v", err)
	}
}

// TestFailClosedEveryStep fails every store write after N, for each N, and
// checks that whenever Redeem hands out a reader, the audit log already
// holds its record.
func TestFailClosedEveryStep(t *testing.T) {
	want := image(20<<10, "")
	served := 0
	for n := int64(1); n < 14; n++ {
		base := fsBackend(t)
		fs := &flakyStore{Store: base}
		v := openTestVault(t, fs, testKEK(t), nil)
		fs.failAt = fs.puts.Load() + n
		info, err := v.Put(context.Background(), Document{Body: bytes.NewReader(want), Size: int64(len(want)), Subject: "m"})
		if err != nil {
			continue
		}
		g, err := v.Grant(context.Background(), info.ID, Access{Principal: "r", Purpose: "p"})
		if err != nil {
			continue
		}
		rc, _, err := v.Redeem(context.Background(), g.Token, Requester{Principal: "r"})
		if err != nil {
			if rc != nil {
				t.Fatal("reader with an error")
			}
			continue
		}
		served++
		rc.Close()
		if !auditHasRedeemOK(t, base, info.ID) {
			t.Fatalf("failAt %d: plaintext served without a durable audit record", n)
		}
	}
	if served == 0 {
		t.Fatal("no N let a redemption through: the test checked nothing")
	}
}

// TestReplayAuditTrail: a replay leaves exactly one release record (the
// first redemption's) and one refusal, with no join to know about.
func TestReplayAuditTrail(t *testing.T) {
	v, st := newMemVault(t)
	info := putImage(t, v, image(5000, ""), "m")
	g := grant(t, v, info.ID, "r")
	if _, err := redeemAll(v, g.Token, "r"); err != nil {
		t.Fatal(err)
	}
	if _, err := redeemAll(v, g.Token, "r"); !errors.Is(err, ErrTokenReplayed) {
		t.Fatal(err)
	}
	v.fold.flush(t)
	var recs []audit.Record
	for r, err := range audit.Scan(context.Background(), st, audit.Filter{Event: audit.EventRedeem, Object: info.ID}) {
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	ok, refused := 0, 0
	for _, r := range recs {
		switch {
		case r.Outcome == audit.OutcomeOK:
			ok++
		case r.Reason == "token-replayed":
			refused++
		}
	}
	if ok != 1 || refused != 1 || len(recs) != 2 {
		t.Fatalf("trail: %+v", recs)
	}
}

// TestTamperedPayloadHTTP (issue 12.6): a document whose first 16 KiB do
// not authenticate gets the uniform 404 and spends nothing; one tampered
// later releases only the authentic segments before the bad one.
func TestTamperedPayloadHTTP(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			st := be.new(t)
			v := openTestVault(t, st, testKEK(t), nil)
			srv := httptest.NewServer(v.Handler(HandlerOptions{Principal: principalHeader, RefusalFloor: -1}))
			defer srv.Close()
			const size = 100 << 10
			first := putImage(t, v, image(size, ""), "m")
			g := grant(t, v, first.ID, "r")
			flipByte(t, st, "blobs/"+first.ID, 2000)
			resp, body := get(t, "GET", srv.URL+"/"+g.Token, "r")
			if resp.StatusCode != 404 || string(body) != notFoundBody {
				t.Fatalf("tampered first segment: status %d", resp.StatusCode)
			}
			if n := len(storeKeys(t, st, audit.LedgerPrefix)); n != 0 {
				t.Fatalf("tampered document spent the token (%d entries)", n)
			}
			later := putImage(t, v, image(size, ""), "m")
			g = grant(t, v, later.ID, "r")
			const off = 60 << 10
			flipByte(t, st, "blobs/"+later.ID, off)
			rc, _, err := v.Redeem(ctx, g.Token, Requester{Principal: "r"})
			if err != nil {
				t.Fatalf("tampered past the first 16 KiB: %v", err)
			}
			n, err := io.Copy(io.Discard, rc)
			rc.Close()
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("read of a tampered segment: %v", err)
			}
			if n < RedeemAuthBytes || n >= off {
				t.Fatalf("released %d bytes before ErrTampered; want the authentic segments before offset %d", n, off)
			}
			v.fold.flush(t)
			for r, err := range audit.Scan(ctx, st, audit.Filter{Event: audit.EventRedeem, Object: first.ID}) {
				if err != nil {
					t.Fatal(err)
				}
				if r.Outcome != audit.OutcomeRefused || r.Reason != "tampered" {
					t.Fatalf("tampered first segment audited as %s/%s", r.Outcome, r.Reason)
				}
			}
		})
	}
}

// dropStore breaks payload bodies after limit bytes with
// io.ErrUnexpectedEOF, as a dropped connection does.
type dropStore struct {
	store.Store
	limit int64
}

func (d *dropStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := d.Store.Get(ctx, key)
	if err != nil || !strings.HasPrefix(key, "blobs/") || d.limit < 0 {
		return rc, err
	}
	return readCloser{&cutReader{r: rc, left: d.limit, err: io.ErrUnexpectedEOF}, rc.Close}, nil
}

// TestDroppedStreamNotTampered (issue 17.5): a store connection that drops
// mid-stream is an I/O error, not ErrTampered; dropped within the first
// 16 KiB it refuses the redemption without spending the token.
func TestDroppedStreamNotTampered(t *testing.T) {
	ds := &dropStore{Store: fsBackend(t), limit: -1}
	v := openTestVault(t, ds, testKEK(t), nil)
	want := image(200<<10, "")
	info := putImage(t, v, want, "m")
	g := grant(t, v, info.ID, "r")
	ds.limit = 100 << 10
	got, err := redeemAll(v, g.Token, "r")
	if err == nil || errors.Is(err, ErrTampered) {
		t.Fatalf("dropped mid-stream: %v, want an I/O error that is not ErrTampered", err)
	}
	if !bytes.Equal(got, want[:len(got)]) {
		t.Fatal("released bytes differ from the document")
	}
	ds.limit = 4 << 10
	g = grant(t, v, info.ID, "r")
	if _, err := redeemAll(v, g.Token, "r"); err == nil || errors.Is(err, ErrTampered) {
		t.Fatalf("dropped in the first segment: %v", err)
	}
	ds.limit = -1
	if got, err := redeemAll(v, g.Token, "r"); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("a redemption refused for a dropped stream spent the token: %v", err)
	}
}

// TestGrantWithoutPayload (issue 17.5): a key record left without its
// payload is not a document: Grant refuses it.
func TestGrantWithoutPayload(t *testing.T) {
	v, st := newMemVault(t)
	info := putImage(t, v, image(5000, ""), "m")
	if err := st.Delete(context.Background(), "blobs/"+info.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Grant(context.Background(), info.ID, Access{Principal: "r", Purpose: "p"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("grant of a key record without payload: %v, want ErrNotFound", err)
	}
}

// overlapStore, while armed, holds every read of the state chain until
// the payload of blob has been asked for (or 2 s have passed: late).
type overlapStore struct {
	store.Store
	armed    atomic.Bool
	blob     string
	seenOnce sync.Once
	seen     chan struct{}
	late     atomic.Bool
}

func (s *overlapStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if s.armed.Load() {
		if key == s.blob {
			s.seenOnce.Do(func() { close(s.seen) })
		} else if strings.HasPrefix(key, audit.StatePrefix) {
			select {
			case <-s.seen:
			case <-time.After(2 * time.Second):
				s.late.Store(true)
			}
		}
	}
	return s.Store.Get(ctx, key)
}

// TestRedeemQuotaOverlapsReads: Redeem's quota check (the freeze: a read
// of the state chain when this instance's view of it is stale) runs while
// the payload and the key record are read, not before. Before the change
// the check came first and the reads waited for it (here: for ever, so
// the chain read timed out).
func TestRedeemQuotaOverlapsReads(t *testing.T) {
	mem := memstore.New()
	st := &overlapStore{Store: mem, seen: make(chan struct{})}
	v := openTestVault(t, st, testKEK(t), nil)
	info := putImage(t, v, image(40<<10, ""), "member-1")
	g := grant(t, v, info.ID, "reviewer")
	st.blob = blobKey(mustObjectID(t, info.ID))
	v.chain.smu.Lock()
	v.chain.synced = time.Now().Add(-time.Second) // stale: the check reads the chain
	v.chain.smu.Unlock()
	st.armed.Store(true)
	if _, err := redeemAll(v, g.Token, "reviewer"); err != nil {
		t.Fatal(err)
	}
	if st.late.Load() {
		t.Fatal("the redemption's freeze check read the state chain before the payload was asked for: in series, not overlapped")
	}
}

// countingKEK counts Decrypt calls (key-record opens).
type countingKEK struct {
	kms.KEK
	decrypts atomic.Int64
}

func (k *countingKEK) Decrypt(ctx context.Context, ciphertext, ad []byte) ([]byte, error) {
	k.decrypts.Add(1)
	return k.KEK.Decrypt(ctx, ciphertext, ad)
}

// TestRedeemQuotaRefusalOpensNothing: a redemption refused by its quota
// check (its principal frozen after the grant), now checked alongside the
// reads, still spends nothing (no spend entry), opens no key record (no
// KEK call) and releases nothing.
func TestRedeemQuotaRefusalOpensNothing(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	kek := &countingKEK{KEK: testKEK(t)}
	v := openTestVault(t, mem, kek, nil)
	info := putImage(t, v, image(40<<10, ""), "member-1")
	g := grant(t, v, info.ID, "reviewer")
	if !v.freeze(ctx, "reviewer") {
		t.Fatal("freeze not written")
	}
	before := kek.decrypts.Load()
	rc, _, err := v.Redeem(ctx, g.Token, Requester{Principal: "reviewer"})
	if !errors.Is(err, ErrFrozen) {
		if rc != nil {
			rc.Close()
		}
		t.Fatalf("redemption by a frozen principal: %v, want ErrFrozen", err)
	}
	if n := kek.decrypts.Load() - before; n != 0 {
		t.Errorf("a refused redemption opened %d key records", n)
	}
	if _, err := mem.Get(ctx, ledgerKey(tokenOf(t, v, g.Token))); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a refused redemption wrote its spend entry: %v", err)
	}
}

// TestRedeemWritesNoCount: a redemption writes nothing to the Limiter (its
// token was counted when granted); before, each wrote a count.
func TestRedeemWritesNoCount(t *testing.T) {
	cs := &countingStore{Store: memstore.New()}
	v := openTestVault(t, cs, testKEK(t), nil)
	info := putImage(t, v, image(40<<10, ""), "member-1")
	g := grant(t, v, info.ID, "reviewer")
	before := cs.counts.Load()
	if _, err := redeemAll(v, g.Token, "reviewer"); err != nil {
		t.Fatal(err)
	}
	if n := cs.counts.Load() - before; n != 0 {
		t.Fatalf("a redemption wrote %d limiter counts", n)
	}
}

func mustObjectID(t testing.TB, s string) objectID {
	t.Helper()
	id, err := parseObjectID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
