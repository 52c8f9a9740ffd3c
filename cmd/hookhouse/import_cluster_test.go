package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/api"
	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/natstest"
	"github.com/hookhouse/hookhouse/internal/state"
	"github.com/nats-io/nats.go"
)

// The import command against the admin API on a JetStream state whose
// messages hold 64 KiB: it asks the limits, cuts chunks that fit, every line
// is stored once in order, and a rerun stores nothing.
func TestImportCommandCluster(t *testing.T) {
	c := natstest.Start(t, 3)
	nc, err := nats.Connect(c.URLs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := state.OpenJetStream(ctx, nc, logger, state.JetStreamOptions{Name: "cli", MaxMessageBytes: 64 << 10})
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
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Setenv("HOOKHOUSE_SERVER", srv.URL)
	t.Setenv("HOOKHOUSE_ADMIN_KEY", key)
	t.Setenv("HOOKHOUSE_DATA", t.TempDir())

	var in strings.Builder
	var lines []string
	for i := range 3000 {
		l := fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", (i*37)%300))
		lines = append(lines, l)
		in.WriteString(l + "\n")
	}
	path := writeFile(t, "events.ndjson", in.String())
	sum := decodeJSON[importSummary](t, mustRun(t, "import", "1", path, "--json"))
	if sum.Records != 3000 || sum.Stored != 3000 || sum.Chunks < 8 {
		t.Fatalf("summary %+v, want 3,000 records stored in chunks that fit 64 KiB (8 or more)", sum)
	}
	t.Logf("3,000 records (%d KiB) in %d chunks", in.Len()>>10, sum.Chunks)
	check := func() {
		t.Helper()
		recs, err := st.Read(t.Context(), 1, 0, 1<<20, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != len(lines) {
			t.Fatalf("the log holds %d records, want %d", len(recs), len(lines))
		}
		for i, r := range recs {
			if string(r.Body) != lines[i] {
				t.Fatalf("record %d is %.40s, want %.40s", i+1, r.Body, lines[i])
			}
		}
	}
	check()
	sum = decodeJSON[importSummary](t, mustRun(t, "import", "1", path, "--json"))
	if sum.Stored != 0 || sum.AlreadyImported != 3000 {
		t.Fatalf("rerun summary %+v, want all 3,000 already imported", sum)
	}
	check()
}
