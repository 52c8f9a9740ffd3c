// Package statetest is the conformance suite every implementation of the state
// seam (state.Store) runs:
//
//	func TestConformance(t *testing.T) {
//		statetest.Run(t, statetest.Options{}, func(t *testing.T) func() state.Store {
//			dir := t.TempDir()
//			return func() state.Store { ... open the store kept in dir ... }
//		})
//	}
//
// newPlace makes a fresh, empty place for a store (a directory, a stream) and
// returns an opener for it; the suite calls the opener again after Close to
// check that what was acknowledged is still there, and closes every store it
// opens. With Options.Shared, the opener may also be called while another
// store on the same place is open, as two nodes of a cluster do: the suite then
// checks that each node sees the other's appends, claims and control data.
//
// Beyond state.go, the suite pins down: Deduplicated counts records (of the
// deliveries refused), ReceivedAt comes back in UTC to the microsecond, record
// ids are unique and not zero, and Read with a cancelled context fails. Trim
// is checked at the boundaries of Appends made one after another: a store may
// keep a record that went into one write with a record it must keep (JetStream
// stores a group commit as one message) and remove it by a later Trim.
package statetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/state"
)

// Options describe the implementation under test.
type Options struct {
	// Shared: several stores may be open on one place at once (cluster nodes).
	Shared bool
}

// wait bounds how long the suite waits for something that should happen at
// once (a Changed channel, another node's append); only a failure waits this
// long, so it is generous for a loaded machine.
const wait = 20 * time.Second

// Run runs the suite.
func Run(t *testing.T, opts Options, newPlace func(t *testing.T) func() state.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open func() state.Store)
	}{
		{"AppendPositions", testAppendPositions},
		{"ConcurrentAppends", testConcurrentAppends},
		{"Heads", testHeads},
		{"Changed", testChanged},
		{"ReadLimits", testReadLimits},
		{"Trim", testTrim},
		{"Reopen", testReopen},
		{"AppendOnce", testAppendOnce},
		{"AppendOnceWindow", testAppendOnceWindow},
		{"AppendOnceConcurrent", testAppendOnceConcurrent},
		{"AppendOnceManyAtOnce", testAppendOnceMany},
		{"AppendOnceRefusals", testAppendOnceRefusals},
		{"ControlKV", testControlKV},
		{"ControlKeys", testControlKeys},
		{"PutIf", testPutIf},
		{"Closed", testClosed},
		{"Import", func(t *testing.T, open func() state.Store) { testImport(t, open, opts.Shared) }},
	}
	if opts.Shared {
		tests = append(tests,
			struct {
				name string
				fn   func(t *testing.T, open func() state.Store)
			}{"TwoNodes", testTwoNodes},
			struct {
				name string
				fn   func(t *testing.T, open func() state.Store)
			}{"PutIfTwoNodes", func(t *testing.T, open func() state.Store) { allocate(t, open(), open()) }})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			place := newPlace(t)
			open := func() state.Store {
				s := place()
				if s == nil {
					t.Fatal("open returned nil")
				}
				t.Cleanup(func() { s.Close() })
				return s
			}
			tc.fn(t, open)
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return c
}

func bodies(n int, format string, args ...any) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, `{"n":%d,"of":%q}`, i, fmt.Sprintf(format, args...))
	}
	return out
}

func mustAppend(t *testing.T, s state.Store, integration int64, at time.Time, b [][]byte) uint64 {
	t.Helper()
	first, err := s.Append(ctx(t), integration, at, b)
	if err != nil {
		t.Fatalf("Append to %d: %v", integration, err)
	}
	return first
}

func readAll(t *testing.T, s state.Store, integration int64, after uint64) []state.Record {
	t.Helper()
	recs, err := s.Read(ctx(t), integration, after, 1<<30, 1<<40)
	if err != nil {
		t.Fatalf("Read %d after %d: %v", integration, after, err)
	}
	return recs
}

