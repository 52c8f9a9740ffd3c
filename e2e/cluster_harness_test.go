package e2e

// The cluster harness (issue 11): three real nats-server processes
// (internal/natsproc, sync_interval: always), a throwaway PostgreSQL database,
// and hookhouse nodes as child processes of the built binary, each serving with
// `--nats` on its own data dir and loopback port. Nodes can be SIGKILLed and
// restarted on the same dir and port; /status.json is read with the cluster
// fields of docs/cluster.md.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/natsproc"
	"github.com/hookhouse/hookhouse/internal/pgtest"
)

// hhCluster is a NATS cluster, a PostgreSQL database and hookhouse nodes.
type hhCluster struct {
	NATS   *natsproc.Cluster
	DSN    string // the warehouse database
	Stream string // --nats-stream, unique per test
	Nodes  []*hhNode
	Key    string // the admin key the first node minted
}

// hhNode is one `hookhouse serve --nats` process (nil proc while killed).
type hhNode struct {
	Name  string // --node-name
	Dir   string // --data
	Addr  string // --listen
	URL   string // http://Addr
	NATS  string // --nats: the URLs this node is given
	args  []string
	mu    sync.Mutex
	proc  *child
	Admin *client.Client
	key   string // the admin key: /status.json shows integrations only with it
}

// clusterOptions shape a test cluster.
type clusterOptions struct {
	Nodes int // hookhouse nodes (default 3)
	// Partitionable: the NATS routes go through proxies (natsproc.Isolate).
	Partitionable bool
	// NATSFor is the --nats of node i (default: every server's URL).
	NATSFor func(c *natsproc.Cluster, i int) string
}

var nonStreamChars = regexp.MustCompile(`[^A-Za-z0-9]+`)

// startHHCluster starts the NATS servers, a PostgreSQL database and the
// hookhouse nodes (the first alone, so that it mints the admin key, then the
// others), and waits until every node is ready.
func startHHCluster(t *testing.T, o clusterOptions) *hhCluster {
	t.Helper()
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.NATSFor == nil {
		o.NATSFor = func(c *natsproc.Cluster, _ int) string { return c.URLs() }
	}
	nc := natsproc.StartT(t, natsproc.Options{Partitionable: o.Partitionable})
	dsn, err := pgtest.Shared(t).NewDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	name := strings.ToLower(nonStreamChars.ReplaceAllString(t.Name(), "_"))
	cl := &hhCluster{NATS: nc, DSN: dsn, Stream: fmt.Sprintf("e2e_%s_%d", name, time.Now().UnixNano()%1e6)}
	for i := range o.Nodes {
		n := &hhNode{Name: fmt.Sprintf("hh-%d", i+1), Dir: t.TempDir(), Addr: freePort(t), NATS: o.NATSFor(nc, i)}
		n.URL = "http://" + n.Addr
		// info, not launchChild's debug: three nodes under load log a lot.
		n.args = []string{"--nats", n.NATS, "--warehouse", dsn, "--node-name", n.Name, "--nats-stream", cl.Stream, "--log-level", "info"}
		cl.Nodes = append(cl.Nodes, n)
	}
	cl.Nodes[0].Start(t)
	cl.Key = adminKey(t, cl.Nodes[0].Dir)
	// secret.key seals signing secrets and must be the same on every node
	// (docs/cluster.md): the others get a copy of the first node's.
	if key, err := os.ReadFile(filepath.Join(cl.Nodes[0].Dir, "secret.key")); err == nil {
		for _, n := range cl.Nodes[1:] {
			if err := os.WriteFile(filepath.Join(n.Dir, "secret.key"), key, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	var wg sync.WaitGroup
	for _, n := range cl.Nodes[1:] {
		wg.Go(func() { n.launch(t) })
	}
	wg.Wait()
	for _, n := range cl.Nodes {
		n.Admin, n.key = client.New(n.URL, cl.Key), cl.Key
		if !n.proc.waitReady(t) {
			t.Fatalf("%s exited before it was ready; stderr:\n%s", n.Name, n.proc.Stderr.String())
		}
	}
	return cl
}

// launch starts the node's process and does not wait.
func (n *hhNode) launch(t *testing.T) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil && !n.proc.Exited() {
		return
	}
	n.proc = launchChild(t, nil, n.Dir, n.Addr, n.args...)
}

// Start starts (or restarts) the node on its dir and port and waits until it
// is ready.
func (n *hhNode) Start(t *testing.T) {
	t.Helper()
	n.launch(t)
	if !n.proc.waitReady(t) {
		t.Fatalf("%s exited before it was ready; stderr:\n%s", n.Name, n.proc.Stderr.String())
	}
}

// Kill SIGKILLs the node and waits until the process is gone.
func (n *hhNode) Kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil {
		n.proc.Kill()
	}
}

// Logs is the node's stderr (its current or last process).
func (n *hhNode) Logs() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		return ""
	}
	return n.proc.Stderr.String()
}

