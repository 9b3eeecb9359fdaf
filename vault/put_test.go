package vault

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/idvault/idvault/internal/envelope"
	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

func TestRoundTripSizes(t *testing.T) {
	seg := envelope.SegmentSize
	sizes := []int{4, 100, seg - 1, seg, seg + 1, 5 << 20, DefaultMaxSize}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			v := openTestVault(t, be.new(t), testKEK(t), nil)
			for _, n := range sizes {
				for _, known := range []bool{true, false} {
					want := image(n, "")
					size := int64(n)
					var body io.Reader = bytes.NewReader(want)
					if !known {
						size = -1
						body = iotest.HalfReader(bytes.NewReader(want)) // no Len, no Seek
					}
					info, err := v.Put(context.Background(), Document{Body: body, Size: size, Subject: "member-1"})
					if err != nil {
						t.Fatalf("size %d known=%v: put: %v", n, known, err)
					}
					if info.Size != int64(n) || info.ContentType != TypeJPEG || len(info.ID) != 32 {
						t.Fatalf("size %d: info %+v", n, info)
					}
					id, _ := parseObjectID(info.ID)
					rc, _, err := v.openObject(context.Background(), id)
					if err != nil {
						t.Fatal(err)
					}
					got, err := io.ReadAll(rc)
					rc.Close()
					if err != nil || !bytes.Equal(got, want) {
						t.Fatalf("size %d known=%v: round trip differs (err %v, %d bytes)", n, known, err, len(got))
					}
				}
			}
		})
	}
}

func TestSniff(t *testing.T) {
	ok := map[string][]byte{
		TypeJPEG: {0xFF, 0xD8, 0xFF, 0xDB, 0, 0},
		TypePNG:  []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
		TypeWebP: []byte("RIFF\x10\x00\x00\x00WEBPVP8 "),
		TypeHEIC: []byte("\x00\x00\x00\x18ftypheic\x00\x00\x00\x00"),
		TypeHEIF: []byte("\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00"),
		TypePDF:  []byte("%PDF-1.7\n"),
	}
	for want, b := range ok {
		if got := sniff(b); got != want {
			t.Errorf("sniff(%q) = %q, want %q", b, got, want)
		}
	}
	for _, b := range [][]byte{nil, {0xFF}, {0xFF, 0xD8}, []byte("GIF89a"), []byte("<svg"), []byte("\x7fELF"),
		[]byte("PK\x03\x04"), []byte("RIFF\x00\x00\x00\x00WAVE"), []byte("\x00\x00\x00\x18ftypisom"), []byte("%PD")} {
		if got := sniff(b); got != "" {
			t.Errorf("sniff(%q) = %q, want refusal", b, got)
		}
	}
}

