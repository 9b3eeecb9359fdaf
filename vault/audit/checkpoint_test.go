package audit

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func testCheckpoint() checkpoint {
	return checkpoint{
		log:  "0123456789abcdef0123456789abcdef",
		tree: tlog.Tree{N: 1025, Hash: tlog.RecordHash([]byte("x"))},
		time: time.Date(2026, 4, 20, 9, 30, 15, 120000000, time.UTC),
	}
}

// goldenCheckpointText freezes the version-1 checkpoint text.
const goldenCheckpointText = "idvault audit checkpoint v1\n" +
	"0123456789abcdef0123456789abcdef\n" +
	"1025\n" +
	"PH6byTDck/AfppmF7yQtn56GHzxTVaokzl70tLinDMs=\n" +
	"2026-04-20T09:30:15.12Z\n" +
	"final\n"

func TestCheckpointGolden(t *testing.T) {
	c := testCheckpoint()
	c.final = true
	if got := c.text(); got != goldenCheckpointText {
		t.Fatalf("checkpoint text changed:\n%s", got)
	}
	got, err := parseCheckpointText(goldenCheckpointText)
	if err != nil || got != c {
		t.Fatalf("parse: %+v, %v", got, err)
	}
}

func TestCheckpointSignOpen(t *testing.T) {
	skey, vkey := keys(t)
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	known := note.VerifierList(v)
	for _, final := range []bool{false, true} {
		c := testCheckpoint()
		c.final = final
		msg, err := signCheckpoint(c, signer)
		if err != nil {
			t.Fatal(err)
		}
		got, class, err := openCheckpoint(msg, known)
		if err != nil || class != "" || got != c {
			t.Fatalf("open: %+v %q %v", got, class, err)
		}
	}
	msg, _ := signCheckpoint(testCheckpoint(), signer)
	otherS, otherV, _ := GenerateKey("someone-else")
	os, _ := note.NewSigner(otherS)
	ov, _ := note.NewVerifier(otherV)
	cosigned, _ := note.Sign(&note.Note{Text: testCheckpoint().text()}, signer, os)
	tests := []struct {
		name  string
		msg   []byte
		known note.Verifiers
		class Class
	}{
		{"other key", msg, note.VerifierList(ov), ClassUnknownKey},
		{"no verifiers", msg, nil, ClassUnknownKey},
		{"co-signed by an unknown key", cosigned, known, ClassCorrupt},
		{"text edited", bytes.Replace(msg, []byte("1025"), []byte("1024"), 1), known, ClassBadSignature},
		{"garbage", []byte("hello\n"), known, ClassCorrupt},
		{"too long", append(bytes.Repeat([]byte("a"), maxCheckpointLen), msg...), known, ClassCorrupt},
		{"empty", nil, known, ClassCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, class, err := openCheckpoint(tt.msg, tt.known)
			if !errors.Is(err, ErrCorrupt) || class != tt.class {
				t.Fatalf("class %q, err %v; want %q", class, err, tt.class)
			}
		})
	}
}

