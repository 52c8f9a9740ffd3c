package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/api"
	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/state"
)

// newImportAPI serves the admin API with imports on a real Pebble log; the
// integration is id 1.
func newImportAPI(t *testing.T) (*state.Pebble, *httptest.Server, string) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := state.OpenPebble(t.TempDir(), logger, state.Options{MinFreeBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctl, err := control.Open(st, state.ErrNotFound, logger)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ctl.EnsureAdminKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Create(control.NewIntegration{Name: "Shop", Type: control.TypeWebhooks}, time.Now()); err != nil {
		t.Fatal(err)
	}
	a := &api.API{Control: ctl, Stats: func(int64) api.Stats { return api.Stats{} }, Logger: logger, Import: st}
	mux := http.NewServeMux()
	a.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return st, srv, key
}

func postChunk(t *testing.T, srv *httptest.Server, key, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func logRecords(t *testing.T, st *state.Pebble) []state.Record {
	t.Helper()
	recs, err := st.Read(context.Background(), 1, 0, 1000, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

const chunkA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func TestImportChunk(t *testing.T) {
	st, srv, key := newImportAPI(t)
	path := "/api/v1/integrations/1/import?chunk=" + chunkA
	before := time.Now()
	status, body := postChunk(t, srv, key, path, "{\"n\":1}\n\n  {\"n\":2} \r\n{\"n\":3}")
	if status != 200 {
		t.Fatalf("first send: %d %s", status, body)
	}
	var res api.ImportResult
	if err := json.Unmarshal([]byte(body), &res); err != nil || res.Records != 3 || res.Duplicate || res.FirstPosition != 1 {
		t.Fatalf("first send: %s (%v), want 3 records from position 1", body, err)
	}
	recs := logRecords(t, st)
	if len(recs) != 3 || string(recs[1].Body) != `{"n":2}` || recs[0].ReceivedAt.Before(before.Truncate(time.Microsecond)) {
		t.Fatalf("log after the first send: %+v", recs)
	}
	// The same chunk again (a rerun, or a retry whose answer was lost): nothing more.
	status, body = postChunk(t, srv, key, path, "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n")
	if status != 200 || !strings.Contains(body, `"duplicate":true`) || !strings.Contains(body, `"records":0`) {
		t.Fatalf("second send: %d %s, want a duplicate", status, body)
	}
	if n := len(logRecords(t, st)); n != 3 {
		t.Fatalf("%d records after a duplicate chunk, want 3", n)
	}
}

func TestImportChunkReceivedAt(t *testing.T) {
	st, srv, key := newImportAPI(t)
	status, body := postChunk(t, srv, key, "/api/v1/integrations/1/import?received_at=ts&chunk="+strings.Repeat("b", 64),
		`{"ts":"2024-05-06T07:08:09.5Z"}`+"\n"+`{"ts":1700000000}`+"\n")
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	recs := logRecords(t, st)
	want := []time.Time{time.Date(2024, 5, 6, 7, 8, 9, 5e8, time.UTC), time.Unix(1700000000, 0)}
	for i, r := range recs {
		if !r.ReceivedAt.Equal(want[i]) {
			t.Errorf("record %d received at %s, want %s", i, r.ReceivedAt, want[i])
		}
	}
}

func TestImportChunkRefusals(t *testing.T) {
	st, srv, key := newImportAPI(t)
	ok := "/api/v1/integrations/1/import?chunk=" + chunkA
	cases := []struct {
		name, path, body string
		status           int
		msg              string
	}{
		{"bad line", ok, "{\"n\":1}\n{\"n\":\n{\"n\":3}\n", 400, "line 2 of the chunk: invalid JSON"},
		{"array line", ok, "[{\"n\":1}]\n", 400, "line 1 of the chunk: not a JSON object"},
		{"missing time", ok + "&received_at=ts", "{\"ts\":1700000000}\n{\"n\":1}\n", 400, `line 2 of the chunk: no field \"ts\"`},
		{"no chunk id", "/api/v1/integrations/1/import", "{}\n", 400, "chunk must be the chunk's id"},
		{"short chunk id", "/api/v1/integrations/1/import?chunk=abc", "{}\n", 400, "64 hex characters"},
		{"unknown integration", "/api/v1/integrations/9/import?chunk=" + chunkA, "{}\n", 404, "not found"},
		{"too large", ok, strings.Repeat("{\"a\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}\n", api.MaxImportChunkBytes/60+1), 413, "at most"},
		{"too many records", ok, strings.Repeat("{}\n", api.MaxImportChunkRecords+1), 413, "records"},
	}
	for _, c := range cases {
		status, body := postChunk(t, srv, key, c.path, c.body)
		if status != c.status || !strings.Contains(body, c.msg) {
			t.Errorf("%s: %d %s, want %d with %q", c.name, status, body, c.status, c.msg)
		}
	}
	if n := len(logRecords(t, st)); n != 0 {
		t.Fatalf("%d records stored by refused chunks, want 0", n)
	}
	// A refused chunk claimed nothing: the same id with good lines loads.
	if status, body := postChunk(t, srv, key, ok, "{\"n\":1}\n"); status != 200 || !strings.Contains(body, `"records":1`) {
		t.Fatalf("good chunk after refusals: %d %s", status, body)
	}
	// And the admin key is required.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+ok, strings.NewReader("{}\n"))
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("without the key: %d, want 401", resp.StatusCode)
	}
}

// On one node the chunk limits told are the server's own (a cluster's are
// checked in server.TestClusterImport).
func TestImportLimits(t *testing.T) {
	_, srv, key := newImportAPI(t)
	get := func(path, key string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status, body := get("/api/v1/integrations/1/import", key)
	var lim api.ImportLimits
	if status != 200 || json.Unmarshal([]byte(body), &lim) != nil {
		t.Fatalf("GET limits: %d %s", status, body)
	}
	if lim != (api.ImportLimits{MaxChunkBytes: api.MaxImportChunkBytes, MaxChunkRecords: api.MaxImportChunkRecords,
		ClaimWindowSeconds: int64(api.ImportWindow / time.Second)}) {
		t.Errorf("limits on one node: %+v", lim)
	}
	if status, _ := get("/api/v1/integrations/9/import", key); status != 404 {
		t.Errorf("limits of an unknown integration: %d, want 404", status)
	}
	if status, _ := get("/api/v1/integrations/1/import", ""); status != 401 {
		t.Errorf("limits without the key: %d, want 401", status)
	}
}
