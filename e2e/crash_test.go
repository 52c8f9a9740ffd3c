package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/config"
	"github.com/hookhouse/hookhouse/internal/faults"
)

// crashModes are the kinds of kill the rounds take turns at: from outside at a
// random moment, or by the server itself at a fault point (internal/faults):
// mid-fsync, right after the fsync before answering, after schema evolution
// inside the load transaction, mid-batch before COMMIT, and after COMMIT before
// the loader takes note.
var crashModes = []string{
	"external SIGKILL",
	faults.LogBeforeSync,
	faults.WarehouseAfterEvolve,
	faults.LogAfterSync,
	faults.WarehouseBeforeCommit,
	faults.LoaderAfterCommit,
}

// faultEnv arms one fault point: log points fire on about one group commit in
// 200, warehouse points on one batch in four.
func faultEnv(mode string) []string {
	switch mode {
	case faults.LogBeforeSync, faults.LogAfterSync:
		return []string{"HOOKHOUSE_FAULTS=" + mode + "=0.005"}
	case faults.WarehouseAfterEvolve:
		return []string{"HOOKHOUSE_FAULTS=" + mode + "=0.5"}
	case faults.WarehouseBeforeCommit, faults.LoaderAfterCommit:
		return []string{"HOOKHOUSE_FAULTS=" + mode + "=0.25"}
	}
	return nil
}

// crashKills is how many kills TestCrashExactlyOnce deals per warehouse (one of
// each kind by default);
// HOOKHOUSE_CRASH_KILLS raises it for soak runs.
func crashKills() int {
	if n, err := strconv.Atoi(os.Getenv("HOOKHOUSE_CRASH_KILLS")); err == nil && n > 0 {
		return n
	}
	return len(crashModes)
}

