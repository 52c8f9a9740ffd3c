package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/natstest"
	"github.com/hookhouse/hookhouse/internal/pgtest"
)

// runMigrate runs 'hookhouse migrate' (a local command: no --server).
func runMigrate(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binPath, append([]string{"migrate"}, args...)...)
	cmd.Env = append(os.Environ(), "HOOKHOUSE_NATS=")
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

// TestMigrateToCluster moves a real single node with a PostgreSQL warehouse
// onto a NATS cluster: integration A has loaded its 40 records, B was paused
// with 25 unloaded. migrate is refused while the node runs; once it is
// stopped, it copies the state; a cluster node on the same PostgreSQL
// accepts webhooks on the OLD URLs, loads B's backlog once resumed, and loads
// nothing twice: every record is in PostgreSQL exactly once, with
// _sdc_sequence unique and increasing in the order the records came.
func TestMigrateToCluster(t *testing.T) {
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
		ids, hooks = append(ids, in.ID), append(hooks, u.URL)
	}
	a, b := ids[0], ids[1]
	postN := func(base, hook string, from, n int) {
		t.Helper()
		for i := from; i < from+n; i++ {
			if status, body := post(t, rebase(hook, base), "application/json", []byte(fmt.Sprintf(`{"n":%d}`, i))); status != 200 {
				t.Fatalf("POST: %d %s", status, body)
			}
		}
	}
	if _, err := cl.SetPaused(ctx, b, true); err != nil {
		t.Fatal(err)
	}
	postN(old.URL, hooks[0], 0, 40)
	postN(old.URL, hooks[1], 0, 25)
	waitLoaded(t, cl, a, 40)

	c := natstest.Start(t, 3)
	args := []string{"--from", dir1, "--nats", c.URLs(), "--nats-stream", "moved", "--yes"}
	if _, errs, code := runMigrate(t, args...); code != 1 || !strings.Contains(errs, "a hookhouse server still runs on it") {
		t.Fatalf("migrate of a running node: exit %d\n%s", code, errs)
	}
	old.Term(t)
	out, errs, code := runMigrate(t, args...)
	if code != 0 || !strings.Contains(out, "Done: 65 records of 2 integrations") || !strings.Contains(out, "Next steps") {
		t.Fatalf("migrate: exit %d\n%s\n%s", code, out, errs)
	}
	t.Logf("migrate said:\n%s", out)

	// A cluster node, as the next steps say: secret.key and admin.key
	// copied, the same warehouse.
	dir2 := t.TempDir()
	for _, f := range []string{"secret.key", "admin.key"} {
		if err := os.WriteFile(filepath.Join(dir2, f), mustRead(t, filepath.Join(dir1, f)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	node := startChild(t, dir2, freePort(t), "--warehouse", dsn, "--nats", c.URLs(), "--nats-stream", "moved", "--node-name", "hh-1")
	ncl := client.New(node.URL, key)
	in, err := ncl.Integration(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if !in.Stats.Paused || in.Stats.RecordsReceived != 25 {
		t.Fatalf("B on the cluster: %+v", *in.Stats)
	}
	// The old URLs work on the cluster.
	postN(node.URL, hooks[0], 40, 10)
	postN(node.URL, hooks[1], 25, 5)
	if _, err := ncl.SetPaused(ctx, b, false); err != nil {
		t.Fatal(err)
	}
	waitLoaded(t, ncl, a, 50)
	waitLoaded(t, ncl, b, 30)
	for _, s := range []struct {
		schema string
		n      int64
	}{{"orders_a", 50}, {"orders_b", 30}} {
		rows := count(t, ncl, "SELECT count(*) FROM "+s.schema+".data")
		distinct := count(t, ncl, "SELECT count(DISTINCT n) FROM "+s.schema+".data")
		seqs := count(t, ncl, "SELECT count(DISTINCT _sdc_sequence) FROM "+s.schema+".data")
		backwards := count(t, ncl, "SELECT count(*) FROM (SELECT _sdc_sequence, lag(_sdc_sequence) OVER (ORDER BY n) AS prev FROM "+
			s.schema+".data) x WHERE prev >= _sdc_sequence")
		if rows != s.n || distinct != s.n || seqs != s.n || backwards != 0 {
			t.Errorf("%s: %d rows, %d distinct records, %d distinct _sdc_sequence, %d out of order; want %d, each once, in order",
				s.schema, rows, distinct, seqs, backwards, s.n)
		}
	}
	// Run again: done already, nothing copied.
	if out, errs, code := runMigrate(t, args...); code != 0 || !strings.Contains(out, "nothing to copy") {
		t.Fatalf("second migrate: exit %d\n%s\n%s", code, out, errs)
	}
}
