package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/config"
	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/history"
)

// TestHistoryFollowsWebhooks posts to a real server and watches the chart
// history move for a 200, a 400 and a 401, the load, and a restart.
func TestHistoryFollowsWebhooks(t *testing.T) {
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.BatchWait = 100 * time.Millisecond
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func() (*Server, func()) {
		s, err := Open(context.Background(), cfg, logger)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Listen(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Serve(ctx) }()
		stopped := false
		stop := func() {
			if stopped {
				return
			}
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
		t.Cleanup(stop)
		return s, stop
	}
	s, stop := start()
	in, err := s.control.Create(control.NewIntegration{Name: "Charts", Type: control.TypeWebhooks}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, token, err := s.control.GenerateURL(in.ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	post := func(url, body string, want int) {
		t.Helper()
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("POST %s: %d, want %d", body, resp.StatusCode, want)
		}
	}
	base := fmt.Sprintf("http://%s/v1/clients/%d/token/", s.Addr(), in.ID)
	post(base+token, `[{"a":1},{"a":2},{"a":3}]`, http.StatusOK)
	post(base+token, `{"a":`, http.StatusBadRequest)
	post(base+strings.Repeat("0", 64), `{"a":1}`, http.StatusUnauthorized)

	// Sums over the window, in case a minute ends during the test.
	sum := func(h *history.History, id int64, w history.Window) (p history.Point) {
		p.Refused = map[int]int64{}
		for _, q := range h.Points(id, w) {
			p.Received += q.Received
			p.Loaded += q.Loaded
			p.Rejected += q.Rejected
			for code, n := range q.Refused {
				p.Refused[code] += n
			}
		}
		return p
	}
	// The observer hears of a refusal just after the answer: wait for it, and for
	// the load.
	deadline := time.Now().Add(20 * time.Second)
	for {
		one, all := sum(s.history, in.ID, history.Hour), sum(s.history, 0, history.Hour)
		if one.Received == 3 && one.Loaded == 3 && all.Refused[400] == 1 && all.Refused[401] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history did not follow: integration %+v, all %+v", one, all)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if all := sum(s.history, 0, history.Hour); all.Received != 3 || len(all.Refused) != 2 {
		t.Errorf("all integrations %+v, want 3 received and only 400 and 401 refused", all)
	}

	// Close flushes; the next start reads it back.
	stop()
	s, _ = start()
	one, all := sum(s.history, in.ID, history.Day), sum(s.history, 0, history.Week)
	if one.Received != 3 || one.Loaded != 3 || all.Refused[400] != 1 || all.Refused[401] != 1 {
		t.Errorf("after a restart: integration %+v, all %+v", one, all)
	}
}
