package loader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"

	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/natstest"
	"github.com/hookhouse/hookhouse/internal/pgtest"
	"github.com/hookhouse/hookhouse/internal/state"
	"github.com/hookhouse/hookhouse/internal/warehouse/postgres"
)

// Cluster tests: several loaders, each a "node" with its own NATS connection
// and JetStream state on one embedded 3-server cluster (natstest), all loading
// into one throwaway PostgreSQL (pgtest), as hookhouse nodes do.

// commits records every batch a node commits (Options.Observe).
type commits struct {
	mu      sync.Mutex
	batches int
	loaded  int
	at      []time.Time
}

func (c *commits) Batch(_ int64, loaded, _ int, _ time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batches++
	c.loaded += loaded
	c.at = append(c.at, time.Now())
}

func (c *commits) count() (batches, loaded int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.batches, c.loaded
}

// firstAfter is the time of the first commit after t0.
func (c *commits) firstAfter(t0 time.Time) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, at := range c.at {
		if at.After(t0) {
			return at, true
		}
	}
	return time.Time{}, false
}

// trimCounter is a node's real log, counting the loader's trims.
type trimCounter struct {
	*state.JetStream
	trims atomic.Int64
}

func (c *trimCounter) Trim(integration int64, upTo uint64, cutoff time.Time) (uint64, error) {
	c.trims.Add(1)
	return c.JetStream.Trim(integration, upTo, cutoff)
}

type clusterNode struct {
	name   string
	nc     *nats.Conn
	st     *state.JetStream
	log    *trimCounter
	l      *Loader
	leases *Leases
	obs    *commits
	dead   atomic.Bool
}

type testLogWriter struct {
	t    testing.TB
	name string
}

func (w testLogWriter) Write(b []byte) (int, error) {
	w.t.Log(w.name + ": " + strings.TrimSpace(string(b)))
	return len(b), nil
}

// startNode starts a node's state and loader; force makes its leases always
// held (two nodes then both load: the warehouse's fence must hold).
func startNode(t *testing.T, c *natstest.Cluster, stream, dsn, name string, ttl time.Duration, ins Integrations, opts Options, force bool, tweaks ...func(*Loader)) *clusterNode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.OpenJetStream(ctx, nc, quiet, state.JetStreamOptions{Name: stream})
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	wh, err := postgres.Open(ctx, dsn, postgres.Options{}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(testLogWriter{t, name}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	n := &clusterNode{name: name, nc: nc, st: st, log: &trimCounter{JetStream: st}, obs: &commits{}}
	n.leases = NewLeases(st, state.ErrNotFound, name, ttl, logger)
	n.leases.forceHold = force
	opts.Installation = "inst-cluster"
	opts.Observe = n.obs
	opts.Leases = n.leases
	n.l = New(n.log, wh, ins, opts, logger)
	for _, f := range tweaks {
		f(n.l)
	}
	n.l.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := n.l.Close(ctx); err != nil {
			t.Errorf("%s: close loader: %v", name, err)
		}
		st.Close()
		nc.Close()
		wh.Close()
	})
	return n
}

// appender appends numbered records {"n": i} to integration 1 through the
// live nodes in turn until stopped, and remembers which were acknowledged.
type appender struct {
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	acked map[int]bool
}

func startAppender(nodes []*clusterNode, receivedAt func() time.Time) *appender {
	a := &appender{stop: make(chan struct{}), done: make(chan struct{}), acked: map[int]bool{}}
	go func() {
		defer close(a.done)
		for i := 0; ; i++ {
			select {
			case <-a.stop:
				return
			default:
			}
			n := nodes[i%len(nodes)]
			if n.dead.Load() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := n.st.Append(ctx, 1, receivedAt(), [][]byte{fmt.Appendf(nil, `{"n":%d,"via":%q}`, i, n.name)})
			cancel()
			if err == nil {
				a.mu.Lock()
				a.acked[i] = true
				a.mu.Unlock()
			}
			time.Sleep(3 * time.Millisecond)
		}
	}()
	return a
}

