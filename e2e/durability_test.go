package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/client"
)

// child is the hookhouse binary running as a child process.
type child struct {
	cmd    *exec.Cmd
	URL    string
	Stdout *syncBuffer
	Stderr *syncBuffer
	done   chan struct{} // closed when the process has exited
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startChild runs `hookhouse serve` on dataDir and addr and waits until it is ready.
func startChild(t testing.TB, dataDir, addr string, extra ...string) *child {
	t.Helper()
	c := launchChild(t, nil, dataDir, addr, extra...)
	if !c.waitReady(t) {
		t.Fatalf("child exited before it was ready; stderr:\n%s", c.Stderr.String())
	}
	return c
}

// launchChild starts the binary with extra environment and does not wait.
func launchChild(t testing.TB, env []string, dataDir, addr string, extra ...string) *child {
	t.Helper()
	args := append([]string{"serve", "--data", dataDir, "--listen", addr, "--batch-wait", "200ms", "--log-level", "debug"}, extra...)
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(append(os.Environ(), "HOOKHOUSE_WAREHOUSE="), env...)
	c := &child{cmd: cmd, URL: "http://" + addr, Stdout: &syncBuffer{}, Stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = c.Stdout, c.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(c.done) }()
	t.Cleanup(func() { c.Kill() })
	return c
}

// waitReady waits for /readyz; false if the process exited first.
func (c *child) waitReady(t testing.TB) bool {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(c.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return true
			}
		}
		if c.Exited() {
			return false
		}
		if time.Now().After(deadline) {
			t.Fatalf("child server not ready after 60s; stderr:\n%s", c.Stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Exited reports whether the process has ended.
func (c *child) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Kill sends SIGKILL and waits.
func (c *child) Kill() {
	if !c.Exited() {
		c.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-c.done
}

// Term sends SIGTERM and waits for a clean exit.
func (c *child) Term(t testing.TB) {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		if !c.cmd.ProcessState.Success() {
			t.Fatalf("hookhouse exited with %v after SIGTERM; stderr:\n%s", c.cmd.ProcessState, c.Stderr.String())
		}
	case <-time.After(60 * time.Second):
		c.Kill()
		t.Fatal("hookhouse did not exit within 60s of SIGTERM")
	}
}

func adminKey(t testing.TB, dataDir string) string {
	b, err := os.ReadFile(filepath.Join(dataDir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestDurableAcks: every record answered 200 survives a SIGKILL right after the
// last 200, exactly once, and ends up loaded exactly once.
func TestDurableAcks(t *testing.T) {
	dir := t.TempDir()
	addr := freePort(t)
	srv := startChild(t, dir, addr)
	ctx := context.Background()
	c := client.New(srv.URL, adminKey(t, dir))
	integ, err := c.CreateIntegration(ctx, client.NewIntegration{Name: "Durable", Type: "webhooks"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := c.GenerateURL(ctx, integ.ID)
	if err != nil {
		t.Fatal(err)
	}
	hook := srv.URL + u.URL[strings.Index(u.URL, "/v1/"):]

	const workers, each = 32, 60
	var acked atomic.Int64
	var wg sync.WaitGroup
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				body := fmt.Sprintf(`{"marker":"w%d-%d","n":%d}`, w, i, i)
				resp, err := hc.Post(hook, "application/json", strings.NewReader(body))
				if err != nil {
					t.Errorf("POST: %v", err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("POST = %d", resp.StatusCode)
					return
				}
				acked.Add(1)
			}
		}()
	}
	wg.Wait()
	srv.Kill() // right after the last 200: no graceful anything
	if t.Failed() {
		return
	}
	n := acked.Load()

	srv = startChild(t, dir, addr)
	got, err := c.Integration(ctx, integ.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Stats.RecordsReceived != n {
		t.Fatalf("after SIGKILL and restart the log holds %d records, %d were acknowledged", got.Stats.RecordsReceived, n)
	}
	// Every acknowledged record is loaded exactly once.
	waitFor(t, 60*time.Second, "all records loaded", func() (bool, string) {
		r, err := c.Query(ctx, "select count(*), count(distinct marker), count(distinct __sdc_primary_key) from durable.data")
		if err != nil {
			return false, err.Error()
		}
		row := fmt.Sprintf("%v %v %v", r.Rows[0]...)
		return row == fmt.Sprintf("%d %d %d", n, n, n), row
	})
	srv.Term(t)
}
