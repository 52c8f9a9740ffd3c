package server

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/config"
	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/natstest"
	"github.com/hookhouse/hookhouse/internal/pgtest"
	"github.com/hookhouse/hookhouse/internal/secretbox"
)

// nodeLog is a node's log, kept to count what it did.
type nodeLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *nodeLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *nodeLog) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

// startLoggedNode is startNode with the node's log kept in log.
func startLoggedNode(t *testing.T, cfg config.Config, log *nodeLog) *clusterNode {
	t.Helper()
	s, err := Open(context.Background(), cfg, slog.New(slog.NewTextHandler(log, nil)))
	if err != nil {
		t.Fatalf("node %s: %v", cfg.NodeName, err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return &clusterNode{Server: s, stop: stop}
}

// dropped is what a node logs when it drops an integration's tables for a reset.
const dropped = "integration reset: tables dropped, reloading the log"

// TestClusterReset: three nodes; a reset (and a pause and resume) asked of
// nodes that do not load the integration reaches the one that does through
// the control data and its KV watch. The reset is made once, by the loading
// node; the asking node answers once the tables are dropped and then shows
// the reload's progress to the end; every record is in PostgreSQL once. A
// reset asked while the loading node is dead (its lease not released) is
// made by the node that takes over, and the asking node's request waits for it.
func TestClusterReset(t *testing.T) {
	ctx := context.Background()
	nc := natstest.Start(t, 3)
	dsn, err := pgtest.Shared(t).NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"hh-a", "hh-b", "hh-c"}
	logs := map[string]*nodeLog{}
	var nodes []*clusterNode
	var key []byte
	for i, name := range names {
		cfg := clusterConfig(t, nc.URLs(), "reset", name, dsn)
		if i > 0 {
			if err := os.WriteFile(filepath.Join(cfg.Data, secretbox.KeyFile), key, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		logs[name] = &nodeLog{}
		n := startLoggedNode(t, cfg, logs[name])
		if i == 0 {
			if key, err = os.ReadFile(filepath.Join(cfg.Data, secretbox.KeyFile)); err != nil {
				t.Fatal(err)
			}
		}
		nodes = append(nodes, n)
	}
	adminKey := nodes[0].AdminKey
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range names {
				t.Logf("log of %s:\n%s", name, logs[name].buf.String())
			}
		}
	})
	in, err := nodes[0].control.Create(control.NewIntegration{Name: "Orders", Type: control.TypeWebhooks}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, token, err := nodes[0].control.GenerateURL(in.ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	nodes[2].waitStatus(t, in.ID, token, http.StatusOK, 5*time.Second)
	want := 1 // the probe
	for i := range 90 {
		n := nodes[i%3]
		if got, _ := n.post(t, in.ID, token, fmt.Sprintf(`{"n":%d}`, i)); got != http.StatusOK {
			t.Fatalf("node %s: webhook %d: %d", n.cfg.NodeName, i, got)
		}
		want++
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows := func() (n, distinct int) {
		// Absent tables (just dropped) count as none.
		_ = conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT _sdc_sequence) FROM orders.data`).Scan(&n, &distinct)
		return n, distinct
	}
	waitRows := func(want int) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			n, _ := rows()
			if n >= want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 60s the warehouse has %d rows, want %d", n, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond) // a double load would show by now
		if n, d := rows(); n != want || d != want {
			t.Fatalf("warehouse: %d rows, %d distinct _sdc_sequence, want %d of each", n, d, want)
		}
	}
	waitRows(want)

	holder := waitNodeHolder(t, nodes, in.ID)
	var others []*clusterNode
	for _, n := range nodes {
		if n != holder {
			others = append(others, n)
		}
	}
	asker, pauser := others[0], others[1]
	clientOf := func(n *clusterNode) *client.Client { return client.New("http://"+n.Addr(), adminKey) }
	t.Logf("%s loads; asking %s to reset, %s to pause and resume", holder.cfg.NodeName, asker.cfg.NodeName, pauser.cfg.NodeName)

	// A pause asked of a node that does not load reaches the loading node.
	if _, err := clientOf(pauser).SetPaused(ctx, in.ID, true); err != nil {
		t.Fatal(err)
	}
	waitPaused(t, holder, in.ID)
	if got, _ := asker.post(t, in.ID, token, `{"n":1000}`); got != http.StatusOK {
		t.Fatalf("webhook while paused: %d", got)
	}
	want++
	time.Sleep(time.Second) // BatchWait is 100 ms: a loading node would have loaded it
	if n, _ := rows(); n != want-1 {
		t.Fatalf("while paused the warehouse has %d rows, want %d", n, want-1)
	}

	// The reset asked of a node that does not load is made by the one that
	// does (paused: nothing reloads yet); the asker answers once it is
	// committed and shows its progress.
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	out, err := clientOf(asker).Reset(rctx, in.ID, false)
	if err != nil {
		t.Fatalf("reset asked of %s: %v", asker.cfg.NodeName, err)
	}
	rs := out.Stats.Reset
	if rs == nil || rs.CommittedAt == nil || rs.Done || rs.RecordsTotal != int64(want) || rs.RecordsReloaded != 0 || rs.FromPosition != 1 {
		t.Fatalf("the reset's progress on %s right after it: %+v, want committed, 0 of %d reloaded", asker.cfg.NodeName, rs, want)
	}
	if n, _ := rows(); n != 0 {
		t.Fatalf("after the reset (paused) the warehouse has %d rows, want 0", n)
	}
	if got := logs[holder.cfg.NodeName].count(dropped); got != 1 {
		t.Fatalf("%s (loading) dropped the tables %d times, want 1", holder.cfg.NodeName, got)
	}
	if got := logs[asker.cfg.NodeName].count("reset requested"); got != 1 {
		t.Fatalf("%s logged %d reset requests, want 1", asker.cfg.NodeName, got)
	}
	// Resumed through the third node: the reload runs on the loading node and
	// the asker shows it to the end.
	if _, err := clientOf(pauser).SetPaused(ctx, in.ID, false); err != nil {
		t.Fatal(err)
	}
	final := followReset(t, clientOf(asker), in.ID, rs.RequestedAt)
	if final.RecordsReloaded != int64(want) || final.RecordsTotal != int64(want) {
		t.Fatalf("done on %s: %+v, want %d of %d reloaded", asker.cfg.NodeName, final, want, want)
	}
	waitRows(want)
	for _, name := range names {
		if got, wantDrops := logs[name].count(dropped), map[bool]int{true: 1}[name == holder.cfg.NodeName]; got != wantDrops {
			t.Fatalf("%s dropped the tables %d times, want %d", name, got, wantDrops)
		}
	}

	// Kill the loading node: its NATS connection cut, so its lease stays
	// until its TTL, then stopped. A reset asked meanwhile waits for the node
	// that takes over, which makes it once.
	holder.cluster.nc.Close()
	killed := time.Now()
	go holder.stop()
	rctx2, cancel2 := context.WithTimeout(ctx, 60*time.Second)
	defer cancel2()
	out, err = clientOf(asker).Reset(rctx2, in.ID, false)
	if err != nil {
		t.Fatalf("reset asked of %s while the loading node is dead: %v", asker.cfg.NodeName, err)
	}
	t.Logf("the reset asked while %s was dead was committed %s after the kill", holder.cfg.NodeName, time.Since(killed).Round(time.Millisecond))
	rs2 := out.Stats.Reset
	if rs2 == nil || rs2.CommittedAt == nil || !rs2.RequestedAt.After(rs.RequestedAt) || rs2.RecordsTotal != int64(want) {
		t.Fatalf("second reset's progress: %+v, want a newer committed reset of %d records", rs2, want)
	}
	final = followReset(t, clientOf(asker), in.ID, rs2.RequestedAt)
	if final.RecordsReloaded != int64(want) {
		t.Fatalf("second reset done: %+v, want %d reloaded", final, want)
	}
	waitRows(want)
	var drops int
	for _, n := range others {
		drops += logs[n.cfg.NodeName].count(dropped)
	}
	if drops != 1 {
		t.Fatalf("the live nodes dropped the tables %d times for the second reset, want 1", drops)
	}
	if got := logs[holder.cfg.NodeName].count(dropped); got != 1 {
		t.Fatalf("the dead node dropped the tables %d times in all, want 1", got)
	}
}

// waitNodeHolder waits until every node names the same loading node.
func waitNodeHolder(t *testing.T, nodes []*clusterNode, id int64) *clusterNode {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var holder *clusterNode
		agree := true
		for _, n := range nodes {
			name, ok := n.loader.LeaseHolder(id)
			if !ok {
				agree = false
				break
			}
			for _, m := range nodes {
				if m.cfg.NodeName == name {
					if holder != nil && holder != m {
						agree = false
					}
					holder = m
				}
			}
		}
		if agree && holder != nil {
			return holder
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the nodes do not agree on the loading node within 60 s")
	return nil
}

// waitPaused waits until n's loader sees integration id paused.
func waitPaused(t *testing.T, n *clusterNode, id int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !n.loader.Stats(id).Paused {
		if time.Now().After(deadline) {
			t.Fatalf("%s does not see the pause after 5 s", n.cfg.NodeName)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// followReset polls c until the reset requested at at is done, as the CLI
// does, and returns its final progress; the reloaded count never goes back.
func followReset(t *testing.T, c *client.Client, id int64, at time.Time) *client.ResetProgress {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last int64
	var steps []int64
	for {
		got, err := c.Integration(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		r := got.Stats.Reset
		if r == nil || !r.RequestedAt.Equal(at) {
			t.Fatalf("the node shows reset %+v, want the one requested at %s", r, at)
		}
		if r.RecordsReloaded < last {
			t.Fatalf("the reload went back from %d to %d records", last, r.RecordsReloaded)
		}
		if r.RecordsReloaded != last {
			steps = append(steps, r.RecordsReloaded)
		}
		last = r.RecordsReloaded
		if r.Done {
			t.Logf("reload progress seen: %v of %d", steps, r.RecordsTotal)
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reset is not done after 60 s: %+v", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
