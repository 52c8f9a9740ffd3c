package loader

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/natstest"
	"github.com/hookhouse/hookhouse/internal/pgtest"
	"github.com/hookhouse/hookhouse/internal/state"
	"github.com/hookhouse/hookhouse/internal/warehouse/postgres"
)

// countingLog is a node's log, written to the test's and counted.
type countingLog struct {
	testLogWriter
	mu    sync.Mutex
	lines []string
}

func (l *countingLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	l.lines = append(l.lines, string(b))
	l.mu.Unlock()
	return l.testLogWriter.Write(b)
}

func (l *countingLog) count(s string) (n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// startControlNode is startNode with the node's own control store over its
// JetStream KV, kept current by the real control watch, as the integrations
// and the reset records (Options.Resets).
func startControlNode(t *testing.T, c *natstest.Cluster, stream, dsn, name string, opts Options, force bool) (*clusterNode, *control.Store, *countingLog) {
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
	ctl, err := control.Open(st, state.ErrNotFound, quiet)
	if err != nil {
		t.Fatal(err)
	}
	watch := st.WatchControl(ctl.Apply)
	wh, err := postgres.Open(ctx, dsn, postgres.Options{}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	lg := &countingLog{testLogWriter: testLogWriter{t, name}}
	logger := slog.New(slog.NewTextHandler(lg, &slog.HandlerOptions{Level: slog.LevelInfo}))
	n := &clusterNode{name: name, nc: nc, st: st, log: &trimCounter{JetStream: st}, obs: &commits{}}
	n.leases = NewLeases(st, state.ErrNotFound, name, DefaultLeaseTTL, logger)
	n.leases.forceHold = force
	opts.Installation = "inst-cluster"
	opts.Observe = n.obs
	opts.Leases = n.leases
	opts.Resets = ctl
	n.l = New(n.log, wh, ctl, opts, logger)
	n.l.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := n.l.Close(ctx); err != nil {
			t.Errorf("%s: close loader: %v", name, err)
		}
		watch.Stop()
		st.Close()
		nc.Close()
		wh.Close()
	})
	return n, ctl, lg
}

// TestClusterResetTwoLoaders: both nodes believe they hold the lease and load
// at once (the worst case of a failover: a holder frozen past its lease). A
// reset requested in the control data, as a non-loading node records it, is
// seen by both through the real control watch; both may start it, but the
// reset record's compare-and-set and the warehouse's fence leave every record
// in PostgreSQL exactly once, with _sdc_sequence growing with the log, and
// the record ends committed and finished on both nodes.
func TestClusterResetTwoLoaders(t *testing.T) {
	c := natstest.Start(t, 3)
	dsn, err := pgtest.Shared(t).NewDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{BatchSize: 20, BatchWait: 5 * time.Millisecond}
	a, ctlA, logA := startControlNode(t, c, "resettwo", dsn, "hh-a", opts, true)
	in, err := ctlA.Create(control.NewIntegration{Name: "two", Type: control.TypeVero}, time.Now())
	if err != nil || in.ID != 1 {
		t.Fatalf("create: %+v, %v", in, err)
	}
	b, ctlB, logB := startControlNode(t, c, "resettwo", dsn, "hh-b", opts, true)
	ctx := context.Background()
	acked := map[int]bool{}
	for i := range 30 {
		via := []*clusterNode{a, b}[i%2]
		var bodies [][]byte
		for k := range 10 {
			bodies = append(bodies, fmt.Appendf(nil, `{"n":%d}`, 10*i+k))
			acked[10*i+k] = true
		}
		if _, err := via.st.Append(ctx, 1, time.Now(), bodies); err != nil {
			t.Fatal(err)
		}
	}
	syncWithin(t, a, 60*time.Second)
	syncWithin(t, b, 60*time.Second)
	checkExactlyOnce(t, a.st, dsn, in.Schema, acked)

	at := time.Now().UTC()
	if _, err := ctlB.UpdateReset(1, func(cur *control.Reset) (*control.Reset, error) {
		return &control.Reset{RequestedAt: at}, nil
	}); err != nil {
		t.Fatal(err)
	}
	// Records keep coming during the reset.
	for i := 30; i < 40; i++ {
		var bodies [][]byte
		for k := range 10 {
			bodies = append(bodies, fmt.Appendf(nil, `{"n":%d}`, 10*i+k))
			acked[10*i+k] = true
		}
		if _, err := []*clusterNode{a, b}[i%2].st.Append(ctx, 1, time.Now(), bodies); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		done := 0
		for _, ctl := range []*control.Store{ctlA, ctlB} {
			for _, x := range ctl.AllIntegrations() {
				if x.ID == 1 && x.Reset != nil && x.Reset.RequestedAt.Equal(at) && x.Reset.FinishedAt != nil {
					done++
				}
			}
		}
		if done == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reset requested is not finished on both nodes after 60 s: %+v, %+v", a.l.Stats(1).Reset, b.l.Stats(1).Reset)
		}
		time.Sleep(20 * time.Millisecond)
	}
	syncWithin(t, a, 60*time.Second)
	syncWithin(t, b, 60*time.Second)
	rows := checkExactlyOnce(t, a.st, dsn, in.Schema, acked)
	drops := logA.count(dropped) + logB.count(dropped)
	if drops < 1 {
		t.Fatal("neither node made the reset")
	}
	t.Logf("both loading: the reset was made %d times (%s %d, %s %d), the warehouse's fence took care of the rest; %d rows, each once",
		drops, a.name, logA.count(dropped), b.name, logB.count(dropped), rows)
}

const dropped = "integration reset: tables dropped, reloading the log"