// HookURL points a generated webhook URL at this node.
func (n *hhNode) HookURL(u string) string {
	i := strings.Index(u, "/v1/clients/")
	return n.URL + u[i:]
}

// nodeStatus is the part of /status.json the cluster tests read.
type nodeStatus struct {
	Status  string `json:"status"`
	Cluster *struct {
		Node string `json:"node"`
		NATS struct {
			Servers   []string `json:"servers"`
			Connected string   `json:"connected"`
			Stream    string   `json:"stream"`
			Replicas  []struct {
				Name    string `json:"name"`
				Leader  bool   `json:"leader"`
				Current bool   `json:"current"`
				Lag     uint64 `json:"lag"`
			} `json:"replicas"`
		} `json:"nats"`
	} `json:"cluster"`
	Integrations []struct {
		ID         int64  `json:"id"`
		LoaderNode string `json:"loader_node"`
		client.Stats
	} `json:"integrations"`
}

// Status reads the node's /status.json with the admin key (2 s timeout).
func (n *hhNode) Status(ctx context.Context) (*nodeStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/status.json", nil)
	req.Header.Set("Authorization", "Bearer "+n.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return nil, fmt.Errorf("GET /status.json = %d %s", resp.StatusCode, b)
	}
	var s nodeStatus
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("/status.json: %w", err)
	}
	return &s, nil
}

// LoaderNode is who loads integration id, as node n reports it ("" if none).
func (n *hhNode) LoaderNode(ctx context.Context, id int64) (string, error) {
	s, err := n.Status(ctx)
	if err != nil {
		return "", err
	}
	for _, in := range s.Integrations {
		if in.ID == id {
			return in.LoaderNode, nil
		}
	}
	return "", fmt.Errorf("integration %d not in %s's /status.json", id, n.Name)
}

// Node returns the node named name, or nil.
func (cl *hhCluster) Node(name string) *hhNode {
	for _, n := range cl.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Vero creates a Vero integration with schema through node 0's API and
// generates one webhook URL.
func (cl *hhCluster) Vero(t *testing.T, schema string) (int64, *client.WebhookURL) {
	t.Helper()
	ctx := context.Background()
	in, err := cl.Nodes[0].Admin.CreateIntegration(ctx, client.NewIntegration{Name: schema, Type: client.TypeVero, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	u, err := cl.Nodes[0].Admin.GenerateURL(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	return in.ID, u
}

// pgQuery runs sql on the warehouse database and calls row for each row.
func (cl *hhCluster) pgQuery(ctx context.Context, sql string, row func(pgx.Rows) error) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, cl.DSN)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// pgCount is SELECT count(*) FROM from; 0 while the table does not exist yet.
func (cl *hhCluster) pgCount(ctx context.Context, from string) (int64, error) {
	var n int64
	err := cl.pgQuery(ctx, "SELECT count(*) FROM "+from, func(r pgx.Rows) error { return r.Scan(&n) })
	if err != nil && strings.Contains(err.Error(), "does not exist") {
		return 0, nil
	}
	return n, err
}

// markedBody is a Vero sample with a unique "marker" field first.
func markedBody(sample []byte, marker string) []byte {
	s := bytes.TrimLeft(sample, " \t\r\n")
	return append([]byte(fmt.Sprintf(`{"marker":%q,`, marker)), s[1:]...)
}

// hookAnswer is one webhook POST's outcome.
type hookAnswer struct {
	status     int // 0: no answer (connection refused or reset, timeout)
	retryAfter string
	took       time.Duration
	err        error
}

var hookClient = &http.Client{Timeout: 20 * time.Second}

// postHook POSTs body as JSON to url.
func postHook(ctx context.Context, url string, body []byte) hookAnswer {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return hookAnswer{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hookClient.Do(req)
	if err != nil {
		return hookAnswer{err: err, took: time.Since(start)}
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return hookAnswer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), took: time.Since(start)}
}

// hookLoad posts marked Vero records from several workers, each to the URL
// targets gives it, until Stop, and remembers which markers were answered 200.
type hookLoad struct {
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup

	mu     sync.Mutex
	acked  map[string]time.Time     // marker → when its 200 arrived
	counts map[string]int           // per target and outcome: "hh-1 200", "hh-2 503", "hh-3 refused"
	bad    []string                 // answers that break a promise
	slow   map[string]time.Duration // the slowest answer per outcome ("200", "503", "no answer")
}

// startHookLoad starts workers; worker w's k-th request goes to target(w, k),
// which returns the node's name and webhook URL. Answers other than 200 or
// 503 with Retry-After (or no answer at all, from a killed node), and 503s
// later than 5 s, are recorded as bad.
func startHookLoad(samples [][]byte, workers int, prefix string, target func(w, k int) (string, string)) *hookLoad {
	l := &hookLoad{stop: make(chan struct{}), acked: map[string]time.Time{}, counts: map[string]int{}, slow: map[string]time.Duration{}}
	ctx, cancel := context.WithCancel(context.Background())
	for w := range workers {
		l.wg.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-l.stop:
					return
				default:
				}
				name, url := target(w, k)
				marker := fmt.Sprintf("%s-w%d-%d", prefix, w, k)
				a := postHook(ctx, url, markedBody(samples[k%len(samples)], marker))
				l.record(name, marker, a)
				if a.status != 200 {
					// Do not spin on a dead node or a refusing cluster.
					select {
					case <-l.stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
		})
	}
	go func() { <-l.stop; l.wg.Wait(); cancel() }()
	return l
}

func (l *hookLoad) record(node, marker string, a hookAnswer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	outcome := strconv.Itoa(a.status)
	if a.status == 0 {
		outcome = "no answer"
	}
	l.slow[outcome] = max(l.slow[outcome], a.took)
	switch {
	case a.status == 200:
		l.acked[marker] = time.Now()
		l.counts[node+" 200"]++
	case a.status == 503 && a.retryAfter != "":
		l.counts[node+" 503"]++
		if a.took > 5*time.Second && len(l.bad) < 20 {
			l.bad = append(l.bad, fmt.Sprintf("%s: %s answered 503 only after %s, want within 5 s", marker, node, a.took))
		}
	case a.status == 0:
		l.counts[node+" no answer"]++
	default:
		l.counts[fmt.Sprintf("%s %d", node, a.status)]++
		if len(l.bad) < 20 {
			l.bad = append(l.bad, fmt.Sprintf("%s: %s answered %d (Retry-After %q) after %s", marker, node, a.status, a.retryAfter, a.took))
		}
	}
}

// Stop ends the load and waits for the requests in flight (idempotent).
func (l *hookLoad) Stop() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// Acked is how many requests were answered 200 so far.
func (l *hookLoad) Acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// Count is how many answers of an outcome ("hh-1 200") there were so far.
func (l *hookLoad) Count(outcome string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[outcome]
}

// AckedMarkers is a copy of the markers answered 200 and when.
func (l *hookLoad) AckedMarkers() map[string]time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.acked)
}

