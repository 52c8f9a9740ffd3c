package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// resetServer answers GET and POST …/reset for integration 1 like the server:
// the reset's answer has total records, and each GET reloads one more.
func resetServer(t *testing.T, total int64) (*httptest.Server, *atomic.Int64) {
	var reloaded atomic.Int64
	progress := func() string {
		n := min(reloaded.Load(), total)
		return fmt.Sprintf(`{"id":1,"name":"Stitch Vero","type":"vero","schema":"stitch_vero","stats":{"records_received":%d,"reset":
			{"requested_at":"2026-12-02T04:00:00Z","committed_at":"2026-12-02T04:00:00Z","from_position":1,"target_position":%d,
			 "records_reloaded":%d,"records_total":%d,"records_per_second":10,"done":%v}}}`, total, total, n, total, n >= total)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == "GET" && r.URL.Path == "/api/v1/integrations/1":
			fmt.Fprint(w, progress())
			reloaded.Add(1)
		case r.Method == "POST" && r.URL.Path == "/api/v1/integrations/1/reset":
			fmt.Fprint(w, progress())
		default:
			http.Error(w, `{"error":{"code":"not_found","message":"no"}}`, 404)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &reloaded
}

func TestResetFollowsTheReload(t *testing.T) {
	srv, _ := resetServer(t, 3)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"integrations", "reset", "1", "--yes", "--server", srv.URL, "--key", "k"}, strings.NewReader(""), &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "reloading 3 records from the log (positions 1–3)") || !strings.Contains(out.String(), "Reset of stitch_vero done: 3 records reloaded.") {
		t.Fatalf("stdout:\n%s", out.String())
	}
	if !strings.Contains(errOut.String(), "reset of stitch_vero: started") || !strings.Contains(errOut.String(), "reloaded 3 of 3 records (100%)") {
		t.Fatalf("stderr (plain progress lines):\n%s", errOut.String())
	}
}

func TestResetNothingToReload(t *testing.T) {
	srv, _ := resetServer(t, 0)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"integrations", "reset", "1", "--yes", "--server", srv.URL, "--key", "k"}, strings.NewReader(""), &out, &errOut)
	if code != 0 || !strings.Contains(out.String(), "the log holds no record to reload") || strings.Contains(out.String(), "positions") {
		t.Fatalf("exit %d:\n%s%s", code, out.String(), errOut.String())
	}
}

func TestResetNeedsYesWithoutATerminal(t *testing.T) {
	srv, _ := resetServer(t, 3)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"integrations", "reset", "1", "--server", srv.URL, "--key", "k"}, strings.NewReader("stitch_vero\n"), &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "not resetting without --yes") || !strings.Contains(errOut.String(), "schema stitch_vero") {
		t.Fatalf("exit %d:\n%s%s", code, out.String(), errOut.String())
	}
}
