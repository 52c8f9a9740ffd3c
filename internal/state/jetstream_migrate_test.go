package state_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/natstest"
	"github.com/hookhouse/hookhouse/internal/state"
)

var quiet = slog.New(slog.DiscardHandler)

// node is what a stopped single node left in its state dir.
type node struct {
	dir          string
	installation string
	token        string // a webhook URL token of integration 1
	adminKey     string
}

// makeNode runs a single node's state through the real state and control
// packages: three integrations, a webhook URL, records appended plainly, by
// AppendOnce (with a duplicate) and by an import with old receipt times, some
// records trimmed as retention does, and one integration whose log holds no
// record any more.
func makeNode(t *testing.T) node {
	t.Helper()
	dir := t.TempDir()
	p, err := state.OpenPebble(dir, quiet, state.Options{MinFreeBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctl, err := control.Open(p, state.ErrNotFound, quiet)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ctl.EnsureAdminKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var ids []int64
	for _, name := range []string{"vero one", "hooks two", "hooks three"} {
		typ := control.TypeWebhooks
		if strings.HasPrefix(name, "vero") {
			typ = control.TypeVero
		}
		in, err := ctl.Create(control.NewIntegration{Name: name, Type: typ}, now)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, in.ID)
	}
	_, token, err := ctl.GenerateURL(ids[0], now)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	at := time.Date(2026, 11, 30, 12, 0, 0, 123456000, time.UTC)
	for i := range 40 {
		bodies := [][]byte{[]byte(fmt.Sprintf(`{"i":%d,"a":1}`, i)), []byte(fmt.Sprintf(`{"i":%d,"a":2}`, i)), []byte(fmt.Sprintf(`{"i":%d,"pad":%q}`, i, strings.Repeat("x", i*40)))}
		if _, err := p.Append(ctx, ids[0], at.Add(time.Duration(i)*time.Second), bodies); err != nil {
			t.Fatal(err)
		}
	}
	// Retention removed the first 30 (loaded) records of integration 1.
	if n, err := p.Trim(ids[0], 30, at.Add(time.Hour)); err != nil || n != 30 {
		t.Fatalf("trim: %d, %v", n, err)
	}
	// Live claims (judged at the real time), and an import's claim that has expired.
	for _, d := range []string{"d1", "d2", "d1"} {
		if _, _, err := p.AppendOnce(ctx, ids[1], now, d, time.Hour, [][]byte{[]byte(`{"d":"` + d + `"}`), []byte(`{"d2":1}`)}); err != nil {
			t.Fatal(err)
		}
	}
	old := []time.Time{at.Add(-48 * time.Hour), at.Add(-47 * time.Hour)}
	if _, _, err := p.AppendOnceAt(ctx, ids[1], at.Add(2*time.Minute), old, "import-1", time.Hour, [][]byte{[]byte(`{"old":1}`), []byte(`{"old":2}`)}); err != nil {
		t.Fatal(err)
	}
	if p.Deduplicated(ids[1]) != 2 {
		t.Fatalf("duplicates: %d", p.Deduplicated(ids[1]))
	}
	for i := range 10 {
		if _, err := p.Append(ctx, ids[2], at.Add(time.Duration(i)*time.Millisecond), [][]byte{[]byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := p.Trim(ids[2], 10, at.Add(time.Hour)); err != nil || n != 10 {
		t.Fatalf("trim: %d, %v", n, err)
	}
	return node{dir: dir, installation: ctl.Installation(), token: token, adminKey: key}
}

func openReader(t *testing.T, dir string) *state.PebbleReader {
	t.Helper()
	r, err := state.OpenPebbleReadOnly(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func openMigrate(t *testing.T, c *natstest.Cluster, name string) jsNode {
	t.Helper()
	nc := connect(t, c.URLs())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := state.OpenJetStreamForMigration(ctx, nc, quiet, state.JetStreamOptions{Name: name, MaxMessageBytes: 4096})
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	n := jsNode{j, nc}
	t.Cleanup(func() { n.Close() })
	return n
}

func migrate(t *testing.T, j jsNode, src state.MigrationSource) (*state.MigrationPlan, error) {
	t.Helper()
	ctx := context.Background()
	plan, err := j.PlanMigration(ctx, src)
	if err != nil {
		return nil, err
	}
	return plan, j.Migrate(ctx, src, plan, state.MigrateOptions{From: "test"})
}

// sameState checks that the cluster holds the node's state: every control
// key, every head, and every record with its position, id, receipt time and
// body.
func sameState(t *testing.T, src *state.PebbleReader, dst state.Store) {
	t.Helper()
	want := map[string][]byte{}
	if err := src.Scan("", func(k string, v []byte) error { want[k] = v; return nil }); err != nil {
		t.Fatal(err)
	}
	got := map[string][]byte{}
	if err := dst.Scan("", func(k string, v []byte) error { got[k] = v; return nil }); err != nil {
		t.Fatal(err)
	}
	delete(got, "meta/migration")
	for k, v := range want {
		if !bytes.Equal(got[k], v) {
			t.Errorf("control key %s: cluster %q, node %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("cluster has %d control keys, node %d", len(got), len(want))
	}
	heads, err := src.Heads()
	if err != nil {
		t.Fatal(err)
	}
	for id, h := range heads {
		if g := dst.Head(id); g.Position != h.Position || !g.LastReceivedAt.Equal(h.LastReceivedAt) {
			t.Errorf("integration %d head: cluster %+v, node %+v", id, g, h)
		}
		wantRecs, err := src.Read(id, 0, 1<<20, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		gotRecs, err := dst.Read(context.Background(), id, 0, 1<<20, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		if len(gotRecs) != len(wantRecs) {
			t.Fatalf("integration %d: cluster has %d records, node %d", id, len(gotRecs), len(wantRecs))
		}
		for i, w := range wantRecs {
			g := gotRecs[i]
			if g.Position != w.Position || g.ID != w.ID || !g.ReceivedAt.Equal(w.ReceivedAt) || !bytes.Equal(g.Body, w.Body) {
				t.Fatalf("integration %d record %d: cluster %d %x %s %s, node %d %x %s %s", id, i,
					g.Position, g.ID, g.ReceivedAt, g.Body, w.Position, w.ID, w.ReceivedAt, w.Body)
			}
		}
	}
}

// TestMigrate copies a node's state into an empty cluster and checks every
// record, head and control key; a node of the cluster then has the same
// installation, admin key and webhook URL, its next record continues the
// positions, and a second run copies nothing.
func TestMigrate(t *testing.T) {
	c := natstest.Start(t, 3)
	n := makeNode(t)
	src := openReader(t, n.dir)
	j := openMigrate(t, c, "mig")
	plan, err := migrate(t, j, src)
	if err != nil {
		t.Fatal(err)
	}
	// 90 records (120 less 30 trimmed) + 6 of integration 2; integration 3 has
	// none left. Claims d1 and d2 still count; the import's has expired.
	if plan.ToCopy != 96 || plan.Present != 0 || plan.Resume || plan.Done == nil || len(plan.Logs) != 3 || plan.Claims != 2 {
		t.Fatalf("plan: %+v", plan)
	}
	for _, l := range plan.Logs {
		if l.Copied != l.Records() {
			t.Errorf("integration %d: copied %d of %d", l.Integration, l.Copied, l.Records())
		}
	}
	if l := plan.Logs[0]; l.First != 31 || l.Head != 120 {
		t.Errorf("integration 1 log: %+v", l)
	}
	if l := plan.Logs[2]; l.First != 11 || l.Head != 10 || l.Records() != 0 {
		t.Errorf("integration 3 log: %+v", l)
	}
	sameState(t, src, j)

	// A node of the cluster: same installation, admin key and URL.
	node := openJS(t, c.URL(1), state.JetStreamOptions{Name: "mig"})
	defer node.Close()
	// The duplicate counts arrive by a watch.
	for deadline := time.Now().Add(10 * time.Second); node.Deduplicated(2) != 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("duplicate count in the cluster: %d, want 2", node.Deduplicated(2))
		}
	}
	ctl, err := control.Open(node, state.ErrNotFound, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if ctl.Installation() != n.installation || !ctl.CheckAdminKey(n.adminKey) || !ctl.Authenticate(1, n.token, time.Now()) {
		t.Fatalf("cluster control: installation %s (want %s), admin key ok %v, URL ok %v",
			ctl.Installation(), n.installation, ctl.CheckAdminKey(n.adminKey), ctl.Authenticate(1, n.token, time.Now()))
	}
	for id, want := range map[int64]uint64{1: 121, 2: 7, 3: 11} {
		first, err := node.Append(context.Background(), id, time.Now(), [][]byte{[]byte(`{"after":1}`)})
		if err != nil || first != want {
			t.Fatalf("integration %d: append after the migration got position %d (%v), want %d", id, first, err, want)
		}
	}
	// The claims moved: a redelivery of d1 or d2 is a duplicate, d3 is new.
	for _, d := range []string{"d1", "d2", "d3"} {
		first, dup, err := node.AppendOnce(context.Background(), 2, time.Now(), d, time.Hour, [][]byte{[]byte(`{"again":1}`)})
		if err != nil || dup != (d != "d3") || (d == "d3" && first != 8) {
			t.Fatalf("redelivery of %s after the migration: first %d, duplicate %v, %v", d, first, dup, err)
		}
	}
	// The id counters moved: the next integration is 4.
	in, err := ctl.Create(control.NewIntegration{Name: "four", Type: control.TypeVero}, time.Now())
	if err != nil || in.ID != 4 {
		t.Fatalf("next integration: %+v, %v", in, err)
	}

	// Run again: already done, nothing copied.
	again, err := j.PlanMigration(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	if again.Done == nil || again.ToCopy != 0 {
		t.Fatalf("second plan: %+v", again)
	}
	if err := j.Migrate(context.Background(), src, again, state.MigrateOptions{}); err != nil {
		t.Fatal(err)
	}
	if h := node.Head(1); h.Position != 121 {
		t.Fatalf("after a second run integration 1's head is %d, want 121", h.Position)
	}
}

// failing is a source whose log reads fail after a number of reads, as when
// migrate is killed in the middle; it reads few records at a time.
type failing struct {
	state.MigrationSource
	reads, failAfter int
	failClaimsOf     int64 // Claims of this integration fail
}

var errKilled = errors.New("killed")

func (f *failing) Claims(integration int64, now time.Time, fn func([32]byte, time.Time, time.Time) error) error {
	if integration == f.failClaimsOf {
		return errKilled
	}
	return f.MigrationSource.Claims(integration, now, fn)
}

func (f *failing) Read(integration int64, after uint64, max, maxBytes int) ([]state.Record, error) {
	f.reads++
	if f.failAfter > 0 && f.reads > f.failAfter {
		return nil, errKilled
	}
	return f.MigrationSource.Read(integration, after, min(max, 7), maxBytes)
}

// TestMigrateResume: a run cut off in the middle leaves the marker, so nodes
// refuse to open the state; the next run continues where the first stopped,
// copies each record once, and then nodes open it.
func TestMigrateResume(t *testing.T) {
	c := natstest.Start(t, 3)
	n := makeNode(t)
	src := openReader(t, n.dir)
	j := openMigrate(t, c, "res")
	f := &failing{MigrationSource: src, failAfter: 5}
	plan, err := j.PlanMigration(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Migrate(context.Background(), f, plan, state.MigrateOptions{}); !errors.Is(err, errKilled) {
		t.Fatalf("first run: %v, want the source's failure", err)
	}
	copied := plan.Logs[0].Copied
	if copied == 0 || copied >= plan.Logs[0].Records() {
		t.Fatalf("first run copied %d of integration 1's %d records; the test needs a run cut off in the middle", copied, plan.Logs[0].Records())
	}

	// A node refuses the half-copied state.
	nc := connect(t, c.URL(0))
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := state.OpenJetStream(ctx, nc, quiet, state.JetStreamOptions{Name: "res"}); err == nil || !strings.Contains(err.Error(), "has not finished") {
		t.Fatalf("a node opened a half-migrated state: %v", err)
	}

	// A new run (a new process) resumes.
	j2 := openMigrate(t, c, "res")
	f2 := &failing{MigrationSource: src}
	plan2, err := j2.PlanMigration(context.Background(), f2)
	if err != nil {
		t.Fatal(err)
	}
	if !plan2.Resume || plan2.Logs[0].InCluster != 30+copied || plan2.Present != copied || plan2.ToCopy != 96-copied {
		t.Fatalf("resumed plan: %+v (first run copied %d)", plan2, copied)
	}
	if err := j2.Migrate(context.Background(), f2, plan2, state.MigrateOptions{}); err != nil {
		t.Fatal(err)
	}
	if plan2.Logs[0].Copied != plan.Logs[0].Records()-copied {
		t.Fatalf("second run copied %d, want %d", plan2.Logs[0].Copied, plan.Logs[0].Records()-copied)
	}
	sameState(t, src, j2)
	node := openJS(t, c.URL(2), state.JetStreamOptions{Name: "res"})
	node.Close()
}

// TestMigrateResumeClaims: a run cut off after integration 2's claims were
// copied copies them again on the next run, and the stream stores each once.
func TestMigrateResumeClaims(t *testing.T) {
	c := natstest.Start(t, 3)
	n := makeNode(t)
	src := openReader(t, n.dir)
	j := openMigrate(t, c, "cla")
	f := &failing{MigrationSource: src}
	plan, err := j.PlanMigration(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	f.failClaimsOf = 3 // killed after integration 2's claims
	if err := j.Migrate(context.Background(), f, plan, state.MigrateOptions{}); !errors.Is(err, errKilled) {
		t.Fatalf("first run: %v, want the source's failure", err)
	}
	msgs := func() uint64 {
		nc := connect(t, c.URL(0))
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		s, err := js.Stream(context.Background(), "cla")
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(context.Background(), jetstream.WithSubjectFilter("cla.rec.2"))
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Subjects["cla.rec.2"]
	}
	before := msgs()
	j2 := openMigrate(t, c, "cla")
	plan2, err := j2.PlanMigration(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	var claims uint64
	if err := j2.Migrate(context.Background(), src, plan2, state.MigrateOptions{ClaimProgress: func(n uint64) { claims = n }}); err != nil {
		t.Fatal(err)
	}
	if claims != 2 {
		t.Fatalf("the second run went through %d claims, want 2", claims)
	}
	if after := msgs(); after != before {
		t.Fatalf("integration 2 had %d messages after the first run and %d after the second: a claim was stored twice", before, after)
	}
	sameState(t, src, j2)
	node := openJS(t, c.URL(1), state.JetStreamOptions{Name: "cla"})
	defer node.Close()
	if _, dup, err := node.AppendOnce(context.Background(), 2, time.Now(), "d2", time.Hour, [][]byte{[]byte(`{}`)}); err != nil || !dup {
		t.Fatalf("redelivery of d2: duplicate %v, %v", dup, err)
	}
}

// TestMigrateRefusesForeign: a cluster that holds another installation's
// state (another node migrated first, or a cluster node started before the
// migration) is refused, and nothing of it changes.
func TestMigrateRefusesForeign(t *testing.T) {
	c := natstest.Start(t, 3)
	a, b := makeNode(t), makeNode(t)
	j := openMigrate(t, c, "for")
	srcA := openReader(t, a.dir)
	if _, err := migrate(t, j, srcA); err != nil {
		t.Fatal(err)
	}
	srcB := openReader(t, b.dir)
	_, err := migrate(t, j, srcB)
	if !errors.Is(err, state.ErrForeignInstallation) || !strings.Contains(err.Error(), "integrations 1, 2, 3") || !strings.Contains(err.Error(), a.installation) {
		t.Fatalf("migrating a second installation: %v", err)
	}
	if v, _ := j.Get("meta/installation_id"); string(v) != a.installation {
		t.Fatalf("the cluster's installation became %s", v)
	}
	sameState(t, srcA, j)

	// A cluster node started before the migration made its own installation.
	node := openJS(t, c.URL(0), state.JetStreamOptions{Name: "early"})
	if _, err := control.Open(node, state.ErrNotFound, quiet); err != nil {
		t.Fatal(err)
	}
	node.Close()
	j2 := openMigrate(t, c, "early")
	if _, err := migrate(t, j2, srcB); !errors.Is(err, state.ErrForeignInstallation) {
		t.Fatalf("migrating into a cluster a node started first: %v", err)
	}
}

// TestOpenPebbleReadOnlyInUse: the state of a running node is refused.
func TestOpenPebbleReadOnlyInUse(t *testing.T) {
	dir := t.TempDir()
	p, err := state.OpenPebble(dir, quiet, state.Options{MinFreeBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := state.OpenPebbleReadOnly(dir, quiet); !errors.Is(err, state.ErrInUse) {
		t.Fatalf("read-only open of a store in use: %v", err)
	}
	p.Close()
	r, err := state.OpenPebbleReadOnly(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, err := state.OpenPebbleReadOnly(t.TempDir(), quiet); err == nil || !strings.Contains(err.Error(), "no hookhouse state") {
		t.Fatalf("an empty dir: %v", err)
	}
}

// TestMigrateDiverged: a single node started again after its migration takes
// records the cluster does not have; a rerun copies nothing and says which
// integration diverged.
func TestMigrateDiverged(t *testing.T) {
	c := natstest.Start(t, 3)
	n := makeNode(t)
	src, err := state.OpenPebbleReadOnly(n.dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	j := openMigrate(t, c, "div")
	if _, err := migrate(t, j, src); err != nil {
		t.Fatal(err)
	}
	src.Close()
	p, err := state.OpenPebble(n.dir, quiet, state.Options{MinFreeBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Append(context.Background(), 2, time.Now(), [][]byte{[]byte(`{"late":1}`)}); err != nil {
		t.Fatal(err)
	}
	p.Close()
	plan, err := j.PlanMigration(context.Background(), openReader(t, n.dir))
	if err != nil {
		t.Fatal(err)
	}
	if plan.Done == nil || plan.ToCopy != 0 || plan.Logs[0].Diverged || !plan.Logs[1].Diverged || plan.Logs[2].Diverged {
		t.Fatalf("plan after the node took more: %+v", plan)
	}
}

// BenchmarkMigrate copies a node of 50,000 records of 500 bytes (and 10,000
// live claims) into the embedded 3-server cluster (sync always) and reports
// records/s and claims/s. Run with -benchtime=1x.
func BenchmarkMigrate(b *testing.B) {
	const records, claims = 50000, 10000
	dir := b.TempDir()
	p, err := state.OpenPebble(dir, quiet, state.Options{MinFreeBytes: 1})
	if err != nil {
		b.Fatal(err)
	}
	ctl, err := control.Open(p, state.ErrNotFound, quiet)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ctl.Create(control.NewIntegration{Name: "bench", Type: control.TypeVero}, time.Now()); err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"pad":"` + strings.Repeat("x", 490) + `"}`)
	ctx := context.Background()
	for i := 0; i < records-claims; i += 100 {
		bodies := make([][]byte, 100)
		for k := range bodies {
			bodies[k] = body
		}
		if _, err := p.Append(ctx, 1, time.Now(), bodies); err != nil {
			b.Fatal(err)
		}
	}
	for i := range claims {
		if _, _, err := p.AppendOnce(ctx, 1, time.Now(), fmt.Sprintf("d%d", i), time.Hour, [][]byte{body}); err != nil {
			b.Fatal(err)
		}
	}
	p.Close()
	src, err := state.OpenPebbleReadOnly(dir, quiet)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	c := natstest.Start(b, 3)
	b.ResetTimer()
	for i := range b.N {
		nc := connect(b, c.URLs())
		j, err := state.OpenJetStreamForMigration(ctx, nc, quiet, state.JetStreamOptions{Name: fmt.Sprintf("bench%d", i)})
		if err != nil {
			b.Fatal(err)
		}
		plan, err := j.PlanMigration(ctx, src)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		var recsDone time.Duration
		err = j.Migrate(ctx, src, plan, state.MigrateOptions{
			Progress: func(n uint64) {
				if n == plan.ToCopy {
					recsDone = time.Since(start)
				}
			},
		})
		if err != nil {
			b.Fatal(err)
		}
		all := time.Since(start)
		b.ReportMetric(float64(plan.ToCopy)/recsDone.Seconds(), "records/s")
		b.ReportMetric(float64(plan.Claims)/(all-recsDone).Seconds(), "claims/s")
		j.Close()
		nc.Close()
	}
}

// TestMigrateRecordTooLarge: a record larger than a NATS message of the
// cluster stops the copy with its position and the fix; the rerun after the
// fix (here: a larger message size) resumes.
func TestMigrateRecordTooLarge(t *testing.T) {
	c := natstest.Start(t, 3)
	dir := t.TempDir()
	p, err := state.OpenPebble(dir, quiet, state.Options{MinFreeBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := control.Open(p, state.ErrNotFound, quiet); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{10, 10, 5000, 10} {
		if _, err := p.Append(context.Background(), 1, time.Now(), [][]byte{[]byte(`"` + strings.Repeat("x", size) + `"`)}); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	src := openReader(t, dir)
	j := openMigrate(t, c, "big") // 4 KiB messages
	_, err = migrate(t, j, src)
	if err == nil || !strings.Contains(err.Error(), "record 3 of integration 1 is 5002 bytes") || !strings.Contains(err.Error(), "raise max_payload") {
		t.Fatalf("a record larger than a message: %v", err)
	}
	nc := connect(t, c.URLs())
	big, err := state.OpenJetStreamForMigration(context.Background(), nc, quiet, state.JetStreamOptions{Name: "big", MaxMessageBytes: 8192})
	if err != nil {
		t.Fatal(err)
	}
	defer jsNode{big, nc}.Close()
	plan, err := migrate(t, jsNode{big, nc}, src)
	if err != nil || !plan.Resume || plan.Present != 2 || plan.Logs[0].Copied != 2 {
		t.Fatalf("the rerun: %+v, %v", plan, err)
	}
	sameState(t, src, jsNode{big, nc})
}

// TestMigrateForeignWriter: something else appending to an integration's log
// while migrate copies it (a node started around the marker) stops the copy,
// and nothing is renumbered: every record is in the cluster at most once.
func TestMigrateForeignWriter(t *testing.T) {
	c := natstest.Start(t, 3)
	n := makeNode(t)
	src := openReader(t, n.dir)
	j := openMigrate(t, c, "fw")
	other := openMigrate(t, c, "fw")
	f := &failing{MigrationSource: src} // reads 7 records at a time: many messages
	plan, err := j.PlanMigration(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	appended := false
	err = j.Migrate(context.Background(), f, plan, state.MigrateOptions{Progress: func(uint64) {
		if !appended {
			appended = true
			if _, err := other.Append(context.Background(), 1, time.Now(), [][]byte{[]byte(`{"foreign":1}`)}); err != nil {
				t.Error(err)
			}
		}
	}})
	if err == nil || !strings.Contains(err.Error(), "changed during the migration") {
		t.Fatalf("a foreign append during the copy: %v", err)
	}
	recs, err := other.Read(context.Background(), 1, 0, 1000, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	mine, err := src.Read(1, 0, 1000, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	at := map[[16]byte]uint64{}
	for _, r := range mine {
		at[r.ID] = r.Position
	}
	seen := map[[16]byte]bool{}
	for i, r := range recs {
		if seen[r.ID] || (i > 0 && r.Position != recs[i-1].Position+1) {
			t.Fatalf("record %d (position %d) is in the cluster twice or out of place", i, r.Position)
		}
		if pos, ok := at[r.ID]; ok && pos != r.Position {
			t.Fatalf("the node's record %d is at position %d in the cluster: renumbered", pos, r.Position)
		}
		seen[r.ID] = true
	}
	// The rerun refuses: the cluster's last record is not the data dir's.
	if _, err := j.PlanMigration(context.Background(), src); err == nil || !strings.Contains(err.Error(), "differs between the cluster and the data dir") {
		t.Fatalf("the rerun: %v", err)
	}
}
