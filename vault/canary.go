package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	stdimage "image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"io"
	"math"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/idvault/idvault/vault/audit"
)

// PlantCanaries stores n decoy documents. From the storage they cannot be
// told from real ones: the same key layout, random subjects, sizes drawn
// from the vault's own recent documents, and the canary flag only inside
// the encrypted, authenticated key record. They decode as ordinary ID-card
// JPEGs. Any Grant or Redeem of one raises an AlertCanary at once (and
// freezes the principal with Config.FreezeOnAlert); the request itself is
// served as usual, so a prober learns nothing.
//
// Canaries expire like real documents (one that lived forever would stand
// out): plant new ones as old ones go, e.g. daily. Mix their IDs into the
// lists your reviewers see, so bulk access touches them.
func (v *Vault) PlantCanaries(ctx context.Context, n int) ([]Info, error) {
	if v.isClosed() {
		return nil, ErrClosed
	}
	sizes := v.sampleSizes(ctx, 64)
	out := make([]Info, 0, n)
	for range n {
		var subj [16]byte
		rand.Read(subj[:])
		size := decoySize(sizes)
		img := decoyJPEG(max(size, 4096))
		info, _, err := v.put(ctx, Document{Body: bytes.NewReader(img), Size: int64(len(img)), Subject: "canary:" + hex.EncodeToString(subj[:]), Kind: "drivers-license"}, true)
		if err != nil {
			return out, fmt.Errorf("vault: plant canary: %w", err)
		}
		out = append(out, info)
	}
	return out, nil
}

// decoySize draws a size from the real sizes, smoothed: a sampled size
// scaled by a log-normal factor (sd 8 %), so a decoy never copies a real
// document's exact length (the rule "same length as an older payload"
// flagged every decoy that did) yet follows the real distribution.
func decoySize(sizes []int64) int {
	if len(sizes) == 0 {
		return int(float64(350<<10) * math.Exp(0.25*mrand.NormFloat64()))
	}
	s := float64(sizes[mrand.IntN(len(sizes))])
	return int(s * math.Exp(0.08*mrand.NormFloat64()))
}

// sampleSizes reads the sizes of up to k live documents (reservoir sample
// over the key records) so decoys match the real size distribution.
func (v *Vault) sampleSizes(ctx context.Context, k int) []int64 {
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
		if len(ids) < k {
			ids = append(ids, id)
		} else if j := mrand.IntN(seen); j < k {
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
	return sizes
}

// decoyJPEG draws a plausible ID card and pads it with a JPEG comment
// segment of random bytes to about size bytes (decoders skip comments).
func decoyJPEG(size int) []byte {
	img := stdimage.NewRGBA(stdimage.Rect(0, 0, 856, 540))
	r := mrand.New(mrand.NewPCG(mrand.Uint64(), mrand.Uint64()))
	fill := func(x0, y0, x1, y1 int, c color.RGBA) {
		draw.Draw(img, stdimage.Rect(x0, y0, x1, y1), &stdimage.Uniform{c}, stdimage.Point{}, draw.Src)
	}
	tint := func(base uint8) uint8 { return uint8(math.Min(255, float64(base)+float64(r.IntN(40)))) }
	fill(0, 0, 856, 540, color.RGBA{tint(210), tint(215), tint(200), 255})
	fill(0, 0, 856, 80+r.IntN(30), color.RGBA{tint(20), tint(70), tint(140), 255})
	fill(40, 130, 280, 450, color.RGBA{tint(170), tint(170), tint(180), 255})
	for i := 0; i < 5+r.IntN(3); i++ {
		fill(320, 140+i*50, 420+r.IntN(380), 158+i*50, color.RGBA{tint(40), tint(40), tint(50), 255})
	}
	var b bytes.Buffer
	jpeg.Encode(&b, img, &jpeg.Options{Quality: 70 + r.IntN(25)})
	out := b.Bytes()
	pad := size - len(out)
	if pad <= 4 {
		return out
	}
	// SOI, then COM segments (each at most 65535 bytes incl. length), then the rest.
	var p bytes.Buffer
	p.Write(out[:2])
	for pad > 4 {
		seg := min(pad-4, 65533)
		p.Write([]byte{0xFF, 0xFE})
		binary.Write(&p, binary.BigEndian, uint16(seg+2))
		io.CopyN(&p, rand.Reader, int64(seg))
		pad -= seg + 4
	}
	p.Write(out[2:])
	return p.Bytes()
}

// touchCanary raises the canary alert for a grant or redemption.
func (v *Vault) touchCanary(ctx context.Context, ev audit.Event, principal, remote string, id objectID) {
	v.alert(ctx, Alert{Kind: AlertCanary, Principal: principal, RemoteAddr: remote, Object: id.String(), Detail: string(ev) + " of a canary document"})
}

// DefaultCanaryRate is Config.CanaryRate's default: one canary in 40
// listed documents.
const DefaultCanaryRate = 40

type canaryPool struct {
	mu  sync.Mutex
	ids []canaryEntry
}

type canaryEntry struct {
	id      string
	expires time.Time
}

// MixCanaries returns ids with canary documents inserted at random
// places, about one per Config.CanaryRate (at least one in any non-empty
// list), for listings that a person with a stolen session could walk in
// bulk: the review queue's list, an export. Give the listing to people and
// scripts; assign work to reviewers from your own records (which never
// hold a canary), so an honest reviewer does not open one.
//
// Canaries come from a pool this Vault planted; MixCanaries plants new ones
// as the pool runs short (at most one per call), so canaries are created
// while people work, like real uploads, not all at one moment. With
// Config.CanaryRate negative it returns ids unchanged.
func (v *Vault) MixCanaries(ctx context.Context, ids []string) ([]string, error) {
	if v.isClosed() {
		return nil, ErrClosed
	}
	rate := v.cfg.CanaryRate
	if rate == 0 {
		rate = DefaultCanaryRate
	}
	if rate < 0 || len(ids) == 0 {
		return ids, nil
	}
	want := max(1, (len(ids)+rate/2)/rate)
	now := v.now()
	v.canaries.mu.Lock()
	live := v.canaries.ids[:0]
	for _, c := range v.canaries.ids {
		if c.expires.After(now.Add(time.Hour)) {
			live = append(live, c)
		}
	}
	v.canaries.ids = live
	short := min(want-len(live), 1)
	v.canaries.mu.Unlock()
	if short > 0 {
		planted, err := v.PlantCanaries(ctx, short)
		if err != nil {
			return nil, err
		}
		v.canaries.mu.Lock()
		for _, c := range planted {
			v.canaries.ids = append(v.canaries.ids, canaryEntry{c.ID, c.Expires})
		}
		v.canaries.mu.Unlock()
	}
	v.canaries.mu.Lock()
	pool := append([]canaryEntry(nil), v.canaries.ids...)
	v.canaries.mu.Unlock()
	mrand.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	out := append([]string(nil), ids...)
	for _, c := range pool[:min(want, len(pool))] {
		i := mrand.IntN(len(out) + 1)
		out = append(out[:i], append([]string{c.id}, out[i:]...)...)
	}
	return out, nil
}
