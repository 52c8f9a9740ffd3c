package statetest

import (
	"sync"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/state"
)

func importer(t *testing.T, s state.Store) state.Importer {
	t.Helper()
	imp, ok := s.(state.Importer)
	if !ok {
		t.Fatalf("%T does not implement state.Importer (backfill imports)", s)
	}
	return imp
}

// testImport: an import chunk (AppendOnceAt) keeps each record's own receipt
// time, claims its id in the same write, moves the head's LastReceivedAt to
// the import's time, and the same chunk sent again (also through another
// node, after reopening, or several times at once) adds nothing and is not
// counted as a provider's redelivery.
func testImport(t *testing.T, open func() state.Store, shared bool) {
	s := open()
	imp := importer(t, s)
	c := ctx(t)
	const w = time.Hour
	now := at.Add(24 * time.Hour)
	times := []time.Time{
		time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC),
		time.Date(2025, 6, 1, 12, 30, 0, 123000, time.UTC),
		time.Date(2023, 12, 31, 23, 59, 59, 999999000, time.UTC), // not in order
	}
	mustAppend(t, s, 1, at, bodies(1, "before"))
	chunk := bodies(3, "chunk")
	first, dup, err := imp.AppendOnceAt(c, 1, now, times, "import:abc", w, chunk)
	if err != nil || dup || first != 2 {
		t.Fatalf("AppendOnceAt = %d, %v, %v; want 2, false, nil", first, dup, err)
	}
	if h := s.Head(1); h.Position != 4 || !h.LastReceivedAt.Equal(now) {
		t.Fatalf("head after the import = %+v, want position 4, last received %s (the import's time)", h, now)
	}
	check := func(s state.Store, head uint64) {
		t.Helper()
		recs := readAll(t, s, 1, 0)
		checkLog(t, recs, 1, 0, head)
		if !recs[0].ReceivedAt.Equal(at) {
			t.Errorf("the appended record: received %s, want %s", recs[0].ReceivedAt, at)
		}
		for i, r := range recs[1:4] {
			if !r.ReceivedAt.Equal(times[i]) || r.ReceivedAt.Location() != time.UTC || string(r.Body) != string(chunk[i]) {
				t.Errorf("imported record %d: %s %s, want %s %s", i, r.ReceivedAt, r.Body, times[i], chunk[i])
			}
		}
	}
	check(s, 4)
	// The same chunk again, within the window: nothing stored, not counted.
	first, dup, err = imp.AppendOnceAt(c, 1, now.Add(w-time.Second), times, "import:abc", w, chunk)
	if err != nil || !dup || first != 0 {
		t.Fatalf("the chunk again = %d, %v, %v; want 0, true, nil", first, dup, err)
	}
	if n := s.Deduplicated(1); n != 0 {
		t.Fatalf("Deduplicated = %d after a chunk sent twice, want 0 (not a redelivery)", n)
	}
	if h := s.Head(1); h.Position != 4 || !h.LastReceivedAt.Equal(now) {
		t.Fatalf("head after a duplicate chunk = %+v, want it unchanged", h)
	}
	// Refusals store nothing.
	if _, _, err := imp.AppendOnceAt(c, 1, now, times[:2], "import:def", w, chunk); err == nil {
		t.Fatal("AppendOnceAt with 2 times for 3 records: no error")
	}
	if _, _, err := imp.AppendOnceAt(c, 1, now, times, "", w, chunk); err == nil {
		t.Fatal("AppendOnceAt without an id: no error")
	}
	if _, _, err := imp.AppendOnceAt(c, 1, now, times, "import:def", 0, chunk); err == nil {
		t.Fatal("AppendOnceAt with window 0: no error")
	}
	// Concurrent sends of one chunk: exactly one stores it.
	var wg sync.WaitGroup
	var mu sync.Mutex
	stored := 0
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			_, dup, err := imp.AppendOnceAt(ctx(t), 1, now, times[:1], "import:ghi", w, chunk[:1])
			if err != nil {
				errs <- err
				return
			}
			if !dup {
				mu.Lock()
				stored++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if stored != 1 {
		t.Fatalf("a chunk sent 4 times at once was stored %d times, want once", stored)
	}
	if h := s.Head(1); h.Position != 5 {
		t.Fatalf("head %d, want 5", h.Position)
	}
	if shared {
		// A chunk stored through one node is a duplicate on another.
		b := open()
		if _, dup, err := importer(t, b).AppendOnceAt(ctx(t), 1, now.Add(time.Minute), times, "import:abc", w, chunk); err != nil || !dup {
			t.Fatalf("the chunk through another node: duplicate %v, err %v; want a duplicate", dup, err)
		}
	}
	// The claim and the times survive reopening.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open()
	if _, dup, err := importer(t, s).AppendOnceAt(ctx(t), 1, now.Add(time.Minute), times, "import:abc", w, chunk); err != nil || !dup {
		t.Fatalf("the chunk after reopening: duplicate %v, err %v; want a duplicate", dup, err)
	}
	check(s, 5)
	// The claim is judged at the import's time with the window: past it the
	// chunk is stored again.
	first, dup, err = importer(t, s).AppendOnceAt(ctx(t), 1, now.Add(w), times, "import:abc", w, chunk)
	if err != nil || dup || first != 6 {
		t.Fatalf("the chunk after the window = %d, %v, %v; want 6, false, nil", first, dup, err)
	}
	if n := s.Deduplicated(1); n != 0 {
		t.Fatalf("Deduplicated = %d, want 0", n)
	}
}