// checkLog checks that integration's records after `after` are positions
// after+1 … head without gaps, belong to it, and have distinct ids.
func checkLog(t *testing.T, recs []state.Record, integration int64, after, head uint64) {
	t.Helper()
	if uint64(len(recs)) != head-after {
		t.Fatalf("integration %d: read %d records after %d, want %d (head %d)", integration, len(recs), after, head-after, head)
	}
	ids := map[[16]byte]bool{}
	for i, r := range recs {
		if r.Position != after+uint64(i)+1 {
			t.Fatalf("integration %d: record %d has position %d, want %d", integration, i, r.Position, after+uint64(i)+1)
		}
		if r.Integration != integration {
			t.Fatalf("record %d has integration %d, want %d", r.Position, r.Integration, integration)
		}
		if r.ID == ([16]byte{}) || ids[r.ID] {
			t.Fatalf("integration %d: record %d has a zero or repeated id %x", integration, r.Position, r.ID)
		}
		ids[r.ID] = true
	}
}

// at is a fixed receipt time with microseconds, so that precision loss shows.
var at = time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)

func testAppendPositions(t *testing.T, open func() state.Store) {
	s := open()
	if h := s.Head(1); h != (state.Head{}) {
		t.Fatalf("head of an empty log = %+v, want zero", h)
	}
	b1, b2 := bodies(3, "a"), bodies(2, "b")
	if first := mustAppend(t, s, 1, at, b1); first != 1 {
		t.Fatalf("first Append returned %d, want 1", first)
	}
	if first := mustAppend(t, s, 2, at, bodies(1, "other")); first != 1 {
		t.Fatalf("first Append to another integration returned %d, want 1", first)
	}
	if first := mustAppend(t, s, 1, at.Add(time.Second), b2); first != 4 {
		t.Fatalf("second Append returned %d, want 4", first)
	}
	if h := s.Head(1); h.Position != 5 || !h.LastReceivedAt.Equal(at.Add(time.Second)) {
		t.Fatalf("head = %+v, want position 5 received %s", h, at.Add(time.Second))
	}
	recs := readAll(t, s, 1, 0)
	checkLog(t, recs, 1, 0, 5)
	want := append(append([][]byte{}, b1...), b2...)
	for i, r := range recs {
		if !bytes.Equal(r.Body, want[i]) {
			t.Fatalf("record %d body %s, want %s", r.Position, r.Body, want[i])
		}
		wantAt := at
		if i >= 3 {
			wantAt = at.Add(time.Second)
		}
		if !r.ReceivedAt.Equal(wantAt) || r.ReceivedAt.Location() != time.UTC {
			t.Fatalf("record %d received %s, want %s in UTC", r.Position, r.ReceivedAt, wantAt)
		}
	}
	checkLog(t, readAll(t, s, 2, 0), 2, 0, 1)
	if recs := readAll(t, s, 3, 0); len(recs) != 0 {
		t.Fatalf("an integration without appends has %d records", len(recs))
	}
}

