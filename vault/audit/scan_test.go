package audit

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestScan(t *testing.T) {
	skey, _ := keys(t)
	st := newTestStore()
	for _, id := range []string{"b", "a", "c"} {
		buildLog(t, st, skey, logSpec{n: 10, batch: 3, checkpoints: []int64{3}, final: true, logID: id})
	}
	ctx := context.Background()
	collect := func(f Filter) []Record {
		t.Helper()
		var out []Record
		for r, err := range Scan(ctx, st, f) {
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		return out
	}
	all := collect(Filter{})
	if len(all) != 30 {
		t.Fatalf("%d records", len(all))
	}
	for i, r := range all {
		if want := string("abc"[i/10]); r.Log != want || r.Seq != int64(i%10) {
			t.Fatalf("record %d is (%s, %d): not in (log, seq) order", i, r.Log, r.Seq)
		}
		if want := sampleRecord(i % 10); r.Principal != want.Principal || r.Detail != want.Detail {
			t.Fatalf("record %d content differs", i)
		}
	}
	t0 := all[0].Time // buildLog's clock restarts per log: records 0..9 share times across logs
	tests := []struct {
		name string
		f    Filter
		want func(r Record) bool
	}{
		{"log", Filter{Log: "b"}, func(r Record) bool { return r.Log == "b" }},
		{"event", Filter{Event: EventGrant}, func(r Record) bool { return r.Event == EventGrant }},
		{"outcome", Filter{Outcome: OutcomeRefused}, func(r Record) bool { return r.Outcome == OutcomeRefused }},
		{"principal", Filter{Principal: "reviewer-3"}, func(r Record) bool { return r.Principal == "reviewer-3" }},
		{"object", Filter{Object: sampleRecord(4).Object}, func(r Record) bool { return r.Seq == 4 }},
		{"since", Filter{Since: t0.Add(5 * time.Millisecond)}, func(r Record) bool { return !r.Time.Before(t0.Add(5 * time.Millisecond)) }},
		{"until", Filter{Until: t0.Add(2 * time.Millisecond)}, func(r Record) bool { return r.Time.Before(t0.Add(2 * time.Millisecond)) }},
		{"combined", Filter{Log: "c", Event: EventRedeem, Outcome: OutcomeRefused}, func(r Record) bool {
			return r.Log == "c" && r.Event == EventRedeem && r.Outcome == OutcomeRefused
		}},
		{"nothing", Filter{Principal: "nobody"}, func(Record) bool { return false }},
		{"absent log", Filter{Log: "zz"}, func(Record) bool { return false }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := collect(tt.f)
			var want []Record
			for _, r := range all {
				if tt.want(r) {
					want = append(want, r)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("%d records, want %d", len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("record %d differs", i)
				}
			}
		})
	}
	t.Run("lazy", func(t *testing.T) {
		cs := &getSpy{Store: st}
		for _, err := range Scan(ctx, cs, Filter{}) {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
		if n := cs.allGets(); n != 1 {
			t.Fatalf("%d objects read for one record", n)
		}
	})
	t.Run("corrupt batch", func(t *testing.T) {
		b, _ := st.Bytes(batchKey("b", 3))
		st.SetBytes(batchKey("b", 3), b[:len(b)-1])
		defer st.SetBytes(batchKey("b", 3), b)
		n := 0
		var last error
		for _, err := range Scan(ctx, st, Filter{}) {
			if err != nil {
				last = err
			}
			n++
		}
		if !errors.Is(last, ErrCorrupt) || n != 10+3+2+1 { // log a, b's first batch, two records streamed before the cut, the error
			t.Fatalf("%d results, last error %v", n, last)
		}
	})
	t.Run("invalid log filter", func(t *testing.T) {
		for _, err := range Scan(ctx, st, Filter{Log: "../x"}) {
			if err == nil {
				t.Fatal("no error")
			}
		}
	})
}