// TestCrashExactlyOnce kills the server with SIGKILL at random moments while
// clients POST (new fields keep arriving, so some kills land in schema
// evolution; some records are rejected), restarts it, and at the end checks that
// data + _sdc_rejected hold every acknowledged record exactly once. Records whose
// request was in flight at a kill may or may not be there (their client never
// got an answer), but never twice.
func TestCrashExactlyOnce(t *testing.T) {
	warehouses(t, func(t *testing.T, mod func(*config.Config)) {
		cfg := config.Default()
		if mod != nil {
			mod(&cfg)
		}
		// Small batches: more commits to kill around, and catch-up after each
		// restart runs the pipelined path (flatten the next batch while one commits).
		extra := []string{"--batch-size", "300"}
		if cfg.Warehouse != "" {
			extra = append(extra, "--warehouse", cfg.Warehouse)
		}
		dir := t.TempDir()
		addr := freePort(t)
		srv := startChild(t, dir, addr, extra...)
		ctx := context.Background()
		c := client.New(srv.URL, adminKey(t, dir))
		integ, err := c.CreateIntegration(ctx, client.NewIntegration{Name: "Crash Test", Type: "vero"})
		if err != nil {
			t.Fatal(err)
		}
		u, err := c.GenerateURL(ctx, integ.ID)
		if err != nil {
			t.Fatal(err)
		}
		hook := srv.URL + u.URL[strings.Index(u.URL, "/v1/"):]

		var mu sync.Mutex
		acked := map[string]bool{}
		unsure := map[string]bool{} // sent, answer lost in a kill
		seq := 0
		next := func() (string, []byte) {
			mu.Lock()
			defer mu.Unlock()
			seq++
			m := fmt.Sprintf("m%07d", seq)
			rec := map[string]any{"marker": m, "n": seq, "user": map[string]any{"id": seq % 50}}
			rec[fmt.Sprintf("field_%d", (seq/40)%150)] = seq // a new column every 40 records, up to 150
			if seq%4 == 0 {
				rec["tags"] = []any{"a", seq} // subtable, mixed types
			}
			if seq%37 == 0 {
				rec["userId"], rec["userid"] = 1, 2 // collision: rejected
			}
			b, _ := json.Marshal(rec)
			return m, b
		}
		hc := &http.Client{Timeout: 10 * time.Second}
		how := map[string]int{}
		mode := "external SIGKILL"
		for round := 0; round < crashKills(); round++ {
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for w := 0; w < 8; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						n := 1 + rand.IntN(3)
						var markers []string
						var bodies []json.RawMessage
						for i := 0; i < n; i++ {
							m, b := next()
							markers = append(markers, m)
							bodies = append(bodies, b)
						}
						body, _ := json.Marshal(bodies)
						resp, err := hc.Post(hook, "application/json", strings.NewReader(string(body)))
						mu.Lock()
						if err == nil && resp.StatusCode == 200 {
							for _, m := range markers {
								acked[m] = true
							}
						} else {
							for _, m := range markers {
								unsure[m] = true
							}
						}
						mu.Unlock()
						if err == nil {
							resp.Body.Close()
						} else {
							return // the server is gone
						}
					}
				}()
			}
			// Let the server die by itself at its fault point, or kill it at a
			// random moment from outside.
			select {
			case <-srv.done:
				how[mode]++
			case <-time.After(time.Duration(300+rand.IntN(2000)) * time.Millisecond):
				srv.Kill()
				how["external SIGKILL"]++
			}
			close(stop)
			wg.Wait()
			mode = crashModes[(round+1)%len(crashModes)]
			for {
				srv = launchChild(t, faultEnv(mode), dir, addr, extra...)
				if srv.waitReady(t) {
					break
				}
				how[mode]++ // died at its fault point while catching up
			}
		}
		srv.Kill()
		srv = startChild(t, dir, addr, extra...)
		t.Logf("kills by kind: %v", how)
		mu.Lock()
		nAcked := len(acked)
		mu.Unlock()
		t.Logf("%d rounds, %d records acknowledged, %d unsure", crashKills(), nAcked, len(unsure))
		waitFor(t, 120*time.Second, "backlog drained", func() (bool, string) {
			in, err := c.Integration(ctx, integ.ID)
			if err != nil {
				return false, err.Error()
			}
			return in.Stats.Backlog == 0 && in.Stats.RecordsReceived >= int64(nAcked), fmt.Sprintf("%+v", *in.Stats)
		})
		seen := map[string]int{}
		page := func(sql string, each func(row []any)) {
			for off := 0; ; off += 5000 {
				r, err := c.Query(ctx, fmt.Sprintf("%s limit 5000 offset %d", sql, off))
				if err != nil {
					t.Fatal(err)
				}
				for _, row := range r.Rows {
					each(row)
				}
				if len(r.Rows) < 5000 {
					return
				}
			}
		}
		page("select marker from crash_test.data order by marker", func(row []any) { seen[fmt.Sprint(row[0])]++ })
		rejected := 0
		page("select record, reason from crash_test._sdc_rejected order by record", func(row []any) {
			var rec struct{ Marker string }
			if err := json.Unmarshal([]byte(fmt.Sprint(row[0])), &rec); err != nil || rec.Marker == "" {
				t.Fatalf("rejected record without marker: %v", row[0])
			}
			if !strings.Contains(fmt.Sprint(row[1]), "userid") {
				t.Fatalf("unexpected rejection reason %v", row[1])
			}
			seen[rec.Marker]++
			rejected++
		})
		dupPK, _ := c.Query(ctx, "select count(*) - count(distinct __sdc_primary_key) from crash_test.data")
		if fmt.Sprint(dupPK.Rows[0][0]) != "0" {
			t.Fatalf("__sdc_primary_key repeats: %v", dupPK.Rows[0][0])
		}
		for m, n := range seen {
			if n > 1 {
				t.Fatalf("record %s loaded %d times", m, n)
			}
			if !acked[m] && !unsure[m] {
				t.Fatalf("record %s is in the warehouse but was never sent", m)
			}
		}
		for m := range acked {
			if seen[m] != 1 {
				t.Fatalf("acknowledged record %s is missing from the warehouse", m)
			}
		}
		if rejected == 0 {
			t.Fatal("no record went to _sdc_rejected: the test did not exercise it")
		}
		in, _ := c.Integration(ctx, integ.ID)
		if in.Stats.RecordsLoaded+in.Stats.RecordsRejected != int64(len(seen)) {
			t.Fatalf("stats say %d loaded + %d rejected, the warehouse holds %d", in.Stats.RecordsLoaded, in.Stats.RecordsRejected, len(seen))
		}
		t.Logf("checked: %d acknowledged records present once each, %d rows in data+_sdc_rejected (%d rejected), %d in-flight at kills present",
			nAcked, len(seen), rejected, len(seen)-nAcked)
		srv.Term(t)
	})
}