// TestPutRejectsBadInput: each bad upload gets its typed error and leaves
// nothing behind but the audit log and the vault's keyset.
func TestPutRejectsBadInput(t *testing.T) {
	img := image(200<<10, "")
	type tc = struct {
		name string
		doc  Document
		want error
	}
	mkCases := func() []tc {
		return []tc{
			{"text", Document{Body: strings.NewReader("hello, I am not an image"), Size: -1}, ErrUnsupportedContent},
			{"empty", Document{Body: bytes.NewReader(nil), Size: 0}, ErrUnsupportedContent},
			{"gif", Document{Body: strings.NewReader("GIF89a......"), Size: -1}, ErrUnsupportedContent},
			{"svg-declared-png", Document{Body: strings.NewReader("<svg onload=alert(1)>"), Size: -1, ContentType: "image/png"}, ErrUnsupportedContent},
			{"jpeg-declared-png", Document{Body: bytes.NewReader(img), Size: int64(len(img)), ContentType: "image/png"}, ErrUnsupportedContent},
			{"declared-too-large", Document{Body: bytes.NewReader(img), Size: DefaultMaxSize + 1}, ErrTooLarge},
			{"streamed-too-large", Document{Body: io.MultiReader(bytes.NewReader(img), io.LimitReader(zeros{}, DefaultMaxSize)), Size: -1}, ErrTooLarge},
			{"longer-than-declared", Document{Body: bytes.NewReader(img), Size: int64(len(img)) - 1}, ErrTooLarge},
			{"truncated", Document{Body: bytes.NewReader(img[:len(img)/2]), Size: int64(len(img))}, ErrTruncated},
			{"truncated-at-segment", Document{Body: bytes.NewReader(img[:envelope.SegmentSize]), Size: int64(len(img))}, ErrTruncated},
			{"no-subject", Document{Body: bytes.NewReader(img), Size: int64(len(img)), Subject: "-"}, ErrInvalidArgument},
			{"negative-size", Document{Body: bytes.NewReader(img), Size: -2}, ErrInvalidArgument},
			{"retention-over-max", Document{Body: bytes.NewReader(img), Size: int64(len(img)), Retention: DefaultRetention + 1}, ErrInvalidArgument},
		}
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			st := be.new(t)
			v := openTestVault(t, st, testKEK(t), nil)
			before := storeKeys(t, st, "")
			for _, c := range mkCases() {
				doc := c.doc
				switch doc.Subject {
				case "":
					doc.Subject = "member-1"
				case "-":
					doc.Subject = ""
				}
				_, err := v.Put(context.Background(), doc)
				if !errors.Is(err, c.want) {
					t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
				}
			}
			// A body that fails mid-stream: an error (not one of ours), no object.
			_, err := v.Put(context.Background(), Document{Body: &cutReader{r: bytes.NewReader(img), left: 100 << 10, err: errors.New("connection reset by peer")}, Size: int64(len(img)), Subject: "m"})
			if err == nil {
				t.Fatal("put of a failing body succeeded")
			}
			// Cancelled mid-way.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if _, err := v.Put(ctx, Document{Body: bytes.NewReader(img), Size: int64(len(img)), Subject: "m"}); err == nil {
				t.Fatal("put with a cancelled context succeeded")
			}
			v.bg.Wait(context.Background()) // failed Puts clean up in the background
			for _, k := range storeKeys(t, st, "") {
				if strings.HasPrefix(k, "audit/") || strings.HasPrefix(k, "system/") {
					continue
				}
				if !contains(before, k) {
					t.Errorf("rejected uploads left %s behind", k)
				}
			}
			checkPutTrail(t, st)
		})
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestNoPlaintextOnStorage: after Put of an image carrying a marker, no
// byte sequence of the marker (nor the raw subject) is anywhere in storage.
func TestNoPlaintextOnStorage(t *testing.T) {
	const marker = "PLAINTEXT-MARKER-7f3e9c1a-DO-NOT-STORE"
	const subject = "subject-raw-4422-alice@example.com"
	check := func(t *testing.T, name string, b []byte) {
		for _, s := range []string{marker, subject} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s contains a plaintext marker", name)
			}
		}
	}
	t.Run("fs", func(t *testing.T) {
		dir := t.TempDir()
		st := fsBackendAt(t, dir)
		v := openTestVault(t, st, testKEK(t), nil)
		for _, n := range []int{4 << 10, 1 << 20} {
			putImage(t, v, image(n, marker), subject)
		}
		v.Close(context.Background())
		files := 0
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			files++
			check(t, p, b)
			return nil
		})
		if files < 6 {
			t.Fatalf("only %d files scanned", files)
		}
	})
	t.Run("s3", func(t *testing.T) {
		st := s3Backend(t)
		v := openTestVault(t, st, testKEK(t), nil)
		for _, n := range []int{4 << 10, 1 << 20} {
			putImage(t, v, image(n, marker), subject)
		}
		v.Close(context.Background())
		keys := storeKeys(t, st, "")
		if len(keys) < 6 {
			t.Fatalf("only %d objects scanned", len(keys))
		}
		for _, k := range keys {
			check(t, k, readKey(t, st, k))
		}
	})
}

