package vault

import (
	"bytes"
	"container/heap"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/idvault/idvault/vault/audit"
)

// Canaries are decoy documents: a Grant, Redeem or Decide of one raises
// AlertCanary at once (and freezes the principal, by default). They are
// worth something only if nobody can tell them from real documents, and
// the one who wants to is the attacker: it reads the code, can read the
// bucket (keys, sizes, LastModified, tags, listings) and the audit log.
//
// So the vault plants them itself, on the rhythm of the upload stream, by
// shadowing it: when a member uploads, the vault decides once per subject
// (with probability 1/Config.Detection.CanaryRate) to shadow that subject with a
// canary subject of its own. Each document the member uploads is then
// mirrored by a canary document: the same kind, content type, retention
// and way of uploading (size declared or not, about as long in transit),
// a size drawn from the recent real sizes of that type, due a delay after
// its model arrived that is a sum of 4 to 16 recently observed gaps between
// uploads (plus a recent upload time, so that it is due after its model
// is known), and spaced from the subject's other canaries as the member's
// documents are spaced (with 10 % noise). Its audit record is an ordinary "put ok".
// Canary subjects thus hold as many documents as real ones, canaries
// appear where uploads appear (never when a listing is made, never at
// Open), and a canary's LastModified is as far from its neighbours' as a
// real one's: a Poisson stream displaced by independent delays stays a
// Poisson stream. The vault plants nothing until it has seen
// canaryWarmup uploads with time between them.
//
// A canary's ID carries a keyed tag (the second half of the ID is an HMAC
// of the first under a key of the vault's keyset), so every instance finds
// the live canaries by listing the expiry index, after a restart too, and
// nothing else in storage marks them; the flag that raises the alert is in
// the encrypted, authenticated key record.

const (
	// canaryWarmup is how many gaps between uploads the vault observes
	// before it plants any canary.
	canaryWarmup = 20
	// canaryGaps is how many recent gaps (and sizes per content type) it
	// keeps to draw from.
	canaryGaps = 64
	// maxCanaryPlans bounds the canaries waiting to be planted, and
	// maxShadows the subjects remembered (shadowed or not).
	maxCanaryPlans = 4096
	maxShadows     = 1 << 14
	// canaryPoolTTL is how long a listing of the live canaries is reused.
	canaryPoolTTL = 5 * time.Minute
)

// canaries is a Vault's canary state.
type canaries struct {
	mu      sync.Mutex
	last    time.Time       // the latest real upload's arrival (vault clock)
	gaps    []time.Duration // ring of recent gaps between real uploads' arrivals
	gi      int
	sizes   map[string][]int64 // ring of recent real sizes per content type
	si      map[string]int
	paces   []float64 // ring of recent uploads' transit, in seconds per byte
	pi      int
	shadows map[string]*shadow // subject MAC → its shadow; nil: not shadowed
	order   []string           // shadows' keys, oldest first (a ring once full)
	oi      int
	plans   planHeap
	wake    chan struct{}
	// canaries being planted, and the size of their bodies
	inflight      int
	inflightBytes int64
	late          time.Duration // how much longer than planned canary bodies took (a running mean)

	poolMu  sync.Mutex
	pool    []canaryEntry // live canaries, from the last listing
	poolAt  time.Time     // when (monotonic)
	planted []canaryEntry // planted by this Vault since that listing
}

type shadow struct {
	subject  string        // the canary subject
	offset   time.Duration // its delay behind the real subject
	n        int           // documents mirrored so far
	lastReal time.Time     // the real subject's latest upload's arrival
	lastDue  time.Time     // when its latest canary is due
}

// canaryPlan is one canary document waiting to be planted.
type canaryPlan struct {
	due       time.Time
	subject   string
	kind, ct  string
	size      int
	known     bool          // declare the size (as the real upload did)
	retention time.Duration // as the real document's
	transit   time.Duration // how long its body takes to arrive
	cancelled bool          // its model failed (under canaries.mu)
}

type planHeap []*canaryPlan

func (h planHeap) Len() int           { return len(h) }
func (h planHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h planHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *planHeap) Push(x any)        { *h = append(*h, x.(*canaryPlan)) }
func (h *planHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	*h = old[:len(old)-1]
	return p
}

type canaryEntry struct {
	id      string
	expires time.Time // at least this late (the expiry index gives the hour)
}

func (v *Vault) canaryRate() int {
	if v.cfg.Detection.CanaryRate == 0 {
		return DefaultCanaryRate
	}
	return v.cfg.Detection.CanaryRate
}

