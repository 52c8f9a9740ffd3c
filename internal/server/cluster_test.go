package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/config"
	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/natstest"
	"github.com/hookhouse/hookhouse/internal/pgtest"
	"github.com/hookhouse/hookhouse/internal/secretbox"
	"github.com/jackc/pgx/v5"
)

// clusterNode is one hookhouse node of a test cluster, serving HTTP.
type clusterNode struct {
	*Server
	stop func()
}

func clusterConfig(t *testing.T, natsURLs, stream, node, dsn string) config.Config {
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.BatchWait = 100 * time.Millisecond
	cfg.Warehouse = dsn
	cfg.NATS, cfg.NATSStream, cfg.NodeName = natsURLs, stream, node
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func startNode(t *testing.T, cfg config.Config) *clusterNode {
	t.Helper()
	s, err := Open(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
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

// post sends one webhook and returns the status and the Retry-After header.
func (n *clusterNode) post(t *testing.T, id int64, token, body string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Post(fmt.Sprintf("http://%s/v1/clients/%d/token/%s", n.Addr(), id, token), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

// waitStatus posts until the answer is want, and returns how long it took.
func (n *clusterNode) waitStatus(t *testing.T, id int64, token string, want int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got, _ := n.post(t, id, token, `{"probe":true}`)
		if got == want {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("node %s: still %d after %s, want %d", n.cfg.NodeName, got, within, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestClusterServe runs two hookhouse nodes on one embedded 3-server JetStream
// cluster and one PostgreSQL: the first node mints the admin key, the second
// uses it and needs the first's secret.key; integrations and URLs made on one
// node are served by the other, a revocation takes effect on the other within
// 1 s, concurrent creates get distinct ids, webhooks to both are loaded once,
// a node whose control watch is broken still refuses a revoked URL, and with
// NATS gone a webhook gets 503 + Retry-After within 5 s.
func TestClusterServe(t *testing.T) {
	ctx := context.Background()
	nc := natstest.Start(t, 3)
	pg, err := pgtest.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close() })
	dsn, err := pg.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}

	a := startNode(t, clusterConfig(t, nc.URLs(), "serve", "hh-a", dsn))
	if a.AdminKey == "" {
		t.Fatal("the first node did not mint the admin key")
	}
	adminKey := a.AdminKey
	if b, err := os.ReadFile(a.cfg.AdminKeyPath()); err != nil || strings.TrimSpace(string(b)) != adminKey {
		t.Fatalf("the first node's admin.key: %q, %v", b, err)
	}

	// A second node with its own secret.key is refused, saying what to do.
	cfgB := clusterConfig(t, nc.URLs(), "serve", "hh-b", dsn)
	_, err = Open(ctx, cfgB, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "secret.key") || !strings.Contains(err.Error(), "HOOKHOUSE_SECRET_KEY") {
		t.Fatalf("second node with another secret key: %v, want a refusal naming secret.key", err)
	}
	key, err := os.ReadFile(filepath.Join(a.cfg.Data, secretbox.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfgB.Data, secretbox.KeyFile), key, 0o600); err != nil {
		t.Fatal(err)
	}
	b := startNode(t, cfgB)
	if b.AdminKey != "" {
		t.Fatal("the second node minted another admin key")
	}
	if _, err := os.Stat(b.cfg.AdminKeyPath()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the second node wrote admin.key: %v", err)
	}
	if !b.control.CheckAdminKey(adminKey) {
		t.Fatal("the second node does not take the first node's admin key")
	}

	// An integration and a URL made on A are served by B.
	in, err := a.control.Create(control.NewIntegration{Name: "Orders", Type: control.TypeWebhooks}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, token, err := a.control.GenerateURL(in.ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	took := b.waitStatus(t, in.ID, token, http.StatusOK, 5*time.Second)
	t.Logf("a URL generated on A was accepted by B after %s", took)
	// B's loader supervisor starts workers from this list.
	if all := b.control.AllIntegrations(); len(all) != 1 || all[0].ID != in.ID {
		t.Fatalf("B lists integrations %+v", all)
	}
	if took > time.Second {
		t.Errorf("a URL generated on A took %s to work on B, want within 1s", took)
	}

	// Webhooks to both nodes are loaded once.
	const perNode = 40
	for i := range perNode {
		for _, n := range []*clusterNode{a, b} {
			if got, _ := n.post(t, in.ID, token, fmt.Sprintf(`{"n":%d,"node":%q}`, i, n.cfg.NodeName)); got != http.StatusOK {
				t.Fatalf("node %s: webhook %d: %d", n.cfg.NodeName, i, got)
			}
		}
	}
	want := 2*perNode + 1 // and the probe
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rows, distinct int
	deadline := time.Now().Add(30 * time.Second)
	for {
		err = conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT _sdc_sequence) FROM orders.data`).Scan(&rows, &distinct)
		if err == nil && rows >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s the warehouse has %d rows (%v), want %d", rows, err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a second loader would have loaded again by now
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT _sdc_sequence) FROM orders.data`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != want || distinct != want {
		t.Fatalf("warehouse: %d rows, %d distinct sequences, want %d of each", rows, distinct, want)
	}

	// A URL revoked on A is refused by B within 1 s.
	urls, err := a.control.URLs(in.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.control.RevokeURL(in.ID, urls[0].ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	took = b.waitStatus(t, in.ID, token, http.StatusUnauthorized, 5*time.Second)
	t.Logf("a URL revoked on A was refused by B after %s", took)
	if took > time.Second {
		t.Errorf("a revocation on A took %s to reach B, want within 1s", took)
	}
	// B's last-use flush must not write the revoked URL back as active.
	if err := b.control.FlushLastUsed(); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.post(t, in.ID, token, `{}`); got != http.StatusUnauthorized {
		t.Fatalf("after B's last-use flush A answers %d for the revoked URL, want 401", got)
	}

	// Concurrent creates on A and B get distinct ids.
	var wg sync.WaitGroup
	ids := make(chan int64, 20)
	for i := range 10 {
		for _, n := range []*clusterNode{a, b} {
			wg.Go(func() {
				in, err := n.control.Create(control.NewIntegration{Name: fmt.Sprintf("Race %s %d", n.cfg.NodeName, i), Type: control.TypeVero}, time.Now())
				if err != nil {
					t.Errorf("create on %s: %v", n.cfg.NodeName, err)
					return
				}
				ids <- in.ID
			})
		}
	}
	wg.Wait()
	close(ids)
	seen := map[int64]bool{}
	for id := range ids {
		if seen[id] {
			t.Errorf("integration id %d handed out twice", id)
		}
		seen[id] = true
	}
	if len(seen) != 20 {
		t.Errorf("%d distinct ids from 20 creates", len(seen))
	}
	// The same schema asked of both nodes at once goes to one integration.
	errs := make(chan error, 2)
	for _, n := range []*clusterNode{a, b} {
		wg.Go(func() {
			_, err := n.control.Create(control.NewIntegration{Name: "Same Schema", Type: control.TypeVero}, time.Now())
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	ok := 0
	for err := range errs {
		if err == nil {
			ok++
		} else if !errors.Is(err, control.ErrConflict) {
			t.Errorf("create of a taken schema: %v, want a conflict", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d integrations got schema same_schema, want 1", ok)
	}

	// /status.json shows the cluster to the admin, /metrics the node. B's
	// watch may still be applying the creates above.
	st := getStatus(t, b, adminKey)
	start := time.Now()
	for ; st.Cluster != nil && st.Cluster.NATS != nil && st.Cluster.NATS.ControlWatch != "current"; st = getStatus(t, b, adminKey) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("B's control watch is not current 10s after the last change: %s", st.Cluster.NATS.ControlWatch)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("B's control watch was current %s after the concurrent creates", time.Since(start).Round(time.Millisecond))
	if st.Cluster == nil || st.Cluster.Node != "hh-b" || st.Cluster.NATS == nil || st.Cluster.NATS.Stream != "serve" ||
		st.Cluster.NATS.Connected == "" || len(st.Cluster.NATS.Servers) == 0 {
		t.Fatalf("status cluster block: %+v", st.Cluster)
	}
	if pub := getStatus(t, b, ""); pub.Cluster == nil || pub.Cluster.NATS != nil || pub.Cluster.Node != "hh-b" {
		t.Fatalf("public status cluster block: %+v, want the node's name only", pub.Cluster)
	}
	if len(st.Cluster.NATS.Replicas) != 3 || !st.Cluster.NATS.Replicas[0].Leader || st.Cluster.NATS.ControlWatch != "current" {
		t.Errorf("status replicas %+v, control watch %q; want 3, the leader first, and current", st.Cluster.NATS.Replicas, st.Cluster.NATS.ControlWatch)
	}
	for _, in := range st.Integrations {
		if strings.Contains(fmt.Sprint(in), adminKey) || strings.Contains(fmt.Sprint(in), token) {
			t.Fatal("status holds a secret")
		}
	}
	page := get(t, "http://"+b.Addr()+"/status", adminKey)
	if !strings.Contains(page, `id="cluster"`) || !strings.Contains(page, `<code id="cluster-node">hh-b</code>`) ||
		strings.Count(page, "data-replica=") != 3 || !strings.Contains(page, "Loaded by") {
		t.Errorf("/status lacks the cluster panel:\n%s", page)
	}
	metrics := get(t, "http://"+b.Addr()+"/metrics", "")
	if !strings.Contains(metrics, `hookhouse_node_info{node="hh-b"} 1`) || strings.Count(metrics, "hookhouse_nats_replica_current{") != 3 {
		t.Errorf("metrics lack hookhouse_node_info for hh-b or the 3 replicas")
	}
	// Backups are NATS's in cluster mode.
	req, _ := http.NewRequest("POST", "http://"+b.Addr()+"/api/v1/backup", nil)
	req.Header.Set("Authorization", "Bearer "+adminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotImplemented || !strings.Contains(string(body), "nats stream backup") {
		t.Errorf("backup in cluster mode: %d %s, want 501 naming NATS stream backups", resp.StatusCode, body)
	}

	// B's watch breaks: B checks URLs against the cluster, so a URL revoked
	// on A is refused at once, and one it has never seen gets 503.
	_, token2, err := a.control.GenerateURL(in.ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b.waitStatus(t, in.ID, token2, http.StatusOK, 5*time.Second)
	b.cluster.watch.Stop()
	if got, _ := b.post(t, in.ID, token2, `{}`); got != http.StatusOK {
		t.Fatalf("B with a broken watch: an active URL got %d, want 200", got)
	}
	urls, _ = a.control.URLs(in.ID)
	if err := a.control.RevokeURL(in.ID, urls[len(urls)-1].ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.post(t, in.ID, token2, `{}`); got != http.StatusUnauthorized {
		t.Fatalf("B with a broken watch: a URL revoked on A got %d, want 401", got)
	}
	_, token3, err := a.control.GenerateURL(in.ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got, retry := b.post(t, in.ID, token3, `{}`); got != http.StatusServiceUnavailable || retry == "" {
		t.Fatalf("B with a broken watch: a URL it has not seen got %d (Retry-After %q), want 503 with Retry-After", got, retry)
	}
	if st := getStatus(t, b, adminKey); !strings.Contains(st.Cluster.NATS.ControlWatch, "stopped") {
		t.Errorf("B's status says the control watch is %q", st.Cluster.NATS.ControlWatch)
	}

	// NATS gone: 503 + Retry-After within 5 s, never 200.
	for i := range 3 {
		nc.Stop(i)
	}
	for _, n := range []*clusterNode{a, b} {
		start := time.Now()
		got, retry := n.post(t, in.ID, token3, `{"after":"nats stopped"}`)
		took := time.Since(start)
		t.Logf("node %s with NATS down: %d after %s", n.cfg.NodeName, got, took)
		if got != http.StatusServiceUnavailable || retry == "" {
			t.Errorf("node %s with NATS down: %d (Retry-After %q), want 503 with Retry-After", n.cfg.NodeName, got, retry)
		}
		if took > 5*time.Second {
			t.Errorf("node %s with NATS down answered after %s, want within 5s", n.cfg.NodeName, took)
		}
	}
	// NATS back: the nodes take webhooks again, and shut down in order.
	for i := range 3 {
		nc.Restart(i)
	}
	a.waitStatus(t, in.ID, token3, http.StatusOK, 30*time.Second)
	for _, n := range []*clusterNode{a, b} {
		start := time.Now()
		n.stop()
		t.Logf("node %s stopped in %s", n.cfg.NodeName, time.Since(start).Round(time.Millisecond))
	}
}

func get(t *testing.T, url, key string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func getStatus(t *testing.T, n *clusterNode, key string) Status {
	t.Helper()
	var st Status
	if err := json.Unmarshal([]byte(get(t, "http://"+n.Addr()+"/status.json", key)), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestConnectNATSRefusals: credentials NATS cannot use are refused at once
// with a message naming the flag, without the credentials in it; servers that
// are not there are waited for, then named.
func TestConnectNATSRefusals(t *testing.T) {
	c := natstest.Start(t, 3)
	creds := filepath.Join(t.TempDir(), "bad.creds")
	if err := os.WriteFile(creds, []byte("not a credentials file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.NATS, cfg.NATSCreds, cfg.NodeName = c.URL(0), creds, "hh-x"
	start := time.Now()
	_, err := ConnectNATS(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "--nats-creds") || time.Since(start) > 5*time.Second {
		t.Fatalf("bad credentials: %v after %s; want a refusal naming --nats-creds at once", err, time.Since(start))
	}
	nc, err := ConnectNATS(context.Background(), func() config.Config { c2 := cfg; c2.NATSCreds = ""; return c2 }(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if name := nc.Opts.Name; name != "hookhouse hh-x" {
		t.Errorf("connection name %q", name)
	}
	nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cfg.NATS, cfg.NATSCreds = "nats://u:pw1234@127.0.0.1:1", ""
	_, err = ConnectNATS(ctx, cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "cannot reach") || strings.Contains(err.Error(), "pw1234") {
		t.Fatalf("no server: %v; want 'cannot reach' without the password", err)
	}
}