func TestParseCheckpointTextStrict(t *testing.T) {
	good := testCheckpoint().text()
	bad := map[string]string{
		"no newline":       strings.TrimSuffix(good, "\n"),
		"other header":     strings.Replace(good, "v1", "v2", 1),
		"go.sum tree":      string(tlog.FormatTree(testCheckpoint().tree)),
		"size zero":        strings.Replace(good, "\n1025\n", "\n0\n", 1),
		"size with zero":   strings.Replace(good, "\n1025\n", "\n01025\n", 1),
		"size with plus":   strings.Replace(good, "\n1025\n", "\n+1025\n", 1),
		"negative size":    strings.Replace(good, "\n1025\n", "\n-1\n", 1),
		"short hash":       strings.Replace(good, "PH6byTDck/AfppmF7yQtn56GHzxTVaokzl70tLinDMs=", "Byzd", 1),
		"non-UTC time":     strings.Replace(good, "2026-04-20T09:30:15.12Z", "2026-04-20T18:30:15.12+09:00", 1),
		"padded time":      strings.Replace(good, ".12Z", ".120Z", 1),
		"bad log":          strings.Replace(good, "0123456789abcdef0123456789abcdef", "a/b", 1),
		"extra line":       good + "extra\n",
		"final then extra": good + "final\nx\n",
		"blank line":       good + "\n",
		"empty":            "",
	}
	for name, text := range bad {
		if _, err := parseCheckpointText(text); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}

func TestGenerateKey(t *testing.T) {
	s, v, err := GenerateKey("idvault-audit-x")
	if err != nil || !strings.HasPrefix(s, "PRIVATE+KEY+idvault-audit-x+") || !strings.HasPrefix(v, "idvault-audit-x+") {
		t.Fatalf("GenerateKey: %v", err)
	}
	for _, name := range []string{"", "a b", "a+b", "a\nb", "\xff"} {
		if _, _, err := GenerateKey(name); err == nil {
			t.Errorf("name %q accepted", name)
		}
	}
}

func TestBatchFormat(t *testing.T) {
	r := mustMarshal(t, fullRecord())
	b := encodeBatch([][]byte{r, r})
	if !bytes.HasPrefix(b, []byte("IDVB\x01\x00\x00\x00\x02")) {
		t.Fatalf("batch header %x", b[:batchHeaderLen])
	}
	recs, err := parseBatch(b)
	if err != nil || len(recs) != 2 || recs[1] != fullRecord() {
		t.Fatalf("parseBatch: %v", err)
	}
	for l := range len(b) {
		if _, err := parseBatch(b[:l]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated at %d: %v", l, err)
		}
	}
	bad := map[string][]byte{
		"trailing byte": append(bytes.Clone(b), 0),
		"zero count":    encodeBatch(nil),
		"bad magic":     append([]byte("IDVX"), b[4:]...),
		"version 2":     append([]byte("IDVB\x02"), b[5:]...),
		"zero length":   append(appendBatchHeader(nil, 1), 0, 0, 0, 0),
		"huge length":   append(appendBatchHeader(nil, 1), 0xff, 0xff, 0xff, 0xff),
		"huge count":    appendBatchHeader(nil, maxBatchRecords+1),
	}
	for name, b := range bad {
		if _, err := parseBatch(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}

func FuzzParseBatch(f *testing.F) {
	r1 := mustMarshal(f, fullRecord())
	r2 := mustMarshal(f, loggedSample(7))
	f.Add(encodeBatch([][]byte{r1}))
	f.Add(encodeBatch([][]byte{r1, r2}))
	f.Add([]byte("IDVB\x01\x00\x00\x00\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := parseBatch(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		raws := make([][]byte, len(recs))
		for i, r := range recs {
			raws[i] = mustMarshal(t, r)
		}
		if !bytes.Equal(encodeBatch(raws), b) {
			t.Fatal("parse then encode changed the bytes")
		}
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	skey, vkey := keys(f)
	signer, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	known := note.VerifierList(v)
	c := testCheckpoint()
	msg, _ := signCheckpoint(c, signer)
	f.Add(msg)
	c.final = true
	msg, _ = signCheckpoint(c, signer)
	f.Add(msg)
	f.Add([]byte(goldenCheckpointText))
	f.Add([]byte(goldenCheckpointText + "\n— idvault-audit-test AAAAAAAA\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		// The signed form: never panics; a success is canonical.
		if c, class, err := openCheckpoint(b, known); err == nil {
			again, err := signCheckpoint(c, signer)
			if err != nil || !bytes.Equal(again, b) {
				t.Fatal("accepted a checkpoint that does not re-sign to the same bytes")
			}
		} else if !errors.Is(err, ErrCorrupt) || class == "" {
			t.Fatalf("error %v, class %q", err, class)
		}
		// The text alone, as if the signature had verified.
		if c, err := parseCheckpointText(string(b)); err == nil {
			if c.text() != string(b) {
				t.Fatal("parse then format changed the text")
			}
		} else if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error does not wrap ErrCorrupt: %v", err)
		}
	})
}
