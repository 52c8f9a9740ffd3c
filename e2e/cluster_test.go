package e2e

// Cluster mode end to end (issue 11, docs/cluster.md): real nats-server and
// hookhouse processes, a real PostgreSQL, real kills and a real (TCP proxy)
// partition.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookhouse/hookhouse/internal/natsproc"
)

// failoverBound is how soon another node must load an integration whose
// lease holder died (issue 11).
const failoverBound = 15 * time.Second

// veroSamples reads the 14 Vero samples.
func veroSamples(t *testing.T) [][]byte {
	t.Helper()
	var out [][]byte
	for _, f := range veroFiles(t) {
		out = append(out, mustRead(t, f))
	}
	return out
}

// natsConn connects the test itself to the cluster (for leader queries).
func natsConn(t *testing.T, c *natsproc.Cluster) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// waitAccepted posts marked records to url on each node until each answers
// 200 (the URL generated elsewhere has reached it), and returns the markers
// acknowledged and how long each node took from start.
func waitAccepted(t *testing.T, nodes []*hhNode, hook string, sample []byte, prefix string, start time.Time) (map[string]time.Time, map[string]time.Duration) {
	t.Helper()
	var mu sync.Mutex
	acked := map[string]time.Time{}
	took := map[string]time.Duration{}
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			deadline := start.Add(30 * time.Second)
			last := ""
			for k := 0; time.Now().Before(deadline); k++ {
				marker := fmt.Sprintf("%s-%s-%d", prefix, n.Name, k)
				a := postHook(context.Background(), n.HookURL(hook), markedBody(sample, marker))
				if a.status == 200 {
					mu.Lock()
					acked[marker] = time.Now()
					took[n.Name] = time.Since(start)
					mu.Unlock()
					return
				}
				last = fmt.Sprintf("%d %v", a.status, a.err)
				time.Sleep(10 * time.Millisecond)
			}
			t.Errorf("%s did not accept the new URL within 30 s; last answer %s", n.Name, last)
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return acked, took
}

