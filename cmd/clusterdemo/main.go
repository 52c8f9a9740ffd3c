// Command clusterdemo runs a whole hookhouse cluster on loopback so that it can
// be tried on one machine (`make cluster-demo`, docs/cluster.md):
//
//   - three nats-server processes with sync_interval: always (bin/nats-server,
//     built from the version pinned in go.mod by `make nats-server`);
//   - a throwaway PostgreSQL (initdb into a temporary directory, a free
//     loopback port; the binaries under /usr/lib/postgresql/*/bin), as the
//     warehouse;
//   - two or three `hookhouse serve --nats …` nodes on free loopback ports.
//
// It prints the nodes' URLs, the admin key and where the logs are, and stops
// everything on Ctrl-C (or SIGTERM), removing its temporary directory unless
// -keep (or -dir) is given. Everything binds 127.0.0.1 only. The PostgreSQL runs with
// fsync off: it is for trying things, not for data you want to keep.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hookhouse/hookhouse/internal/natsproc"
	"github.com/hookhouse/hookhouse/internal/pgtest"
)

type options struct {
	bin   string
	nodes int
	dir   string
	keep  bool
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/hookhouse", "the hookhouse binary (make build)")
	flag.IntVar(&o.nodes, "nodes", 3, "hookhouse nodes to start (2 or 3)")
	flag.StringVar(&o.dir, "dir", "", "directory for the servers' stores, data and logs, kept when stopping (default: a new temporary directory, removed when stopping)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory when stopping")
	flag.Parse()
	if flag.NArg() > 0 || o.nodes < 2 || o.nodes > 3 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "cluster-demo:", err)
		os.Exit(1)
	}
}

// node is one hookhouse process.
type node struct {
	name, dir, url, log string
	cmd                 *exec.Cmd
	done                chan struct{}
}

// run starts everything, prints the summary to out, waits until ctx ends and
// stops everything. Progress goes to progress.
func run(ctx context.Context, o options, out, progress io.Writer) (err error) {
	say := func(format string, a ...any) { fmt.Fprintf(progress, "cluster-demo: "+format+"\n", a...) }
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%w (build it with `make build`)", err)
	}
	dir, remove := o.dir, false
	if dir == "" {
		if dir, err = os.MkdirTemp("", "hookhouse-cluster-demo-"); err != nil {
			return err
		}
		remove = !o.keep
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if remove {
		defer os.RemoveAll(dir)
	}

	say("starting 3 nats-server processes (sync_interval: always) in %s", dir)
	if err := os.MkdirAll(filepath.Join(dir, "nats"), 0o755); err != nil {
		return err
	}
	nc, err := natsproc.Start(ctx, natsproc.Options{Dir: filepath.Join(dir, "nats")})
	if err != nil {
		return err
	}
	defer func() {
		say("stopping the nats-server processes")
		nc.Close()
	}()

	say("starting a throwaway PostgreSQL (initdb in a temporary directory)")
	pg, err := pgtest.Start(ctx)
	if err != nil {
		return err
	}
	defer func() {
		say("stopping PostgreSQL")
		pg.Close()
	}()
	dsn, err := pg.NewDatabase(ctx)
	if err != nil {
		return err
	}

	var nodes []*node
	defer func() {
		for _, n := range nodes {
			say("stopping %s", n.name)
			if serr := n.stop(30 * time.Second); serr != nil {
				say("%s: %v", n.name, serr)
			}
		}
	}()
	for i := range o.nodes {
		n, err := startNode(ctx, bin, dir, i, nc.URLs(), dsn, nodes)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
		say("%s ready on %s", n.name, n.url)
	}
	key, err := os.ReadFile(filepath.Join(nodes[0].dir, "admin.key"))
	if err != nil {
		return fmt.Errorf("the admin key of the first node: %w", err)
	}

	fmt.Fprintf(out, "\nhookhouse cluster on loopback: %d nodes, 3 NATS servers (sync_interval: always), PostgreSQL.\n\n", len(nodes))
	for _, n := range nodes {
		fmt.Fprintf(out, "  %s  %s   (dashboard %s/ , status %s/status)\n", n.name, n.url, n.url, n.url)
	}
	fmt.Fprintf(out, "\n  admin key   %s\n", strings.TrimSpace(string(key)))
	fmt.Fprintf(out, "  NATS        %s\n", nc.URLs())
	fmt.Fprintf(out, "  warehouse   %s\n", dsn)
	fmt.Fprintf(out, "  logs        %s/hh-*.log, %s/nats/n*.log\n\n", dir, dir)
	fmt.Fprintf(out, "Try (with HOOKHOUSE_ADMIN_KEY set to the key):\n")
	fmt.Fprintf(out, "  %s integrations add --name demo --type vero --server %s\n", o.bin, nodes[0].url)
	fmt.Fprintf(out, "  %s urls generate 1 --server %s\n", o.bin, nodes[0].url)
	fmt.Fprintf(out, "then POST JSON to that URL on any node (put another node's host:port in it), and kill -9 a node:\n")
	fmt.Fprintf(out, "the others' /status shows who loads each integration (loader lease).\n")
	fmt.Fprintf(out, "Ctrl-C stops everything")
	if remove {
		fmt.Fprintf(out, " and removes %s", dir)
	}
	fmt.Fprintf(out, ".\n")

	// Wait for Ctrl-C, or for a node to die on its own.
	exited := make(chan *node, len(nodes))
	for _, n := range nodes {
		go func() { // owned by run: ends when the node exits (stop waits for it)
			<-n.done
			exited <- n
		}()
	}
	select {
	case <-ctx.Done():
		say("stopping")
		return nil
	case n := <-exited:
		return fmt.Errorf("%s exited on its own; see %s", n.name, n.log)
	}
}

