package audit

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

func fullRecord() Record {
	return Record{
		Time:       time.Date(2026, 4, 20, 9, 30, 15, 123456789, time.UTC),
		Log:        "0123456789abcdef0123456789abcdef",
		Seq:        42,
		Event:      EventRedeem,
		Outcome:    OutcomeRefused,
		Reason:     "wrong-principal",
		Object:     "00112233445566778899aabbccddeeff",
		Principal:  "reviewer-7",
		Purpose:    "age-check",
		TokenID:    "ffeeddccbbaa99887766554433221100",
		RemoteAddr: "[2001:db8::1]:443",
		Subject:    "5f1ab0c2d3e4f5061728394a5b6c7d8e9fa0b1c2d3e4f5061728394a5b6c7d8e",
		Detail:     "quota 200/h",
	}
}

// goldenRecord is the frozen version-1 encoding of fullRecord. It must never
// be regenerated: a change means old logs no longer verify. Bump
// recordVersion instead.
const goldenRecord = "010000000069e5f227075bcd15000000000000002a00203031323334353637383961626364656630313233343536373839616263646566000672656465656d000772656675736564000f77726f6e672d7072696e636970616c00203030313132323333343435353636373738383939616162626363646465656666000a72657669657765722d3700096167652d636865636b0020666665656464636362626161393938383737363635353434333332323131303000115b323030313a6462383a3a315d3a343433004035663161623063326433653466353036313732383339346135623663376438653966613062316332643365346635303631373238333934613562366337643865000b71756f7461203230302f68"

func TestRecordGolden(t *testing.T) {
	b := mustMarshal(t, fullRecord())
	if got := hex.EncodeToString(b); got != goldenRecord {
		t.Fatalf("encoding changed:\n got %s\nwant %s", got, goldenRecord)
	}
	want, err := hex.DecodeString(goldenRecord)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseRecord(want)
	if err != nil {
		t.Fatal(err)
	}
	if r != fullRecord() {
		t.Fatalf("golden record parses to %+v", r)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	loc := time.FixedZone("JST", 9*3600)
	tests := []struct {
		name string
		r    Record
	}{
		{"full", fullRecord()},
		{"minimal", Record{Log: "l", Event: EventOpen, Outcome: OutcomeOK}},
		{"zero time", Record{Log: "l", Event: EventPut, Outcome: OutcomeOK, Seq: 1<<63 - 1}},
		{"local time", Record{Time: time.Date(2021, 4, 20, 12, 0, 0, 1, loc), Log: "l", Event: EventPut, Outcome: OutcomeError}},
		{"max fields", Record{
			Time: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
			Log:  strings.Repeat("L", MaxLogLen), Event: Event(strings.Repeat("e", MaxEventLen)),
			Outcome: Outcome(strings.Repeat("o", MaxOutcomeLen)), Reason: strings.Repeat("r", MaxReasonLen),
			Object: strings.Repeat("a", MaxHexLen), Principal: strings.Repeat("p", MaxTextLen),
			Purpose: strings.Repeat("ü", MaxTextLen/2), TokenID: strings.Repeat("b", MaxHexLen),
			RemoteAddr: strings.Repeat("1", MaxTextLen), Subject: strings.Repeat("c", MaxHexLen),
			Detail: strings.Repeat("d", MaxDetailLen),
		}},
		{"control characters in text", Record{Log: "l", Event: EventGrant, Outcome: OutcomeRefused, Principal: "a\nb\x00c", Detail: "\t"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustMarshal(t, tt.r)
			if len(b) > maxRecordLen {
				t.Fatalf("encoding of %d bytes exceeds maxRecordLen %d", len(b), maxRecordLen)
			}
			got, err := ParseRecord(b)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Time.Equal(tt.r.Time) || got.Time.Location() != time.UTC {
				t.Fatalf("time %v, want %v in UTC", got.Time, tt.r.Time)
			}
			want := tt.r
			want.Time = got.Time
			if got != want {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
			}
			if b2 := mustMarshal(t, got); !bytes.Equal(b, b2) {
				t.Fatal("re-encoding differs: not canonical")
			}
		})
	}
	if r, _ := ParseRecord(mustMarshal(t, tests[2].r)); r.Time != (time.Time{}) {
		t.Fatalf("zero time came back as %v", r.Time)
	}
}

func TestRecordInvalid(t *testing.T) {
	base := Record{Log: "l", Event: EventGrant, Outcome: OutcomeOK}
	tests := []struct {
		name string
		edit func(r *Record)
	}{
		{"no log", func(r *Record) { r.Log = "" }},
		{"log with slash", func(r *Record) { r.Log = "a/b" }},
		{"log starting with dot", func(r *Record) { r.Log = ".a" }},
		{"log too long", func(r *Record) { r.Log = strings.Repeat("a", MaxLogLen+1) }},
		{"no event", func(r *Record) { r.Event = "" }},
		{"event upper case", func(r *Record) { r.Event = "Grant" }},
		{"no outcome", func(r *Record) { r.Outcome = "" }},
		{"reason with space", func(r *Record) { r.Reason = "token expired" }},
		{"raw e-mail as subject", func(r *Record) { r.Subject = "alice@example.com" }},
		{"upper-case hex subject", func(r *Record) { r.Subject = "ABCDEF" }},
		{"token as token ID", func(r *Record) { r.TokenID = "idv1_c2VjcmV0LXRva2Vu" }},
		{"object not hex", func(r *Record) { r.Object = "passport.jpg" }},
		{"object too long", func(r *Record) { r.Object = strings.Repeat("a", MaxHexLen+1) }},
		{"principal not UTF-8", func(r *Record) { r.Principal = "\xff\xfe" }},
		{"principal too long", func(r *Record) { r.Principal = strings.Repeat("p", MaxTextLen+1) }},
		{"purpose too long", func(r *Record) { r.Purpose = strings.Repeat("p", MaxTextLen+1) }},
		{"remote addr too long", func(r *Record) { r.RemoteAddr = strings.Repeat("1", MaxTextLen+1) }},
		{"detail too long", func(r *Record) { r.Detail = strings.Repeat("d", MaxDetailLen+1) }},
		{"negative seq", func(r *Record) { r.Seq = -1 }},
		{"time before year 1", func(r *Record) { r.Time = time.Time{}.Add(-time.Second) }},
		{"time after year 9999", func(r *Record) { r.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base
			tt.edit(&r)
			_, err := r.MarshalBinary()
			if !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("MarshalBinary: %v, want ErrInvalidRecord", err)
			}
			// The error names the field, never its value.
			for _, s := range []string{"alice", "example.com", "idv1_", "passport", "\xff"} {
				if strings.Contains(err.Error(), s) {
					t.Fatal("error message quotes the field's value")
				}
			}
		})
	}
}

