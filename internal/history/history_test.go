package history

import (
	"errors"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/state"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// clock is a settable clock safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func openState(t testing.TB, dir string) *state.Pebble {
	t.Helper()
	p, err := state.OpenPebble(dir, discard, state.Options{MinFreeBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func open(t testing.TB, kv KV, c *clock, opts Options) *History {
	t.Helper()
	h, err := OpenWith(kv, discard, c.now, opts)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func countKeys(t testing.TB, kv KV, prefix string) int {
	t.Helper()
	n := 0
	if err := kv.Scan(prefix, func(string, []byte) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func last(p []Point) Point { return p[len(p)-1] }

func TestPointsAlignedInUTC(t *testing.T) {
	st := openState(t, t.TempDir())
	defer st.Close()
	// A clock in a non-UTC zone: buckets are still UTC minutes, 10 minutes and hours.
	c := &clock{t: time.Date(2026, 3, 4, 10, 17, 35, 0, time.UTC).In(time.FixedZone("IST", 5*3600+1800))}
	h := open(t, st, c, Options{})
	h.Received(1, 5)

	for _, tc := range []struct {
		w           Window
		n           int
		first, last time.Time
	}{
		{Hour, 60, time.Date(2026, 3, 4, 9, 18, 0, 0, time.UTC), time.Date(2026, 3, 4, 10, 17, 0, 0, time.UTC)},
		{Day, 144, time.Date(2026, 3, 3, 10, 20, 0, 0, time.UTC), time.Date(2026, 3, 4, 10, 10, 0, 0, time.UTC)},
		{Week, 168, time.Date(2026, 2, 25, 11, 0, 0, 0, time.UTC), time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)},
	} {
		pts := h.Points(1, tc.w)
		if len(pts) != tc.n {
			t.Fatalf("window %d: %d points, want %d", tc.w, len(pts), tc.n)
		}
		if !pts[0].At.Equal(tc.first) || !last(pts).At.Equal(tc.last) || last(pts).At.Location() != time.UTC {
			t.Errorf("window %d: from %v to %v, want %v to %v in UTC", tc.w, pts[0].At, last(pts).At, tc.first, tc.last)
		}
		step := pts[1].At.Sub(pts[0].At)
		for i, p := range pts {
			if want := tc.first.Add(time.Duration(i) * step); !p.At.Equal(want) {
				t.Fatalf("window %d point %d at %v, want %v", tc.w, i, p.At, want)
			}
			if want := int64(0); i == len(pts)-1 {
				want = 5
				if p.Received != want {
					t.Errorf("window %d: current bucket received %d, want %d", tc.w, p.Received, want)
				}
			} else if p.Received != want || p.Refused != nil {
				t.Errorf("window %d point %d not empty: %+v", tc.w, i, p)
			}
		}
	}
	if h.Points(1, 0) != nil || h.Points(1, Week+1) != nil {
		t.Error("an unknown window gave points")
	}
}

// TestDownsampling records once a minute for three hours of simulated time and
// watches the windows as time goes on.
func TestDownsampling(t *testing.T) {
	st := openState(t, t.TempDir())
	defer st.Close()
	start := time.Date(2026, 3, 4, 0, 0, 20, 0, time.UTC)
	c := &clock{t: start}
	h := open(t, st, c, Options{})
	for m := range 180 {
		h.Received(7, 1)
		h.Loaded(7, 1, 0)
		h.Lag(7, time.Duration(m)*time.Second)
		if m%7 == 0 {
			h.Flush() // flushing along the way changes nothing
		}
		c.add(time.Minute)
	}
	c.add(-time.Minute) // 02:59:20, the last minute recorded

	hour := h.Points(7, Hour)
	for i, p := range hour {
		if p.Received != 1 || p.Loaded != 1 || p.Lag != float64(120+i) {
			t.Fatalf("hour point %d = %+v, want 1 received, 1 loaded, lag %d", i, p, 120+i)
		}
	}
	day := h.Points(7, Day)
	for i, p := range day {
		want, lag := int64(0), 0.0
		if i >= 144-18 {
			k := i - (144 - 18) // the k-th 10 minutes since midnight
			want, lag = 10, float64(k*10+9)
		}
		if p.Received != want || p.Loaded != want || p.Lag != lag {
			t.Fatalf("day point %d (%v) = %+v, want %d records, lag %v", i, p.At, p, want, lag)
		}
	}
	week := h.Points(7, Week)
	for i, p := range week {
		want := int64(0)
		if i >= 168-3 {
			want = 60
		}
		if p.Received != want {
			t.Fatalf("week point %d = %+v, want %d", i, p, want)
		}
	}
	if last(week).Lag != 179 {
		t.Errorf("week lag %v, want the largest, 179", last(week).Lag)
	}

	// Minutes age out of the hour first, then 10 minutes out of the day, then
	// hours out of the week.
	sum := func(w Window) (n int64) {
		for _, p := range h.Points(7, w) {
			n += p.Received
		}
		return n
	}
	for _, step := range []struct {
		after           time.Duration
		hour, day, week int64
	}{
		{30 * time.Minute, 30, 180, 180},
		{31 * time.Minute, 0, 180, 180},
		{22 * time.Hour, 0, 50, 180}, // 02:00 the next day: only 02:10–02:50 are left in the day
		{2 * time.Hour, 0, 0, 180},
		{5*24*time.Hour + 20*time.Hour, 0, 0, 120}, // 00:00 six days later: hour 00 has left the week
		{time.Hour, 0, 0, 60},
		{time.Hour, 0, 0, 0},
	} {
		c.add(step.after)
		if h, d, w := sum(Hour), sum(Day), sum(Week); h != step.hour || d != step.day || w != step.week {
			t.Errorf("at %v: hour %d day %d week %d, want %d %d %d", c.now(), h, d, w, step.hour, step.day, step.week)
		}
	}
}

func TestSumsOverIntegrations(t *testing.T) {
	st := openState(t, t.TempDir())
	defer st.Close()
	c := &clock{t: time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)}
	h := open(t, st, c, Options{})
	h.Received(1, 3)
	h.Received(2, 4)
	h.Refused(0, 401)
	h.Refused(0, 401)
	h.Refused(2, 400)
	h.Loaded(1, 2, 1)
	h.Lag(1, 5*time.Second)
	h.Lag(2, 2*time.Second)
	for _, w := range []Window{Hour, Day, Week} {
		all := last(h.Points(0, w))
		all.At = time.Time{}
		want := Point{Received: 7, Loaded: 2, Rejected: 1, Lag: 5, Refused: map[int]int64{401: 2, 400: 1}}
		if !reflect.DeepEqual(all, want) {
			t.Errorf("window %d, all integrations: %+v, want %+v", w, all, want)
		}
		two := last(h.Points(2, w))
		two.At = time.Time{}
		if want := (Point{Received: 4, Lag: 2, Refused: map[int]int64{400: 1}}); !reflect.DeepEqual(two, want) {
			t.Errorf("window %d, integration 2: %+v, want %+v", w, two, want)
		}
		if none := last(h.Points(3, w)); none.Received != 0 || none.Refused != nil {
			t.Errorf("window %d, unknown integration: %+v", w, none)
		}
	}
}

func TestRefusedByCode(t *testing.T) {
	st := openState(t, t.TempDir())
	defer st.Close()
	c := &clock{t: time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)}
	h := open(t, st, c, Options{})
	codes := []int{400, 401, 405, 413, 415, 429, 503, 401, 401, 400}
	for _, code := range codes {
		h.Refused(3, code)
	}
	c.add(time.Minute)
	h.Refused(3, 413)
	hour := h.Points(3, Hour)
	want := map[int]int64{400: 2, 401: 3, 405: 1, 413: 1, 415: 1, 429: 1, 503: 1}
	if got := hour[58].Refused; !reflect.DeepEqual(got, want) {
		t.Errorf("previous minute %v, want %v", got, want)
	}
	if got := last(hour).Refused; !reflect.DeepEqual(got, map[int]int64{413: 1}) {
		t.Errorf("current minute %v, want 413: 1", got)
	}
	want[413]++
	if got := last(h.Points(3, Day)).Refused; !reflect.DeepEqual(got, want) {
		t.Errorf("day bucket %v, want %v", got, want)
	}
	// The ring slot is reused an hour later: the old codes must not leak into it.
	c.add(time.Hour)
	h.Refused(3, 500)
	if got := last(h.Points(3, Hour)).Refused; !reflect.DeepEqual(got, map[int]int64{500: 1}) {
		t.Errorf("reused minute %v, want 500: 1", got)
	}
}

func TestSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	st := openState(t, dir)
	c := &clock{t: time.Date(2026, 3, 4, 10, 0, 30, 0, time.UTC)}
	h := open(t, st, c, Options{})
	for m := range 200 {
		h.Received(int64(1+m%2), m)
		h.Loaded(1, m, m%3)
		h.Lag(2, time.Duration(m)*time.Second)
		h.Refused(0, 400+m%5)
		if m%13 == 0 {
			if err := h.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		c.add(time.Minute)
	}
	h.Received(1, 1000) // after the last Flush: Close writes it
	before := map[int64][][]Point{}
	for _, id := range []int64{0, 1, 2} {
		for _, w := range []Window{Hour, Day, Week} {
			before[id] = append(before[id], h.Points(id, w))
		}
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h.Received(1, 1) // after Close: memory only
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st = openState(t, dir)
	defer st.Close()
	h = open(t, st, c, Options{})
	for _, id := range []int64{0, 1, 2} {
		for i, w := range []Window{Hour, Day, Week} {
			if got := h.Points(id, w); !reflect.DeepEqual(got, before[id][i]) {
				t.Errorf("integration %d window %d differs after restart:\n got %+v\nwant %+v", id, w, got, before[id][i])
			}
		}
	}
	if got := last(h.Points(1, Hour)).Received; got != 1000 {
		t.Errorf("current minute after restart %d, want 1000", got)
	}
	h.Close()

	// Down for eight days: Open drops everything, from memory and from the state.
	c.add(8 * 24 * time.Hour)
	h = open(t, st, c, Options{})
	for _, w := range []Window{Hour, Day, Week} {
		for _, p := range h.Points(0, w) {
			if p.Received != 0 || p.Refused != nil {
				t.Fatalf("window %d kept %+v after a week away", w, p)
			}
		}
	}
	if n := countKeys(t, st, keyPrefix); n != 0 {
		t.Errorf("%d history keys left after a week away, want 0", n)
	}
}

// TestBoundedOverWeeks simulates three weeks of traffic, then a quiet week:
// keys and memory stay bounded and end at zero. It flushes every 30 simulated
// minutes and counts the keys once a day (a count scans past the deleted
// keys' tombstones, which only a compaction removes).
func TestBoundedOverWeeks(t *testing.T) {
	st := openState(t, t.TempDir())
	defer st.Close()
	c := &clock{t: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	h := open(t, st, c, Options{})
	const integrations = 3
	most := 0
	for m := range 3 * 7 * 24 * 60 {
		for id := int64(1); id <= integrations; id++ {
			h.Received(id, 10)
			h.Loaded(id, 9, 1)
		}
		h.Refused(0, 401)
		if m%30 == 29 {
			if err := h.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		if m%1440 == 1439 {
			most = max(most, countKeys(t, st, keyPrefix))
		}
		c.add(time.Minute)
	}
	// Every series (1, 2, 3 and 0 for the refusals) full: 60+144+168 keys each.
	if n, want := countKeys(t, st, keyPrefix), (integrations+1)*bucketsPerSeries; n != want || most > want {
		t.Errorf("%d history keys after three weeks (at most %d), want %d", n, most, want)
	}
	h.mu.Lock()
	if len(h.own) != integrations+1 || len(h.deletes) != 0 {
		t.Errorf("%d series in memory and %d deletes queued, want %d and 0", len(h.own), len(h.deletes), integrations+1)
	}
	h.mu.Unlock()

	for range 8 {
		c.add(24 * time.Hour)
		if err := h.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if n := countKeys(t, st, keyPrefix); n != 0 {
		t.Errorf("%d history keys after a quiet week, want 0", n)
	}
	h.mu.Lock()
	if len(h.own) != 0 {
		t.Errorf("%d series still in memory after a quiet week", len(h.own))
	}
	h.mu.Unlock()
}

// TestConcurrentRecording runs under -race: writers, a flusher and a reader at
// once, with the clock moving.
func TestConcurrentRecording(t *testing.T) {
	dir := t.TempDir()
	st := openState(t, dir)
	c := &clock{t: time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)}
	h := open(t, st, c, Options{})
	const writers, each = 8, 5000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(1)
	go func() {
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			c.add(7 * time.Second)
			h.Points(0, Hour)
			h.Points(1, Week)
			if err := h.Flush(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := int64(1 + w%3)
			for i := range each {
				h.Received(id, 1)
				h.Loaded(id, 1, 0)
				h.Refused(id, 400+i%2)
				h.Lag(id, time.Second)
			}
		}()
	}
	wg.Wait()
	close(stop)
	bg.Wait()
	total := func(h *History) (rec, refused int64) {
		for _, p := range h.Points(0, Week) {
			rec += p.Received
			for _, n := range p.Refused {
				refused += n
			}
		}
		return rec, refused
	}
	if rec, ref := total(h); rec != writers*each || ref != writers*each {
		t.Errorf("received %d refused %d, want %d each", rec, ref, writers*each)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	st.Close()
	st = openState(t, dir)
	defer st.Close()
	if rec, ref := total(open(t, st, c, Options{})); rec != writers*each || ref != writers*each {
		t.Errorf("after restart: received %d refused %d, want %d each", rec, ref, writers*each)
	}
}

// TestNodesShareOneState: two nodes write to one state, each under its own
// name, and each sees the sum.
func TestNodesShareOneState(t *testing.T) {
	st := openState(t, t.TempDir())
	defer st.Close()
	c := &clock{t: time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)}
	a := open(t, st, c, Options{Node: "a"})
	a.Received(1, 2)
	a.Refused(0, 401)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := open(t, st, c, Options{Node: "b"})
	b.Received(1, 3)
	b.Lag(1, 4*time.Second)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	bKeys := countKeys(t, st, keyPrefix+"b/")
	if bKeys != 3 {
		t.Errorf("node b wrote %d keys, want 3", bKeys)
	}

	a = open(t, st, c, Options{Node: "a"})
	got := last(a.Points(1, Hour))
	if got.Received != 5 || got.Lag != 4 {
		t.Errorf("node a sees %+v, want both nodes' 5 records and lag 4", got)
	}
	if all := last(a.Points(0, Day)); all.Received != 5 || all.Refused[401] != 1 {
		t.Errorf("node a sees %+v over all integrations", all)
	}
	a.Received(1, 1)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, st, keyPrefix+"b/"); n != bKeys {
		t.Errorf("node a changed node b's keys: %d, was %d", n, bKeys)
	}
	// A week later both nodes' buckets are gone, whoever opens first.
	c.add(8 * 24 * time.Hour)
	open(t, st, c, Options{Node: "a"})
	if n := countKeys(t, st, keyPrefix); n != 0 {
		t.Errorf("%d keys of either node left after a week", n)
	}

	if _, err := OpenWith(st, discard, c.now, Options{Node: "x/y"}); err == nil {
		t.Error("a node name with '/' was accepted")
	}
}

// flakyKV is the real state with Put failing on demand (a full disk, say).
type flakyKV struct {
	*state.Pebble
	mu   sync.Mutex
	fail bool
}

func (f *flakyKV) Put(kvs map[string][]byte) error {
	f.mu.Lock()
	fail := f.fail
	f.mu.Unlock()
	if fail {
		return errors.New("disk full")
	}
	return f.Pebble.Put(kvs)
}

func TestFlushRetriesAfterFailure(t *testing.T) {
	st := openState(t, t.TempDir())
	defer st.Close()
	kv := &flakyKV{Pebble: st}
	c := &clock{t: time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)}
	h := open(t, kv, c, Options{})
	h.Received(1, 2)
	if err := h.Flush(); err != nil {
		t.Fatal(err)
	}
	// Failing: the current minute changes, and an hour later its slot is reused
	// (the stored bucket must be deleted once writing works again).
	kv.fail = true
	h.Received(1, 3)
	if err := h.Flush(); err == nil {
		t.Fatal("Flush reported success on a failed Put")
	}
	c.add(time.Hour)
	h.Received(1, 4)
	if err := h.Flush(); err == nil {
		t.Fatal("Flush reported success on a failed Put")
	}
	kv.mu.Lock()
	kv.fail = false
	kv.mu.Unlock()
	if err := h.Flush(); err != nil {
		t.Fatal(err)
	}
	re := open(t, st, c, Options{})
	if got := last(re.Points(1, Hour)).Received; got != 4 {
		t.Errorf("current minute after the outage %d, want 4", got)
	}
	if got := last(re.Points(1, Week)); got.Received != 4 {
		t.Errorf("current hour %+v, want 4", got)
	}
	if got := re.Points(1, Week)[166].Received; got != 5 {
		t.Errorf("previous hour %d, want 5 (2 flushed, 3 retried)", got)
	}
	// The minute key from 10:00 was deleted when its slot was reused.
	if n := countKeys(t, st, keyPrefix+"local/1/m/"); n != 1 {
		t.Errorf("%d minute keys, want 1", n)
	}
}

func TestLagSampledByTheFlushGoroutine(t *testing.T) {
	st := openState(t, t.TempDir())
	defer st.Close()
	c := &clock{t: time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)}
	h := open(t, st, c, Options{FlushEvery: 5 * time.Millisecond, Lag: func() map[int64]time.Duration {
		return map[int64]time.Duration{1: 3 * time.Second, 2: 0}
	}})
	h.Start()
	deadline := time.Now().Add(5 * time.Second)
	for last(h.Points(1, Hour)).Lag != 3 {
		if time.Now().After(deadline) {
			t.Fatal("lag was not sampled")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, st, keyPrefix+"local/1/"); n != 3 {
		t.Errorf("%d keys for integration 1, want 3", n)
	}
	if n := countKeys(t, st, keyPrefix+"local/2/"); n != 0 {
		t.Errorf("a zero lag made %d keys", n)
	}
}

func TestKeysAndEncoding(t *testing.T) {
	b := bucket{received: 1 << 40, loaded: 5, rejected: 0, lagMs: 1234,
		refused: []codeCount{{401, 7}, {503, 1 << 33}}}
	got, ok := decodeBucket(encodeBucket(&b))
	if !ok || !reflect.DeepEqual(got, b) {
		t.Errorf("round trip: %+v %v, want %+v", got, ok, b)
	}
	for _, bad := range [][]byte{nil, {2}, {1, 1}, append(encodeBucket(&b), 0)} {
		if _, ok := decodeBucket(bad); ok {
			t.Errorf("decoded %x", bad)
		}
	}
	k := formatKey("node-1", 42, 1, 2960000)
	if k != "history/node-1/42/t/1776000000" {
		t.Errorf("key %s", k)
	}
	node, id, r, idx, ok := parseKey(k)
	if !ok || node != "node-1" || id != 42 || r != 1 || idx != 2960000 {
		t.Errorf("parse %s: %s %d %d %d %v", k, node, id, r, idx, ok)
	}
	for _, bad := range []string{"history/", "history/a/1/x/60", "history/a/-1/m/60", "history/a/1/m/61", "history//1/m/60", "history/a/1/m/60/x"} {
		if _, _, _, _, ok := parseKey(bad); ok {
			t.Errorf("parsed %s", bad)
		}
	}

	// Keys Open cannot read are left alone.
	st := openState(t, t.TempDir())
	defer st.Close()
	c := &clock{t: time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)}
	if err := st.Put(map[string][]byte{"history/junk": {1}, formatKey("local", 1, 0, c.t.Unix()/60): {9}}); err != nil {
		t.Fatal(err)
	}
	h := open(t, st, c, Options{})
	if p := last(h.Points(1, Hour)); p.Received != 0 {
		t.Errorf("unreadable bucket read as %+v", p)
	}
	if n := countKeys(t, st, keyPrefix); n != 2 {
		t.Errorf("%d keys, want the 2 unreadable ones kept", n)
	}
	if !strings.HasPrefix(formatKey("local", 0, 2, 1), keyPrefix) {
		t.Error("key outside the prefix")
	}
}

func BenchmarkReceived(b *testing.B) {
	st := openState(b, b.TempDir())
	defer st.Close()
	h, err := Open(st, discard, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.Received(int64(1+i%8), 1)
	}
}

func BenchmarkReceivedParallel(b *testing.B) {
	st := openState(b, b.TempDir())
	defer st.Close()
	h, err := Open(st, discard, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			h.Received(int64(1+i%8), 1)
			i++
		}
	})
}

// TestSignatureFailures: the new series is recorded per integration, summed
// for integration 0 and over nodes, downsampled like the others and kept
// across a restart.
func TestSignatureFailures(t *testing.T) {
	dir := t.TempDir()
	st := openState(t, dir)
	c := &clock{t: time.Date(2026, 3, 4, 10, 0, 30, 0, time.UTC)}
	h := open(t, st, c, Options{})
	h.SignatureFailed(1)
	h.SignatureFailed(1)
	h.SignatureFailed(2)
	c.add(time.Minute)
	h.SignatureFailed(1)
	h.Received(1, 4)
	for _, tc := range []struct {
		id          int64
		w           Window
		last, total int64
	}{
		{1, Hour, 1, 3}, {2, Hour, 0, 1}, {0, Hour, 1, 4},
		{1, Day, 3, 3}, {0, Week, 4, 4}, {3, Hour, 0, 0},
	} {
		pts := h.Points(tc.id, tc.w)
		var total int64
		for _, p := range pts {
			total += p.SignatureFailures
		}
		if got := last(pts).SignatureFailures; got != tc.last || total != tc.total {
			t.Errorf("integration %d window %d: last bucket %d, total %d; want %d, %d", tc.id, tc.w, got, total, tc.last, tc.total)
		}
	}
	if p := last(h.Points(1, Hour)); p.Received != 4 || p.Refused != nil {
		t.Errorf("a signature failure touched the other series: %+v", p)
	}
	before := h.Points(0, Day)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openState(t, dir)
	defer st.Close()
	h = open(t, st, c, Options{})
	defer h.Close()
	if got := h.Points(0, Day); !reflect.DeepEqual(got, before) {
		t.Errorf("signature failures differ after a restart:\n got %+v\nwant %+v", got, before)
	}
	// Another node's failures add up in the shared state.
	other := open(t, st, c, Options{Node: "b"})
	other.SignatureFailed(1)
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	h2 := open(t, st, c, Options{})
	defer h2.Close()
	if got := last(h2.Points(1, Hour)).SignatureFailures; got != 2 {
		t.Errorf("two nodes' failures in the current minute = %d, want 2", got)
	}
}

// TestEncodingVersions: buckets written before signature failures existed
// (v1) are still read; a bucket without failures is still written as v1, one
// with failures as v2, and both round-trip.
func TestEncodingVersions(t *testing.T) {
	// A v1 bucket as the previous release wrote it: received 3, loaded 2,
	// rejected 1, lag 1234 ms, one status code, 401 seven times.
	v1 := []byte{1, 3, 2, 1, 0xd2, 0x09, 1, 0x91, 0x03, 7}
	want := bucket{received: 3, loaded: 2, rejected: 1, lagMs: 1234, refused: []codeCount{{401, 7}}}
	got, ok := decodeBucket(v1)
	if !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("v1 bucket decoded as %+v %v, want %+v", got, ok, want)
	}
	if enc := encodeBucket(&want); !reflect.DeepEqual(enc, v1) {
		t.Errorf("a bucket without signature failures encodes as %x, want v1 %x", enc, v1)
	}
	want.sigFail = 5
	enc := encodeBucket(&want)
	if enc[0] != encodingV2 || !reflect.DeepEqual(enc, []byte{2, 3, 2, 1, 0xd2, 0x09, 5, 1, 0x91, 0x03, 7}) {
		t.Errorf("a bucket with signature failures encodes as %x", enc)
	}
	if got, ok := decodeBucket(enc); !ok || !reflect.DeepEqual(got, want) {
		t.Errorf("v2 round trip: %+v %v, want %+v", got, ok, want)
	}
	for _, bad := range [][]byte{{2, 3, 2, 1, 0xd2, 0x09}, {3, 3, 2, 1, 0xd2, 0x09, 0}, append(enc, 0)} {
		if _, ok := decodeBucket(bad); ok {
			t.Errorf("decoded %x", bad)
		}
	}

	// Open reads a state holding old v1 buckets next to new v2 ones.
	st := openState(t, t.TempDir())
	defer st.Close()
	c := &clock{t: time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)}
	minute := c.t.Unix() / 60
	if err := st.Put(map[string][]byte{
		formatKey("local", 1, 0, minute-1): v1,
		formatKey("local", 1, 0, minute):   enc,
	}); err != nil {
		t.Fatal(err)
	}
	h := open(t, st, c, Options{})
	defer h.Close()
	pts := h.Points(1, Hour)
	prev, cur := pts[len(pts)-2], last(pts)
	if prev.Received != 3 || prev.SignatureFailures != 0 || prev.Refused[401] != 7 ||
		cur.Received != 3 || cur.SignatureFailures != 5 || cur.Lag != 1.234 {
		t.Errorf("read back %+v and %+v", prev, cur)
	}
}