// startNode starts hookhouse node i on a free loopback port and waits until
// it is ready. The first node (started alone) mints the admin key and
// secret.key; the others get a copy of its secret.key, which seals signing
// secrets and must be the same on every node (docs/cluster.md).
func startNode(ctx context.Context, bin, dir string, i int, natsURLs, dsn string, before []*node) (*node, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	n := &node{
		name: fmt.Sprintf("hh-%d", i+1), url: "http://" + listen,
		dir: filepath.Join(dir, fmt.Sprintf("hh-%d", i+1)), log: filepath.Join(dir, fmt.Sprintf("hh-%d.log", i+1)),
		done: make(chan struct{}),
	}
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		return nil, err
	}
	if len(before) > 0 {
		key, err := os.ReadFile(filepath.Join(before[0].dir, "secret.key"))
		if err == nil {
			err = os.WriteFile(filepath.Join(n.dir, "secret.key"), key, 0o600)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("copy secret.key to %s: %w", n.name, err)
		}
	}
	logFile, err := os.Create(n.log)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own copy
	n.cmd = exec.Command(bin, "serve", "--nats", natsURLs, "--warehouse", dsn, "--node-name", n.name,
		"--data", n.dir, "--listen", listen, "--public-url", n.url)
	// Stdout carries the one-time admin key reveal; the summary prints the
	// key from <data>/admin.key instead, so the log files hold no secret.
	n.cmd.Stderr = logFile
	// Its own process group: a terminal's Ctrl-C reaches this program, which
	// stops the nodes in order; a parent-death signal if this program dies.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	n.cmd.Env = append(os.Environ(), "HOOKHOUSE_WAREHOUSE=")
	if err := n.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { // owned by the node: ends when the process exits
		n.cmd.Wait()
		close(n.done)
	}()
	deadline := time.Now().Add(2 * time.Minute)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.url+"/readyz", nil)
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return n, nil
			}
		}
		select {
		case <-n.done:
			return nil, fmt.Errorf("%s exited at start (%v); see %s:\n%s", n.name, n.cmd.ProcessState, n.log, logTail(n.log))
		case <-ctx.Done():
			n.stop(time.Second)
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			n.stop(time.Second)
			return nil, fmt.Errorf("%s not ready within 2 minutes; see %s:\n%s", n.name, n.log, logTail(n.log))
		}
	}
}

// stop sends SIGTERM and waits, then SIGKILL.
func (n *node) stop(timeout time.Duration) error {
	select {
	case <-n.done:
		return nil
	default:
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
		if !n.cmd.ProcessState.Success() {
			return fmt.Errorf("exited with %v", n.cmd.ProcessState)
		}
		return nil
	case <-time.After(timeout):
		n.cmd.Process.Kill()
		<-n.done
		return errors.New("did not stop within " + timeout.String() + " of SIGTERM; killed")
	}
}

func logTail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return strings.TrimSpace(string(b))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