func TestOpenWrongKEK(t *testing.T) {
	st := fsBackend(t)
	v := openTestVault(t, st, testKEK(t), nil)
	id := v.ID()
	v.Close(context.Background())
	if _, err := Open(context.Background(), Config{Store: st, KEK: testKEK(t)}); !errors.Is(err, ErrWrongKEK) {
		t.Fatalf("open with another KEK: %v, want ErrWrongKEK", err)
	}
	// Same KEK: same vault.
	kek := testKEK(t)
	st2 := fsBackend(t)
	a := openTestVault(t, st2, kek, nil)
	b := openTestVault(t, st2, kek, nil)
	if a.ID() != b.ID() || a.ID() == id {
		t.Fatalf("vault IDs: %s %s (other %s)", a.ID(), b.ID(), id)
	}
}

// TestSwapMatrix moves payloads, key records and wrapped keys between
// objects, as someone with write access to the storage could.
func TestSwapMatrix(t *testing.T) {
	v, st := newMemVault(t)
	a := putImage(t, v, image(70<<10, "A"), "m")
	b := putImage(t, v, image(70<<10, "B"), "m")
	ida, _ := parseObjectID(a.ID)
	idb, _ := parseObjectID(b.ID)
	read := func() error {
		rc, _, err := v.openObject(context.Background(), idb)
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.ReadAll(rc)
		return err
	}
	reset := func() map[string][]byte {
		m := map[string][]byte{}
		for _, k := range st.Keys() {
			b, _ := st.Bytes(k)
			m[k] = b
		}
		return m
	}
	orig := reset()
	restore := func() {
		for k, b := range orig {
			st.SetBytes(k, b)
		}
	}
	cases := map[string]func(){
		"payload of A under B":    func() { st.SetBytes(blobKey(idb), orig[blobKey(ida)]) },
		"key record of A under B": func() { st.SetBytes(keyRecordKey(idb), orig[keyRecordKey(ida)]) },
		"both of A under B": func() {
			st.SetBytes(blobKey(idb), orig[blobKey(ida)])
			st.SetBytes(keyRecordKey(idb), orig[keyRecordKey(ida)])
		},
		"record tail of A in B": func() {
			ra, rb := orig[keyRecordKey(ida)], orig[keyRecordKey(idb)]
			mix := append(bytes.Clone(rb[:len(rb)/2]), ra[len(ra)/2:]...)
			st.SetBytes(keyRecordKey(idb), mix)
		},
		"metadata byte edited": func() {
			r := bytes.Clone(orig[keyRecordKey(idb)])
			r[len(r)-20] ^= 1
			st.SetBytes(keyRecordKey(idb), r)
		},
		"payload byte edited": func() {
			p := bytes.Clone(orig[blobKey(idb)])
			p[len(p)/2] ^= 0x80
			st.SetBytes(blobKey(idb), p)
		},
		"payload truncated": func() { st.SetBytes(blobKey(idb), orig[blobKey(idb)][:len(orig[blobKey(idb)])-1]) },
		"payload extended":  func() { st.SetBytes(blobKey(idb), append(bytes.Clone(orig[blobKey(idb)]), 0)) },
	}
	if err := read(); err != nil {
		t.Fatalf("untampered read: %v", err)
	}
	for name, tamper := range cases {
		tamper()
		if err := read(); !errors.Is(err, ErrTampered) {
			t.Errorf("%s: err = %v, want ErrTampered", name, err)
		}
		restore()
	}
	if err := read(); err != nil {
		t.Fatalf("restored read: %v", err)
	}
	// A key record deleted: not found, not tampered.
	st.Delete(context.Background(), keyRecordKey(idb))
	if err := read(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted key record: %v", err)
	}
	_ = store.ErrNotFound
}

// checkPutTrail: the audit trail of Puts is exact: a "put ok" record
// exists only for a document that was stored (no record to supersede, no
// join for the reader to know about).
func checkPutTrail(t *testing.T, st store.Store) {
	t.Helper()
	for r, err := range audit.Scan(context.Background(), st, audit.Filter{Event: audit.EventPut}) {
		if err != nil {
			t.Fatal(err)
		}
		if r.Outcome != audit.OutcomeOK {
			continue
		}
		id, _ := parseObjectID(r.Object)
		rc, err := st.Get(context.Background(), keyRecordKey(id))
		if err != nil {
			t.Errorf("put ok record %s seq %d for a document that was not stored (%v)", r.Log, r.Seq, err)
			continue
		}
		rc.Close()
	}
}