func (a *appender) halt() map[int]bool {
	close(a.stop)
	<-a.done
	return a.acked
}

// checkExactlyOnce: every record in the log of integration 1 (and so every
// acknowledged one) is a row of schema.data exactly once, and _sdc_sequence
// grows strictly with the log position. It returns the number of rows.
func checkExactlyOnce(t *testing.T, log state.Store, dsn, schema string, acked map[int]bool) int {
	t.Helper()
	ctx := context.Background()
	posOf := map[int64]uint64{}
	for after := uint64(0); ; {
		recs, err := log.Read(ctx, 1, after, 1000, 1<<24)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			var b struct{ N int64 }
			if err := json.Unmarshal(r.Body, &b); err != nil {
				t.Fatal(err)
			}
			posOf[b.N] = r.Position
		}
		after = recs[len(recs)-1].Position
	}
	for n := range acked {
		if _, ok := posOf[int64(n)]; !ok {
			t.Fatalf("acknowledged record n=%d is not in the log", n)
		}
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT n, _sdc_sequence FROM `+pgx.Identifier{schema, "data"}.Sanitize())
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		pos uint64
		seq int64
	}
	var got []row
	seen := map[int64]bool{}
	for rows.Next() {
		var n, seq int64
		if err := rows.Scan(&n, &seq); err != nil {
			t.Fatal(err)
		}
		if seen[n] {
			t.Fatalf("record n=%d is in the warehouse twice", n)
		}
		seen[n] = true
		pos, ok := posOf[n]
		if !ok {
			t.Fatalf("row n=%d is not a record of the log", n)
		}
		got = append(got, row{pos, seq})
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(posOf) {
		t.Fatalf("the warehouse has %d rows, the log %d records", len(got), len(posOf))
	}
	slices.SortFunc(got, func(a, b row) int { return int(a.pos) - int(b.pos) })
	for i := 1; i < len(got); i++ {
		if got[i].seq <= got[i-1].seq {
			t.Fatalf("_sdc_sequence does not grow with the log: position %d has %d, position %d has %d",
				got[i-1].pos, got[i-1].seq, got[i].pos, got[i].seq)
		}
	}
	return len(got)
}

// waitHolder waits until every live node names the same holder, and that
// node has committed a batch; it returns the holder.
func waitHolder(t *testing.T, nodes []*clusterNode) *clusterNode {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var holder *clusterNode
		agree := true
		for _, n := range nodes {
			if n.dead.Load() {
				continue
			}
			name, ok := n.l.LeaseHolder(1)
			if !ok || (holder != nil && holder.name != name) {
				agree = false
				break
			}
			for _, m := range nodes {
				if m.name == name {
					holder = m
				}
			}
		}
		if agree && holder != nil {
			if b, _ := holder.obs.count(); b > 0 {
				return holder
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	var views []string
	for _, n := range nodes {
		name, ok := n.l.LeaseHolder(1)
		b, _ := n.obs.count()
		views = append(views, fmt.Sprintf("%s: holder %q %v, %d batches", n.name, name, ok, b))
	}
	t.Fatalf("the nodes do not agree on one loading node within 60 s: %s", strings.Join(views, "; "))
	return nil
}

func syncWithin(t *testing.T, n *clusterNode, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		err := n.l.Sync(ctx, 1)
		if err == nil {
			return
		}
		// Two loaders at once (forced in some tests): a batch refused by the
		// fence fails Sync; the loader re-reads and goes on, so ask again.
		if ctx.Err() != nil || !strings.Contains(err.Error(), "another loader is loading it") {
			t.Fatalf("%s: Sync: %v (stats %+v)", n.name, err, n.l.Stats(1))
		}
	}
}

// TestClusterFailover: three nodes, the default 10 s lease. Exactly one node
// loads; when it dies right after renewing its lease (its NATS connection cut,
// so it can neither renew nor release), another node commits the next batch
// within 15 s, measured here.
// Every record is in PostgreSQL exactly once with _sdc_sequence growing.
func TestClusterFailover(t *testing.T) {
	c := natstest.Start(t, 3)
	dsn, err := pgtest.Shared(t).NewDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ins := fixedIntegrations{{ID: 1, Name: "failover", Type: "vero", Schema: "hh_failover"}}
	opts := Options{BatchSize: 100, BatchWait: 50 * time.Millisecond}
	var nodes []*clusterNode
	for _, name := range []string{"hh-1", "hh-2", "hh-3"} {
		nodes = append(nodes, startNode(t, c, "failover", dsn, name, DefaultLeaseTTL, ins, opts, false))
	}
	app := startAppender(nodes, time.Now)
	holder := waitHolder(t, nodes)
	time.Sleep(time.Second)
	for _, n := range nodes {
		if b, _ := n.obs.count(); n != holder && b > 0 {
			t.Fatalf("%s committed %d batches while %s held the lease", n.name, b, holder.name)
		}
		if s := n.l.Stats(1); n != holder && (s.Error != "" || s.Received == 0 || s.Loaded > s.Received) {
			t.Fatalf("%s (not loading) has stats %+v", n.name, s)
		}
	}

	// The holder dies right after a renewal, the worst moment: no renewal,
	// no release, no more reads of the log.
	renewal := func() uint64 {
		raw, err := holder.st.Get("lease/1")
		if err != nil {
			t.Fatal(err)
		}
		var v leaseValue
		if err := json.Unmarshal(raw, &v); err != nil || v.Node != holder.name {
			t.Fatalf("lease value %s (%v), want held by %s", raw, err, holder.name)
		}
		return v.Renewal
	}
	for r0, end := renewal(), time.Now().Add(30*time.Second); renewal() == r0; {
		if time.Now().After(end) {
			t.Fatal("the holder did not renew its lease within 30 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	holder.dead.Store(true)
	killedAt := time.Now()
	holder.nc.Close()
	var (
		next     *clusterNode
		resumed  time.Time
		deadline = killedAt.Add(60 * time.Second)
	)
	for next == nil && time.Now().Before(deadline) {
		for _, n := range nodes {
			if n == holder {
				continue
			}
			if at, ok := n.obs.firstAfter(killedAt); ok {
				next, resumed = n, at
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if next == nil {
		t.Fatal("no node resumed loading within 60 s of the holder's death")
	}
	failover := resumed.Sub(killedAt)
	t.Logf("FAILOVER: %s died; %s committed its next batch %v later (lease TTL %v)", holder.name, next.name, failover.Round(time.Millisecond), DefaultLeaseTTL)
	if failover > 15*time.Second {
		t.Errorf("failover took %v, more than the 15 s required", failover)
	}
	if name, ok := next.l.LeaseHolder(1); !ok || name != next.name {
		t.Fatalf("the new loader %s says the holder is %q, %v", next.name, name, ok)
	}
	time.Sleep(500 * time.Millisecond)
	acked := app.halt()
	for _, n := range nodes {
		if n != holder {
			syncWithin(t, n, 60*time.Second) // the other survivor waits for the warehouse
		}
	}
	for _, n := range nodes {
		if s := n.l.Stats(1); n != holder && (s.Backlog != 0 || s.Loaded != s.Received || s.Error != "") {
			t.Fatalf("%s after Sync: stats %+v", n.name, s)
		}
	}
	rows := checkExactlyOnce(t, next.st, dsn, "hh_failover", acked)
	_, late := holder.obs.count()
	t.Logf("%d records loaded exactly once (%d acknowledged); the dead holder committed %d records in all", rows, len(acked), late)
}

// TestClusterFencing: two nodes made to believe both hold the lease load at
// the same time into PostgreSQL; the warehouse's fence on the stored position
// still loads every record exactly once.
func TestClusterFencing(t *testing.T) {
	c := natstest.Start(t, 3)
	dsn, err := pgtest.Shared(t).NewDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ins := fixedIntegrations{{ID: 1, Name: "fencing", Type: "vero", Schema: "hh_fencing"}}
	opts := Options{BatchSize: 20, BatchWait: 5 * time.Millisecond}
	a := startNode(t, c, "fencing", dsn, "hh-a", DefaultLeaseTTL, ins, opts, true)
	b := startNode(t, c, "fencing", dsn, "hh-b", DefaultLeaseTTL, ins, opts, true)
	// Bursts of records through either node, with pauses in which both
	// loaders are idle: at each burst both read the same load position and
	// race to commit it; the warehouse takes one and refuses the other.
	acked := map[int]bool{}
	refused := func() (n int64) {
		for _, x := range []*clusterNode{a, b} {
			x.l.mu.Lock()
			w := x.l.workers[1]
			x.l.mu.Unlock()
			if w != nil {
				w.mu.Lock()
				n += w.failures
				w.mu.Unlock()
			}
		}
		return n
	}
	deadline := time.Now().Add(90 * time.Second)
	for i := 0; ; i++ {
		ba, _ := a.obs.count()
		bb, _ := b.obs.count()
		if i >= 20 && ba >= 1 && bb >= 1 && refused() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("both nodes should load and race: %d and %d batches, %d batches refused after 90 s", ba, bb, refused())
		}
		via := []*clusterNode{a, b}[i%2]
		var bodies [][]byte
		for k := range 10 {
			bodies = append(bodies, fmt.Appendf(nil, `{"n":%d,"via":%q}`, 10*i+k, via.name))
		}
		if _, err := via.st.Append(context.Background(), 1, time.Now(), bodies); err != nil {
			t.Fatal(err)
		}
		for k := range 10 {
			acked[10*i+k] = true
		}
		time.Sleep(300 * time.Millisecond)
	}
	syncWithin(t, a, 60*time.Second)
	syncWithin(t, b, 60*time.Second)
	rows := checkExactlyOnce(t, a.st, dsn, "hh_fencing", acked)
	ba, la := a.obs.count()
	bb, lb := b.obs.count()
	if la+lb != rows {
		t.Fatalf("the nodes report %d + %d records committed, the warehouse has %d rows", la, lb, rows)
	}
	t.Logf("both loading: %s committed %d batches (%d records), %s %d (%d); %d batches refused by the fence; %d rows, each once", a.name, ba, la, b.name, bb, lb, refused(), rows)
}

// TestClusterRetentionResetRelease: only the loading node trims the log
// (retention on JetStream: loaded old records leave, young ones stay); a reset
// asked of the other node is refused naming the loading node, and made by
// the loading node; a clean Close hands the lease over at once, long before
// its TTL.
func TestClusterRetentionResetRelease(t *testing.T) {
	c := natstest.Start(t, 3)
	dsn, err := pgtest.Shared(t).NewDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 30 * time.Second
	ins := &sharedIntegrations{ins: []control.Integration{{ID: 1, Name: "retention", Type: "vero", Schema: "hh_retention"}}}
	opts := Options{BatchSize: 100, BatchWait: 20 * time.Millisecond, Retention: 30 * time.Minute, TrimEvery: 10 * time.Millisecond}
	a := startNode(t, c, "retention", dsn, "hh-a", ttl, ins, opts, false)
	b := startNode(t, c, "retention", dsn, "hh-b", ttl, ins, opts, false)
	nodes := []*clusterNode{a, b}
	ctx := context.Background()

	// 60 records received an hour ago, through both nodes.
	old := time.Now().Add(-time.Hour)
	for i := range 60 {
		if _, err := nodes[i%2].st.Append(ctx, 1, old, [][]byte{fmt.Appendf(nil, `{"n":%d}`, i)}); err != nil {
			t.Fatal(err)
		}
	}
	holder := waitHolder(t, nodes)
	other := a
	if holder == a {
		other = b
	}
	syncWithin(t, other, 60*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for {
		recs, err := other.st.Read(ctx, 1, 0, 100, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d loaded records older than the retention are still in the stream", len(recs))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Young records stay in the stream after they are loaded.
	for i := 60; i < 65; i++ {
		if _, err := other.st.Append(ctx, 1, time.Now(), [][]byte{fmt.Appendf(nil, `{"n":%d}`, i)}); err != nil {
			t.Fatal(err)
		}
	}
	syncWithin(t, other, 60*time.Second)
	time.Sleep(100 * time.Millisecond) // several TrimEvery periods
	recs, err := holder.st.Read(ctx, 1, 0, 100, 1<<20)
	if err != nil || len(recs) != 5 || recs[0].Position != 61 {
		t.Fatalf("young records in the stream: %d from %v (%v), want 5 from position 61", len(recs), recs, err)
	}
	if n := other.log.trims.Load(); n != 0 {
		t.Fatalf("%s, which does not load, trimmed the log %d times", other.name, n)
	}
	if holder.log.trims.Load() == 0 {
		t.Fatal("the loading node never trimmed")
	}
	if s := other.l.Stats(1); s.Received != 65 || s.Loaded != 65 || s.Backlog != 0 {
		t.Fatalf("%s (not loading) stats %+v, want 65 received and loaded", other.name, s)
	}
	if n := countRows(t, dsn, "hh_retention"); n != 65 {
		t.Fatalf("%d rows, want 65", n)
	}

	// A reset is made by the loading node. Without control data to carry the
	// request (Options.Resets nil here; see internal/server TestClusterReset)
	// the other refuses it, naming that node.
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = other.l.Reset(rctx, 1, true)
	if !errors.Is(err, ErrNotLoader) || !strings.Contains(err.Error(), "node "+holder.name+" loads it") {
		t.Fatalf("reset on the node that does not load: %v; want ErrNotLoader naming %s", err, holder.name)
	}
	if _, err := holder.l.Reset(rctx, 1, false); !errors.Is(err, ErrPartial) {
		t.Fatalf("reset without accepting a partial reload of a trimmed log: %v", err)
	}
	if _, err := holder.l.Reset(rctx, 1, true); err != nil {
		t.Fatal(err)
	}
	syncWithin(t, holder, 60*time.Second)
	if n := countRows(t, dsn, "hh_retention"); n != 5 {
		t.Fatalf("after the reset %d rows, want the 5 records still in the log", n)
	}

	// A pause made anywhere reaches every node through the control data
	// (here one list, as the KV watch keeps each node's cache): the loading
	// node stops, and Sync on the other says so.
	paused := time.Now().UTC()
	ins.set(func(in *control.Integration) { in.PausedAt = &paused })
	time.Sleep(500 * time.Millisecond) // the supervisors look every 200 ms
	if _, err := other.st.Append(ctx, 1, time.Now(), [][]byte{[]byte(`{"n":100}`)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	pctx, cancelPause := context.WithTimeout(ctx, 10*time.Second)
	defer cancelPause()
	if err := other.l.Sync(pctx, 1); err == nil || !strings.Contains(err.Error(), "paused") {
		t.Fatalf("Sync on the other node while paused: %v", err)
	}
	if n := countRows(t, dsn, "hh_retention"); n != 5 {
		t.Fatalf("while paused %d rows, want 5", n)
	}
	ins.set(func(in *control.Integration) { in.PausedAt = nil })
	syncWithin(t, other, 60*time.Second)
	if n := countRows(t, dsn, "hh_retention"); n != 6 {
		t.Fatalf("after resuming %d rows, want 6", n)
	}

	// A clean Close releases the lease: the other node loads at its next look.
	closeCtx, cancelClose := context.WithTimeout(ctx, 30*time.Second)
	defer cancelClose()
	closedAt := time.Now()
	if err := holder.l.Close(closeCtx); err != nil {
		t.Fatal(err)
	}
	holder.dead.Store(true)
	for {
		if name, ok := other.l.LeaseHolder(1); ok && name == other.name {
			break
		}
		if time.Since(closedAt) > ttl {
			t.Fatalf("%s did not take the released lease before its TTL (%v): the Close did not release it", other.name, ttl)
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(closedAt)
	if _, err := other.st.Append(ctx, 1, time.Now(), [][]byte{[]byte(`{"n":101}`)}); err != nil {
		t.Fatal(err)
	}
	syncWithin(t, other, 60*time.Second)
	t.Logf("RELEASE: %s closed cleanly; %s held the lease %v later (TTL %v)", holder.name, other.name, took.Round(time.Millisecond), ttl)
	if n := countRows(t, dsn, "hh_retention"); n != 7 {
		t.Fatalf("after the handover %d rows, want 7", n)
	}
}

func countRows(t *testing.T, dsn, schema string) int64 {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int64
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM `+pgx.Identifier{schema, "data"}.Sanitize()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// sharedIntegrations is the integrations list every node sees, changed at
// once on all of them.
type sharedIntegrations struct {
	mu  sync.Mutex
	ins []control.Integration
}

func (s *sharedIntegrations) AllIntegrations() []control.Integration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ins)
}

