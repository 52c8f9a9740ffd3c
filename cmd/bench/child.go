package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hookhouse/hookhouse/client"
)

// child is a `hookhouse serve` process on a temporary data dir and a free loopback
// port.
type child struct {
	cmd    *exec.Cmd
	dir    string
	base   string // http://127.0.0.1:<port>
	admin  *client.Client
	stderr *tail

	done    chan struct{} // closed when the process has exited
	waitErr error         // set before done is closed
}

// startChild starts bin and waits until /readyz answers 200. extra flags go last.
func startChild(ctx context.Context, bin, warehouse string, batchWait time.Duration, extra []string) (*child, error) {
	return startChildKey(ctx, bin, warehouse, batchWait, extra, "", nil)
}

// startChildKey is startChild with the admin key given (a cluster node that
// did not mint it has no <data>/admin.key; "" reads <data>/admin.key) and,
// unless nil, the secret.key to put in its data dir first (every node of a
// cluster must have the same).
func startChildKey(ctx context.Context, bin, warehouse string, batchWait time.Duration, extra []string, adminKey string, secretKey []byte) (*child, error) {
	dir, err := os.MkdirTemp("", "hookhouse-bench-")
	if err != nil {
		return nil, fmt.Errorf("server: temp data dir: %w", err)
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if secretKey != nil {
		if err := os.WriteFile(filepath.Join(dir, "secret.key"), secretKey, 0o600); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	c := &child{dir: dir, base: "http://" + listen, stderr: &tail{max: 32 << 10}, done: make(chan struct{})}
	args := []string{"serve", "--data", dir, "--listen", listen, "--public-url", c.base,
		"--batch-wait", batchWait.String(), "--log-level", "warn"}
	if warehouse != "" {
		args = append(args, "--warehouse", warehouse)
	}
	args = append(args, extra...)
	c.cmd = exec.Command(bin, args...)
	// Stdout stays nil (/dev/null): it carries the one-time admin key reveal, and the
	// key is read from <data>/admin.key instead.
	c.cmd.Stderr = c.stderr
	dieWithParent(c.cmd)
	if err := c.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("server: start %s: %w (build it with `make build`)", bin, err)
	}
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.done)
	}()

	if err := c.waitReady(ctx, 2*time.Minute); err != nil {
		c.kill()
		return nil, err
	}
	if adminKey == "" {
		key, err := os.ReadFile(filepath.Join(dir, "admin.key"))
		if err != nil {
			c.kill()
			return nil, fmt.Errorf("server: read admin key: %w", err)
		}
		adminKey = strings.TrimSpace(string(key))
	}
	c.admin = client.New(c.base, adminKey)
	return c, nil
}

func (c *child) waitReady(ctx context.Context, timeout time.Duration) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/readyz", nil)
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-c.done:
			return fmt.Errorf("server exited before it was ready (%v); its log:\n%s", c.waitErr, c.stderr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server not ready within %s; its log:\n%s", timeout, c.stderr)
		}
	}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// hookURL points a generated webhook URL at the listen address.
func (c *child) hookURL(u string) (string, error) {
	i := strings.Index(u, "/v1/clients/")
	if i < 0 {
		return "", fmt.Errorf("unexpected webhook URL shape (path not /v1/clients/…)")
	}
	return c.base + u[i:], nil
}

// stop sends SIGTERM and waits for exit status 0; it removes the data dir either way.
func (c *child) stop(timeout time.Duration) (time.Duration, error) {
	defer os.RemoveAll(c.dir)
	select {
	case <-c.done:
		return 0, fmt.Errorf("server had already exited (%v); its log:\n%s", c.waitErr, c.stderr)
	default:
	}
	start := time.Now()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		c.kill()
		return 0, fmt.Errorf("server: SIGTERM: %w", err)
	}
	select {
	case <-c.done:
	case <-time.After(timeout):
		c.kill()
		return 0, fmt.Errorf("server did not exit within %s of SIGTERM and was killed; its log:\n%s", timeout, c.stderr)
	}
	took := time.Since(start)
	if c.waitErr != nil {
		return took, fmt.Errorf("server exited with %v after SIGTERM, want exit status 0; its log:\n%s", c.waitErr, c.stderr)
	}
	return took, nil
}

// kill is for failures: no graceful shutdown, just make sure nothing is left behind.
func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
	os.RemoveAll(c.dir)
}

// metrics reads the unlabelled samples of /metrics (histogram sums and counts).
func (c *child) metrics(ctx context.Context) (map[string]float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/metrics", nil)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.Contains(line, "{") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}

// freePort asks the kernel for a free loopback port. Another process could take it
// before the server binds it; on this machine that is unlikely enough.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// tail keeps the last max bytes written to it: the server's log for error messages.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := string(bytes.TrimSpace(t.b))
	if s == "" {
		return "(empty)"
	}
	return s
}