// indexOrderStore holds the subject index entry's write until the key
// record's write has started (or 2 s have passed: late), and records, for
// each of the two, whether the expiry entry was durable when it started.
type indexOrderStore struct {
	store.Store
	keyOnce     sync.Once
	keyStarted  chan struct{}
	late        atomic.Bool
	expiryDone  atomic.Bool
	beforeIndex atomic.Bool // a subject entry or key record started before the expiry entry was durable
	subjectDone atomic.Bool
	payloadOpen atomic.Bool   // the payload's body ended before the subject entry was durable
	payloadEnd  chan struct{} // closed when the payload's body ends
}

// eofWatch calls atEOF when its reader first ends.
type eofWatch struct {
	io.Reader
	atEOF func()
	once  sync.Once
}

func (r *eofWatch) Read(p []byte) (int, error) {
	n, err := r.Reader.Read(p)
	if err == io.EOF {
		r.once.Do(r.atEOF)
	}
	return n, err
}

func (s *indexOrderStore) Put(ctx context.Context, key string, r io.Reader, size int64, o store.PutOptions) error {
	switch {
	case strings.HasPrefix(key, "index/expiry/"):
		err := s.Store.Put(ctx, key, r, size, o)
		if err == nil {
			s.expiryDone.Store(true)
		}
		return err
	case strings.HasPrefix(key, "keys/"):
		if !s.expiryDone.Load() {
			s.beforeIndex.Store(true)
		}
		s.keyOnce.Do(func() { close(s.keyStarted) })
	case strings.HasPrefix(key, "index/subject/"):
		if !s.expiryDone.Load() {
			s.beforeIndex.Store(true)
		}
		select {
		case <-s.keyStarted:
		case <-time.After(2 * time.Second):
			s.late.Store(true)
		case <-ctx.Done():
			return ctx.Err()
		}
		// Give the payload every chance to finish first (it must not).
		select {
		case <-s.payloadEnd:
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		err := s.Store.Put(ctx, key, r, size, o)
		if err == nil {
			s.subjectDone.Store(true)
		}
		return err
	case strings.HasPrefix(key, "blobs/"):
		r = &eofWatch{Reader: r, atEOF: func() {
			if !s.subjectDone.Load() {
				s.payloadOpen.Store(true)
			}
			close(s.payloadEnd)
		}}
	}
	return s.Store.Put(ctx, key, r, size, o)
}

// TestPutIndexesOverlapKeyRecord (issue 25): with a known size, the key
// record's write starts while the subject index entry's is still
// unanswered (they go at once, each once the expiry entry is durable, so
// Put waits for one small write less), and neither starts before the
// expiry entry is durable (what leads Sweep to both; the crash property
// itself is TestFaultFailedPutLeavesNothingSweepCannotFind). Before: the
// key record waited for the subject entry, which here waits for it: 2 s.
// And the payload's last segment waits for the subject entry: the document
// is never complete (key record and payload) without the subject entry
// that leads EraseSubject and ListSubject to it.
func TestPutIndexesOverlapKeyRecord(t *testing.T) {
	st := &indexOrderStore{Store: memstore.New(), keyStarted: make(chan struct{}), payloadEnd: make(chan struct{})}
	v := openTestVault(t, st, testKEK(t), nil)
	img := image(64<<10, "")
	info := putImage(t, v, img, "m")
	if st.late.Load() {
		t.Fatal("the key record's write waited for the subject index entry's")
	}
	if st.beforeIndex.Load() {
		t.Fatal("a subject index entry or key record was written before the expiry index entry was durable")
	}
	if st.payloadOpen.Load() {
		t.Fatal("the payload was complete before the subject index entry was durable: a crash there leaves a readable document EraseSubject cannot find")
	}
	got, err := redeemAll(v, grant(t, v, info.ID, "r").Token, "r")
	if err != nil || !bytes.Equal(got, img) {
		t.Fatalf("redeem after the overlapped Put: %d bytes, %v", len(got), err)
	}
}