func TestParseRecordStrict(t *testing.T) {
	good := mustMarshal(t, fullRecord())
	t.Run("every truncation", func(t *testing.T) {
		for i := range len(good) {
			if _, err := ParseRecord(good[:i]); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("truncated to %d: %v, want ErrCorrupt", i, err)
			}
		}
	})
	t.Run("trailing byte", func(t *testing.T) {
		if _, err := ParseRecord(append(bytes.Clone(good), 0)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%v, want ErrCorrupt", err)
		}
	})
	t.Run("every bit flip", func(t *testing.T) {
		// A flip either fails to parse or gives a different record that
		// re-encodes to exactly the flipped bytes (never a silent
		// normalisation that would let two encodings share a hash).
		for i := range len(good) * 8 {
			b := bytes.Clone(good)
			b[i/8] ^= 1 << (i % 8)
			r, err := ParseRecord(b)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("bit %d: %v, want ErrCorrupt", i, err)
				}
				continue
			}
			if b2 := mustMarshal(t, r); !bytes.Equal(b, b2) {
				t.Fatalf("bit %d: parsed but not canonical", i)
			}
		}
	})
	tests := []struct {
		name string
		edit func(b []byte) []byte
	}{
		{"version 0", func(b []byte) []byte { b[0] = 0; return b }},
		{"version 2", func(b []byte) []byte { b[0] = 2; return b }},
		{"nanoseconds 1e9", func(b []byte) []byte { copy(b[9:13], []byte{0x3b, 0x9a, 0xca, 0x00}); return b }},
		{"seq 2^63", func(b []byte) []byte { b[13] = 0x80; return b }},
		{"seconds past year 9999", func(b []byte) []byte { copy(b[1:9], []byte{0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0}); return b }},
		{"too long", func([]byte) []byte { return make([]byte, maxRecordLen+1) }},
		{"empty", func([]byte) []byte { return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseRecord(tt.edit(bytes.Clone(good))); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%v, want ErrCorrupt", err)
			}
		})
	}
}

// TestRecordPrivacy: an appended record holds exactly the fields given (and
// Log, Seq, Time), and the stored batch holds exactly those records.
func TestRecordPrivacy(t *testing.T) {
	st, skey := newTestStore(), ""
	skey, _ = keys(t)
	c := newClock()
	a := mustAppender(t, st, skey, AppenderOptions{Now: c.Now})
	in := Record{Event: EventRedeem, Outcome: OutcomeOK, Object: "00ff", Principal: "reviewer-1"}
	out, err := a.Append(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	want := in
	want.Log, want.Seq, want.Time = a.LogID(), 0, out.Time
	if out != want {
		t.Fatalf("Append returned %+v, want %+v", out, want)
	}
	b, ok := st.Bytes(batchKey(a.LogID(), 0))
	if !ok {
		t.Fatal("batch not stored")
	}
	if !bytes.Equal(b, encodeBatch([][]byte{mustMarshal(t, want)})) {
		t.Fatal("stored batch holds more than the record")
	}
	if err := a.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	// A checkpoint holds the log ID, size, root, time and nothing else.
	for _, k := range checkpointKeys(st, a.LogID()) {
		b, _ := st.Bytes(k)
		text, _, _ := strings.Cut(string(b), "\n\n")
		if lines := strings.Split(text, "\n"); len(lines) != 6 || lines[1] != a.LogID() {
			t.Fatalf("checkpoint text has unexpected lines: %d", len(lines))
		}
		if strings.Contains(string(b), "reviewer") || strings.Contains(string(b), "00ff") {
			t.Fatal("checkpoint holds record content")
		}
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add(mustMarshal(f, fullRecord()))
	f.Add(mustMarshal(f, Record{Log: "l", Event: EventOpen, Outcome: OutcomeOK}))
	f.Add(mustMarshal(f, loggedSample(3)))
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRecord(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		b2, err := r.MarshalBinary()
		if err != nil {
			t.Fatalf("parsed record does not encode: %v", err)
		}
		if !bytes.Equal(b, b2) {
			t.Fatal("parse then encode changed the bytes")
		}
	})
}
