package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/api"
	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/state"
)

// importServer serves the real admin API on a real Pebble log, with
// integration 1, and points the CLI at it. fail, while positive, makes that
// many import requests fail with a 503 before they reach the API.
func importServer(t testing.TB) (*state.Pebble, *atomic.Int32) {
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
	if _, err := ctl.Create(control.NewIntegration{Name: "Old Shop", Type: control.TypeWebhooks}, time.Now()); err != nil {
		t.Fatal(err)
	}
	a := &api.API{Control: ctl, Stats: func(int64) api.Stats { return api.Stats{} }, Logger: logger, Import: st}
	mux := http.NewServeMux()
	a.Register(mux)
	fail := &atomic.Int32{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/import") && fail.Add(-1) >= 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(503)
			io.WriteString(w, `{"error":{"code":"unavailable","message":"restarting"}}`)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Setenv("HOOKHOUSE_SERVER", srv.URL)
	t.Setenv("HOOKHOUSE_ADMIN_KEY", key)
	t.Setenv("HOOKHOUSE_DATA", t.TempDir())
	return st, fail
}

func logBodies(t *testing.T, st *state.Pebble) []string {
	t.Helper()
	recs, err := st.Read(context.Background(), 1, 0, 1<<20, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Body)
	}
	return out
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func numbered(from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		fmt.Fprintf(&b, "{\"n\":%d}\n", i)
	}
	return b.String()
}

func TestImportCommand(t *testing.T) {
	st, fail := importServer(t)
	path := writeFile(t, "events.ndjson.gz", gz(t, numbered(1, 25_000)))
	out, errOut, code := hh(t, "import", "1", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "Imported 25,000 records from "+path+" into integration 1 (old_shop)") {
		t.Errorf("stdout: %s", out)
	}
	if !strings.Contains(errOut, "(NDJSON, gzip'd)") || !strings.Contains(errOut, "imported 25,000 of 25,000 records (100%)") {
		t.Errorf("stderr (a pipe: plain progress lines): %s", errOut)
	}
	bodies := logBodies(t, st)
	if len(bodies) != 25_000 || bodies[0] != `{"n":1}` || bodies[24_999] != `{"n":25000}` {
		t.Fatalf("log holds %d records", len(bodies))
	}
	// Again, as after an interruption: every chunk is skipped. The same
	// content piped uncompressed through stdin is the same import.
	var stdout, stderr bytes.Buffer
	code = run(t.Context(), []string{"import", "1", "-", "--json"}, strings.NewReader(numbered(1, 25_000)), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("rerun: exit %d: %s", code, stderr.String())
	}
	sum := decodeJSON[importSummary](t, stdout.String())
	if sum.Records != 25_000 || sum.Stored != 0 || sum.AlreadyImported != 25_000 || sum.Chunks != 3 {
		t.Errorf("rerun summary %+v, want all 25,000 already imported", sum)
	}
	// A file that goes on from the same lines: only the new chunks load
	// (the chunks are of 10,000 lines: 20,000 is a boundary).
	fail.Store(2) // and the server is unavailable twice: retried
	out, errOut, code = hh(t, "import", "1", writeFile(t, "more.ndjson", numbered(1, 20_000)+numbered(30_001, 30_500)))
	if code != 0 || !strings.Contains(out, "500 now, 20,000 by an earlier run (skipped)") || !strings.Contains(errOut, "503 unavailable: restarting; retrying for up to 2m0s") {
		t.Errorf("extended file: exit %d\n%s\n%s", code, out, errOut)
	}
	if n := len(logBodies(t, st)); n != 25_500 {
		t.Fatalf("log holds %d records, want 25,500", n)
	}
	// Under another name the same file is another import, loaded again.
	out = mustRun(t, "import", "1", path, "--import-name", "again")
	if !strings.Contains(out, "Imported 25,000 records") || strings.Contains(out, "earlier run") {
		t.Errorf("--import-name: %s", out)
	}
	if n := len(logBodies(t, st)); n != 50_500 {
		t.Fatalf("log holds %d records, want 50,500", n)
	}
}

