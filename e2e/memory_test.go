package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/config"
	"github.com/hookhouse/hookhouse/internal/pgtest"
)

// pgDatabase is a new database on the shared test PostgreSQL.
func pgDatabase(t *testing.T) string {
	t.Helper()
	dsn, err := pgtest.Shared(t).NewDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

// memoryBound is the most RSS a server with --memory-limit limit may reach:
// the limit plus 10% (issue 14).
func memoryBound(limit int64) int64 { return limit + limit/10 }

// checkPeak fails the test when the server's peak RSS passed the bound of its
// memory limit, and logs limit, peak and their ratio (docs/performance.md).
func checkPeak(t *testing.T, h *hostile, what string, limit int64) {
	t.Helper()
	hwm := h.mem(t, what)
	t.Logf("MEMORY %s: limit %s, peak RSS %s, ratio %.2f (bound %.2f)", what, mib(limit), mib(hwm), float64(hwm)/float64(limit), 1.1)
	if hwm > memoryBound(limit) {
		t.Errorf("%s: peak RSS %s is over the bound of %s (--memory-limit %s + 10%%)", what, mib(hwm), mib(memoryBound(limit)), mib(limit))
	}
}

// at512 runs fn on each warehouse with --memory-limit 512MiB: the flags to
// start the server with, and the hostile client's text cap (0 with PostgreSQL).
func at512(t *testing.T, fn func(t *testing.T, flags []string, maxText int64)) {
	cfg := config.Default()
	cfg.MemoryLimit = 512 << 20
	flags := []string{"--memory-limit", "512MiB"}
	t.Run("duckdb", func(t *testing.T) { fn(t, flags, cfg.Budget().DuckDBMaxText) })
	t.Run("postgres", func(t *testing.T) { fn(t, append(flags, "--warehouse", pgDatabase(t)), 0) })
}

// TestMemoryLimit512: with --memory-limit 512MiB, 32 concurrent 19 MiB bodies
// and a 1-million-key object are accepted (200, or 503 + Retry-After and then
// 200) and loaded exactly once, the well-behaved client gets its 200s
// meanwhile, and the peak RSS stays within the limit + 10%. On the embedded
// DuckDB the 1 MiB strings and the 16 MB _sdc_extra are over its text cap (32
// KiB at 512 MiB): those records are rejected, each once, with the reason.
func TestMemoryLimit512(t *testing.T) {
	at512(t, func(t *testing.T, flags []string, maxText int64) {
		const limit = 512 << 20
		dir := t.TempDir()
		addr := freePort(t)
		srv := startChild(t, dir, addr, append(flags, "--read-header-timeout", "2s", "--read-timeout", "5s")...)
		h := &hostile{srv: srv, addr: addr, c: client.New(srv.URL, adminKey(t, dir)), maxText: maxText}
		h.goodID, h.goodHook = h.hook(t, "Good")
		h.good(t, "start")
		if !strings.Contains(srv.Stderr.String(), "limit=512MiB") {
			t.Fatalf("the server did not log its memory budget:\n%s", tail(srv.Stderr.String(), 2000))
		}
		t.Run("32 concurrent 19 MiB bodies", func(t *testing.T) {
			h.bigBodies(t, 32)
			h.good(t, "big bodies")
		})
		t.Run("1-million-key object", func(t *testing.T) {
			h.millionKeys(t)
			h.good(t, "million keys")
		})
		goodLoaded(t, h)
		checkPeak(t, h, "--memory-limit 512MiB, 32 bodies of 19 MiB and 1-million keys", limit)
		srv.Term(t)
	})
}

// goodLoaded waits until every record the well-behaved client sent is loaded
// exactly once.
func goodLoaded(t *testing.T, h *hostile) {
	t.Helper()
	n := h.goodSent.Load()
	waitFor(t, 5*time.Minute, "the good client's records loaded", func() (bool, string) {
		r, err := h.c.Query(context.Background(), "select count(*), count(distinct seq) from good.data")
		if err != nil {
			return false, err.Error()
		}
		got := fmt.Sprintf("%v %v", r.Rows[0]...)
		return got == fmt.Sprintf("%d %d", n, n), got
	})
}

// TestMemoryBacklogRestart is the crash-loop case: 32 bodies of 19 MiB (608
// records of 1 MiB) are accepted while loading is paused, the server is killed
// before loading any, and the restarted server, resumed, loads the whole backlog
// within --memory-limit + 10%, in one process (no crash on the way) and exactly
// once: into data on PostgreSQL, into _sdc_rejected on the embedded DuckDB
// (over its text cap, see TestMemoryLimit512).
func TestMemoryBacklogRestart(t *testing.T) {
	at512(t, func(t *testing.T, flags []string, maxText int64) {
		const limit = 512 << 20
		dir := t.TempDir()
		addr := freePort(t)
		srv := startChild(t, dir, addr, flags...)
		key := adminKey(t, dir)
		h := &hostile{srv: srv, addr: addr, c: client.New(srv.URL, key), maxText: maxText}
		id, path := h.hook(t, "Backlog")
		env := []string{"HOOKHOUSE_ADMIN_KEY=" + key}
		if out, errOut, code := runCLI(t, srv.URL, env, "integrations", "pause", fmt.Sprint(id)); code != 0 {
			t.Fatalf("pause: exit %d\n%s%s", code, out, errOut)
		}
		const bodies = 32
		for b := 0; b < bodies; b++ {
			body, size := bigBody(b)
			a, err := rawPost(addr, path, map[string]string{"Content-Type": "application/json"}, body, size)
			if err != nil || a.status != 200 {
				t.Fatalf("body %d: %d %s %v", b, a.status, a.body, err)
			}
		}
		in, err := h.c.Integration(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		want := int64(bodies * bigRecords)
		if in.Stats.Backlog != want || in.Stats.RecordsLoaded != 0 {
			t.Fatalf("before the kill: stats %+v, want a backlog of %d and nothing loaded", *in.Stats, want)
		}
		srv.Kill()

		srv = startChild(t, dir, addr, flags...)
		h = &hostile{srv: srv, addr: addr, c: client.New(srv.URL, key), maxText: maxText}
		if out, errOut, code := runCLI(t, srv.URL, env, "integrations", "resume", fmt.Sprint(id)); code != 0 {
			t.Fatalf("resume: exit %d\n%s%s", code, out, errOut)
		}
		loadedWithin(t, h.c, id, want, 10*time.Minute)
		h.checkBig(t, id, "backlog", bodies)
		checkPeak(t, h, "restart with a backlog of 608 MB at --memory-limit 512MiB", limit)
		srv.Term(t)
	})
}
