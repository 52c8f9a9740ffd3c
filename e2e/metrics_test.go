package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestMetrics checks /metrics after some traffic: requests by status code,
// records accepted/loaded/rejected, batch sizes and durations, backlog and lag
// per integration id, fsync latency — and no token or payload value anywhere.
func TestMetrics(t *testing.T) {
	in := startServer(t, nil)
	id, hook := setupVero(t, in)
	for _, f := range veroFiles(t)[:5] {
		post(t, hook, "application/json", mustRead(t, f))
	}
	post(t, hook, "application/json", []byte(`{"userId":1,"userid":2,"secret_value":"payload-canary-7731"}`))
	post(t, hook, "text/plain", []byte(`x`))
	waitLoaded(t, in.Client, id, 6)
	time.Sleep(100 * time.Millisecond)
	resp, err := http.Get(in.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	for _, want := range []string{
		`hookhouse_webhook_requests_total{code="200"} 6`,
		`hookhouse_webhook_requests_total{code="415"} 1`,
		`hookhouse_records_accepted_total{integration="1"} 6`,
		`hookhouse_records_loaded_total{integration="1"} 5`,
		`hookhouse_records_rejected_total{integration="1"} 1`,
		`hookhouse_load_batch_records_count`,
		`hookhouse_load_batch_seconds_bucket`,
		`hookhouse_backlog_records{integration="1"} 0`,
		`hookhouse_lag_seconds{integration="1"} 0`,
		`hookhouse_log_fsync_seconds_count`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	tok := hook[len(hook)-64:]
	if strings.Contains(body, tok) || strings.Contains(body, tok[:16]) || strings.Contains(body, "payload-canary") || strings.Contains(body, in.Key) {
		t.Fatal("/metrics holds a token, the admin key or a payload value")
	}
}
