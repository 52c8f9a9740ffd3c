package state

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

const day = 24 * time.Hour

// appendOnce is AppendOnce of one body, failing the test on an error.
func appendOnce(t testing.TB, p *Pebble, integration int64, at time.Time, id string, window time.Duration) (uint64, bool) {
	t.Helper()
	first, dup, err := p.AppendOnce(context.Background(), integration, at, id, window, [][]byte{[]byte(`{"id":"` + id + `"}`)})
	if err != nil {
		t.Fatalf("AppendOnce(%d, %q) = %v", integration, id, err)
	}
	return first, dup
}

func readAll(t testing.TB, p *Pebble, integration int64) []Record {
	t.Helper()
	recs, err := p.Read(context.Background(), integration, 0, 1<<20, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// countKeys counts the keys with the one-byte prefix.
func countKeys(t testing.TB, p *Pebble, prefix byte) int {
	t.Helper()
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefix}, UpperBound: []byte{prefix + 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	return n
}

func TestAppendOnceWindow(t *testing.T) {
	p := openTest(t, t.TempDir())
	defer p.Close()
	t0 := time.Now()
	if first, dup := appendOnce(t, p, 1, t0, "evt_1", day); dup || first != 1 {
		t.Fatalf("first delivery: first=%d duplicate=%v, want 1, false", first, dup)
	}
	// Redeliveries within the window: nothing appended, counted.
	for _, after := range []time.Duration{0, time.Second, day - time.Microsecond} {
		if first, dup := appendOnce(t, p, 1, t0.Add(after), "evt_1", day); !dup || first != 0 {
			t.Fatalf("redelivery after %s: first=%d duplicate=%v, want 0, true", after, first, dup)
		}
	}
	if h := p.Head(1); h.Position != 1 || !h.LastReceivedAt.Equal(t0) {
		t.Fatalf("head after duplicates = %+v, want position 1 received %s", h, t0)
	}
	if recs := readAll(t, p, 1); len(recs) != 1 || string(recs[0].Body) != `{"id":"evt_1"}` {
		t.Fatalf("log holds %d records, want the one", len(recs))
	}
	if n := p.Deduplicated(1); n != 3 {
		t.Fatalf("Deduplicated = %d, want 3", n)
	}
	// Once the window has passed the id is accepted again, and claimed anew.
	if first, dup := appendOnce(t, p, 1, t0.Add(day), "evt_1", day); dup || first != 2 {
		t.Fatalf("delivery after the window: first=%d duplicate=%v, want 2, false", first, dup)
	}
	if _, dup := appendOnce(t, p, 1, t0.Add(day+time.Hour), "evt_1", day); !dup {
		t.Fatal("the new claim does not hold")
	}
	// A shorter window applies to an existing claim at once.
	appendOnce(t, p, 1, t0, "evt_2", 7*day)
	if _, dup := appendOnce(t, p, 1, t0.Add(2*day), "evt_2", day); dup {
		t.Fatal("a 2-day-old claim counted under a 1-day window")
	}
	// Other ids, and arbitrary ones, are apart.
	long := strings.Repeat("é\x00", 5000)
	for _, id := range []string{"evt_3", long, long + "x"} {
		if _, dup := appendOnce(t, p, 1, t0, id, day); dup {
			t.Fatalf("fresh id %.20q reported as duplicate", id)
		}
	}
	if _, dup := appendOnce(t, p, 1, t0, long, day); !dup {
		t.Fatal("a 10 kB id was not deduplicated")
	}
}

func TestAppendOnceIntegrationsApart(t *testing.T) {
	p := openTest(t, t.TempDir())
	defer p.Close()
	now := time.Now()
	for _, integration := range []int64{1, 2, 1 << 40} {
		if first, dup := appendOnce(t, p, integration, now, "same-id", day); dup || first != 1 {
			t.Fatalf("integration %d: first=%d duplicate=%v, want 1, false", integration, first, dup)
		}
	}
	if _, dup := appendOnce(t, p, 2, now, "same-id", day); !dup {
		t.Fatal("the claim of integration 2 does not hold")
	}
	if a, b := p.Deduplicated(1), p.Deduplicated(2); a != 0 || b != 1 {
		t.Fatalf("Deduplicated = %d, %d; want 0, 1", a, b)
	}
}

func TestAppendOnceRefusals(t *testing.T) {
	p := openTest(t, t.TempDir())
	ctx := context.Background()
	body := [][]byte{[]byte(`{}`)}
	if _, _, err := p.AppendOnce(ctx, 1, time.Now(), "", day, body); err == nil {
		t.Fatal("AppendOnce with an empty id succeeded")
	}
	if _, _, err := p.AppendOnce(ctx, 1, time.Now(), "x", 0, body); err == nil {
		t.Fatal("AppendOnce with a zero window succeeded")
	}
	if h := p.Head(1); h.Position != 0 {
		t.Fatalf("refused calls appended: head %+v", h)
	}
	p.minFree.Store(1 << 62)
	p.freeChecked = time.Time{}
	if _, _, err := p.AppendOnce(ctx, 1, time.Now(), "x", day, body); err != ErrNoSpace {
		t.Fatalf("AppendOnce on a full disk = %v, want ErrNoSpace", err)
	}
	p.minFree.Store(1)
	p.freeChecked = time.Time{}
	// The refused delivery did not claim its id.
	if _, dup := appendOnce(t, p, 1, time.Now(), "x", day); dup {
		t.Fatal("a delivery refused for disk space claimed its id")
	}
	p.Close()
	if _, _, err := p.AppendOnce(ctx, 1, time.Now(), "y", day, body); err != ErrClosed {
		t.Fatalf("AppendOnce after Close = %v, want ErrClosed", err)
	}
}

// TestAppendOnceConcurrent: 8 concurrent redeliveries of each of many ids,
// interleaved with plain appends so that they share group commits, give one
// record per id. Run with -race.
func TestAppendOnceConcurrent(t *testing.T) {
	p := openTest(t, t.TempDir())
	defer p.Close()
	ctx := context.Background()
	const ids, copies = 100, 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := map[string]int{}
	duplicates := 0
	start := make(chan struct{})
	for c := 0; c < copies; c++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			for i := 0; i < ids; i++ {
				id := fmt.Sprintf("evt_%d", i)
				first, dup, err := p.AppendOnce(ctx, 7, time.Now(), id, day, [][]byte{[]byte(`{"id":"` + id + `"}`), []byte(`{}`)})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if dup {
					duplicates++
				} else {
					accepted[id]++
					if first == 0 {
						t.Errorf("%s accepted at position 0", id)
					}
				}
				mu.Unlock()
			}
		}()
		go func() { // plain appends to another integration share the groups
			defer wg.Done()
			<-start
			for i := 0; i < ids; i++ {
				if _, err := p.Append(ctx, 8, time.Now(), [][]byte{[]byte(`{}`)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	for i := 0; i < ids; i++ {
		if n := accepted[fmt.Sprintf("evt_%d", i)]; n != 1 {
			t.Fatalf("evt_%d accepted %d times, want 1", i, n)
		}
	}
	if duplicates != ids*(copies-1) {
		t.Fatalf("%d duplicates, want %d", duplicates, ids*(copies-1))
	}
	if n := p.Deduplicated(7); n != 2*ids*(copies-1) { // records: 2 per delivery
		t.Fatalf("Deduplicated = %d, want %d", n, 2*ids*(copies-1))
	}
	recs := readAll(t, p, 7)
	if len(recs) != 2*ids || p.Head(7).Position != 2*ids {
		t.Fatalf("%d records, head %d; want %d", len(recs), p.Head(7).Position, 2*ids)
	}
	seen := map[string]bool{}
	for i := 0; i < len(recs); i += 2 { // a delivery's records stay together
		var r struct{ ID string }
		if err := json.Unmarshal(recs[i].Body, &r); err != nil || seen[r.ID] || string(recs[i+1].Body) != `{}` {
			t.Fatalf("record %d: %s %s (seen: %v)", i, recs[i].Body, recs[i+1].Body, seen[r.ID])
		}
		seen[r.ID] = true
	}
	if h := p.Head(8); h.Position != ids*copies {
		t.Fatalf("plain appends: head %d, want %d", h.Position, ids*copies)
	}
}

// TestAppendOnceSameGroup: redeliveries that reach the writer in one group
// commit are decided in queue order against each other, not only against the
// store: one is appended and the rest are duplicates.
func TestAppendOnceSameGroup(t *testing.T) {
	hold, release := make(chan struct{}), make(chan struct{})
	var groups []int
	observe := func(_ time.Duration, n int) {
		groups = append(groups, n) // only the writer calls it
		if len(groups) == 1 {
			close(hold)
			<-release // the writer waits here while the next group queues
		}
	}
	p, err := OpenPebble(t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)), Options{MinFreeBytes: 1, SyncObserver: observe})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := p.Append(ctx, 1, time.Now(), [][]byte{[]byte(`{}`)}); err != nil {
			t.Error(err)
		}
	}()
	<-hold
	const copies = 8
	dups := make(chan bool, copies)
	for i := 0; i < copies; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, dup, err := p.AppendOnce(ctx, 1, time.Now(), "evt", day, [][]byte{[]byte(`{"id":"evt"}`)})
			if err != nil {
				t.Error(err)
			}
			dups <- dup
		}()
	}
	for len(p.appends) < copies {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(dups)
	n := 0
	for dup := range dups {
		if !dup {
			n++
		}
	}
	if n != 1 || len(groups) != 2 || groups[1] != copies {
		t.Fatalf("%d of %d accepted in groups %v; want 1 in groups [1 %d]", n, copies, groups, copies)
	}
	if h := p.Head(1); h.Position != 2 || p.Deduplicated(1) != copies-1 {
		t.Fatalf("head %d, deduplicated %d; want 2, %d", h.Position, p.Deduplicated(1), copies-1)
	}
}

// TestStalePrefetch: the writer does not trust a read made outside it (by
// AppendOnce or the sweep) when the claim changed after it, whether the change
// is still remembered (recent) or already forgotten (then the writer reads the
// store).
func TestStalePrefetch(t *testing.T) {
	p := openTest(t, t.TempDir())
	defer p.Close()
	now := time.Now()
	appendOnce(t, p, 1, now, "x", day)
	stale := func() bool { // as if read before "x" was claimed, at generation 0
		t.Helper()
		c := &claimReq{key: newClaimKey(1, "x"), window: day.Microseconds(), pre: prefetch{gen: 0, ok: true}}
		req := &appendReq{integration: 1, receivedAt: now, bodies: [][]byte{[]byte(`{}`)}, size: 64, claim: c, err: make(chan error, 1)}
		if err := p.do(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		return c.duplicate
	}
	if !stale() {
		t.Fatal("a stale read was trusted over a remembered claim")
	}
	for i := 0; i <= recentGens; i++ { // one generation each: "x" is forgotten
		appendOnce(t, p, 1, now, fmt.Sprint("other-", i), day)
	}
	if _, ok := p.recent.byKey[newClaimKey(1, "x")]; ok {
		t.Fatalf("claim still remembered after %d generations", p.recent.gen.Load())
	}
	if !stale() {
		t.Fatal("a read older than the remembered generations was trusted")
	}
	if h := p.Head(1); h.Position != recentGens+2 {
		t.Fatalf("head %d, want %d", h.Position, recentGens+2)
	}

	// A sweep that read a claim as expired before it was made again keeps it.
	t0 := now.Add(-3 * time.Hour)
	appendOnce(t, p, 2, t0, "y", time.Hour)
	k := newClaimKey(2, "y")
	expired := expiryKey(t0.Add(time.Hour).UnixMicro(), k)
	seen := prefetch{seen: claim{claimedAt: t0.UnixMicro(), expiresAt: t0.Add(time.Hour).UnixMicro(), exists: true}, gen: p.recent.gen.Load(), ok: true}
	if _, dup := appendOnce(t, p, 2, t0.Add(90*time.Minute), "y", time.Hour); dup {
		t.Fatal("an expired claim counted")
	}
	staleSweep := func() int {
		t.Helper()
		s := &sweepReq{now: t0.Add(2 * time.Hour).UnixMicro(), expired: [][]byte{expired}, pre: []prefetch{seen}}
		if err := p.do(context.Background(), &appendReq{sweep: s, err: make(chan error, 1)}); err != nil {
			t.Fatal(err)
		}
		return s.removed
	}
	if n := staleSweep(); n != 0 {
		t.Fatal("a stale sweep removed a claim remembered as made again")
	}
	for i := 0; i <= recentGens; i++ {
		appendOnce(t, p, 1, now, fmt.Sprint("more-", i), day)
	}
	if n := staleSweep(); n != 0 {
		t.Fatal("a sweep older than the remembered generations removed a claim made again")
	}
	if _, dup := appendOnce(t, p, 2, t0.Add(2*time.Hour), "y", time.Hour); !dup {
		t.Fatal("the claim made again is gone")
	}
}

// TestClaimsSurviveReopen: claims and the duplicate count are durable.
func TestClaimsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	p := openTest(t, dir)
	now := time.Now()
	appendOnce(t, p, 1, now, "a", day)
	appendOnce(t, p, 1, now, "a", day)
	appendOnce(t, p, 2, now, "b", day)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p = openTest(t, dir)
	defer p.Close()
	if n := p.Deduplicated(1); n != 1 {
		t.Fatalf("Deduplicated after reopen = %d, want 1", n)
	}
	for _, c := range []struct {
		integration int64
		id          string
	}{{1, "a"}, {2, "b"}} {
		if _, dup := appendOnce(t, p, c.integration, now.Add(time.Hour), c.id, day); !dup {
			t.Fatalf("claim %d/%s lost in a reopen", c.integration, c.id)
		}
	}
	if n := p.Deduplicated(1); n != 2 {
		t.Fatalf("Deduplicated = %d, want 2 (the count goes on from the stored one)", n)
	}
	if _, dup := appendOnce(t, p, 1, now, "c", day); dup {
		t.Fatal("fresh id after reopen reported as duplicate")
	}
}

const crashEnv = "HOOKHOUSE_STATE_CRASH"

// TestClaimsSurviveSIGKILL kills a child process that uses the log with
// SIGKILL, then reopens the log:
//   - "once": killed right after AppendOnce returned: the record and its claim
//     are there.
//   - "stream": four writers claim distinct ids and print each one accepted;
//     the parent kills the child mid-stream. Every printed id is claimed, and
//     for every id tried, the claim exists exactly when its record does.
func TestClaimsSurviveSIGKILL(t *testing.T) {
	if spec := os.Getenv(crashEnv); spec != "" {
		mode, dir, _ := strings.Cut(spec, ":")
		crashChild(mode, dir)
		return
	}
	t.Run("once", func(t *testing.T) {
		dir := t.TempDir()
		cmd := crashCmd(t, "once", dir)
		out, err := cmd.CombinedOutput()
		assertKilled(t, err, out)
		p := openTest(t, dir)
		defer p.Close()
		recs := readAll(t, p, 1)
		if len(recs) != 1 || string(recs[0].Body) != `{"id":"killed"}` {
			t.Fatalf("after SIGKILL the log holds %d records, want the one", len(recs))
		}
		if _, dup := appendOnce(t, p, 1, time.Now(), "killed", day); !dup {
			t.Fatal("the claim made before SIGKILL does not hold")
		}
		if n := p.Deduplicated(1); n != 2 {
			t.Fatalf("Deduplicated = %d, want 2 (one before the kill, one after)", n)
		}
	})
	t.Run("stream", func(t *testing.T) {
		dir := t.TempDir()
		cmd := crashCmd(t, "stream", dir)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		printed := map[int]bool{}
		sc := bufio.NewScanner(stdout)
		for sc.Scan() && len(printed) < 300 {
			i, err := strconv.Atoi(sc.Text())
			if err != nil {
				t.Fatalf("child printed %q", sc.Text())
			}
			printed[i] = true
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_, _ = io.Copy(io.Discard, stdout)
		assertKilled(t, cmd.Wait(), []byte(stderr.String()))
		if len(printed) < 300 {
			t.Fatalf("child stopped after %d deliveries", len(printed))
		}

		p := openTest(t, dir)
		defer p.Close()
		stored, last := map[int]bool{}, 0
		for _, r := range readAll(t, p, 1) {
			var b struct{ I int }
			if err := json.Unmarshal(r.Body, &b); err != nil || stored[b.I] {
				t.Fatalf("record %d: %s (again: %v)", r.Position, r.Body, stored[b.I])
			}
			stored[b.I] = true
			last = max(last, b.I)
		}
		for i := range printed {
			if !stored[i] {
				t.Fatalf("delivery %d was acknowledged but its record is gone", i)
			}
		}
		// Up to past every id the child could have tried (each writer had at
		// most one in flight): claims match records.
		for i := 0; i <= last+2*crashWriters; i++ {
			_, dup := appendOnce(t, p, 1, time.Now(), fmt.Sprint(i), day)
			if dup != stored[i] {
				t.Fatalf("delivery %d: claimed %v, record stored %v", i, dup, stored[i])
			}
		}
		t.Logf("%d acknowledged, %d stored before SIGKILL", len(printed), len(stored))
	})
}

const crashWriters = 4

func crashCmd(t *testing.T, mode, dir string) *exec.Cmd {
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestClaimsSurviveSIGKILL$")
	cmd.Env = append(os.Environ(), crashEnv+"="+mode+":"+dir)
	return cmd
}

func assertKilled(t *testing.T, err error, out []byte) {
	t.Helper()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v\n%s", err, out)
	}
}

func crashChild(mode, dir string) {
	p, err := OpenPebble(dir, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{MinFreeBytes: 1})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	switch mode {
	case "once":
		body := [][]byte{[]byte(`{"id":"killed"}`)}
		if _, dup, err := p.AppendOnce(ctx, 1, time.Now(), "killed", day, body); err != nil || dup {
			panic(fmt.Sprint(dup, err))
		}
		if _, dup, err := p.AppendOnce(ctx, 1, time.Now(), "killed", day, body); err != nil || !dup {
			panic(fmt.Sprint(dup, err))
		}
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	case "stream":
		var mu sync.Mutex
		out := bufio.NewWriter(os.Stdout)
		for w := 0; w < crashWriters; w++ {
			go func() {
				for i := w; ; i += crashWriters {
					body := [][]byte{[]byte(fmt.Sprintf(`{"i":%d}`, i))}
					if _, dup, err := p.AppendOnce(ctx, 1, time.Now(), fmt.Sprint(i), day, body); err != nil || dup {
						panic(fmt.Sprint(dup, err))
					}
					mu.Lock()
					fmt.Fprintln(out, i)
					out.Flush()
					mu.Unlock()
				}
			}()
		}
	}
	select {}
}

// TestSweepClaims: the sweep removes expired claims and their index entries,
// and keeps a claim made again after the one it replaced expired.
func TestSweepClaims(t *testing.T) {
	p := openTest(t, t.TempDir())
	defer p.Close()
	ctx := context.Background()
	t0 := time.Now()
	for i := 0; i < 1200; i++ { // more than one sweep chunk
		appendOnce(t, p, 1, t0, fmt.Sprint("short-", i), time.Hour)
	}
	for i := 0; i < 5; i++ {
		appendOnce(t, p, 2, t0, fmt.Sprint("long-", i), 2*day)
	}
	appendOnce(t, p, 3, t0, "again", time.Hour)
	appendOnce(t, p, 3, t0.Add(90*time.Minute), "again", time.Hour) // old claim expired: claimed again
	if d, e := countKeys(t, p, prefixClaim), countKeys(t, p, prefixClaimExpiry); d != 1206 || e != 1207 {
		t.Fatalf("before the sweep: %d claims, %d index entries; want 1206, 1207", d, e)
	}
	// Nothing has expired yet.
	if n, err := p.SweepClaims(ctx, t0.Add(time.Minute)); err != nil || n != 0 {
		t.Fatalf("early sweep = %d, %v; want 0", n, err)
	}
	n, err := p.SweepClaims(ctx, t0.Add(2*time.Hour))
	if err != nil || n != 1200 {
		t.Fatalf("sweep = %d, %v; want 1200", n, err)
	}
	if d, e := countKeys(t, p, prefixClaim), countKeys(t, p, prefixClaimExpiry); d != 6 || e != 6 {
		t.Fatalf("after the sweep: %d claims, %d index entries; want 6, 6", d, e)
	}
	if _, dup := appendOnce(t, p, 3, t0.Add(2*time.Hour), "again", time.Hour); !dup {
		t.Fatal("the sweep removed a claim made again")
	}
	if _, dup := appendOnce(t, p, 2, t0.Add(2*time.Hour), "long-0", 2*day); !dup {
		t.Fatal("the sweep removed a live claim")
	}
	if n, err := p.SweepClaims(ctx, t0.Add(3*day)); err != nil || n != 6 {
		t.Fatalf("last sweep = %d, %v; want 6", n, err)
	}
	if d, e := countKeys(t, p, prefixClaim), countKeys(t, p, prefixClaimExpiry); d != 0 || e != 0 {
		t.Fatalf("after the last sweep: %d claims, %d index entries; want none", d, e)
	}
	if n := len(readAll(t, p, 1)); n != 1200 {
		t.Fatalf("the sweep touched the log: %d records", n)
	}
}

// TestSweepLoop: the sweeper Pebble owns removes expired claims by itself.
func TestSweepLoop(t *testing.T) {
	p, err := OpenPebble(t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)), Options{MinFreeBytes: 1, SweepEvery: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := 0; i < 10; i++ {
		appendOnce(t, p, 1, time.Now().Add(-time.Hour), fmt.Sprint(i), time.Minute)
	}
	appendOnce(t, p, 1, time.Now(), "live", time.Hour)
	for deadline := time.Now().Add(10 * time.Second); countKeys(t, p, prefixClaim) != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d claims 10 s after they expired, want 1", countKeys(t, p, prefixClaim))
		}
	}
}

