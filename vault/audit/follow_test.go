package audit

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/vault/store"
)

func TestFollowerStartReadsOnlyTheTail(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	skey, vkey := keys(t)
	log := buildLog(t, mem, skey, logSpec{n: 25003, batch: 7, checkpoints: []int64{7000}})
	var times []time.Time
	for r, err := range Scan(ctx, mem, Filter{Log: log}) {
		if err != nil {
			t.Fatal(err)
		}
		times = append(times, r.Time)
	}
	f, err := NewFollower(mem, vkey)
	if err != nil {
		t.Fatal(err)
	}
	var got []Record
	collect := func(r Record) error { got = append(got, r); return nil }
	since := times[20000]
	if err := f.Start(ctx, since, 0, collect); err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 {
		t.Fatal("Start read nothing")
	}
	first := got[0].Seq
	if first > 20000 || first < 20000-14 {
		t.Fatalf("Start began at seq %d; want the batch holding seq 20000 (batches are 7 records)", first)
	}
	for i, r := range got {
		if r.Seq != first+int64(i) || r.Log != log {
			t.Fatalf("record %d is %s/%d", i, r.Log, r.Seq)
		}
	}
	if got[len(got)-1].Seq != 25002 {
		t.Fatalf("Start stopped at %d", got[len(got)-1].Seq)
	}
	// back: an idle log is read back from before its last record even
	// when since is later than everything.
	f2, _ := NewFollower(mem, vkey)
	got = nil
	if err := f2.Start(ctx, times[25002].Add(time.Hour), times[25002].Sub(times[24000]), collect); err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 {
		t.Fatal("with back, Start read nothing")
	}
	if got[0].Seq > 24000 || got[0].Seq < 24000-14 {
		t.Fatalf("with back, Start began at seq %d", got[0].Seq)
	}
	// Poll: nothing new, then a new log is discovered and read whole.
	got = nil
	if err := f.Poll(ctx, true, collect); err != nil || len(got) != 0 {
		t.Fatalf("Poll of idle logs: %d records, %v", len(got), err)
	}
	log2 := buildLog(t, mem, skey, logSpec{n: 12, batch: 5})
	if err := f.Poll(ctx, false, collect); err != nil || len(got) != 0 {
		t.Fatalf("Poll without discovery read %d records, %v", len(got), err)
	}
	if err := f.Poll(ctx, true, collect); err != nil || len(got) != 12 || got[0].Log != log2 || got[0].Seq != 0 {
		t.Fatalf("Poll with discovery: %d records, %v", len(got), err)
	}
	if n := f.Logs(); n[log] != 25003 || n[log2] != 12 {
		t.Fatalf("positions %v", n)
	}
	if err := f.CheckGaps(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestFollowerFindsGaps(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	skey, vkey := keys(t)
	log := buildLog(t, mem, skey, logSpec{n: 40, batch: 4})
	// The batch at 20 is deleted: reading stops there, and only a listing
	// tells the gap from the end.
	if err := mem.Delete(ctx, batchKey(log, 20)); err != nil {
		t.Fatal(err)
	}
	f, _ := NewFollower(mem, vkey)
	n := 0
	if err := f.Start(ctx, time.Time{}, 0, func(Record) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 20 {
		t.Fatalf("read %d records before the gap, want 20", n)
	}
	if err := f.CheckGaps(ctx); !errors.Is(err, ErrLogGap) {
		t.Fatalf("CheckGaps = %v, want ErrLogGap", err)
	}
	// A batch that does not continue the log (a copy of another batch put
	// in the hole) is a gap too.
	b, _ := readSmall(ctx, mem, batchKey(log, 24), 1<<20)
	if err := mem.Put(ctx, batchKey(log, 20), bytes.NewReader(b), int64(len(b)), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := f.Poll(ctx, false, func(Record) error { return nil }); !errors.Is(err, ErrLogGap) {
		t.Fatalf("Poll over a misplaced batch = %v, want ErrLogGap", err)
	}
}
