// Package natsproc runs a NATS JetStream cluster of real nats-server
// processes on loopback, for tests and benchmarks where a kill matters: each
// node has a generated configuration file (cluster routes on free loopback
// ports, JetStream with its own store directory, sync_interval: always, as
// docs/cluster.md asks of production), can be SIGKILLed and restarted on the
// same ports and store, and dies with the process that started it (parent-death
// signal). With Options.Partitionable every route goes through a Proxy, so
// that a node can be cut off from the others (Isolate) and joined again (Heal).
//
// The binary is bin/nats-server at the module root (`make nats-server`); Binary
// builds it with `go build` from the nats-server version pinned in go.mod when
// it is missing or of another version. Nothing is downloaded from anywhere but
// the Go module proxy the go command already uses.
package natsproc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Module is the nats-server module the binary is built from.
const Module = "github.com/nats-io/nats-server/v2"

// Options configure a cluster.
type Options struct {
	// Dir holds each node's configuration, store and log (required).
	Dir string
	// Nodes: how many servers (default 3).
	Nodes int
	// Bin is the nats-server binary (default: Binary's).
	Bin string
	// NoSync leaves out sync_interval: always (the servers' default fsync
	// every two minutes), for comparison only.
	NoSync bool
	// Partitionable routes every connection between two servers through a
	// Proxy of its own, so that Isolate can cut a server off.
	Partitionable bool
}

// Cluster is a running set of nats-server processes.
type Cluster struct {
	opts  Options
	nodes []*node
	// proxies[i][j] carries the routes server i dials to server j
	// (Partitionable only).
	proxies [][]*Proxy
}

type node struct {
	name                     string
	port, clusterPort, mPort int
	conf, log                string
	mu                       sync.Mutex
	cmd                      *exec.Cmd
	exited                   chan struct{}
}

var buildMu sync.Mutex

// Binary returns the path of bin/nats-server at the root of the module the
// working directory is in, building it first (go build, the version pinned in
// go.mod) when it is missing or reports another version.
func Binary(ctx context.Context) (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("natsproc: not inside a Go module (go env GOMOD: %q, %v)", gomod, err)
	}
	root := filepath.Dir(gomod)
	bin := filepath.Join(root, "bin", "nats-server")
	out, err = exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Version}}", Module).Output()
	if err != nil {
		return "", fmt.Errorf("natsproc: which %s does go.mod pin: %w", Module, err)
	}
	want := strings.TrimSpace(string(out))
	if have, err := exec.CommandContext(ctx, bin, "--version").Output(); err == nil && strings.TrimSpace(string(have)) == "nats-server: "+want {
		return bin, nil
	}
	// Build beside it and rename: other test binaries may be building or
	// running it at the same time.
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", fmt.Errorf("natsproc: %w", err)
	}
	tmp := fmt.Sprintf("%s.build-%d", bin, os.Getpid())
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, Module)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("natsproc: go build %s@%s: %w\n%s", Module, want, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("natsproc: %w", err)
	}
	return bin, nil
}