// BenchmarkAppendOnce measures durable appends with a fresh delivery id each,
// from as many writers as BenchmarkAppend, to compare with it.
func BenchmarkAppendOnce(b *testing.B) {
	p := openTest(b, b.TempDir())
	defer p.Close()
	body := make([]byte, 1024)
	for i := range body {
		body[i] = 'x'
	}
	var mu sync.Mutex
	next := 0
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		w := next
		next++
		mu.Unlock()
		for i := 0; pb.Next(); i++ {
			id := "evt_" + strconv.Itoa(w) + "_" + strconv.Itoa(i)
			if _, dup, err := p.AppendOnce(context.Background(), 1, time.Now(), id, day, [][]byte{body}); err != nil || dup {
				b.Fatal(dup, err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkAppendOnceDuplicate measures redeliveries of claimed ids.
func BenchmarkAppendOnceDuplicate(b *testing.B) {
	p := openTest(b, b.TempDir())
	defer p.Close()
	const ids = 1000
	for i := 0; i < ids; i++ {
		appendOnce(b, p, 1, time.Now(), strconv.Itoa(i), day)
	}
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			if _, dup, err := p.AppendOnce(context.Background(), 1, time.Now(), strconv.Itoa(i%ids), day, [][]byte{[]byte(`{}`)}); err != nil || !dup {
				b.Fatal(dup, err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
}