func (s *sharedIntegrations) set(f func(*control.Integration)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.ins {
		f(&s.ins[i])
	}
}

// TestClusterHandOver: the loading node loses the warehouse (its login is
// refused and its sessions ended: a partition between it and PostgreSQL)
// while the other node still reaches it. After failing for handOverAfter the
// first node gives its lease up, and the other loads everything, once.
func TestClusterHandOver(t *testing.T) {
	c := natstest.Start(t, 3)
	ctx := context.Background()
	dsn, err := pgtest.Shared(t).NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	role := fmt.Sprintf("hh_handover_%d", time.Now().UnixNano())
	if _, err := admin.Exec(ctx, `CREATE ROLE `+role+` LOGIN SUPERUSER`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin, err := pgx.Connect(context.Background(), dsn)
		if err == nil {
			admin.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, role)
			admin.Exec(context.Background(), `DROP ROLE IF EXISTS `+role)
			admin.Close(context.Background())
		}
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	ins := fixedIntegrations{{ID: 1, Name: "handover", Type: "vero", Schema: "hh_handover"}}
	opts := Options{BatchSize: 100, BatchWait: 20 * time.Millisecond}
	quick := func(l *Loader) { l.handOverAfter = 3 * time.Second }
	a := startNode(t, c, "handover", u.String(), "hh-a", DefaultLeaseTTL, ins, opts, false, quick)
	if _, err := a.st.Append(ctx, 1, time.Now(), [][]byte{[]byte(`{"n":0}`)}); err != nil {
		t.Fatal(err)
	}
	waitHolder(t, []*clusterNode{a})
	b := startNode(t, c, "handover", dsn, "hh-b", DefaultLeaseTTL, ins, opts, false, quick)
	nodes := []*clusterNode{a, b}
	if h := waitHolder(t, nodes); h != a {
		t.Fatalf("holder %s, want hh-a", h.name)
	}

	// a loses PostgreSQL.
	if _, err := admin.Exec(ctx, `ALTER ROLE `+role+` NOLOGIN`); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, role); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	acked := map[int]bool{0: true}
	for i := 1; i <= 50; i++ {
		if _, err := nodes[i%2].st.Append(ctx, 1, time.Now(), [][]byte{fmt.Appendf(nil, `{"n":%d}`, i)}); err != nil {
			t.Fatal(err)
		}
		acked[i] = true
	}
	syncWithin(t, b, 90*time.Second)
	if name, ok := b.l.LeaseHolder(1); !ok || name != b.name {
		t.Fatalf("after a's failures the holder is %q, %v; want hh-b", name, ok)
	}
	t.Logf("HANDOVER: hh-a lost PostgreSQL; hh-b had loaded everything %v later (hand-over after 3 s of failures)", time.Since(cutAt).Round(time.Millisecond))
	checkExactlyOnce(t, b.st, dsn, "hh_handover", acked)
}