// canaryTag is the keyed tag that makes an ID a canary's: the first 8
// bytes of an HMAC of the ID's first half.
func (v *Vault) canaryTag(id objectID) [8]byte {
	sys, _ := v.keyset()
	m := hmac.New(sha256.New, sys.indexKey)
	m.Write([]byte("idvault canary id v1\x00"))
	m.Write(id[:8])
	var t [8]byte
	copy(t[:], m.Sum(nil))
	return t
}

func (v *Vault) isCanaryID(id objectID) bool {
	t := v.canaryTag(id)
	return hmac.Equal(t[:], id[8:])
}

// newID returns a fresh object ID: a canary's carries the tag; a real
// document's never does (redrawn in the 2^-64 case that it would).
func (v *Vault) newID(canary bool) (objectID, error) {
	for {
		id, err := newObjectID()
		if err != nil {
			return id, err
		}
		if canary {
			t := v.canaryTag(id)
			copy(id[8:], t[:])
			return id, nil
		}
		if !v.isCanaryID(id) {
			return id, nil
		}
	}
}

// timedReader adds up the time its reader kept the upload waiting (inside
// Read: a client's body still in transit), which the canary mirroring the
// upload spends waiting too. The time the vault itself took around the
// reads (encryption, the store) is not in it: the canary's upload takes
// that again on its own.
type timedReader struct {
	r       io.Reader
	blocked time.Duration
}

func (t *timedReader) Read(p []byte) (int, error) {
	start := time.Now()
	n, err := t.r.Read(p)
	t.blocked += time.Since(start)
	return n, err
}

// planShadow is told of a real upload as it arrives (Put has its first
// bytes): subject is its subject's keyed hash, ct the sniffed type. If the
// subject is shadowed, it plans the canary that mirrors the upload and
// returns it, so that Put can cancel it should the upload fail. Planning
// at arrival, not once the upload is stored, keeps a canary's timeline
// that of an upload: when the store is slow, uploads and canaries are slow
// together.
func (v *Vault) planShadow(doc Document, subject, ct string, arrived time.Time) *canaryPlan {
	rate := v.canaryRate()
	if rate < 0 {
		return nil
	}
	c := &v.canaries
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sizes == nil {
		c.sizes, c.si, c.shadows = map[string][]int64{}, map[string]int{}, map[string]*shadow{}
	}
	if !c.last.IsZero() && arrived.After(c.last) {
		ringPut(&c.gaps, &c.gi, arrived.Sub(c.last))
	}
	if arrived.After(c.last) {
		c.last = arrived
	}
	sh, seen := c.shadows[subject]
	if !seen {
		if len(c.gaps) >= canaryWarmup && mrand.IntN(rate) == 0 {
			var subj [16]byte
			rand.Read(subj[:])
			sh = &shadow{subject: "canary:" + hex.EncodeToString(subj[:]), offset: c.delay()}
		}
		c.remember(subject, sh)
	}
	if sh == nil || len(c.plans) >= maxCanaryPlans || len(c.sizes) == 0 {
		return nil
	}
	retention := doc.Retention
	if retention == 0 {
		retention = v.cfg.Retention.Period
	}
	p := &canaryPlan{subject: sh.subject, kind: doc.Kind, ct: ct, known: doc.Size >= 0, retention: retention, size: c.drawSize(ct)}
	if len(c.paces) > 0 {
		p.transit = min(time.Duration(c.paces[mrand.IntN(len(c.paces))]*float64(p.size)*float64(time.Second)), 5*time.Minute)
	}
	if sh.n == 0 {
		p.due = arrived.Add(sh.offset)
	} else {
		// Spaced from the subject's previous canary as the member's
		// documents are spaced, with noise (an exact copy of the gap would
		// pair each canary subject with its real model).
		gap := float64(arrived.Sub(sh.lastReal)) * math.Exp(0.1*mrand.NormFloat64())
		p.due = sh.lastDue.Add(time.Duration(gap))
	}
	sh.n, sh.lastReal, sh.lastDue = sh.n+1, arrived, p.due
	heap.Push(&c.plans, p)
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return p
}

// cancelPlan drops the canary planned for an upload that failed (if it
// was not planted yet).
func (c *canaries) cancelPlan(p *canaryPlan) {
	if p == nil {
		return
	}
	c.mu.Lock()
	p.cancelled = true
	c.mu.Unlock()
}

