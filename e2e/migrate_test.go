package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/natstest"
	"github.com/hookhouse/hookhouse/internal/pgtest"
	"github.com/hookhouse/hookhouse/internal/state"
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

// TestMigrateKilled SIGKILLs a real 'hookhouse migrate' in the middle of the
// copy and runs it again: the second run resumes from the cluster's head,
// and the cluster then holds every record of the node exactly once, at its
// position, with its id and receipt time.
func TestMigrateKilled(t *testing.T) {
	const total = 120000
	dir := t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	p, err := state.OpenPebble(filepath.Join(dir, "state"), quiet, state.Options{MinFreeBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := control.Open(p, state.ErrNotFound, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Create(control.NewIntegration{Name: "big", Type: control.TypeVero}, time.Now()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < total; i += 1000 {
		bodies := make([][]byte, 1000)
		for k := range bodies {
			bodies[k] = []byte(fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i+k, strings.Repeat("p", 150)))
		}
		if _, err := p.Append(ctx, 1, time.Now(), bodies); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()

	c := natstest.Start(t, 3)
	nc, err := nats.Connect(c.URLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// The copy's progress, as the cluster sees it: messages on the subject.
	stored := func() uint64 {
		s, err := js.Stream(ctx, "killed")
		if err != nil {
			return 0 // not created yet
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter("killed.rec.1"))
		if err != nil {
			return 0
		}
		return info.State.Subjects["killed.rec.1"]
	}
	cmd := exec.Command(binPath, "migrate", "--from", dir, "--nats", c.URLs(), "--nats-stream", "killed", "--yes")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	waitFor(t, 60*time.Second, "the copy to begin", func() (bool, string) {
		return stored() >= 3, errb.String() // the anchor and two messages of records
	})
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited

	// The first run was cut off in the middle, and nodes refuse the state.
	src, err := state.OpenPebbleReadOnly(filepath.Join(dir, "state"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	j, err := state.OpenJetStreamForMigration(ctx, nc, quiet, state.JetStreamOptions{Name: "killed"})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := j.PlanMigration(ctx, src)
	j.Close()
	src.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !plan.Resume || plan.Present == 0 || plan.Present >= total {
		t.Fatalf("after the kill: %+v; the test needs a run cut off in the middle", plan)
	}
	if _, err := state.OpenJetStream(ctx, nc, quiet, state.JetStreamOptions{Name: "killed"}); err == nil || !strings.Contains(err.Error(), "has not finished") {
		t.Fatalf("a node opened the half-copied state: %v", err)
	}
	t.Logf("killed after %d of %d records", plan.Present, total)

	out, errs, code := runMigrate(t, "--from", dir, "--nats", c.URLs(), "--nats-stream", "killed", "--yes", "--json")
	var res struct {
		State   string `json:"state"`
		Resumed bool   `json:"resumed"`
		Copied  int64  `json:"records_copied"`
		Present int64  `json:"records_already_present"`
	}
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || res.State != "done" || !res.Resumed || res.Present == 0 || res.Copied+res.Present != total {
		t.Fatalf("second run: exit %d, %+v (%v)\n%s\n%s", code, res, err, out, errs)
	}

	// Every record once, as the node had it.
	node, err := state.OpenJetStream(ctx, nc, quiet, state.JetStreamOptions{Name: "killed"})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	src, err = state.OpenPebbleReadOnly(filepath.Join(dir, "state"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var after uint64
	for after < total {
		got, err := node.Read(ctx, 1, after, 10000, 64<<20)
		if err != nil {
			t.Fatal(err)
		}
		want, err := src.Read(1, after, len(got), 64<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 || len(want) != len(got) {
			t.Fatalf("after position %d: the cluster has %d records, the node %d", after, len(got), len(want))
		}
		for i := range got {
			g, w := got[i], want[i]
			if g.Position != w.Position || g.ID != w.ID || !g.ReceivedAt.Equal(w.ReceivedAt) || !bytes.Equal(g.Body, w.Body) {
				t.Fatalf("record %d differs: cluster %d %x, node %d %x", after+uint64(i)+1, g.Position, g.ID, w.Position, w.ID)
			}
		}
		after = got[len(got)-1].Position
	}
	if h := node.Head(1); h.Position != total {
		t.Fatalf("the cluster's head is %d, want %d", h.Position, total)
	}
}