// TestClusterNodeLoss: three hookhouse nodes take webhooks concurrently while
// a NATS server (the stream's leader) and the hookhouse node holding the
// loader lease are SIGKILLed, then restarted. Every 200 is in PostgreSQL
// exactly once, _sdc_sequence stays unique, and another node resumes loading
// within 15 s of the lease holder's death (measured and logged).
func TestClusterNodeLoss(t *testing.T) {
	cl := startHHCluster(t, clusterOptions{})
	defer func() {
		if t.Failed() {
			t.Logf("the nodes' logs, last lines:\n%s", survivorLogs(cl, nil))
		}
	}()
	ctx := context.Background()
	const schema = "cluster_loss"
	id, u := cl.Vero(t, schema)
	samples := veroSamples(t)
	warm, _ := waitAccepted(t, cl.Nodes, u.URL, samples[0], "warm", time.Now())

	hooks := make([]string, len(cl.Nodes))
	for i, n := range cl.Nodes {
		hooks[i] = n.HookURL(u.URL)
	}
	load := startHookLoad(samples, 6, "load", func(w, k int) (string, string) {
		i := (w + k) % len(cl.Nodes)
		return cl.Nodes[i].Name, hooks[i]
	})
	defer load.Stop()

	// Loading is under way and one node holds the lease.
	var holder *hhNode
	waitFor(t, 60*time.Second, "rows in PostgreSQL and a lease holder", func() (bool, string) {
		n, err := cl.pgCount(ctx, schema+".data")
		if err != nil || n < 30 {
			return false, fmt.Sprintf("%d rows, %v", n, err)
		}
		name, err := cl.Nodes[0].LoaderNode(ctx, id)
		if err != nil || name == "" {
			return false, fmt.Sprintf("%d rows; loader_node %q, %v", n, name, err)
		}
		holder = cl.Node(name)
		return holder != nil, fmt.Sprintf("loader_node %q is no node of this cluster", name)
	})
	nc := natsConn(t, cl.NATS)
	victim := cl.NATS.StreamLeader(ctx, nc, cl.Stream)
	if victim < 0 {
		victim = 0
		t.Logf("the stream %s's leader is unknown; killing %s", cl.Stream, cl.NATS.Name(victim))
	}
	t.Logf("killing NATS server %s (the stream leader) and %s (the loader lease holder) after %d acknowledged records",
		cl.NATS.Name(victim), holder.Name, load.Acked())

	killed := time.Now()
	cl.NATS.Kill(victim)
	holder.Kill()
	before, err := cl.pgCount(ctx, schema+".data")
	if err != nil {
		t.Fatal(err)
	}
	// Failover: a survivor says it holds the lease, and rows arrive that no
	// dead process can have written.
	var failover time.Duration
	var newHolder string
	last := ""
	for deadline := killed.Add(60 * time.Second); failover == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("no other node loaded %s's records within 60 s of its death; last: %s\nsurvivor logs:\n%s", holder.Name, last, survivorLogs(cl, holder))
		}
		n, err := cl.pgCount(ctx, schema+".data")
		last = fmt.Sprintf("%d rows (%d at the kill), %v", n, before, err)
		if err == nil && n > before {
			for _, s := range cl.Nodes {
				if s == holder {
					continue
				}
				if name, err := s.LoaderNode(ctx, id); err == nil && name == s.Name {
					failover, newHolder = time.Since(killed), name
					break
				} else {
					last += fmt.Sprintf("; %s says loader_node %q (%v)", s.Name, name, err)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("FAILOVER: lease holder %s SIGKILLed (with NATS server %s) → rows loaded by %s after %s (bound %s)",
		holder.Name, cl.NATS.Name(victim), newHolder, failover.Round(10*time.Millisecond), failoverBound)
	if failover > failoverBound {
		t.Errorf("failover took %s, over the %s bound", failover.Round(10*time.Millisecond), failoverBound)
	}

	// Both come back; the restarted node takes webhooks again.
	if err := cl.NATS.Restart(ctx, victim); err != nil {
		t.Fatal(err)
	}
	holder.Start(t)
	if err := cl.NATS.WaitStreamCurrent(ctx, nc, cl.Stream); err != nil {
		t.Fatal(err)
	}
	// Every node's /status.json names it and shows the stream's three
	// replicas current again.
	waitFor(t, 30*time.Second, "every node to show 3 current replicas", func() (bool, string) {
		for _, n := range cl.Nodes {
			st, err := n.Status(ctx)
			if err != nil {
				return false, err.Error()
			}
			if st.Cluster == nil || st.Cluster.Node != n.Name || st.Cluster.NATS.Stream != cl.Stream {
				return false, fmt.Sprintf("%s: cluster = %+v", n.Name, st.Cluster)
			}
			current := 0
			for _, r := range st.Cluster.NATS.Replicas {
				if r.Current {
					current++
				}
			}
			if len(st.Cluster.NATS.Replicas) != 3 || current != 3 {
				return false, fmt.Sprintf("%s: replicas %+v", n.Name, st.Cluster.NATS.Replicas)
			}
		}
		return true, ""
	})
	back := load.Count(holder.Name + " 200")
	waitFor(t, 30*time.Second, "the restarted node to answer 200 again", func() (bool, string) {
		n := load.Count(holder.Name + " 200")
		return n > back+10, fmt.Sprintf("%d 200s from %s since its restart", n-back, holder.Name)
	})
	load.Stop()
	t.Logf("answers: %s", load.Summary())
	for _, b := range load.Bad() {
		t.Errorf("broken promise: %s", b)
	}
	acked := load.AckedMarkers()
	for m, at := range warm {
		acked[m] = at
	}
	cl.checkExactlyOnce(t, schema, acked, 90*time.Second)
}

// survivorLogs is the last lines of every node's log but dead's.
func survivorLogs(cl *hhCluster, dead *hhNode) string {
	var b strings.Builder
	for _, n := range cl.Nodes {
		if n != dead {
			fmt.Fprintf(&b, "--- %s:\n%s\n", n.Name, tail(n.Logs(), 3000))
		}
	}
	return b.String()
}

// TestClusterRevocation: a URL generated on node A works on B and C within
// 1 s; a URL revoked on A is refused (401) by B and C within 1 s, and stays
// refused. The latencies are logged.
func TestClusterRevocation(t *testing.T) {
	cl := startHHCluster(t, clusterOptions{})
	ctx := context.Background()
	a, others := cl.Nodes[0], cl.Nodes[1:]
	id, u1 := cl.Vero(t, "cluster_revoke")
	samples := veroSamples(t)
	// The first URL (and the integration) reached every node.
	waitAccepted(t, cl.Nodes, u1.URL, samples[0], "first", time.Now())

	// A new URL.
	start := time.Now()
	u2, err := a.Admin.GenerateURL(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	generated := time.Now()
	_, took := waitAccepted(t, others, u2.URL, samples[1], "second", generated)
	for _, n := range others {
		t.Logf("GENERATE: new URL accepted by %s %s after the API answered (%s after the call)",
			n.Name, took[n.Name].Round(time.Millisecond), (took[n.Name] + generated.Sub(start)).Round(time.Millisecond))
		if took[n.Name] > time.Second {
			t.Errorf("%s accepted a URL generated on %s only after %s, want within 1 s", n.Name, a.Name, took[n.Name])
		}
	}

	// Revoke the first URL on A.
	start = time.Now()
	if err := a.Admin.RevokeURL(ctx, id, u1.ID); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	if a := postHook(ctx, a.HookURL(u1.URL), markedBody(samples[2], "revoked-on-a")); a.status != 401 {
		t.Errorf("node A answered %d to the URL it revoked, want 401", a.status)
	}
	var wg sync.WaitGroup
	for _, n := range others {
		wg.Go(func() {
			var refusedAt time.Duration
			for k := 0; ; k++ {
				a := postHook(ctx, n.HookURL(u1.URL), markedBody(samples[k%len(samples)], fmt.Sprintf("revoked-%s-%d", n.Name, k)))
				switch {
				case a.status == 401 && refusedAt == 0:
					refusedAt = time.Since(revoked)
					t.Logf("REVOKE: %s refuses the URL revoked on %s %s after the API answered (%s after the call)",
						n.Name, cl.Nodes[0].Name, refusedAt.Round(time.Millisecond), (refusedAt + revoked.Sub(start)).Round(time.Millisecond))
					if refusedAt > time.Second {
						t.Errorf("%s still accepted a URL revoked on %s for %s, want at most 1 s", n.Name, cl.Nodes[0].Name, refusedAt)
					}
				case a.status == 401 || (a.status == 429 && refusedAt != 0):
					// Still refused (429: the node's limit on requests
					// with unknown or revoked URLs from one address).
				case refusedAt != 0:
					t.Errorf("%s answered %d to the revoked URL after it had refused it", n.Name, a.status)
					return
				case a.status != 200:
					t.Errorf("%s answered %d (%v) to the URL before its revocation reached it", n.Name, a.status, a.err)
					return
				case time.Since(revoked) > 10*time.Second:
					t.Errorf("%s still accepts a URL revoked on %s 10 s ago", n.Name, cl.Nodes[0].Name)
					return
				}
				// Keep asking for a while after the first refusal: a
				// revoked URL must stay revoked.
				if refusedAt != 0 && time.Since(revoked) > refusedAt+time.Second {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	// The second URL still works everywhere.
	for _, n := range cl.Nodes {
		if a := postHook(ctx, n.HookURL(u2.URL), markedBody(samples[3], "after-"+n.Name)); a.status != 200 {
			t.Errorf("%s answered %d to the URL that was not revoked", n.Name, a.status)
		}
	}
}

// moveLeadersOff asks every stream (KV buckets included) led by server i to
// elect another leader, until none is led by it, so that cutting server i off
// tests the minority side and not a leader election on the majority side. (The
// meta leader only matters for creating streams and consumers; moving it needs
// the system account, which the test cluster does not have.)
func moveLeadersOff(t *testing.T, c *natsproc.Cluster, nc *nats.Conn, i int) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	name := c.Name(i)
	waitFor(t, 60*time.Second, "no stream led by "+name, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var led []string
		lister := js.ListStreams(ctx)
		for s := range lister.Info() {
			switch {
			case s.Cluster == nil || s.Cluster.Leader == "":
				led = append(led, s.Config.Name+" (no leader yet)")
			case s.Cluster.Leader == name:
				led = append(led, s.Config.Name)
				nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+s.Config.Name, nil, 2*time.Second)
			}
		}
		if err := lister.Err(); err != nil && err != jetstream.ErrEndOfData {
			return false, err.Error()
		}
		return len(led) == 0, fmt.Sprintf("%s leads or may lead %v", name, led)
	})
}

// TestClusterPartition: one NATS server is cut off from the other two (TCP
// proxies on the routes) with a hookhouse node that can reach only it. That
// node answers every webhook 503 with Retry-After within 5 s, never 200; the
// nodes on the majority side keep answering 200. After the partition heals,
// the cut-off node answers 200 again and every 200 is loaded exactly once.
func TestClusterPartition(t *testing.T) {
	cl := startHHCluster(t, clusterOptions{Partitionable: true, NATSFor: func(c *natsproc.Cluster, i int) string {
		if i == 2 {
			return c.URL(2)
		}
		return c.URL(0) + "," + c.URL(1)
	}})
	ctx := context.Background()
	const schema = "cluster_partition"
	_, u := cl.Vero(t, schema)
	samples := veroSamples(t)
	acked, _ := waitAccepted(t, cl.Nodes, u.URL, samples[0], "warm", time.Now())
	majority, minority := cl.Nodes[:2], cl.Nodes[2]

	nc, err := nats.Connect(cl.NATS.URL(0)+","+cl.NATS.URL(1), nats.IgnoreDiscoveredServers())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	moveLeadersOff(t, cl.NATS, nc, 2)
	st, err := minority.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Cluster == nil || st.Cluster.NATS.Connected != cl.NATS.URL(2) {
		t.Fatalf("%s's /status.json cluster = %+v, want it connected to %s", minority.Name, st.Cluster, cl.NATS.URL(2))
	}

	load := startHookLoad(samples, 4, "majority", func(w, k int) (string, string) {
		n := majority[(w+k)%len(majority)]
		return n.Name, n.HookURL(u.URL)
	})
	defer load.Stop()
	waitFor(t, 30*time.Second, "the majority side to answer 200s", func() (bool, string) {
		return load.Acked() >= 20, fmt.Sprintf("%d acknowledged", load.Acked())
	})
	okBefore := load.Count(majority[0].Name+" 200") + load.Count(majority[1].Name+" 200")
	refusedBefore := load.Count(majority[0].Name+" 503") + load.Count(majority[1].Name+" 503")

	cut := time.Now()
	cl.NATS.Isolate(2)
	const isolated = 8 * time.Second
	var (
		mu       sync.Mutex
		answers  int
		slowest  time.Duration
		firstOne time.Duration
	)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for k := 0; time.Since(cut) < isolated; k++ {
				marker := fmt.Sprintf("minority-w%d-%d", w, k)
				a := postHook(ctx, minority.HookURL(u.URL), markedBody(samples[k%len(samples)], marker))
				mu.Lock()
				answers++
				slowest = max(slowest, a.took)
				if firstOne == 0 && a.status == 503 {
					firstOne = time.Since(cut)
				}
				mu.Unlock()
				switch {
				case a.status == 200:
					t.Errorf("%s answered 200 while it could reach only the cut-off NATS server (%s after the cut)", minority.Name, time.Since(cut).Round(time.Millisecond))
				case a.status != 503 || a.retryAfter == "":
					t.Errorf("%s answered %d (Retry-After %q, %v) while cut off, want 503 with Retry-After", minority.Name, a.status, a.retryAfter, a.err)
				case a.took > 5*time.Second:
					t.Errorf("%s took %s to answer 503, want within 5 s", minority.Name, a.took.Round(time.Millisecond))
				}
			}
		})
	}
	wg.Wait()
	// The cut-off node says it is not ready (the load balancer stops
	// sending to it); the others are.
	for _, n := range cl.Nodes {
		want := 200
		if n == minority {
			want = 503
		}
		if got := getStatus(t, n.URL+"/readyz"); got != want {
			t.Errorf("%s: /readyz = %d during the partition, want %d", n.Name, got, want)
		}
	}
	okDuring := load.Count(majority[0].Name+" 200") + load.Count(majority[1].Name+" 200") - okBefore
	refusedDuring := load.Count(majority[0].Name+" 503") + load.Count(majority[1].Name+" 503") - refusedBefore
	t.Logf("PARTITION: %s answered %d webhooks while cut off for %s, all 503 with Retry-After, the first %s after the cut, the slowest in %s; the majority side answered %d 200s and %d 503s meanwhile",
		minority.Name, answers, isolated, firstOne.Round(time.Millisecond), slowest.Round(time.Millisecond), okDuring, refusedDuring)
	if t.Failed() {
		t.Logf("%s's log:\n%s", minority.Name, tail(minority.Logs(), 6000))
	}
	if okDuring == 0 || refusedDuring > 0 {
		t.Errorf("the majority side answered %d 200s and %d 503s during the partition, want only 200s", okDuring, refusedDuring)
	}

	cl.NATS.Heal()
	healed := time.Now()
	back, took := waitAccepted(t, []*hhNode{minority}, u.URL, samples[1], "healed", healed)
	t.Logf("HEAL: %s answers 200 again %s after the partition healed", minority.Name, took[minority.Name].Round(time.Millisecond))
	load.Stop()
	t.Logf("answers: %s", load.Summary())
	for _, b := range load.Bad() {
		t.Errorf("broken promise: %s", b)
	}
	for m, at := range load.AckedMarkers() {
		acked[m] = at
	}
	for m, at := range back {
		acked[m] = at
	}
	cl.checkExactlyOnce(t, schema, acked, 90*time.Second)
}

// getStatus is the status code of a GET (0 if there was no answer).
func getStatus(t *testing.T, url string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Logf("GET %s: %v", url, err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
