package state

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func openTest(t testing.TB, dir string) *Pebble {
	t.Helper()
	p, err := OpenPebble(dir, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{MinFreeBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAppendReadRestart(t *testing.T) {
	dir := t.TempDir()
	p := openTest(t, dir)
	ctx := context.Background()
	const writers, each = 16, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				body := []byte(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))
				if _, err := p.Append(ctx, int64(1+w%2), time.Now(), [][]byte{body, body}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := uint64(writers / 2 * each * 2)
	for _, id := range []int64{1, 2} {
		if h := p.Head(id); h.Position != want || h.LastReceivedAt.IsZero() {
			t.Fatalf("head of %d = %+v, want position %d", id, h, want)
		}
	}
	p.Close()

	p = openTest(t, dir)
	defer p.Close()
	for _, id := range []int64{1, 2} {
		if h := p.Head(id); h.Position != want {
			t.Fatalf("after restart head of %d = %+v, want %d", id, h, want)
		}
		recs, err := p.Read(ctx, id, 0, 100000, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		if uint64(len(recs)) != want {
			t.Fatalf("read %d records, want %d", len(recs), want)
		}
		ids := map[[16]byte]bool{}
		for i, r := range recs {
			if r.Position != uint64(i+1) || r.Integration != id {
				t.Fatalf("record %d has position %d", i, r.Position)
			}
			if ids[r.ID] {
				t.Fatalf("duplicate record id at %d", i)
			}
			ids[r.ID] = true
		}
		// A request's records are consecutive: the two copies sit side by side.
		for i := 0; i < len(recs); i += 2 {
			if string(recs[i].Body) != string(recs[i+1].Body) {
				t.Fatalf("records of one request were split at %d", i)
			}
		}
	}
	// Reading after a position and limits.
	recs, _ := p.Read(ctx, 1, 10, 5, 1<<30)
	if len(recs) != 5 || recs[0].Position != 11 {
		t.Fatalf("Read(after 10, max 5) = %d records from %d", len(recs), recs[0].Position)
	}
	recs, _ = p.Read(ctx, 1, 0, 100, 1)
	if len(recs) != 1 {
		t.Fatalf("maxBytes=1 read %d records, want 1", len(recs))
	}
}

func TestTrim(t *testing.T) {
	p := openTest(t, t.TempDir())
	defer p.Close()
	ctx := context.Background()
	old := time.Now().Add(-time.Hour)
	for i := 0; i < 10; i++ {
		at := old
		if i >= 6 {
			at = time.Now()
		}
		if _, err := p.Append(ctx, 3, at, [][]byte{[]byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	// Only loaded (<= 8) and old (first 6) records go.
	n, err := p.Trim(3, 8, time.Now().Add(-time.Minute))
	if err != nil || n != 6 {
		t.Fatalf("Trim = %d, %v; want 6", n, err)
	}
	recs, _ := p.Read(ctx, 3, 0, 100, 1<<20)
	if len(recs) != 4 || recs[0].Position != 7 {
		t.Fatalf("after trim: %d records from %d", len(recs), recs[0].Position)
	}
	if p.Head(3).Position != 10 {
		t.Fatal("trim moved the head")
	}
}

func TestAppendRefusedWhenClosedOrFull(t *testing.T) {
	p := openTest(t, t.TempDir())
	p.minFree.Store(1 << 62) // more than any disk has
	p.freeChecked = time.Time{}
	if _, err := p.Append(context.Background(), 1, time.Now(), [][]byte{[]byte(`{}`)}); err != ErrNoSpace {
		t.Fatalf("Append on a full disk = %v, want ErrNoSpace", err)
	}
	p.minFree.Store(1)
	p.freeChecked = time.Time{}
	p.Close()
	if _, err := p.Append(context.Background(), 1, time.Now(), [][]byte{[]byte(`{}`)}); err != ErrClosed {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}
}

func TestControlKV(t *testing.T) {
	p := openTest(t, t.TempDir())
	defer p.Close()
	if _, err := p.Get("a"); err != ErrNotFound {
		t.Fatalf("Get missing = %v", err)
	}
	if err := p.Put(map[string][]byte{"x/1": []byte("one"), "x/2": []byte("two"), "y/1": []byte("other")}); err != nil {
		t.Fatal(err)
	}
	var got []string
	p.Scan("x/", func(k string, v []byte) error { got = append(got, k+"="+string(v)); return nil })
	if fmt.Sprint(got) != "[x/1=one x/2=two]" {
		t.Fatalf("Scan = %v", got)
	}
	p.Put(map[string][]byte{"x/1": nil})
	if _, err := p.Get("x/1"); err != ErrNotFound {
		t.Fatal("delete did not delete")
	}
}

// TestWritableProbesAtMostOncePerSecond: a burst of Writable calls (as a flood
// of /readyz requests makes) costs at most one probe write a second, and none
// is made while nobody asks.
func TestWritableProbesAtMostOncePerSecond(t *testing.T) {
	p := openTest(t, t.TempDir())
	defer p.Close()
	var calls atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < 2500*time.Millisecond {
				if err := p.Writable(); err != nil {
					t.Errorf("Writable = %v", err)
					return
				}
				calls.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	// A probe starts only once the previous result is a second old.
	n := p.probes.Load()
	if limit := int64(elapsed/time.Second) + 1; n < 1 || n > limit {
		t.Fatalf("%d Writable calls in %s made %d probe writes, want 1 to %d", calls.Load(), elapsed, n, limit)
	}
	t.Logf("%d Writable calls in %s made %d probe writes", calls.Load(), elapsed, n)

	// Quiet: at most the one wake still pending from the burst is served.
	time.Sleep(3 * time.Second)
	if quiet := p.probes.Load() - n; quiet > 1 {
		t.Fatalf("%d probe writes in 3 s while nobody called Writable", quiet)
	}
}

// TestWritableSeesFailure: once the disk is short of the reserve, Writable
// says so within about a second, and recovers as fast.
func TestWritableSeesFailure(t *testing.T) {
	p := openTest(t, t.TempDir())
	defer p.Close()
	if err := p.Writable(); err != nil {
		t.Fatalf("Writable on a fresh log = %v", err)
	}
	waitWritable := func(want error) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			err := p.Writable()
			if errors.Is(err, want) || (want == nil && err == nil) {
				return time.Since(start)
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("Writable = %v 10 s after the change, want %v", err, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	p.minFree.Store(1 << 62) // more than any disk has
	t.Logf("Writable reported ErrNoSpace after %s", waitWritable(ErrNoSpace))
	p.minFree.Store(1)
	t.Logf("Writable recovered after %s", waitWritable(nil))
}

// TestCloseStopsProber: Close waits for the probe goroutine, and every
// goroutine the Pebble started is gone once it returns.
func TestCloseStopsProber(t *testing.T) {
	before := runtime.NumGoroutine()
	p := openTest(t, t.TempDir())
	for i := 0; i < 3; i++ {
		if err := p.Writable(); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.probeDone:
	default:
		t.Fatal("Close returned while the probe goroutine was running")
	}
	if err := p.Writable(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Writable after Close = %v, want ErrClosed", err)
	}
	// Pebble's own goroutines may take a moment to return after Close.
	for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before Open:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
	}
}

// TestCallsRacingClose: calls made while Close runs finish or return
// ErrClosed, never panic on a closed Pebble, and every call after Close returns
// ErrClosed. Run with -race.
func TestCallsRacingClose(t *testing.T) {
	ctx := context.Background()
	calls := map[string]func(p *Pebble) error{
		"Append": func(p *Pebble) error {
			_, err := p.Append(ctx, 1, time.Now(), [][]byte{[]byte(`{"a":1}`)})
			return err
		},
		"AppendOnce": func(p *Pebble) error {
			_, _, err := p.AppendOnce(ctx, 1, time.Now(), "same", time.Hour, [][]byte{[]byte(`{"a":1}`)})
			return err
		},
		"SweepClaims": func(p *Pebble) error {
			_, err := p.SweepClaims(ctx, time.Now().Add(2*time.Hour))
			return err
		},
		"Read": func(p *Pebble) error {
			_, err := p.Read(ctx, 1, 0, 100, 1<<20)
			return err
		},
		"Trim": func(p *Pebble) error {
			_, err := p.Trim(1, 10, time.Now())
			return err
		},
		"Get": func(p *Pebble) error {
			_, err := p.Get("k")
			return err
		},
		"Put":  func(p *Pebble) error { return p.Put(map[string][]byte{"k": []byte("v")}) },
		"Scan": func(p *Pebble) error { return p.Scan("", func(string, []byte) error { return nil }) },
		"Writable": func(p *Pebble) error {
			if err := p.Writable(); !errors.Is(err, errProbeSlow) { // a busy test box may take a second
				return err
			}
			return nil
		},
	}
	for round := 0; round < 20; round++ {
		p := openTest(t, t.TempDir())
		if err := p.Put(map[string][]byte{"k": []byte("v")}); err != nil {
			t.Fatal(err)
		}
		var running, done sync.WaitGroup
		for name, call := range calls {
			running.Add(1)
			done.Add(1)
			go func() {
				defer done.Done()
				for i := 0; ; i++ {
					err := call(p)
					if i == 0 {
						running.Done()
					}
					if errors.Is(err, ErrClosed) {
						return
					}
					if err != nil {
						t.Errorf("%s while Close ran = %v, want nil or ErrClosed", name, err)
						return
					}
				}
			}()
		}
		running.Wait() // every call is in its loop
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		done.Wait()
		if t.Failed() {
			return
		}
		for name, call := range calls {
			if err := call(p); !errors.Is(err, ErrClosed) {
				t.Fatalf("%s after Close = %v, want ErrClosed", name, err)
			}
		}
	}
}

// BenchmarkAppend measures durable appends from 64 concurrent writers (group
// commit), with the writer's GroupWait on (the default) and off, and reports
// the process's CPU time per record besides the rate.
func BenchmarkAppend(b *testing.B) {
	for _, bc := range []struct {
		name string
		wait time.Duration
	}{{"group-wait=1ms", 0}, {"group-wait=off", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			p, err := OpenPebble(b.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)),
				Options{MinFreeBytes: 1, GroupWait: bc.wait})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			body := make([]byte, 1024)
			for i := range body {
				body[i] = 'x'
			}
			b.SetParallelism(32)
			b.ResetTimer()
			cpu0 := processCPU()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := p.Append(context.Background(), 1, time.Now(), [][]byte{body}); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/record")
		})
	}
}

// processCPU is the user + system CPU time of this process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestRecordIDsAreDistinctV4UUIDs: ids are drawn from crypto/rand in blocks;
// across more records than one block (and a restart) each is a distinct
// version 4 UUID.
func TestRecordIDsAreDistinctV4UUIDs(t *testing.T) {
	dir := t.TempDir()
	seen := map[[16]byte]bool{}
	for round := 0; round < 2; round++ {
		p := openTest(t, dir)
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 50; i++ {
					if _, err := p.Append(context.Background(), 1, time.Now(), [][]byte{[]byte(`{"a":1}`), []byte(`{"b":2}`)}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
	p := openTest(t, dir)
	defer p.Close()
	recs, err := p.Read(context.Background(), 1, 0, 10000, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1600 {
		t.Fatalf("%d records, want 1600", len(recs))
	}
	for _, r := range recs {
		if seen[r.ID] {
			t.Fatalf("record %d repeats id %x", r.Position, r.ID)
		}
		seen[r.ID] = true
		if r.ID[6]>>4 != 4 || r.ID[8]>>6 != 2 {
			t.Fatalf("record %d id %x is not a version 4 UUID", r.Position, r.ID)
		}
	}
}

// TestReadBodiesAcrossSlabs: Read copies bodies into shared slabs; bodies of
// every size come back intact, and appending to one does not change the next.
func TestReadBodiesAcrossSlabs(t *testing.T) {
	p := openTest(t, t.TempDir())
	defer p.Close()
	var want [][]byte
	for i, n := range []int{10, 300 << 10, 7, 200 << 10, 100 << 10, 1, 5 << 10} {
		b := []byte(fmt.Sprintf(`{"i":%d,"pad":"`, i))
		for len(b) < n {
			b = append(b, byte('a'+i))
		}
		b = append(b, `"}`...)
		want = append(want, b)
	}
	for i := 0; i < 50; i++ {
		want = append(want, []byte(fmt.Sprintf(`{"small":%d}`, i)))
	}
	if _, err := p.Append(context.Background(), 3, time.Now(), want); err != nil {
		t.Fatal(err)
	}
	recs, err := p.Read(context.Background(), 3, 0, 1000, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d", len(recs), len(want))
	}
	for i := range recs {
		if i+1 < len(recs) {
			_ = append(recs[i].Body, "XXXXXXXX"...)
		}
	}
	for i, r := range recs {
		if string(r.Body) != string(want[i]) || r.Position != uint64(i+1) {
			t.Fatalf("record %d: position %d, body of %d bytes differs from the %d appended", i, r.Position, len(r.Body), len(want[i]))
		}
	}
	// A byte budget still ends the batch, with at least one record.
	recs, err = p.Read(context.Background(), 3, 1, 1000, 1)
	if err != nil || len(recs) != 1 || string(recs[0].Body) != string(want[1]) {
		t.Fatalf("Read with a 1-byte budget: %d records, %v", len(recs), err)
	}
}
