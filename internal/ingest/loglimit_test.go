package ingest

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestLineLimiterBurstRefillAndCount(t *testing.T) {
	l := &LineLimiter{Rate: 0.5, Burst: 3, GlobalRate: 100, GlobalBurst: 100}
	t0 := time.Unix(1_800_000_000, 0)
	k := LineKey{Integration: 7, Addr: "192.0.2.1", Status: 400}
	for i := 0; i < 3; i++ {
		if ok, n := l.Allow(k, t0); !ok || n != 0 {
			t.Fatalf("line %d of the burst: ok=%v suppressed=%d", i+1, ok, n)
		}
	}
	for i := 0; i < 5; i++ {
		if ok, _ := l.Allow(k, t0); ok {
			t.Fatalf("line %d past the burst was allowed", i+1)
		}
	}
	// Another status, integration or address is another key with its own burst.
	for _, other := range []LineKey{{7, "192.0.2.1", 413}, {8, "192.0.2.1", 400}, {7, "192.0.2.2", 400}} {
		if ok, _ := l.Allow(other, t0); !ok {
			t.Fatalf("%+v was limited by %+v's flood", other, k)
		}
	}
	// 2 s later one unit is back; the line that takes it reports the 5 held back.
	t1 := t0.Add(2 * time.Second)
	if ok, n := l.Allow(k, t1); !ok || n != 5 {
		t.Fatalf("after refill: ok=%v suppressed=%d, want true, 5", ok, n)
	}
	if ok, _ := l.Allow(k, t1); ok {
		t.Fatal("refill faster than Rate")
	}
	// The one held back now is handed over by TakeSuppressed, once.
	top, rest, restKeys := l.TakeSuppressed(10)
	if len(top) != 1 || top[0].Key != k || top[0].Lines != 1 || rest != 0 || restKeys != 0 {
		t.Fatalf("TakeSuppressed = %+v, %d, %d; want one line of %+v", top, rest, restKeys, k)
	}
	if top, rest, _ := l.TakeSuppressed(10); len(top) != 0 || rest != 0 {
		t.Fatalf("second TakeSuppressed = %+v, %d; want nothing", top, rest)
	}
	if ok, n := l.Allow(k, t1.Add(2*time.Second)); !ok || n != 0 {
		t.Fatalf("a count taken by TakeSuppressed was reported again: ok=%v suppressed=%d", ok, n)
	}
}

// TestLineLimiterFloodIsBounded: a flood of keys (a new address per request) is
// held by the global bucket and the key map stays bounded; every line held back
// is counted exactly once, whether its key was kept or forgotten.
func TestLineLimiterFloodIsBounded(t *testing.T) {
	l := &LineLimiter{Rate: 1.0 / 6, Burst: 10, GlobalRate: 2, GlobalBurst: 100, MaxKeys: 1000}
	now := time.Unix(1_800_000_000, 0)
	written, reported := 0, int64(0)
	const n = 50_000
	for i := 0; i < n; i++ {
		now = now.Add(100 * time.Microsecond) // 5 s in all: 10 global units earned
		k := LineKey{Addr: fmt.Sprintf("2001:db8::%x", i), Status: 401}
		if i%3 == 0 {
			k.Addr = "192.0.2.1" // one address keeps coming back, too
		}
		if ok, s := l.Allow(k, now); ok {
			written++
			reported += s
		}
		if len(l.keys) > 1000 {
			t.Fatalf("%d keys remembered, want at most MaxKeys 1000", len(l.keys))
		}
	}
	if written > 100+10+1 {
		t.Fatalf("%d lines written for a 5 s flood, want at most the global burst 100 + 10 refilled", written)
	}
	top, rest, _ := l.TakeSuppressed(5)
	for _, s := range top {
		reported += s.Lines
	}
	reported += rest
	if int64(written)+reported != n {
		t.Fatalf("written %d + reported suppressed %d = %d, want every one of the %d lines accounted for",
			written, reported, int64(written)+reported, n)
	}
	if len(top) != 5 || top[0].Key.Addr != "192.0.2.1" {
		t.Fatalf("TakeSuppressed(5) top = %+v, want 5 keys led by the returning address", top)
	}
}

// reportingWriter is what the server's request log wraps around a response.
type reportingWriter struct {
	http.ResponseWriter
	got []Outcome
}

func (w *reportingWriter) ReportOutcome(o Outcome) { w.got = append(w.got, o) }

// TestOutcomeReported: the handler tells the request log the reason the client
// got, the integration once the token is accepted, and the body bytes.
func TestOutcomeReported(t *testing.T) {
	f := newFixture(t)
	mux := http.NewServeMux()
	mux.Handle("/v1/clients/{id}/token/{token}", &Handler{
		Auth: f.ctl, Log: f.log, MaxBody: 1 << 20, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	var big bytes.Buffer
	zw := gzip.NewWriter(&big)
	zw.Write([]byte(`{"a":"` + strings.Repeat("x", 2<<20) + `"}`))
	zw.Close()
	good := fmt.Sprintf("/v1/clients/%d/token/%s", f.id, f.token)
	bad := fmt.Sprintf("/v1/clients/%d/token/%s", f.id, strings.Repeat("0", 64))
	for _, c := range []struct {
		name, path, body, encoding string
		status                     int
		want                       Outcome
	}{
		{"accepted", good, `[{"a":1},{"b":2}]`, "", 200, Outcome{Integration: f.id, Bytes: 17}},
		{"bad token", bad, `{"a":1}`, "", 401, Outcome{Reason: "unknown or revoked webhook URL", Bytes: 7}},
		{"malformed", good, `{"secret":"s3cr3t",}`, "", 400, Outcome{Integration: f.id,
			Reason: "invalid JSON: expected a string key in object at byte 19", Bytes: 20}},
		{"too large", good, big.String(), "gzip", 413, Outcome{Integration: f.id,
			Reason: "body larger than the limit of 1 MiB (after gzip decoding)", Bytes: 1<<20 + 1}},
	} {
		r := httptest.NewRequest(http.MethodPost, c.path, strings.NewReader(c.body))
		if c.encoding != "" {
			r.Header.Set("Content-Encoding", c.encoding)
		}
		w := &reportingWriter{ResponseWriter: httptest.NewRecorder()}
		mux.ServeHTTP(w, r)
		rec := w.ResponseWriter.(*httptest.ResponseRecorder)
		if rec.Code != c.status {
			t.Fatalf("%s: status %d, want %d (%s)", c.name, rec.Code, c.status, rec.Body)
		}
		if len(w.got) != 1 || w.got[0] != c.want {
			t.Fatalf("%s: reported %+v, want one %+v", c.name, w.got, c.want)
		}
		if c.status != 200 && !strings.Contains(rec.Body.String(), c.want.Reason) {
			t.Fatalf("%s: the client got %s, the log would say %q", c.name, rec.Body, c.want.Reason)
		}
		if strings.Contains(w.got[0].Reason, "s3cr3t") {
			t.Fatalf("%s: a body value reached the reason", c.name)
		}
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{
		20 << 20: "20 MiB", 1 << 30: "1 GiB", 512 << 10: "512 KiB", 3 << 19: "1.5 MiB",
		1000: "1000 bytes", 1: "1 byte", 0: "0 bytes",
	} {
		if got := HumanSize(n); got != want {
			t.Errorf("HumanSize(%d) = %q, want %q", n, got, want)
		}
	}
}
