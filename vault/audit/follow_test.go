package audit

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
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

// TestOnBatchTakenEqualsRead: a Follower that takes the batches its
// appender reports through OnBatch (SetTaken), and reads only the rest,
// ends up with exactly the records of one that reads every batch from the
// store, in the same positions, also when a batch write failed after it
// landed (ambiguous: never reported, so read from the store) and the
// appender moved to a new log. And it reads none of the reported batches.
func TestOnBatchTakenEqualsRead(t *testing.T) {
	ctx := context.Background()
	skey, vkey := keys(t)
	mem := newTestStore()
	hs := &hookStore{Store: mem}

	var mu sync.Mutex
	taken := map[string]map[int64]int64{}
	var reported []Record
	onBatch := func(log string, first, n int64, recs []Record) {
		mu.Lock()
		defer mu.Unlock()
		if taken[log] == nil {
			taken[log] = map[int64]int64{}
		}
		taken[log][first] = n
		reported = append(reported, recs...)
	}
	a := mustAppender(t, hs, skey, AppenderOptions{Now: newClock().Now, OnBatch: onBatch})
	for i := range 5 {
		if _, err := a.Append(ctx, sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	// One ambiguous failure: the batch lands, the write reports an error.
	down := errors.New("store down")
	hs.set(nil, func(int, string) error { return down })
	if _, err := a.Append(ctx, sampleRecord(5)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ambiguous write: %v", err)
	}
	hs.set(nil, nil)
	for i := range 4 {
		if _, err := a.Append(ctx, sampleRecord(6+i)); err != nil {
			t.Fatal(err)
		}
	}

	type pos struct {
		log string
		seq int64
	}
	readAll := func(f *Follower) map[pos]Record {
		got := map[pos]Record{}
		// Discovered by Poll, every log is read from its first record.
		if err := f.Poll(ctx, true, func(r Record) error { got[pos{r.Log, r.Seq}] = r; return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	plain, err := NewFollower(mem, vkey)
	if err != nil {
		t.Fatal(err)
	}
	all := readAll(plain)

	gets := &getSpy{Store: mem}
	own, err := NewFollower(gets, vkey)
	if err != nil {
		t.Fatal(err)
	}
	own.SetTaken(func(log string, p int64) int64 {
		mu.Lock()
		defer mu.Unlock()
		return taken[log][p]
	})
	read := readAll(own)
	for _, r := range reported {
		read[pos{r.Log, r.Seq}] = r
	}
	if len(read) != len(all) {
		t.Fatalf("taken + read: %d records; the store holds %d", len(read), len(all))
	}
	for p, r := range all {
		if got, ok := read[p]; !ok || !slices.Equal(mustMarshal(t, got), mustMarshal(t, r)) {
			t.Errorf("%s/%d: taken or read %+v, stored %+v", p.log, p.seq, got, r)
		}
	}
	if ambiguous := len(all) - len(reported); ambiguous < 1 {
		t.Fatalf("no record outside the reported batches: the ambiguous batch did not land (%d stored)", len(all))
	}
	mu.Lock()
	defer mu.Unlock()
	for log, m := range taken {
		for first := range m {
			if n := gets.keyGets(batchKey(log, first)); n > 0 {
				t.Errorf("reported batch %s/%d was read from the store", log, first)
			}
		}
	}
}