// Bad is the answers that broke a promise (at most 20).
func (l *hookLoad) Bad() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.bad)
}

// Summary is the answers per node and outcome, for the log.
func (l *hookLoad) Summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var parts []string
	for k, v := range l.counts {
		parts = append(parts, fmt.Sprintf("%s: %d", k, v))
	}
	slices.Sort(parts)
	var slow []string
	for k, v := range l.slow {
		slow = append(slow, fmt.Sprintf("%s in %s", k, v.Round(time.Millisecond)))
	}
	slices.Sort(slow)
	return strings.Join(parts, ", ") + "; slowest: " + strings.Join(slow, ", ")
}

// Slowest is the slowest answer with the outcome ("200", "503").
func (l *hookLoad) Slowest(outcome string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.slow[outcome]
}

// checkExactlyOnce waits (up to timeout) until every marker in acked is a row
// of schema.data, then checks that no marker is there twice and that
// _sdc_sequence is unique. Rows of markers that were not acknowledged (a 503
// after a publish whose outcome was unknown) may be there, once.
func (cl *hhCluster) checkExactlyOnce(t *testing.T, schema string, acked map[string]time.Time, timeout time.Duration) {
	t.Helper()
	ctx := context.Background()
	var seen map[string]int
	waitFor(t, timeout, "every acknowledged record to be loaded", func() (bool, string) {
		seen = map[string]int{}
		err := cl.pgQuery(ctx, "SELECT marker, count(*) FROM "+schema+".data GROUP BY marker", func(r pgx.Rows) error {
			var m *string
			var n int
			if err := r.Scan(&m, &n); err != nil {
				return err
			}
			if m != nil {
				seen[*m] = n
			}
			return nil
		})
		if err != nil {
			return false, err.Error()
		}
		missing := 0
		for m := range acked {
			if seen[m] == 0 {
				missing++
			}
		}
		return missing == 0, fmt.Sprintf("%d of %d acknowledged records not loaded yet", missing, len(acked))
	})
	dups := 0
	for m, n := range seen {
		if n > 1 {
			dups++
			if dups <= 5 {
				t.Errorf("marker %s loaded %d times", m, n)
			}
		}
	}
	if dups > 0 {
		t.Errorf("%d markers loaded more than once", dups)
	}
	var rows, seqs, nullSeqs int64
	err := cl.pgQuery(ctx, "SELECT count(*), count(DISTINCT _sdc_sequence), count(*) - count(_sdc_sequence) FROM "+schema+".data",
		func(r pgx.Rows) error { return r.Scan(&rows, &seqs, &nullSeqs) })
	if err != nil {
		t.Fatal(err)
	}
	if seqs != rows || nullSeqs != 0 {
		t.Errorf("%s.data: %d rows but %d distinct _sdc_sequence (%d NULL)", schema, rows, seqs, nullSeqs)
	}
	t.Logf("%s.data: %d rows (%d acknowledged, %d more from answers that were not 200), _sdc_sequence unique", schema, rows, len(acked), rows-int64(len(acked)))
}
