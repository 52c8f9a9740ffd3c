// Package e2e runs the real hookhouse server (in-process, or the built binary as a
// child process) and talks HTTP to it, using the Vero samples in ../shared/testdata.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/config"
	"github.com/hookhouse/hookhouse/internal/pgtest"
	"github.com/hookhouse/hookhouse/internal/samples"
	"github.com/hookhouse/hookhouse/internal/server"
)

var veroDir = samples.VeroDir()

var binPath string // built once by TestMain for child-process tests

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hookhouse-e2e-bin")
	if err != nil {
		panic(err)
	}
	binPath = filepath.Join(dir, "hookhouse")
	if out, err := exec.Command("go", "build", "-o", binPath, "../cmd/hookhouse").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build hookhouse: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	pgtest.CloseShared()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer collects log output from concurrent goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// instance is an in-process server.
type instance struct {
	URL    string
	Key    string
	Client *client.Client
	Logs   *syncBuffer
	Srv    *server.Server
	cancel context.CancelFunc
	done   chan error
}

// startServer runs a server in-process on a free loopback port with its log
// captured (debug unless mod sets cfg.LogLevel). mod may change the config.
func startServer(t *testing.T, mod func(*config.Config)) *instance {
	t.Helper()
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.BatchWait = 200 * time.Millisecond
	cfg.LogLevel = "debug"
	if mod != nil {
		mod(&cfg)
	}
	logs := &syncBuffer{}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		t.Fatalf("log level %q: %v", cfg.LogLevel, err)
	}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level}))
	srv, err := server.Open(context.Background(), cfg, logger)
	if err != nil {
		t.Fatalf("open server: %v", err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	key := srv.AdminKey
	if key == "" {
		b, err := os.ReadFile(filepath.Join(cfg.Data, "admin.key"))
		if err != nil {
			t.Fatal(err)
		}
		key = strings.TrimSpace(string(b))
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{URL: "http://" + srv.Addr(), Key: key, Logs: logs, Srv: srv, cancel: cancel, done: make(chan error, 1)}
	in.Client = client.New(in.URL, key)
	go func() { in.done <- srv.Serve(ctx) }()
	t.Cleanup(func() { in.Stop(t) })
	return in
}

// Stop shuts the server down gracefully (idempotent).
func (in *instance) Stop(t *testing.T) {
	if in.cancel == nil {
		return
	}
	in.cancel()
	in.cancel = nil
	select {
	case err := <-in.done:
		if err != nil {
			t.Errorf("server shutdown: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Error("server did not shut down within 60s")
	}
}

// hookURL replaces the public base of a webhook URL with the test server's address.
func (in *instance) hookURL(u string) string {
	i := strings.Index(u, "/v1/clients/")
	return in.URL + u[i:]
}

// post sends body to url and returns the status and response body.
func post(t testing.TB, url, contentType string, body []byte, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// veroFiles returns the Vero samples in name order.
func veroFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(veroDir, "*.json"))
	if err != nil || len(files) != 14 {
		t.Fatalf("want 14 Vero samples in %s, found %d (%v)", veroDir, len(files), err)
	}
	sort.Strings(files)
	return files
}

// waitFor polls cond until it is true or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, last)
}

// setupVero creates "Stitch Vero" with one URL and returns the integration id and URL.
func setupVero(t testing.TB, in *instance) (int64, string) {
	t.Helper()
	ctx := context.Background()
	integ, err := in.Client.CreateIntegration(ctx, client.NewIntegration{Name: "Stitch Vero", Type: "vero"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := in.Client.GenerateURL(ctx, integ.ID)
	if err != nil {
		t.Fatal(err)
	}
	return integ.ID, in.hookURL(u.URL)
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
