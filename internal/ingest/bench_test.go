package ingest

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/state"
)

// benchWriter is a ResponseWriter that keeps nothing between requests but its
// header map, as net/http's does per connection: the benchmark counts the
// handler's own allocations, not a recorder's.
type benchWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) WriteHeader(status int)      { w.status = status }
func (w *benchWriter) Write(b []byte) (int, error) { w.n += len(b); return len(b), nil }

// BenchmarkHandler is one webhook request with one small record through the
// real handler, control store and Pebble log (fsync'd group commits, 32
// concurrent senders). allocs/op is the figure to watch; ns/op is the group
// commit's on a shared disk.
func BenchmarkHandler(b *testing.B) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := state.OpenPebble(b.TempDir(), logger, state.Options{MinFreeBytes: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctl, err := control.Open(st, state.ErrNotFound, logger)
	if err != nil {
		b.Fatal(err)
	}
	in, err := ctl.Create(control.NewIntegration{Name: "Bench", Type: control.TypeWebhooks}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	_, tok, err := ctl.GenerateURL(in.ID, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	h := &Handler{Auth: ctl, Log: st, MaxBody: 1 << 20, Logger: logger, RetryAfter: 5,
		Large: NewSlots(8), Failures: &FailLimiter{Rate: 2, Burst: 50}, Verify: ctl, Dedupe: st}
	body := []byte(`{"type":"sent","user":{"id":"u1","email":"a@example.com"},"campaign":{"id":123}}`)
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rd := bytes.NewReader(body)
		r, _ := http.NewRequest(http.MethodPost, "/v1/clients/"+strconv.FormatInt(in.ID, 10)+"/token/"+tok, nil)
		r.SetPathValue("id", strconv.FormatInt(in.ID, 10))
		r.SetPathValue("token", tok)
		r.Header.Set("Content-Type", "application/json")
		r.ContentLength = int64(len(body))
		r.Body = io.NopCloser(rd)
		w := &benchWriter{h: http.Header{}}
		for pb.Next() {
			rd.Reset(body)
			clear(w.h)
			h.ServeHTTP(w, r)
			if w.status != http.StatusOK {
				b.Fatalf("status %d", w.status)
			}
		}
	})
}

// TestAnswer: a 200 names how many records were stored, with the JSON content
// type, for one record (the precomputed answer) and for several.
func TestAnswer(t *testing.T) {
	f := newFixture(t)
	u := f.srv.URL + "/v1/clients/" + strconv.FormatInt(f.id, 10) + "/token/" + f.token
	for _, c := range []struct{ body, want string }{
		{`{"a":1}`, `{"status":"ok","records":1}` + "\n"},
		{`[{"a":1},{"a":2},{"a":3}]`, `{"status":"ok","records":3}` + "\n"},
		{`[]`, `{"status":"ok","records":0}` + "\n"},
	} {
		resp, err := http.Post(u, "application/json", bytes.NewReader([]byte(c.body)))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(got) != c.want || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %q (Content-Type %q), want 200 %q as application/json", c.body, resp.StatusCode, got, resp.Header.Get("Content-Type"), c.want)
		}
	}
	if h := f.log.Head(f.id); h.Position != 4 {
		t.Errorf("log head at %d, want 4 records", h.Position)
	}
}