// noteUpload is told of a real upload once it is stored: its size, and
// how long its body kept Put waiting, are what later canaries draw theirs
// from.
func (v *Vault) noteUpload(info Info, transit time.Duration) {
	if v.canaryRate() < 0 {
		return
	}
	c := &v.canaries
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sizes == nil {
		c.sizes, c.si, c.shadows = map[string][]int64{}, map[string]int{}, map[string]*shadow{}
	}
	sizes := c.sizes[info.ContentType]
	i := c.si[info.ContentType]
	ringPut(&sizes, &i, info.Size)
	c.sizes[info.ContentType], c.si[info.ContentType] = sizes, i
	if info.Size > 0 {
		ringPut(&c.paces, &c.pi, transit.Seconds()/float64(info.Size))
	}
}

func ringPut[T any](ring *[]T, i *int, x T) {
	if len(*ring) < canaryGaps {
		*ring = append(*ring, x)
		return
	}
	(*ring)[*i] = x
	*i = (*i + 1) % canaryGaps
}

// delay is how far a new canary subject lags its model: the sum of 4 to
// 16 gaps between arrivals drawn from the recent ones, so that canaries
// land among uploads as uploads do, in the same hours, but far enough from
// their model that neither its time nor its neighbours point at it.
// Under c.mu.
func (c *canaries) delay() time.Duration {
	var d time.Duration
	for range 4 + mrand.IntN(13) {
		d += c.gaps[mrand.IntN(len(c.gaps))]
	}
	return d
}

// drawSize draws a size from the recent real documents of content type
// ct (of any type before one of ct was stored), scaled by a log-normal
// factor (sd 8 %): it follows the real distribution without copying any
// one document's length. Under c.mu; c.sizes is not empty.
func (c *canaries) drawSize(ct string) int {
	s := c.sizes[ct]
	for k := range c.sizes {
		if len(s) > 0 {
			break
		}
		s = c.sizes[k]
	}
	return max(1, int(float64(s[mrand.IntN(len(s))])*math.Exp(0.08*mrand.NormFloat64())))
}

// remember records subject's shadow (or that it has none), forgetting the
// oldest subject past maxShadows. Under c.mu.
func (c *canaries) remember(subject string, sh *shadow) {
	c.shadows[subject] = sh
	if len(c.order) < maxShadows {
		c.order = append(c.order, subject)
		return
	}
	delete(c.shadows, c.order[c.oi])
	c.order[c.oi] = subject
	c.oi = (c.oi + 1) % maxShadows
}

// popDue removes and returns the earliest plan due by now, when the
// canaries being planted leave room for it (at most maxPlanting of them
// and plantingBytes of bodies, but always one), and counts it in.
func (c *canaries) popDue(now time.Time) (canaryPlan, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.plans) > 0 && c.plans[0].cancelled {
		heap.Pop(&c.plans)
	}
	if len(c.plans) == 0 || c.plans[0].due.After(now) {
		return canaryPlan{}, false
	}
	if c.inflight > 0 && (c.inflight >= maxPlanting || c.inflightBytes+int64(c.plans[0].size) > plantingBytes) {
		return canaryPlan{}, false
	}
	p := *heap.Pop(&c.plans).(*canaryPlan)
	c.inflight++
	c.inflightBytes += int64(p.size)
	return p, true
}

// donePlanting counts a canary out of the ones being planted.
func (c *canaries) donePlanting(p canaryPlan) {
	c.mu.Lock()
	c.inflight--
	c.inflightBytes -= int64(p.size)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// nextWait is how long the planter sleeps: until the next plan is due by
// the vault's clock, at most a second (an injected clock moves on its own
// schedule).
func (c *canaries) nextWait(now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.plans) == 0 {
		return time.Second
	}
	return min(max(c.plans[0].due.Sub(now), 0), time.Second)
}

// Canaries are planted concurrently, as uploads arrive (a queue would
// space them by the time each takes, and keep them out of the store's slow
// moments, where uploads pile up): at most maxPlanting at once, holding at
// most plantingBytes of bodies.
const (
	maxPlanting   = 256
	plantingBytes = 64 << 20
)

// plantLoop plants canaries as they fall due, until Close.
func (v *Vault) plantLoop() {
	defer close(v.plantDone)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-v.closed
		cancel()
	}()
	var wg sync.WaitGroup
	defer wg.Wait() // what is in flight is cancelled
	for {
		t := time.NewTimer(v.canaries.nextWait(v.now()))
		select {
		case <-v.closed:
			t.Stop()
			return
		case <-v.canaries.wake:
			t.Stop()
		case <-t.C:
		}
		v.plantDue(ctx, &wg)
	}
}

