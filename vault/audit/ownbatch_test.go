package audit

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
)

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
