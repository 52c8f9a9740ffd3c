package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/backup"
	"github.com/hookhouse/hookhouse/internal/pgtest"
)

// TestBackupRestorePostgres moves a server with a PostgreSQL warehouse to a
// new data dir restored from a backup, on the same database, which went on
// loading after the backup (as a pg_dump taken after the backup would have):
//   - integration A was paused at backup time (its 40 records unloaded); the
//     old server loaded them after the backup. The restored server resumes
//     from PostgreSQL's position: nothing is loaded twice.
//   - integration B took 15 more records after the backup, loaded into
//     PostgreSQL: its position there is past the restored log's end. The
//     restored server refuses to load B and says why ("log is older than the
//     warehouse") and pauses B at start, so that new records pushing the log
//     past that position are not skipped; nothing doubles. The documented fix
//     (set the position to the backup's log end, resume) loads them, once.
func TestBackupRestorePostgres(t *testing.T) {
	ctx := context.Background()
	dsn, err := pgtest.Shared(t).NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir1 := t.TempDir()
	old := startChild(t, dir1, freePort(t), "--warehouse", dsn)
	key := adminKey(t, dir1)
	cl := client.New(old.URL, key)
	var ids []int64
	var hooks []string
	for _, name := range []string{"Orders A", "Orders B"} {
		in, err := cl.CreateIntegration(ctx, client.NewIntegration{Name: name, Type: "webhooks"})
		if err != nil {
			t.Fatal(err)
		}
		u, err := cl.GenerateURL(ctx, in.ID)
		if err != nil {
			t.Fatal(err)
		}
		ids, hooks = append(ids, in.ID), append(hooks, rebase(u.URL, old.URL))
	}
	a, b := ids[0], ids[1]
	postN := func(hook string, from, n int) {
		t.Helper()
		for i := from; i < from+n; i++ {
			if status, body := post(t, hook, "application/json", []byte(fmt.Sprintf(`{"n":%d}`, i))); status != 200 {
				t.Fatalf("POST: %d %s", status, body)
			}
		}
	}
	if _, err := cl.SetPaused(ctx, a, true); err != nil {
		t.Fatal(err)
	}
	postN(hooks[0], 0, 40)
	postN(hooks[1], 0, 50)
	waitLoaded(t, cl, b, 50)

	bdir := filepath.Join(t.TempDir(), "backup")
	out, errs, code := runCLI(t, old.URL, nil, "backup", bdir, "--data", dir1)
	if code != 0 || !strings.Contains(out, "pg_dump") {
		t.Fatalf("backup: %d\n%s\n%s", code, out, errs)
	}
	m, err := backup.ReadManifest(bdir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Warehouse != backup.WarehousePostgres || len(m.Integrations) != 2 ||
		m.Integrations[0].Received != 40 || *m.Integrations[0].Loaded != 0 ||
		m.Integrations[1].Received != 50 || *m.Integrations[1].Loaded != 50 {
		t.Fatalf("manifest: %+v", m)
	}
	for _, f := range m.Files {
		if strings.HasSuffix(f.Path, ".duckdb") {
			t.Errorf("a PostgreSQL backup holds %s", f.Path)
		}
	}

	// After the backup the old server loads A's backlog and takes 15 more for B.
	if _, err := cl.SetPaused(ctx, a, false); err != nil {
		t.Fatal(err)
	}
	postN(hooks[1], 50, 15)
	waitLoaded(t, cl, a, 40)
	waitLoaded(t, cl, b, 65)
	old.Term(t)

	dir2 := filepath.Join(t.TempDir(), "restored")
	if out, errs, code := runRestore(t, bdir, "--data", dir2); code != 0 || !strings.Contains(out, "pg_dump") {
		t.Fatalf("restore: %d\n%s\n%s", code, out, errs)
	}
	restored := startChild(t, dir2, freePort(t), "--warehouse", dsn)
	rcl := client.New(restored.URL, key)
	if _, err := rcl.SetPaused(ctx, a, false); err != nil { // paused in the backup
		t.Fatal(err)
	}
	waitLoaded(t, rcl, a, 40)
	var loadErr string
	waitFor(t, 60*time.Second, "B's load refused", func() (bool, string) {
		in, err := rcl.Integration(ctx, b)
		if err != nil {
			return false, err.Error()
		}
		loadErr = in.Stats.LoadError
		return strings.Contains(loadErr, "log is older than the warehouse"), fmt.Sprintf("%+v", *in.Stats)
	})
	t.Logf("what the operator sees for B: %s", loadErr)
	rows := func(schema string) int64 { return count(t, rcl, "SELECT count(*) FROM "+schema+".data") }
	distinct := func(schema string) int64 {
		return count(t, rcl, "SELECT count(DISTINCT n) FROM "+schema+".data")
	}
	if r, d := rows("orders_a"), distinct("orders_a"); r != 40 || d != 40 {
		t.Errorf("A: %d rows (%d distinct), want 40 each: nothing loaded twice", r, d)
	}
	if r, d := rows("orders_b"), distinct("orders_b"); r != 65 || d != 65 {
		t.Errorf("B: %d rows (%d distinct), want 65", r, d)
	}

	// B was paused at start, so the refusal cannot lapse: 20 new records push
	// the log past PostgreSQL's position, and none loads over the gap.
	if in, err := rcl.Integration(ctx, b); err != nil || !in.Stats.Paused {
		t.Fatalf("B should be paused at start: %+v %v", in, err)
	}
	if !strings.Contains(restored.Stderr.String(), "loading of this integration is paused so that no new record is skipped") {
		t.Error("the start does not log why B is paused")
	}
	postN(rebase(hooks[1], restored.URL), 2000, 20)
	postN(rebase(hooks[0], restored.URL), 2000, 1)
	waitLoaded(t, rcl, a, 41)
	if in, _ := rcl.Integration(ctx, b); !in.Stats.Paused || in.Stats.RecordsReceived != 70 || rows("orders_b") != 65 {
		t.Fatalf("B after 20 new records while its warehouse is ahead: %+v, %d rows", *in.Stats, rows("orders_b"))
	}

	// The documented fix: set B's position to the backup's log end, resume.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `UPDATE _hookhouse.load_state SET position = $1 WHERE integration_id = $2`, int64(m.Integrations[1].Received), b); err != nil {
		t.Fatal(err)
	}
	if _, err := rcl.SetPaused(ctx, b, false); err != nil {
		t.Fatal(err)
	}
	postN(rebase(hooks[1], restored.URL), 1000, 3)
	// (records_loaded counted the position B had at start, so rows tell.)
	waitFor(t, 60*time.Second, "B's new records loaded", func() (bool, string) {
		in, err := rcl.Integration(ctx, b)
		if err != nil {
			return false, err.Error()
		}
		return in.Stats.Backlog == 0 && in.Stats.RecordsReceived == 73 && in.Stats.LoadError == "", fmt.Sprintf("%+v", *in.Stats)
	})
	if r, d := rows("orders_b"), distinct("orders_b"); r != 88 || d != 88 {
		t.Errorf("B after the fix: %d rows (%d distinct), want 65 + 23 new", r, d)
	}
	restored.Term(t)
}
