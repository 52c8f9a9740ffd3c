package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/backup"
)

// runRestore runs 'hookhouse restore' (a local command: no --server).
func runRestore(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binPath, append([]string{"restore"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// count runs a count(*) query through the admin API.
func count(t testing.TB, c *client.Client, sql string) int64 {
	t.Helper()
	res, err := c.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	n, err := res.Rows[0][0].(json.Number).Int64()
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// rebase points a webhook URL at another server.
func rebase(u, base string) string {
	return base + u[strings.Index(u, "/v1/clients/"):]
}

// loadRunner posts records to every hook from 4 goroutines until stopped,
// counting the 200s per hook.
type loadRunner struct {
	once sync.Once
	stop chan struct{}
	wg   sync.WaitGroup
	ok   []atomic.Int64
}

func startLoad(t *testing.T, hooks []string, sign func(i int, n int64, body []byte) (string, map[string]string)) *loadRunner {
	l := &loadRunner{stop: make(chan struct{}), ok: make([]atomic.Int64, len(hooks))}
	var seq atomic.Int64
	for w := range 4 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				for i, hook := range hooks {
					n := seq.Add(1)
					body := []byte(fmt.Sprintf(`{"type":"sent","marker":"w%d-%d","n":%d}`, w, n, n))
					var hdr []string
					if sign != nil {
						if signed, headers := sign(i, n, body); signed != "" {
							for k, v := range headers {
								hdr = append(hdr, k, v)
							}
						}
					}
					req, _ := http.NewRequest(http.MethodPost, hook, bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					for k := 0; k+1 < len(hdr); k += 2 {
						req.Header.Set(hdr[k], hdr[k+1])
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Errorf("POST under load to integration %d: %v", i, err)
						return
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						t.Errorf("POST under load = %d %s", resp.StatusCode, b)
						return
					}
					l.ok[i].Add(1)
				}
			}
		}()
	}
	return l
}

// Stop stops the posting and waits for it (idempotent).
func (l *loadRunner) Stop() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// TestBackupRestoreUnderLoad: 'hookhouse backup' of a running server (a real
// process) taken while webhooks pour into three integrations (one paused, so
// its records wait unloaded, one verifying signatures), then 'hookhouse
// restore' into a fresh dir and 'hookhouse serve' on it: the admin key and
// every webhook URL work, the revoked one stays revoked, signing secrets
// verify, a redelivery seen before the backup is still a duplicate, and each
// integration holds exactly the records of the backup's log, each once,
// including those the warehouse copy had not loaded. Records accepted after
// the backup are not there. A non-empty DIR and a damaged backup are refused.
func TestBackupRestoreUnderLoad(t *testing.T) {
	ctx := context.Background()
	dir1 := t.TempDir()
	old := startChild(t, dir1, freePort(t))
	key := adminKey(t, dir1)
	cl := client.New(old.URL, key)

	vero, err := cl.CreateIntegration(ctx, client.NewIntegration{Name: "Stitch Vero", Type: "vero"})
	if err != nil {
		t.Fatal(err)
	}
	shop, err := cl.CreateIntegration(ctx, client.NewIntegration{Name: "Shop", Type: "webhooks"})
	if err != nil {
		t.Fatal(err)
	}
	svix, err := cl.CreateIntegration(ctx, client.NewIntegration{Name: "Svix", Type: "webhooks", Verify: &client.Verify{Scheme: "standard-webhooks"}})
	if err != nil {
		t.Fatal(err)
	}
	secret := svix.Secret
	ids := []int64{vero.ID, shop.ID, svix.ID}
	var hooks []string // one URL per integration, in ids order, then a second for shop
	for _, id := range append(ids, shop.ID) {
		u, err := cl.GenerateURL(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		hooks = append(hooks, rebase(u.URL, old.URL))
	}
	revoked, err := cl.GenerateURL(ctx, vero.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.RevokeURL(ctx, vero.ID, revoked.ID); err != nil {
		t.Fatal(err)
	}
	// A signed delivery before the backup: its id is claimed in the state.
	pre := []byte(`{"type":"pre","n":0}`)
	if status, b := send(t, hooks[2], standardSign(t, secret, "msg_pre", time.Now(), pre), pre, false); status != 200 {
		t.Fatalf("signed delivery: %d %s", status, b)
	}
	// Shop's loading is paused: its records are accepted and wait in the log.
	if _, err := cl.SetPaused(ctx, shop.ID, true); err != nil {
		t.Fatal(err)
	}

	sign := func(i int, n int64, body []byte) (string, map[string]string) {
		if i != 2 {
			return "", nil
		}
		h := standardSign(t, secret, fmt.Sprintf("msg_%d", n), time.Now(), body)
		out := map[string]string{}
		for k := range h {
			out[k] = h.Get(k)
		}
		return "signed", out
	}
	load := startLoad(t, hooks, sign)
	defer load.Stop() // before the server's cleanup kills it, when the test fails early
	waitFor(t, 60*time.Second, "records loaded under load", func() (bool, string) {
		in, err := cl.Integration(ctx, vero.ID)
		return err == nil && in.Stats.RecordsLoaded > 100 && load.ok[1].Load() > 100, fmt.Sprint(err)
	})

	// An ACME certificate cache (TLS, SPEC §12) goes along.
	if err := os.MkdirAll(filepath.Join(dir1, "certs"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir1, "certs", "hooks.example.com"), []byte("cert and key"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The backup, taken while the load runs; output on a pipe.
	bdir := filepath.Join(t.TempDir(), "backup")
	out, errs, code := runCLI(t, old.URL, nil, "backup", bdir, "--data", dir1)
	if code != 0 {
		t.Fatalf("backup: %d\n%s\n%s\nserver:\n%s", code, out, errs, old.Stderr.String())
	}
	t.Logf("backup:\n%s%s", out, errs)
	if !strings.Contains(errs, "backup to "+bdir+": started") || !strings.Contains(errs, "received ") || strings.Contains(errs, "\r") {
		t.Errorf("progress on a pipe should be plain lines:\n%s", errs)
	}
	// More records after the backup: not in the restore.
	time.Sleep(300 * time.Millisecond)
	load.Stop()
	if t.Failed() {
		t.Fatalf("server log:\n%s", tail(old.Stderr.String(), 4000))
	}
	m, err := backup.ReadManifest(bdir)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[int64]backup.Integration{}
	for _, in := range m.Integrations {
		byID[in.ID] = in
		t.Logf("manifest: integration %d received %d loaded %v", in.ID, in.Received, *in.Loaded)
	}
	if m.Warehouse != backup.WarehouseDuckDB || !m.SecretKeyIncluded || len(byID) != 3 {
		t.Fatalf("manifest: %+v", m)
	}
	if s := byID[shop.ID]; *s.Loaded != 0 || s.Received < 100 {
		t.Errorf("the paused integration should have its records waiting in the backup's log: %+v", s)
	}
	accepted := map[int64]int64{vero.ID: load.ok[0].Load(), shop.ID: load.ok[1].Load() + load.ok[3].Load(), svix.ID: load.ok[2].Load() + 1}
	for _, id := range ids {
		if got := uint64(accepted[id]); byID[id].Received > got {
			t.Errorf("integration %d: the backup's log has %d records, only %d were accepted", id, byID[id].Received, got)
		}
	}
	old.Term(t)

	// Refusals: a non-empty DIR, a damaged backup.
	if _, errs, code := runCLI(t, old.URL, nil, "backup", bdir, "--data", dir1); code != 1 || !strings.Contains(errs, "is not empty") {
		t.Errorf("backup into a non-empty dir: %d %s", code, errs)
	}
	damaged := filepath.Join(t.TempDir(), "damaged")
	copyTree(t, bdir, damaged)
	flipByte(t, filepath.Join(damaged, "warehouse.duckdb"))
	refusedData := filepath.Join(t.TempDir(), "refused")
	if _, errs, code := runRestore(t, damaged, "--data", refusedData); code != 1 || !strings.Contains(errs, "warehouse.duckdb does not have the SHA-256") {
		t.Errorf("restore of a damaged backup: %d %s", code, errs)
	}
	if _, err := os.Stat(refusedData); err == nil {
		t.Error("a refused restore left a data dir")
	}

	// A restore that was killed midway leaves its marker: serve refuses the dir.
	unfinished := t.TempDir()
	if err := os.WriteFile(filepath.Join(unfinished, backup.IncompleteMarker), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if c := launchChild(t, nil, unfinished, freePort(t)); c.waitReady(t) || !strings.Contains(c.Stderr.String(), "unfinished restore") {
		t.Errorf("serve on an unfinished restore: %s", c.Stderr.String())
	}

	// Restore into a fresh dir and serve it.
	dir2 := filepath.Join(t.TempDir(), "restored")
	out, errs, code = runRestore(t, bdir, "--data", dir2)
	if code != 0 || !strings.Contains(out, "hookhouse serve --data "+dir2) {
		t.Fatalf("restore: %d\n%s\n%s", code, out, errs)
	}
	if _, _, code := runRestore(t, bdir, "--data", dir2); code != 1 {
		t.Error("restore into a non-empty data dir was allowed")
	}
	for _, p := range []string{"secret.key", "admin.key", "warehouse.duckdb", "certs/hooks.example.com"} {
		if info, err := os.Stat(filepath.Join(dir2, p)); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", p, info, err)
		}
	}
	restored := startChild(t, dir2, freePort(t))
	if got := adminKey(t, dir2); got != key {
		t.Error("the restored admin.key differs")
	}
	rcl := client.New(restored.URL, key)
	list, err := rcl.Integrations(ctx)
	if err != nil || len(list) != 3 {
		t.Fatalf("the admin key on the restored server: %v %v", list, err)
	}
	if _, err := rcl.SetPaused(ctx, shop.ID, false); err != nil { // the pause was restored too
		t.Fatal(err)
	}
	schemas := map[int64]string{vero.ID: vero.Schema, shop.ID: shop.Schema, svix.ID: svix.Schema}
	for _, id := range ids {
		want := int64(byID[id].Received)
		waitLoaded(t, rcl, id, want)
		in, _ := rcl.Integration(ctx, id)
		if in.Stats.RecordsReceived != want {
			t.Errorf("integration %d: restored log has %d records, the backup %d", id, in.Stats.RecordsReceived, want)
		}
		rows := count(t, rcl, "SELECT count(*) FROM "+schemas[id]+".data")
		distinct := count(t, rcl, "SELECT count(DISTINCT __sdc_primary_key) FROM "+schemas[id]+".data")
		if rows != want || distinct != want {
			t.Errorf("integration %d: %d rows (%d distinct) after restore, want the backup's %d", id, rows, distinct, want)
		}
		if rows >= accepted[id] {
			t.Errorf("integration %d: %d rows, %d accepted: records accepted after the backup should not be there", id, rows, accepted[id])
		}
	}
	// Every URL works on the restored server; the revoked one stays revoked.
	for i, h := range hooks {
		h = rebase(h, restored.URL)
		body := []byte(fmt.Sprintf(`{"type":"after","n":%d}`, i))
		var status int
		var b string
		if i == 2 {
			status, b = send(t, h, standardSign(t, secret, fmt.Sprintf("after_%d", i), time.Now(), body), body, false)
		} else {
			status, b = post(t, h, "application/json", body)
		}
		if status != 200 {
			t.Errorf("URL %d after restore: %d %s", i, status, b)
		}
	}
	if status, _ := post(t, rebase(revoked.URL, restored.URL), "application/json", []byte(`{}`)); status != 401 {
		t.Errorf("revoked URL after restore: %d", status)
	}
	if status, b := send(t, rebase(hooks[2], restored.URL), standardSign(t, secret, "msg_pre", time.Now(), pre), pre, false); status != 200 || !strings.Contains(b, `"duplicates":1`) {
		t.Errorf("a redelivery of a message seen before the backup: %d %s", status, b)
	}
	waitLoaded(t, rcl, shop.ID, int64(byID[shop.ID].Received)+2)
	restored.Term(t)
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestBackupOneAtATime: while a backup is staged or streamed another is
// refused with 409, without the admin key with 401; after it, one runs again
// and nothing is left staged.
func TestBackupOneAtATime(t *testing.T) {
	ctx := context.Background()
	in := startServer(t, nil)
	snap, err := in.Srv.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := in.Client.Backup(ctx); err == nil || !strings.Contains(err.Error(), "409 conflict: another backup is running") {
		t.Errorf("a second backup: %v", err)
	}
	if _, _, err := client.New(in.URL, "").Backup(ctx); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("a backup without the key: %v", err)
	}
	snap.Release()
	if _, err := os.Stat(snap.Dir); err == nil {
		t.Errorf("%s is left after Release", snap.Dir)
	}
	body, size, err := in.Client.Backup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	m, err := backup.Receive(ctx, body, filepath.Join(t.TempDir(), "b"), nil)
	if err != nil {
		t.Fatalf("backup after the first: %v", err)
	}
	if m.Bytes() != size {
		t.Errorf("the manifest has %d bytes, the server announced %d", m.Bytes(), size)
	}
}