func TestImportBadLinesAndMaxErrors(t *testing.T) {
	st, _ := importServer(t)
	content := numbered(1, 4) + "{\"n\":\n" + numbered(6, 9) + "[1,2]\n" + numbered(11, 12)
	path := writeFile(t, "bad.ndjson", content)
	// Two bad lines, --max-errors 1: nothing is imported, both are named.
	_, errOut, code := hh(t, "import", "1", path, "--max-errors", "1")
	if code != 1 {
		t.Fatalf("exit %d, want 1: %s", code, errOut)
	}
	for _, want := range []string{"bad line 5: invalid JSON", "bad line 10: not a JSON object", "has 2 bad lines, more than --max-errors 1 allows: nothing was imported"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if n := len(logBodies(t, st)); n != 0 {
		t.Fatalf("%d records imported from a refused file", n)
	}
	// --max-errors 2: the other 10 load.
	out, errOut, code := hh(t, "import", "1", path, "--max-errors", "2")
	if code != 0 || !strings.Contains(out, "Imported 10 records") || !strings.Contains(out, "2 bad lines were skipped") || !strings.Contains(errOut, "bad line 10") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if n := len(logBodies(t, st)); n != 10 {
		t.Fatalf("%d records, want 10", n)
	}
	// From stdin, the import stops at the chunk with one bad line too many;
	// the chunks before it are imported.
	var stdout, stderr bytes.Buffer
	input := numbered(1, 10_000) + numbered(10_001, 15_000) + "oops\n" + numbered(15_002, 21_000)
	code = run(t.Context(), []string{"import", "1", "-"}, strings.NewReader(input), &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "bad line 15001: invalid JSON") ||
		!strings.Contains(stderr.String(), "stopped at line 10001: 1 bad lines, more than --max-errors 0 allows. 10,000 records before line 10001 are imported") {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	if n := len(logBodies(t, st)); n != 10_010 {
		t.Fatalf("%d records, want 10,010", n)
	}
	// Fixed and run again: the first chunk is skipped, the rest loads once.
	stdout.Reset()
	stderr.Reset()
	code = run(t.Context(), []string{"import", "1", "-"}, strings.NewReader(numbered(1, 21_000)), &stdout, &stderr)
	if code != 0 || !strings.Contains(stdout.String(), "11,000 now, 10,000 by an earlier run") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	if n := len(logBodies(t, st)); n != 21_010 {
		t.Fatalf("%d records, want 21,010", n)
	}
}

func TestImportReceivedAtAndRefusals(t *testing.T) {
	st, _ := importServer(t)
	path := writeFile(t, "a.json", `[{"ts":"2024-01-02T03:04:05Z","n":1}, {"ts":1700000000123,"n":2}]`)
	mustRun(t, "import", "1", path, "--received-at", "ts")
	recs, err := st.Read(context.Background(), 1, 0, 10, 1<<20)
	if err != nil || len(recs) != 2 {
		t.Fatal(err, len(recs))
	}
	if !recs[0].ReceivedAt.Equal(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)) || !recs[1].ReceivedAt.Equal(time.UnixMilli(1700000000123)) {
		t.Errorf("received at %s and %s", recs[0].ReceivedAt, recs[1].ReceivedAt)
	}
	wantFailure(t, 1, []string{"the input is empty"}, "import", "1", writeFile(t, "empty", ""))
	wantFailure(t, 1, []string{"neither NDJSON nor a JSON array"}, "import", "1", writeFile(t, "csv", "a,b\n1,2\n"))
	wantFailure(t, 1, []string{"404"}, "import", "9", path)
	wantFailure(t, 2, []string{"--max-errors must be 0 or more"}, "import", "1", path, "--max-errors", "-1")
	wantFailure(t, 2, []string{"missing file"}, "import", "1")
	wantFailure(t, 1, []string{"cannot open the import file"}, "import", "1", filepath.Join(t.TempDir(), "nope.ndjson"))
	out := mustRun(t, "import", "-h")
	for _, want := range []string{"--received-at FIELD", "--max-errors N", "exactly once", "gzip"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q:\n%s", want, out)
		}
	}
}