func testConcurrentAppends(t *testing.T, open func() state.Store) {
	s := open()
	const writers, each = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := s.Append(ctx(t), int64(1+w%2), at, bodies(2, "w%d i%d", w, i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	const perIntegration = writers / 2 * each * 2
	for _, id := range []int64{1, 2} {
		if h := s.Head(id); h.Position != perIntegration {
			t.Fatalf("head of %d = %d, want %d", id, h.Position, perIntegration)
		}
		recs := readAll(t, s, id, 0)
		checkLog(t, recs, id, 0, perIntegration)
		// An Append's records are consecutive, and one writer's appends
		// keep their order.
		next := map[string]int{}
		for k := 0; k < len(recs); k += 2 {
			var n0, n1 int
			var of0, of1 string
			fmt.Sscanf(string(recs[k].Body), `{"n":%d,"of":%q}`, &n0, &of0)
			fmt.Sscanf(string(recs[k+1].Body), `{"n":%d,"of":%q}`, &n1, &of1)
			if n0 != 0 || n1 != 1 || of0 != of1 {
				t.Fatalf("records %d and %d are not one Append's: %s %s", k+1, k+2, recs[k].Body, recs[k+1].Body)
			}
			var w, i int
			fmt.Sscanf(of0, "w%d i%d", &w, &i)
			key := fmt.Sprint(w)
			if next[key] != i {
				t.Fatalf("writer %d's append %d came before its append %d", w, i, next[key])
			}
			next[key]++
		}
	}
}

func testHeads(t *testing.T, open func() state.Store) {
	s := open()
	mustAppend(t, s, 7, at.Add(time.Minute), bodies(2, "x"))
	mustAppend(t, s, 7, at, bodies(1, "older")) // a later append with an earlier time
	mustAppend(t, s, 9, at, bodies(1, "y"))
	heads := s.Heads()
	if len(heads) != 2 {
		t.Fatalf("Heads = %v, want integrations 7 and 9", heads)
	}
	if h := heads[7]; h.Position != 3 || !h.LastReceivedAt.Equal(at.Add(time.Minute)) {
		t.Fatalf("head of 7 = %+v, want 3 and the latest receipt time %s", h, at.Add(time.Minute))
	}
	if h := heads[9]; h.Position != 1 || !h.LastReceivedAt.Equal(at) {
		t.Fatalf("head of 9 = %+v", h)
	}
	if h := s.Head(7); h != heads[7] {
		t.Fatalf("Head(7) = %+v, Heads()[7] = %+v", h, heads[7])
	}
	heads[7] = state.Head{} // a copy: changing it changes nothing
	if s.Head(7).Position != 3 {
		t.Fatal("Heads returned the store's own map")
	}
}

func testChanged(t *testing.T, open func() state.Store) {
	s := open()
	ch := s.Changed()
	select {
	case <-ch:
		t.Fatal("Changed is closed before any append")
	default:
	}
	mustAppend(t, s, 1, at, bodies(1, "x"))
	select {
	case <-ch:
	case <-time.After(wait):
		t.Fatal("Changed was not closed by an append")
	}
	// A fresh channel waits for the next append.
	ch = s.Changed()
	select {
	case <-ch:
		t.Fatal("the Changed channel taken after an append is already closed")
	default:
	}
	mustAppend(t, s, 2, at, bodies(1, "y"))
	select {
	case <-ch:
	case <-time.After(wait):
		t.Fatal("Changed was not closed by the second append")
	}
}

func testReadLimits(t *testing.T, open func() state.Store) {
	s := open()
	for i := range 10 {
		mustAppend(t, s, 1, at, [][]byte{fmt.Appendf(nil, `{"i":%d,"pad":"%0100d"}`, i, 0)})
	}
	c := ctx(t)
	recs, err := s.Read(c, 1, 3, 4, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	checkLog(t, recs, 1, 3, 7)
	size := len(recs[0].Body)
	// maxBytes: stop once that much is read, so 2.5 bodies read 3 records.
	recs, err = s.Read(c, 1, 0, 100, size*5/2)
	if err != nil {
		t.Fatal(err)
	}
	checkLog(t, recs, 1, 0, 3)
	// At least one record, even if it is larger than maxBytes.
	recs, err = s.Read(c, 1, 5, 100, 1)
	if err != nil {
		t.Fatal(err)
	}
	checkLog(t, recs, 1, 5, 6)
	for _, after := range []uint64{10, 11, 1000} {
		recs, err = s.Read(c, 1, after, 100, 1<<20)
		if err != nil || len(recs) != 0 {
			t.Fatalf("Read after %d (head 10) = %d records, %v; want none", after, len(recs), err)
		}
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Read(cancelled, 1, 0, 100, 1<<20); err == nil {
		t.Fatal("Read with a cancelled context succeeded")
	}
}

func testTrim(t *testing.T, open func() state.Store) {
	s := open()
	old, recent := at.Add(-time.Hour), at
	for i := range 4 {
		mustAppend(t, s, 1, old, bodies(1, "old %d", i)) // 1..4
	}
	mustAppend(t, s, 1, recent, bodies(1, "new")) // 5
	mustAppend(t, s, 1, old, bodies(1, "old 5"))  // 6: old but after a recent one
	mustAppend(t, s, 2, old, bodies(3, "other"))
	cutoff := at.Add(-time.Minute)

	// Only records at or below upTo go, however old the others are.
	n, err := s.Trim(1, 2, cutoff)
	if err != nil || n != 2 {
		t.Fatalf("Trim(upTo 2) = %d, %v; want 2", n, err)
	}
	checkLog(t, readAll(t, s, 1, 0), 1, 2, 6)
	// Up to 6: 3 and 4 go; 5 is too new, and 6 stays behind it.
	n, err = s.Trim(1, 6, cutoff)
	if err != nil || n != 2 {
		t.Fatalf("Trim(upTo 6) = %d, %v; want 2", n, err)
	}
	recs := readAll(t, s, 1, 0)
	checkLog(t, recs, 1, 4, 6)
	if string(recs[0].Body) != string(bodies(1, "new")[0]) {
		t.Fatalf("first record left is %s", recs[0].Body)
	}
	n, err = s.Trim(1, 6, cutoff)
	if err != nil || n != 0 {
		t.Fatalf("Trim again = %d, %v; want 0", n, err)
	}
	if h := s.Head(1); h.Position != 6 {
		t.Fatalf("Trim moved the head to %d", h.Position)
	}
	// Appends continue after the head; Reads from a trimmed position start at
	// the first record kept.
	if first := mustAppend(t, s, 1, at, bodies(1, "more")); first != 7 {
		t.Fatalf("Append after Trim returned %d, want 7", first)
	}
	checkLog(t, readAll(t, s, 1, 2), 1, 4, 7)
	// The other integration is untouched; everything loaded and old can go.
	checkLog(t, readAll(t, s, 2, 0), 2, 0, 3)
	n, err = s.Trim(2, 3, cutoff)
	if err != nil || n != 3 {
		t.Fatalf("Trim(2, all) = %d, %v; want 3", n, err)
	}
	if recs := readAll(t, s, 2, 0); len(recs) != 0 {
		t.Fatalf("%d records left after trimming all", len(recs))
	}
	if first := mustAppend(t, s, 2, at, bodies(1, "after")); first != 4 {
		t.Fatalf("Append after trimming everything returned %d, want 4", first)
	}
}

func testReopen(t *testing.T, open func() state.Store) {
	s := open()
	mustAppend(t, s, 1, at, bodies(3, "a"))
	mustAppend(t, s, 1, at.Add(time.Second), bodies(2, "b"))
	mustAppend(t, s, 2, at, bodies(1, "c"))
	if _, err := s.Trim(1, 3, at.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(map[string][]byte{"k/1": []byte("v1")}); err != nil {
		t.Fatal(err)
	}
	before := readAll(t, s, 1, 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open()
	if h := s.Head(1); h.Position != 5 || !h.LastReceivedAt.Equal(at.Add(time.Second)) {
		t.Fatalf("after reopening head of 1 = %+v, want 5", h)
	}
	if h := s.Heads()[2]; h.Position != 1 {
		t.Fatalf("after reopening head of 2 = %+v, want 1", h)
	}
	after := readAll(t, s, 1, 0)
	checkLog(t, after, 1, 3, 5)
	for i := range after {
		if after[i].ID != before[i].ID || !bytes.Equal(after[i].Body, before[i].Body) || !after[i].ReceivedAt.Equal(before[i].ReceivedAt) {
			t.Fatalf("record %d changed across reopening: %+v, was %+v", after[i].Position, after[i], before[i])
		}
	}
	if v, err := s.Get("k/1"); err != nil || string(v) != "v1" {
		t.Fatalf("control value after reopening = %q, %v", v, err)
	}
	if first := mustAppend(t, s, 1, at, bodies(1, "d")); first != 6 {
		t.Fatalf("Append after reopening returned %d, want 6", first)
	}
}

func appendOnce(t *testing.T, s state.Store, integration int64, at time.Time, id string, window time.Duration, n int) (uint64, bool) {
	t.Helper()
	first, dup, err := s.AppendOnce(ctx(t), integration, at, id, window, bodies(n, "%s", id))
	if err != nil {
		t.Fatalf("AppendOnce(%d, %q): %v", integration, id, err)
	}
	if dup && first != 0 {
		t.Fatalf("a duplicate returned position %d, want 0", first)
	}
	return first, dup
}

func testAppendOnce(t *testing.T, open func() state.Store) {
	s := open()
	const w = time.Hour
	if first, dup := appendOnce(t, s, 1, at, "evt-1", w, 2); dup || first != 1 {
		t.Fatalf("first delivery: first %d, duplicate %v", first, dup)
	}
	if _, dup := appendOnce(t, s, 1, at.Add(time.Minute), "evt-1", w, 2); !dup {
		t.Fatal("a redelivery was appended")
	}
	// Ids are compared exactly and within one integration.
	if first, dup := appendOnce(t, s, 1, at, "evt-1 ", w, 1); dup || first != 3 {
		t.Fatalf("another id: first %d, duplicate %v", first, dup)
	}
	if first, dup := appendOnce(t, s, 2, at, "evt-1", w, 1); dup || first != 1 {
		t.Fatalf("the same id in another integration: first %d, duplicate %v", first, dup)
	}
	// Any bytes, any length.
	odd := "é.*>\x00 " + string(bytes.Repeat([]byte("x"), 2000))
	appendOnce(t, s, 1, at, odd, w, 1)
	if _, dup := appendOnce(t, s, 1, at, odd, w, 1); !dup {
		t.Fatal("a redelivery with an unusual id was appended")
	}
	// Plain appends and AppendOnce share the positions.
	if first := mustAppend(t, s, 1, at, bodies(1, "plain")); first != 5 {
		t.Fatalf("Append after AppendOnce returned %d, want 5", first)
	}
	checkLog(t, readAll(t, s, 1, 0), 1, 0, 5)
	if n := s.Deduplicated(1); n != 3 {
		t.Fatalf("Deduplicated(1) = %d, want 3 (the records of the refused deliveries)", n)
	}
	if n := s.Deduplicated(2); n != 0 {
		t.Fatalf("Deduplicated(2) = %d, want 0", n)
	}
	// Claims and the count survive reopening.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open()
	if _, dup := appendOnce(t, s, 1, at.Add(2*time.Minute), "evt-1", w, 2); !dup {
		t.Fatal("a redelivery after reopening was appended")
	}
	if n := s.Deduplicated(1); n != 5 {
		t.Fatalf("Deduplicated(1) after reopening = %d, want 5", n)
	}
}

func testAppendOnceWindow(t *testing.T, open func() state.Store) {
	s := open()
	const w = time.Hour
	appendOnce(t, s, 1, at, "a", w, 1)
	if _, dup := appendOnce(t, s, 1, at.Add(w-time.Second), "a", w, 1); !dup {
		t.Fatal("a redelivery within the window was appended")
	}
	// At claimedAt+window the claim no longer counts: the delivery is new
	// and makes a new claim.
	if first, dup := appendOnce(t, s, 1, at.Add(w), "a", w, 1); dup || first != 2 {
		t.Fatalf("a delivery after the window: first %d, duplicate %v", first, dup)
	}
	if _, dup := appendOnce(t, s, 1, at.Add(w+time.Minute), "a", w, 1); !dup {
		t.Fatal("the new claim does not count")
	}
	// A shorter window in the later call takes effect at once.
	appendOnce(t, s, 1, at, "b", w, 1)
	if first, dup := appendOnce(t, s, 1, at.Add(10*time.Minute), "b", 5*time.Minute, 1); dup || first == 0 {
		t.Fatalf("a delivery past a shorter window: first %d, duplicate %v", first, dup)
	}
}

func testAppendOnceConcurrent(t *testing.T, open func() state.Store) {
	s := open()
	const ids, tries = 10, 4
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := map[string]int{}
	errs := make(chan error, ids*tries)
	for i := range ids {
		for range tries {
			wg.Go(func() {
				id := fmt.Sprintf("evt-%d", i)
				_, dup, err := s.AppendOnce(ctx(t), 1, at, id, time.Hour, bodies(2, "%s", id))
				if err != nil {
					errs <- err
					return
				}
				if !dup {
					mu.Lock()
					won[id]++
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range ids {
		if n := won[fmt.Sprintf("evt-%d", i)]; n != 1 {
			t.Fatalf("evt-%d was appended %d times, want once", i, n)
		}
	}
	checkLog(t, readAll(t, s, 1, 0), 1, 0, ids*2)
	if n := s.Deduplicated(1); n != ids*(tries-1)*2 {
		t.Fatalf("Deduplicated = %d, want %d", n, ids*(tries-1)*2)
	}
}

func testAppendOnceRefusals(t *testing.T, open func() state.Store) {
	s := open()
	c := ctx(t)
	if _, _, err := s.AppendOnce(c, 1, at, "", time.Hour, bodies(1, "x")); err == nil {
		t.Fatal("AppendOnce without an id succeeded")
	}
	for _, w := range []time.Duration{0, -time.Second} {
		if _, _, err := s.AppendOnce(c, 1, at, "x", w, bodies(1, "x")); err == nil {
			t.Fatalf("AppendOnce with window %s succeeded", w)
		}
	}
	if h := s.Head(1); h.Position != 0 {
		t.Fatalf("refused calls appended: head %d", h.Position)
	}
}

func testControlKV(t *testing.T, open func() state.Store) {
	s := open()
	if _, err := s.Get("missing"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("Get of a missing key: %v, want ErrNotFound", err)
	}
	if err := s.Put(map[string][]byte{
		"integration/2": []byte("two"), "integration/1": []byte("one"), "integration/10": []byte("ten"),
		"integrations": []byte("not under the prefix"), "url/1": []byte("u1"), "empty": {},
	}); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get("integration/1"); err != nil || string(v) != "one" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if v, err := s.Get("empty"); err != nil || len(v) != 0 {
		t.Fatalf("Get of an empty value = %q, %v; want empty, found", v, err)
	}
	scan := func(prefix string) []string {
		t.Helper()
		var out []string
		if err := s.Scan(prefix, func(k string, v []byte) error {
			out = append(out, k+"="+string(v))
			return nil
		}); err != nil {
			t.Fatalf("Scan(%q): %v", prefix, err)
		}
		return out
	}
	if got, want := scan("integration/"), []string{"integration/1=one", "integration/10=ten", "integration/2=two"}; !slices.Equal(got, want) {
		t.Fatalf("Scan = %q, want %q (in key order, only the prefix)", got, want)
	}
	if got := scan("nothing/"); len(got) != 0 {
		t.Fatalf("Scan of an empty prefix = %q", got)
	}
	if got := scan("integration"); len(got) != 4 {
		t.Fatalf("Scan(\"integration\") = %q, want 4 keys", got)
	}
	// Overwrite and delete in one Put.
	if err := s.Put(map[string][]byte{"integration/1": []byte("uno"), "integration/2": nil}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("integration/2"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("Get of a deleted key: %v", err)
	}
	if got, want := scan("integration/"), []string{"integration/1=uno", "integration/10=ten"}; !slices.Equal(got, want) {
		t.Fatalf("Scan after the update = %q, want %q", got, want)
	}
	stop := errors.New("stop")
	calls := 0
	if err := s.Scan("integration/", func(string, []byte) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("Scan with fn failing = %v after %d calls, want fn's error after 1", err, calls)
	}
	// Deleting a key that does not exist is not an error.
	if err := s.Put(map[string][]byte{"never": nil}); err != nil {
		t.Fatal(err)
	}
}

// testControlKeys: keys are any strings; the control and history packages use
// slashes, colons and node names.
func testControlKeys(t *testing.T, open func() state.Store) {
	s := open()
	keys := []string{"a.b", "a/b", "a b", "a:b", "a*b", "a>b", "a=b", "é", ".lead", "trail.", "a//b", "a\x00b", "UPPER", "a_b-c"}
	kvs := map[string][]byte{}
	for i, k := range keys {
		kvs[k] = fmt.Appendf(nil, "%d", i)
	}
	if err := s.Put(kvs); err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if v, err := s.Get(k); err != nil || string(v) != fmt.Sprint(i) {
			t.Fatalf("Get(%q) = %q, %v; want %d", k, v, err, i)
		}
	}
	var got []string
	if err := s.Scan("a", func(k string, _ []byte) error { got = append(got, k); return nil }); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, k := range keys {
		if len(k) > 0 && k[0] == 'a' {
			want = append(want, k)
		}
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("Scan(\"a\") = %q, want %q", got, want)
	}
}

func testClosed(t *testing.T, open func() state.Store) {
	s := open()
	mustAppend(t, s, 1, at, bodies(1, "x"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	c := ctx(t)
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, state.ErrClosed) {
			t.Fatalf("%s after Close: %v, want ErrClosed", what, err)
		}
	}
	_, err := s.Append(c, 1, at, bodies(1, "y"))
	check("Append", err)
	_, _, err = s.AppendOnce(c, 1, at, "id", time.Hour, bodies(1, "y"))
	check("AppendOnce", err)
	_, err = s.Read(c, 1, 0, 10, 1<<20)
	check("Read", err)
	_, err = s.Trim(1, 1, at.Add(time.Hour))
	check("Trim", err)
	_, err = s.Get("k")
	check("Get", err)
	check("Put", s.Put(map[string][]byte{"k": []byte("v")}))
	check("Scan", s.Scan("", func(string, []byte) error { return nil }))
	check("Writable", s.Writable())
}

// testTwoNodes: two stores open on one place see each other's appends, claims
// and control data, and share one sequence of positions.
func testTwoNodes(t *testing.T, open func() state.Store) {
	a, b := open(), open()
	changed := b.Changed()
	if first := mustAppend(t, a, 1, at, bodies(2, "from a")); first != 1 {
		t.Fatalf("first append on a returned %d", first)
	}
	select {
	case <-changed:
	case <-time.After(wait):
		t.Fatal("b's Changed was not closed by an append on a")
	}
	deadline := time.Now().Add(wait)
	for b.Head(1).Position != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("b's head is %d after a appended 2 records", b.Head(1).Position)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if first := mustAppend(t, b, 1, at, bodies(1, "from b")); first != 3 {
		t.Fatalf("append on b after a's returned %d, want 3", first)
	}
	// Concurrent appends through both share one gapless sequence.
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			if _, err := s.Append(ctx(t), 1, at, bodies(1, "c%d", i)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkLog(t, readAll(t, b, 1, 0), 1, 0, 23)
	checkLog(t, readAll(t, a, 1, 0), 1, 0, 23)
	// A claim made through a counts on b.
	appendOnce(t, a, 5, at, "evt", time.Hour, 1)
	if _, dup := appendOnce(t, b, 5, at, "evt", time.Hour, 1); !dup {
		t.Fatal("a delivery claimed on a was appended again on b")
	}
	// Control data written on one is read on the other.
	if err := a.Put(map[string][]byte{"x/1": []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if v, err := b.Get("x/1"); err != nil || string(v) != "v" {
		t.Fatalf("b reads %q, %v for a key a wrote", v, err)
	}
}

func testPutIf(t *testing.T, open func() state.Store) {
	s := open()
	put := func(expect, kvs map[string][]byte) error {
		t.Helper()
		err := s.PutIf(expect, kvs)
		if err != nil && !errors.Is(err, state.ErrConflict) {
			t.Fatalf("PutIf: %v", err)
		}
		return err
	}
	get := func(k string) string {
		t.Helper()
		v, err := s.Get(k)
		if errors.Is(err, state.ErrNotFound) {
			return "<none>"
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(v)
	}
	// Absent: nil expects it absent.
	if err := put(map[string][]byte{"last": nil}, map[string][]byte{"last": []byte("1"), "item/1": []byte("a")}); err != nil {
		t.Fatalf("PutIf on an absent key: %v", err)
	}
	if err := put(map[string][]byte{"last": nil}, map[string][]byte{"last": []byte("1"), "item/1": []byte("b")}); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("PutIf expecting absent on a present key: %v, want ErrConflict", err)
	}
	if got := get("item/1"); got != "a" {
		t.Fatalf("a refused PutIf wrote item/1 = %s", got)
	}
	// A wrong value refuses everything; the right one writes everything.
	if err := put(map[string][]byte{"last": []byte("7")}, map[string][]byte{"last": []byte("2"), "item/2": []byte("x")}); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("PutIf with a wrong value: %v", err)
	}
	if got := get("item/2"); got != "<none>" {
		t.Fatalf("a refused PutIf wrote item/2 = %s", got)
	}
	if err := put(map[string][]byte{"last": []byte("1")}, map[string][]byte{"last": []byte("2"), "item/2": []byte("x")}); err != nil {
		t.Fatalf("PutIf with the right value: %v", err)
	}
	if get("last") != "2" || get("item/2") != "x" {
		t.Fatalf("PutIf wrote last=%s item/2=%s", get("last"), get("item/2"))
	}
	// An expected key that is not written stays as it is; a deleted key is absent.
	if err := put(map[string][]byte{"last": []byte("2"), "gone": nil}, map[string][]byte{"other": []byte("o")}); err != nil {
		t.Fatalf("PutIf expecting keys it does not write: %v", err)
	}
	if get("last") != "2" || get("other") != "o" {
		t.Fatalf("after PutIf last=%s other=%s", get("last"), get("other"))
	}
	if err := s.Put(map[string][]byte{"other": nil}); err != nil {
		t.Fatal(err)
	}
	if err := put(map[string][]byte{"other": nil}, map[string][]byte{"other": []byte("again")}); err != nil {
		t.Fatalf("PutIf expecting a deleted key absent: %v", err)
	}
	allocate(t, s, s)
}

// allocate hands out ids from one counter through a and b at once, as two
// nodes creating integrations do: read the counter, PutIf it one higher with
// the new item, retry on ErrConflict. Every id must be handed out once.
func allocate(t *testing.T, a, b state.Store) {
	const workers, each = 6, 5
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[int]int{}
	errs := make(chan error, workers)
	for w := range workers {
		s := a
		if w%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for range each {
				for {
					var last int
					var expect []byte
					v, err := s.Get("ids/last")
					switch {
					case errors.Is(err, state.ErrNotFound):
					case err != nil:
						errs <- err
						return
					default:
						expect = v
						fmt.Sscan(string(v), &last)
					}
					id := last + 1
					err = s.PutIf(map[string][]byte{"ids/last": expect}, map[string][]byte{
						"ids/last": fmt.Appendf(nil, "%d", id), fmt.Sprintf("ids/item/%d", id): fmt.Appendf(nil, "w%d", w),
					})
					if errors.Is(err, state.ErrConflict) {
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					got[id]++
					mu.Unlock()
					break
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for id := 1; id <= workers*each; id++ {
		if got[id] != 1 {
			t.Fatalf("id %d was handed out %d times", id, got[id])
		}
	}
	n := 0
	if err := a.Scan("ids/item/", func(string, []byte) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != workers*each {
		t.Fatalf("%d items stored, want %d", n, workers*each)
	}
}

// testAppendOnceMany: many new deliveries at once (a store may write them
// together): each is appended once, where its returned position says.
func testAppendOnceMany(t *testing.T, open func() state.Store) {
	s := open()
	const workers, each = 32, 4
	type got struct {
		id    string
		first uint64
	}
	var mu sync.Mutex
	var results []got
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("w%d-%d", w, i)
				first, dup, err := s.AppendOnce(ctx(t), 1, at, id, time.Hour, bodies(2, "%s", id))
				if err != nil || dup {
					errs <- fmt.Errorf("AppendOnce(%s) = duplicate %v, %v", id, dup, err)
					return
				}
				mu.Lock()
				results = append(results, got{id, first})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	recs := readAll(t, s, 1, 0)
	checkLog(t, recs, 1, 0, workers*each*2)
	for _, r := range results {
		for k, want := range bodies(2, "%s", r.id) {
			if got := recs[r.first-1+uint64(k)].Body; !bytes.Equal(got, want) {
				t.Fatalf("delivery %s returned position %d, where the log holds %s", r.id, r.first, got)
			}
		}
	}
	if n := s.Deduplicated(1); n != 0 {
		t.Fatalf("Deduplicated = %d for new deliveries", n)
	}
}