// plantDue starts planting every canary due by now, each on its own.
func (v *Vault) plantDue(ctx context.Context, wg *sync.WaitGroup) {
	for ctx.Err() == nil {
		p, ok := v.canaries.popDue(v.now())
		if !ok {
			return
		}
		wg.Go(func() {
			defer v.canaries.donePlanting(p)
			v.plant(ctx, p)
		})
	}
}

// plant stores one canary as the plan says. A failure leaves what a failed
// Put leaves (collected the same way) and plants nothing in its place.
func (v *Vault) plant(ctx context.Context, p canaryPlan) (Info, error) {
	body := decoyBody(p.ct, p.size)
	size := int64(len(body))
	if !p.known {
		size = -1
	}
	ctx, cancel := context.WithTimeout(ctx, p.transit+2*time.Minute)
	defer cancel()
	// A wait ends late on a busy machine: the planter learns by how much
	// and starts that much earlier, so that its canaries keep their
	// uploads waiting as long as the models did, not a wake-up longer.
	c := &v.canaries
	c.mu.Lock()
	late := c.late
	c.mu.Unlock()
	var r io.Reader = bytes.NewReader(body)
	if p.transit > 0 {
		r = &pacedReader{ctx: ctx, b: body, d: p.transit - late}
	}
	tr := &timedReader{r: r}
	info, _, err := v.put(ctx, Document{Body: tr, Size: size, Subject: p.subject, Kind: p.kind, Retention: p.retention}, true)
	if p.transit > 0 && err == nil {
		c.mu.Lock()
		c.late += (tr.blocked - p.transit) / 8
		c.late = max(min(c.late, time.Second), -time.Second)
		c.mu.Unlock()
	}
	if err != nil {
		return Info{}, err
	}
	v.canaries.poolMu.Lock()
	v.canaries.planted = append(v.canaries.planted, canaryEntry{info.ID, info.Expires})
	v.canaries.poolMu.Unlock()
	return info, nil
}

// pacedReader hands out b making its reader wait d in all, spread over
// the bytes, as a client's body in transit does. It keeps to the total: a
// wait that overran (a busy machine wakes late) shortens the next ones.
type pacedReader struct {
	ctx   context.Context
	b     []byte
	off   int
	d     time.Duration
	slept time.Duration
}

func (p *pacedReader) Read(buf []byte) (int, error) {
	if p.off == len(p.b) {
		return 0, io.EOF
	}
	n := min(len(buf), 32<<10, len(p.b)-p.off)
	due := time.Duration(float64(p.d) * float64(p.off+n) / float64(len(p.b)))
	wait := due - p.slept
	if p.off+n == len(p.b) && p.slept == 0 {
		wait = max(wait, 1) // at least one wait, which ends a wake-up late
	}
	if wait > 0 {
		start := time.Now()
		t := time.NewTimer(wait)
		select {
		case <-p.ctx.Done():
			t.Stop()
			return 0, p.ctx.Err()
		case <-t.C:
		}
		p.slept += time.Since(start)
	}
	copy(buf, p.b[p.off:p.off+n])
	p.off += n
	return n, nil
}

// liveCanaries returns the canaries that expire more than an hour from
// now: those found by listing the expiry index (at most every
// canaryPoolTTL) and those this Vault planted since.
func (v *Vault) liveCanaries(ctx context.Context) ([]string, error) {
	c := &v.canaries
	c.poolMu.Lock()
	defer c.poolMu.Unlock()
	if c.poolAt.IsZero() || time.Since(c.poolAt) > canaryPoolTTL {
		var pool []canaryEntry
		for k, err := range v.st.List(ctx, "index/expiry/") {
			if err != nil {
				return nil, fmt.Errorf("vault: listing canaries: %w", err)
			}
			hour, idStr, ok := strings.Cut(strings.TrimPrefix(k, "index/expiry/"), "/")
			if !ok {
				continue
			}
			id, err := parseObjectID(idStr)
			if err != nil || !v.isCanaryID(id) {
				continue
			}
			exp, err := time.Parse("2006010215", hour)
			if err != nil {
				continue
			}
			pool = append(pool, canaryEntry{idStr, exp})
		}
		c.pool, c.poolAt, c.planted = pool, time.Now(), nil
	}
	cut := v.now().Add(time.Hour)
	seen := map[string]bool{}
	var out []string
	for _, e := range append(c.pool, c.planted...) {
		if e.expires.After(cut) && !seen[e.id] {
			seen[e.id] = true
			out = append(out, e.id)
		}
	}
	return out, nil
}