// Start writes the configurations, starts every server and waits until
// JetStream has a meta leader that sees every server. On error nothing is
// left running.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	if opts.Dir == "" {
		return nil, errors.New("natsproc: Options.Dir is required")
	}
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Bin == "" {
		if opts.Bin, err = Binary(ctx); err != nil {
			return nil, err
		}
	}
	n := opts.Nodes
	c = &Cluster{opts: opts}
	started := c // c is nil after a return nil, err
	defer func() {
		if err != nil {
			started.Close()
		}
	}()
	if opts.Partitionable {
		// The proxies listen first, so that the servers' ports picked
		// below cannot be theirs.
		c.proxies = make([][]*Proxy, n)
		for i := range n {
			c.proxies[i] = make([]*Proxy, n)
			for j := range n {
				if i == j {
					continue
				}
				p, err := NewProxy("")
				if err != nil {
					return nil, err
				}
				c.proxies[i][j] = p
			}
		}
	}
	ports, err := freePorts(3 * n)
	if err != nil {
		return nil, err
	}
	for i := range n {
		c.nodes = append(c.nodes, &node{
			name: fmt.Sprintf("n%d", i+1),
			port: ports[i], clusterPort: ports[n+i], mPort: ports[2*n+i],
			conf: filepath.Join(opts.Dir, fmt.Sprintf("n%d.conf", i+1)),
			log:  filepath.Join(opts.Dir, fmt.Sprintf("n%d.log", i+1)),
		})
	}
	for i, row := range c.proxies {
		for j, p := range row {
			if i != j {
				p.setTarget(fmt.Sprintf("127.0.0.1:%d", c.nodes[j].clusterPort))
			}
		}
	}
	for i, nd := range c.nodes {
		store := filepath.Join(opts.Dir, nd.name+"-store")
		if err := os.WriteFile(nd.conf, []byte(c.config(i, store)), 0o644); err != nil {
			return nil, fmt.Errorf("natsproc: %w", err)
		}
	}
	for i := range c.nodes {
		if err := c.Restart(ctx, i); err != nil {
			return nil, err
		}
	}
	if err := c.WaitMetaLeader(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// config is server i's configuration file.
func (c *Cluster) config(i int, store string) string {
	nd := c.nodes[i]
	var routes []string
	for j, o := range c.nodes {
		switch {
		case c.proxies == nil:
			routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", o.clusterPort))
		case j != i:
			routes = append(routes, "nats-route://"+c.proxies[i][j].Addr())
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %s\nlisten: 127.0.0.1:%d\nhttp: 127.0.0.1:%d\n\n", nd.name, nd.port, nd.mPort)
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n", store)
	if !c.opts.NoSync {
		b.WriteString("  # fsync every write before it is acknowledged\n  sync_interval: always\n")
	}
	b.WriteString("  max_memory_store: 64MB\n  max_file_store: 4GB\n}\n\n")
	fmt.Fprintf(&b, "cluster {\n  name: hookhouse-test\n  listen: 127.0.0.1:%d\n", nd.clusterPort)
	if c.proxies != nil {
		// Routes learnt by gossip would bypass the proxies: advertise an
		// address where nothing listens, so only the configured routes
		// (through the proxies) connect.
		b.WriteString("  advertise: 127.0.0.1:1\n")
	}
	fmt.Fprintf(&b, "  routes: [\n    %s\n  ]\n}\n", strings.Join(routes, "\n    "))
	return b.String()
}

// Close kills every server and stops the proxies.
func (c *Cluster) Close() {
	for i := range c.nodes {
		c.Kill(i)
	}
	for _, row := range c.proxies {
		for _, p := range row {
			if p != nil {
				p.Close()
			}
		}
	}
}

// Len is the number of servers.
func (c *Cluster) Len() int { return len(c.nodes) }

// Name is server i's server_name (n1, n2, …).
func (c *Cluster) Name(i int) string { return c.nodes[i].name }

// URL is server i's client URL.
func (c *Cluster) URL(i int) string { return fmt.Sprintf("nats://127.0.0.1:%d", c.nodes[i].port) }

// URLs is every server's client URL, comma-separated, for nats.Connect.
func (c *Cluster) URLs() string {
	var urls []string
	for i := range c.nodes {
		urls = append(urls, c.URL(i))
	}
	return strings.Join(urls, ",")
}

// Log is the path of server i's log file.
func (c *Cluster) Log(i int) string { return c.nodes[i].log }

// Running reports whether server i's process is running.
func (c *Cluster) Running(i int) bool {
	nd := c.nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.cmd != nil
}

// Kill SIGKILLs server i and waits until the process is gone. Killing a
// stopped server does nothing.
func (c *Cluster) Kill(i int) {
	nd := c.nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.cmd == nil {
		return
	}
	nd.cmd.Process.Kill()
	<-nd.exited
	nd.cmd, nd.exited = nil, nil
}

// Restart starts server i again (or for the first time) on its ports and
// store, and waits until it accepts client connections. A running server is
// left alone.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	nd := c.nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.cmd != nil {
		return nil
	}
	logFile, err := os.OpenFile(nd.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("natsproc: %w", err)
	}
	defer logFile.Close() // the child has its own copy
	logStart, _ := logFile.Seek(0, io.SeekEnd)
	cmd := exec.Command(c.opts.Bin, "-c", nd.conf)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// If the process that started it dies, so does the server; its own
	// process group keeps a terminal's ^C from reaching it first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("natsproc: start %s: %w", nd.name, err)
	}
	exited := make(chan struct{})
	go func() { // owned by nd: ends when the process exits, which Kill waits for
		cmd.Wait()
		close(exited)
	}()
	nd.cmd, nd.exited = cmd, exited
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", nd.port), time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-exited:
			nd.cmd, nd.exited = nil, nil
			return fmt.Errorf("natsproc: %s exited at start: %s", nd.name, logTail(nd.log, logStart))
		case <-ctx.Done():
			cmd.Process.Kill()
			<-exited
			nd.cmd, nd.exited = nil, nil
			return fmt.Errorf("natsproc: %s does not accept connections: %w; log: %s", nd.name, ctx.Err(), logTail(nd.log, logStart))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Isolate cuts server i off from every other server (Partitionable only):
// its route connections are closed and new ones fail until Heal. Clients
// connected to it stay connected.
func (c *Cluster) Isolate(i int) {
	if c.proxies == nil {
		panic("natsproc: Isolate needs a cluster started with Options.Partitionable")
	}
	for j := range c.nodes {
		if j != i {
			c.proxies[i][j].Cut()
			c.proxies[j][i].Cut()
		}
	}
}

// Heal restores every route Isolate cut.
func (c *Cluster) Heal() {
	for _, row := range c.proxies {
		for _, p := range row {
			if p != nil {
				p.Restore()
			}
		}
	}
}

// jsz is the part of a server's /jsz the waits need.
type jsz struct {
	Meta *struct {
		Leader   string `json:"leader"`
		Replicas []struct {
			Name    string `json:"name"`
			Current bool   `json:"current"`
			Offline bool   `json:"offline"`
		} `json:"replicas"`
	} `json:"meta_cluster"`
}

func (c *Cluster) jsz(ctx context.Context, i int) (*jsz, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/jsz", c.nodes[i].mPort), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var z jsz
	if err := json.NewDecoder(resp.Body).Decode(&z); err != nil {
		return nil, err
	}
	return &z, nil
}

// WaitMetaLeader waits (at most 60 s, or until ctx ends) until a running
// server is the JetStream meta leader and sees every other running server as
// a current peer (before that, creating a stream with 3 replicas can fail: no
// suitable peers for placement).
func (c *Cluster) WaitMetaLeader(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	last := "no answer yet"
	for {
		if ok, why := c.metaReady(ctx); ok {
			return nil
		} else {
			last = why
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("natsproc: no JetStream meta leader that sees every running server: %s (%w)", last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Cluster) metaReady(ctx context.Context) (bool, string) {
	for i := range c.nodes {
		if !c.Running(i) {
			continue
		}
		z, err := c.jsz(ctx, i)
		if err != nil {
			return false, fmt.Sprintf("%s: %v", c.nodes[i].name, err)
		}
		if z.Meta == nil || z.Meta.Leader != c.nodes[i].name {
			continue
		}
		current := map[string]bool{}
		for _, r := range z.Meta.Replicas {
			current[r.Name] = r.Current && !r.Offline
		}
		for j, o := range c.nodes {
			if j != i && c.Running(j) && !current[o.name] {
				return false, fmt.Sprintf("the leader %s does not see %s as current", c.nodes[i].name, o.name)
			}
		}
		return true, ""
	}
	return false, "no running server is the meta leader"
}

// WaitStreamCurrent waits (at most 60 s, or until ctx ends) until stream has
// a leader and every replica on a running server is current. nc is any
// connection to the cluster.
func (c *Cluster) WaitStreamCurrent(ctx context.Context, nc *nats.Conn, stream string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("natsproc: %w", err)
	}
	last := "no answer yet"
	for {
		if ok, why := c.streamCurrent(ctx, js, stream); ok {
			return nil
		} else {
			last = why
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("natsproc: stream %s not current: %s (%w)", stream, last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Cluster) streamCurrent(ctx context.Context, js jetstream.JetStream, stream string) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return false, err.Error()
	}
	info := s.CachedInfo()
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return false, "no leader"
	}
	current := map[string]bool{info.Cluster.Leader: true}
	for _, r := range info.Cluster.Replicas {
		current[r.Name] = r.Current && !r.Offline
	}
	if len(current) < info.Config.Replicas {
		return false, fmt.Sprintf("%d of %d replicas known", len(current), info.Config.Replicas)
	}
	for i, nd := range c.nodes {
		if ok, isPeer := current[nd.name]; isPeer && !ok && c.Running(i) {
			return false, fmt.Sprintf("replica %s is not current", nd.name)
		}
	}
	return true, ""
}

// StreamLeader is the index of the server leading stream, or -1.
func (c *Cluster) StreamLeader(ctx context.Context, nc *nats.Conn, stream string) int {
	js, err := jetstream.New(nc)
	if err != nil {
		return -1
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil || s.CachedInfo().Cluster == nil {
		return -1
	}
	for i, nd := range c.nodes {
		if nd.name == s.CachedInfo().Cluster.Leader {
			return i
		}
	}
	return -1
}

func logTail(path string, from int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < from {
		return "(no log)"
	}
	b = bytes.TrimSpace(b[from:])
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("natsproc: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
