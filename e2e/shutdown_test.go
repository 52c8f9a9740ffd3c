package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/config"
)

// TestShutdownDuringLargeBatch sends SIGTERM to the built binary while it loads
// a full large batch, on both warehouses. The process must exit within
// --shutdown-timeout (plus a generous margin: the point is that it does not
// wait out a load that takes longer), with status 0 and no panic, and after a
// restart on the same data dir and warehouse every acknowledged record is
// loaded exactly once.
func TestShutdownDuringLargeBatch(t *testing.T) {
	const (
		// A full batch of these records (a user who gains many tags: 21 rows
		// each) takes several seconds to load on either warehouse, longer than
		// the shutdown timeout, so the one in flight at SIGTERM usually cannot
		// commit in time and the hard stop cancels it. The test logs which
		// happened; the assertions hold either way.
		batchSize       = 100_000
		tags            = 20
		records         = 2 * batchSize
		shutdownTimeout = 3 * time.Second
		perRequest      = 2_000
		posters         = 4
	)
	warehouses(t, func(t *testing.T, mod func(*config.Config)) {
		cfg := config.Default()
		if mod != nil {
			mod(&cfg)
		}
		var wh []string
		if cfg.Warehouse != "" {
			wh = []string{"--warehouse", cfg.Warehouse}
		}
		dir := t.TempDir()
		addr := freePort(t)
		ctx := context.Background()

		// 1. Build the backlog with loading held back (a batch waits an hour
		// to fill), so that the batches loaded next are full however fast this
		// machine posts and loads. SIGKILL ends this server: every acknowledged
		// record is already fsync'd in the log.
		srv := startChild(t, dir, addr, append([]string{"--batch-wait", "1h", "--batch-size", "100000000"}, wh...)...)
		c := client.New(srv.URL, adminKey(t, dir))
		integ, err := c.CreateIntegration(ctx, client.NewIntegration{Name: "Shutdown Test", Type: "vero"})
		if err != nil {
			t.Fatal(err)
		}
		u, err := c.GenerateURL(ctx, integ.ID)
		if err != nil {
			t.Fatal(err)
		}
		postUserUpdates(t, srv.URL+u.URL[strings.Index(u.URL, "/v1/"):], records, tags, perRequest, posters)
		in, err := c.Integration(ctx, integ.ID)
		if err != nil {
			t.Fatal(err)
		}
		if s := in.Stats; s.RecordsReceived != records || s.RecordsLoaded != 0 {
			t.Fatalf("after posting with loading held back: %+v; want %d received, none loaded", *s, records)
		}
		srv.Kill()

		// 2. Load in full batches and send SIGTERM once the first has
		// committed: the next full batch is then being prepared or loaded.
		extra := append([]string{"--batch-size", fmt.Sprint(batchSize), "--shutdown-timeout", shutdownTimeout.String()}, wh...)
		srv = startChild(t, dir, addr, extra...)
		var at client.Stats
		waitFor(t, 2*time.Minute, "the first batch to commit", func() (bool, string) {
			in, err := c.Integration(ctx, integ.ID)
			if err != nil {
				return false, err.Error()
			}
			at = *in.Stats
			return at.RecordsLoaded > 0, fmt.Sprintf("%+v", at)
		})
		if at.Backlog < batchSize {
			t.Fatalf("only %d records wait after the first commit (%+v), less than a batch", at.Backlog, at)
		}
		stopped := time.Now()
		if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		limit := shutdownTimeout + 10*time.Second
		select {
		case <-srv.done:
		case <-time.After(limit):
			srv.Kill()
			t.Fatalf("hookhouse did not exit within %s of SIGTERM (--shutdown-timeout %s); stderr:\n%s",
				limit, shutdownTimeout, tail(srv.Stderr.String(), 6000))
		}
		took := time.Since(stopped)
		stderr := srv.Stderr.String()
		if strings.Contains(stderr, "panic") || strings.Contains(stderr, "fatal error") {
			t.Fatalf("hookhouse panicked on SIGTERM; stderr:\n%s", tail(stderr, 6000))
		}
		if !srv.cmd.ProcessState.Success() {
			t.Fatalf("hookhouse exited with %v %s after SIGTERM; stderr:\n%s", srv.cmd.ProcessState, took.Round(time.Millisecond), tail(stderr, 6000))
		}
		how := "the batch in flight committed in time"
		if strings.Contains(stderr, "cancelling it") {
			how = "the batch in flight was cancelled"
		}
		t.Logf("SIGTERM with %d loaded and %d waiting; %s; exited 0 after %s",
			at.RecordsLoaded, at.Backlog, how, took.Round(time.Millisecond))

		// 3. Restart on the same data dir and warehouse: loading resumes where
		// the last commit left it, and nothing is loaded twice.
		srv = startChild(t, dir, addr, extra...)
		loadedWithin(t, c, integ.ID, records, 5*time.Minute)
		r, err := c.Query(ctx, "select count(*), count(distinct marker), count(distinct __sdc_primary_key) from shutdown_test.data")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fmt.Sprintf("%v %v %v", r.Rows[0]...), fmt.Sprintf("%d %d %d", records, records, records); got != want {
			t.Fatalf("after the restart shutdown_test.data holds %s (rows, markers, primary keys), want %s", got, want)
		}
		in, err = c.Integration(ctx, integ.ID)
		if err != nil {
			t.Fatal(err)
		}
		if s := in.Stats; s.RecordsLoaded != records || s.RecordsRejected != 0 {
			t.Fatalf("stats after the restart: %+v; want %d loaded, none rejected", *s, records)
		}
		srv.Term(t)
	})
}

// postUserUpdates posts n Vero "user updated" events, perRequest to a request
// from several clients, each with a unique "marker" and tags added; every
// request must get 200.
func postUserUpdates(t *testing.T, hook string, n, tags, perRequest, clients int) {
	t.Helper()
	var sample map[string]any
	if err := json.Unmarshal(mustRead(t, filepath.Join(veroDir, "14-user-updated.json")), &sample); err != nil {
		t.Fatal(err)
	}
	added := make([]string, tags)
	for i := range added {
		added[i] = fmt.Sprintf("tag-%03d", i)
	}
	sample["changes"].(map[string]any)["_tags"].(map[string]any)["add"] = added
	body := func(req int) ([]byte, error) {
		batch := make([]map[string]any, perRequest)
		for i := range batch {
			rec := maps.Clone(sample)
			rec["marker"] = fmt.Sprintf("m%07d", req*perRequest+i)
			batch[i] = rec
		}
		return json.Marshal(batch)
	}
	hc := &http.Client{Timeout: time.Minute}
	reqs := make(chan int)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for req := range reqs {
				b, err := body(req)
				if err != nil {
					t.Errorf("request %d: %v", req, err)
					continue
				}
				resp, err := hc.Post(hook, "application/json", bytes.NewReader(b))
				if err != nil {
					t.Errorf("POST %d: %v", req, err)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("POST %d = %d, want 200", req, resp.StatusCode)
				}
			}
		}()
	}
	for req := 0; req < n/perRequest; req++ {
		reqs <- req
	}
	close(reqs)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}
