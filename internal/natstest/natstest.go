// Package natstest starts a NATS JetStream cluster inside a test process, from
// the pinned github.com/nats-io/nats-server/v2 module: every server on
// loopback with fixed ports (so that a stopped server comes back where clients
// and routes expect it), its own temporary store directory, and
// sync_interval: always (SyncAlways), as docs/cluster.md asks of production.
package natstest

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is a running test cluster; t.Cleanup shuts it down.
type Cluster struct {
	t       testing.TB
	opts    []*server.Options
	servers []*server.Server // nil while stopped
}

// Start starts n servers routed to each other and waits until JetStream has
// a meta leader.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	ports := freePorts(t, 2*n)
	var routes []string
	for i := range n {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[n+i]))
	}
	c := &Cluster{t: t, servers: make([]*server.Server, n)}
	for i := range n {
		c.opts = append(c.opts, &server.Options{
			ServerName:         fmt.Sprintf("n%d", i+1),
			Host:               "127.0.0.1",
			Port:               ports[i],
			JetStream:          true,
			StoreDir:           t.TempDir(),
			SyncAlways:         true,
			JetStreamMaxMemory: 64 << 20,
			JetStreamMaxStore:  4 << 30,
			Cluster:            server.ClusterOpts{Name: "hookhouse-test", Host: "127.0.0.1", Port: ports[n+i]},
			Routes:             server.RoutesFromStr(strings.Join(routes, ",")),
			NoLog:              true,
			NoSigs:             true,
		})
	}
	t.Cleanup(c.shutdown)
	for i := range n {
		c.Restart(i)
	}
	c.WaitLeader()
	return c
}

// URLs is the client URL list of every server, for nats.Connect.
func (c *Cluster) URLs() string {
	var urls []string
	for _, o := range c.opts {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", o.Port))
	}
	return strings.Join(urls, ",")
}

// URL is server i's client URL.
func (c *Cluster) URL(i int) string { return fmt.Sprintf("nats://127.0.0.1:%d", c.opts[i].Port) }

// Stop shuts server i down and waits until it is gone.
func (c *Cluster) Stop(i int) {
	if s := c.servers[i]; s != nil {
		s.Shutdown()
		s.WaitForShutdown()
		c.servers[i] = nil
	}
}

// Restart starts server i again (or for the first time) with its store.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if c.servers[i] != nil {
		return
	}
	o := *c.opts[i]
	s, err := server.NewServer(&o)
	if err != nil {
		c.t.Fatalf("nats server %d: %v", i+1, err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		c.t.Fatalf("nats server %d did not start", i+1)
	}
	c.servers[i] = s
}

// WaitLeader waits until a running server is the JetStream meta leader and
// knows every running server as a JetStream peer (before that, creating a
// stream with 3 replicas fails: no suitable peers for placement).
func (c *Cluster) WaitLeader() {
	c.t.Helper()
	running := 0
	for _, s := range c.servers {
		if s != nil {
			running++
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range c.servers {
			if s != nil && s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) >= running {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatal("the NATS cluster has no JetStream meta leader that knows every server after 60s")
}

// StreamLeader returns the index of the running server that leads stream
// (in the default account), or -1 if none does.
func (c *Cluster) StreamLeader(stream string) int {
	for i, s := range c.servers {
		if s != nil && s.JetStreamIsStreamLeader("$G", stream) {
			return i
		}
	}
	return -1
}

func (c *Cluster) shutdown() {
	for i := range c.servers {
		c.Stop(i)
	}
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}
