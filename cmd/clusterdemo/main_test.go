package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/client"
)

// syncBuffer collects output written by run while the test reads it.
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

// TestDemo runs the demo as `make cluster-demo` does (2 nodes): it prints the
// nodes' URLs and the admin key; an integration created on one node takes a
// webhook on the other; every listener is on 127.0.0.1; cancelling (Ctrl-C)
// stops everything cleanly and removes the temporary directory.
func TestDemo(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "hookhouse")
	if out, err := exec.Command("go", "build", "-o", bin, "../hookhouse").CombinedOutput(); err != nil {
		t.Fatalf("build hookhouse: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, progress := &syncBuffer{}, &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, options{bin: bin, nodes: 2}, out, progress) }()
	deadline := time.After(3 * time.Minute)
	for !strings.Contains(out.String(), "Ctrl-C stops everything") {
		select {
		case err := <-done:
			t.Fatalf("run ended before it was ready: %v\n%s\n%s", err, out, progress)
		case <-deadline:
			t.Fatalf("not ready within 3 minutes:\n%s\n%s", out, progress)
		case <-time.After(100 * time.Millisecond):
		}
	}
	text := out.String()
	urls := regexp.MustCompile(`(?m)^  hh-\d  (http://\S+)`).FindAllStringSubmatch(text, -1)
	key := regexp.MustCompile(`admin key\s+(\S+)`).FindStringSubmatch(text)
	dir := regexp.MustCompile(`removes (\S+)\.`).FindStringSubmatch(text)
	if len(urls) != 2 || key == nil || dir == nil {
		t.Fatalf("want 2 node URLs, the admin key and the directory in:\n%s", text)
	}
	for _, u := range append(urls, []string{"", regexp.MustCompile(`(?m)^  NATS\s+(\S+)`).FindStringSubmatch(text)[1]}) {
		for _, addr := range strings.Split(u[1], ",") {
			if !strings.HasPrefix(strings.TrimPrefix(strings.TrimPrefix(addr, "http://"), "nats://"), "127.0.0.1:") {
				t.Errorf("%s is not a loopback address", addr)
			}
		}
	}
	if strings.Contains(progress.String(), key[1]) {
		t.Error("the admin key is in the progress output")
	}
	a, b := client.New(urls[0][1], key[1]), urls[1][1]
	in, err := a.CreateIntegration(ctx, client.NewIntegration{Name: "demo", Type: client.TypeVero})
	if err != nil {
		t.Fatal(err)
	}
	u, err := a.GenerateURL(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	hook := b + u.URL[strings.Index(u.URL, "/v1/clients/"):]
	var status int
	for end := time.Now().Add(10 * time.Second); status != 200 && time.Now().Before(end); {
		resp, err := http.Post(hook, "application/json", strings.NewReader(`{"type":"sent","user":{"id":1}}`))
		if err == nil {
			status = resp.StatusCode
			resp.Body.Close()
		}
		if status != 200 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if status != 200 {
		t.Fatalf("the second node answered %d to a URL generated on the first", status)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after Ctrl-C: %v\n%s", err, progress)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("run did not stop within 2 minutes of Ctrl-C")
	}
	for _, l := range []string{"stopping hh-1", "stopping hh-2", "stopping PostgreSQL", "stopping the nats-server processes"} {
		if !strings.Contains(progress.String(), l) {
			t.Errorf("progress does not say %q:\n%s", l, progress)
		}
	}
	if strings.Contains(progress.String(), "did not stop") || strings.Contains(progress.String(), "exited with") {
		t.Errorf("a node did not stop cleanly:\n%s", progress)
	}
	if _, err := os.Stat(dir[1]); !os.IsNotExist(err) {
		t.Errorf("%s is still there after the stop (%v)", dir[1], err)
	}
}