// MixCanaries returns ids with canary documents inserted at random
// places, about one per Config.Detection.CanaryRate listed (at least one in any
// non-empty list, while the vault holds a live canary), for listings that
// a person with a stolen session could walk in bulk: the review queue's
// list, an export. Give the listing to people and scripts; assign work to
// reviewers from your own records (which never hold a canary), so an
// honest reviewer does not open one.
//
// MixCanaries plants nothing: the vault plants canaries by itself on the
// rhythm of the uploads (see Config.Detection.CanaryRate), and MixCanaries draws
// from those alive for more than another hour, on every instance (it
// lists the expiry index at most every 5 minutes). Until the vault has
// seen its first uploads there are none, and ids come back unchanged, as
// they do with Config.Detection.CanaryRate negative.
func (v *Vault) MixCanaries(ctx context.Context, ids []string) ([]string, error) {
	if v.isClosed() {
		return nil, ErrClosed
	}
	rate := v.canaryRate()
	if rate < 0 || len(ids) == 0 {
		return ids, nil
	}
	pool, err := v.liveCanaries(ctx)
	if err != nil {
		return nil, err
	}
	want := max(1, (len(ids)+rate/2)/rate)
	mrand.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	out := append([]string(nil), ids...)
	for _, c := range pool[:min(want, len(pool))] {
		i := mrand.IntN(len(out) + 1)
		out = append(out[:i], append([]string{c}, out[i:]...)...)
	}
	return out, nil
}

// PlantCanaries stores n canary documents now, mirroring the recent
// uploads' kinds, content types and sizes (a JPEG driver's licence before
// any upload was seen).
//
// Deprecated: canaries planted at one moment are found by their
// timestamps (they appear together, away from the uploads). The vault
// plants canaries by itself on the rhythm of the uploads (Config.Detection.CanaryRate);
// remove the call, and keep using MixCanaries for listings.
func (a Admin) PlantCanaries(ctx context.Context, n int) ([]Info, error) {
	v := a.v
	if v.isClosed() {
		return nil, ErrClosed
	}
	out := make([]Info, 0, n)
	for range n {
		p := canaryPlan{kind: "drivers-license", ct: TypeJPEG, known: true, retention: v.cfg.Retention.Period}
		v.canaries.mu.Lock()
		if len(v.canaries.sizes) > 0 {
			var types []string
			for ct := range v.canaries.sizes {
				types = append(types, ct)
			}
			p.ct = types[mrand.IntN(len(types))]
			p.size = v.canaries.drawSize(p.ct)
		}
		v.canaries.mu.Unlock()
		if p.size == 0 {
			p.size = v.sampledSize(ctx)
		}
		var subj [16]byte
		rand.Read(subj[:])
		p.subject = "canary:" + hex.EncodeToString(subj[:])
		info, err := v.plant(ctx, p)
		if err != nil {
			return out, fmt.Errorf("vault: plant canary: %w", err)
		}
		out = append(out, info)
	}
	return out, nil
}

// sampledSize draws a decoy size from up to 64 live documents' key records
// (what PlantCanaries uses before any upload was observed).
func (v *Vault) sampledSize(ctx context.Context) int {
	var ids []objectID
	seen := 0
	for key, err := range v.keys.List(ctx, "keys/") {
		if err != nil {
			break
		}
		id, err := parseObjectID(strings.TrimPrefix(key, "keys/"))
		if err != nil {
			continue
		}
		seen++
		if len(ids) < 64 {
			ids = append(ids, id)
		} else if j := mrand.IntN(seen); j < 64 {
			ids[j] = id
		}
	}
	var sizes []int64
	for _, id := range ids {
		md, key, err := v.loadRecord(ctx, id)
		if err != nil {
			continue
		}
		key.Destroy()
		if !md.Canary {
			sizes = append(sizes, md.Size)
		}
	}
	if len(sizes) == 0 {
		return int(float64(350<<10) * math.Exp(0.25*mrand.NormFloat64()))
	}
	return max(1, int(float64(sizes[mrand.IntN(len(sizes))])*math.Exp(0.08*mrand.NormFloat64())))
}

// touchCanary raises the canary alert for a grant, redemption or decision.
func (v *Vault) touchCanary(ctx context.Context, ev audit.Event, principal, remote string, id objectID) {
	v.alert(ctx, Alert{Kind: AlertCanary, Principal: principal, RemoteAddr: remote, Object: id.String(), Detail: string(ev) + " of a canary document"})
}
