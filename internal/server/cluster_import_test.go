package server

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/api"
	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/natstest"
	"github.com/hookhouse/hookhouse/internal/pgtest"
	"github.com/hookhouse/hookhouse/internal/secretbox"
	"github.com/jackc/pgx/v5"
)

// TestClusterImport imports a backfill on a cluster of two nodes: chunks sent
// through either node are stored once with their own receipt times and loaded
// into PostgreSQL once, a rerun adds nothing, the nodes tell the chunk limits
// of one NATS message (a chunk that large is stored), and a chunk larger than
// a message holds is refused with 413.
func TestClusterImport(t *testing.T) {
	ctx := context.Background()
	nc := natstest.Start(t, 3)
	pg, err := pgtest.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close() })
	dsn, err := pg.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := startNode(t, clusterConfig(t, nc.URLs(), "imp", "hh-a", dsn))
	cfgB := clusterConfig(t, nc.URLs(), "imp", "hh-b", dsn)
	key, err := os.ReadFile(filepath.Join(a.cfg.Data, secretbox.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfgB.Data, secretbox.KeyFile), key, 0o600); err != nil {
		t.Fatal(err)
	}
	b := startNode(t, cfgB)
	in, err := a.control.Create(control.NewIntegration{Name: "Backfill", Type: control.TypeWebhooks}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca, cb := client.New(a.Addr(), a.AdminKey), client.New(b.Addr(), a.AdminKey)
	// B learns of the integration through its control watch.
	deadline := time.Now().Add(10 * time.Second)
	var lim *client.ImportLimits
	for {
		if lim, err = cb.ImportLimits(ctx, in.ID); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("import limits on B: %v", err)
	}
	if lim.MaxChunkBytes <= 0 || lim.MaxChunkBytes > 768<<10 || lim.MaxChunkRecords <= 0 || lim.MaxChunkRecords > api.MaxImportChunkRecords ||
		lim.ClaimWindowSeconds != int64((7*24*time.Hour)/time.Second) {
		t.Fatalf("import limits on a cluster: %+v, want a chunk within one NATS message (768 KiB) and the stream's week of claims", lim)
	}
	t.Logf("chunk limits on the cluster: %+v", lim)

	chunk1 := `{"n":1,"ts":"2024-01-02T03:04:05.123456Z"}` + "\n" + `{"n":2,"ts":"2025-06-01T12:00:00Z"}` + "\n" + `{"n":3,"ts":"2023-12-31T23:59:59Z"}` + "\n"
	chunk2 := `{"n":4,"ts":"2024-02-02T00:00:00Z"}` + "\n" + `{"n":5,"ts":"2024-02-03T00:00:00Z"}` + "\n"
	const id1, id2 = "1111111111111111111111111111111111111111111111111111111111111111", "2222222222222222222222222222222222222222222222222222222222222222"
	if res, err := ca.ImportChunk(ctx, in.ID, id1, "ts", []byte(chunk1)); err != nil || res.Records != 3 || res.Duplicate {
		t.Fatalf("chunk 1 through A: %+v, %v", res, err)
	}
	if res, err := cb.ImportChunk(ctx, in.ID, id1, "ts", []byte(chunk1)); err != nil || !res.Duplicate || res.Records != 0 {
		t.Fatalf("chunk 1 again through B: %+v, %v; want a duplicate", res, err)
	}
	if res, err := cb.ImportChunk(ctx, in.ID, id2, "ts", []byte(chunk2)); err != nil || res.Records != 2 || res.FirstPosition != 4 {
		t.Fatalf("chunk 2 through B: %+v, %v; want 2 records from position 4", res, err)
	}

	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	count := func() (rows, distinct int) {
		err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT _sdc_sequence) FROM backfill.data`).Scan(&rows, &distinct)
		if err != nil && !strings.Contains(err.Error(), "does not exist") {
			t.Fatal(err)
		}
		return rows, distinct
	}
	deadline = time.Now().Add(30 * time.Second)
	for rows, _ := count(); rows < 5; rows, _ = count() {
		if time.Now().After(deadline) {
			t.Fatalf("after 30s the warehouse has %d rows, want 5", rows)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var at time.Time
	if err := conn.QueryRow(ctx, `SELECT _sdc_received_at FROM backfill.data WHERE n = 1`).Scan(&at); err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2024, 1, 2, 3, 4, 5, 123456000, time.UTC); !at.Equal(want) {
		t.Errorf("record 1 loaded with _sdc_received_at %s, want its own time %s", at, want)
	}

	// A rerun of the whole import, through both nodes, adds nothing.
	for _, c := range []*client.Client{ca, cb} {
		for _, ch := range []struct{ id, body string }{{id1, chunk1}, {id2, chunk2}} {
			if res, err := c.ImportChunk(ctx, in.ID, ch.id, "ts", []byte(ch.body)); err != nil || !res.Duplicate {
				t.Fatalf("rerun: %+v, %v; want a duplicate", res, err)
			}
		}
	}
	// A chunk of the largest body the nodes tell fits one NATS message...
	pad := lim.MaxChunkBytes - len(`{"n":6,"pad":""}`+"\n")
	full := `{"n":6,"pad":"` + strings.Repeat("x", pad) + `"}` + "\n"
	if res, err := ca.ImportChunk(ctx, in.ID, strings.Repeat("3", 64), "", []byte(full)); err != nil || res.Records != 1 {
		t.Fatalf("a chunk of %d bytes (the limit told): %+v, %v", len(full), res, err)
	}
	// ...and one larger than a NATS message holds is refused, saying why.
	big := `{"n":7,"pad":"` + strings.Repeat("x", 800<<10) + `"}` + "\n"
	_, err = ca.ImportChunk(ctx, in.ID, strings.Repeat("4", 64), "", []byte(big))
	var ce *client.Error
	if !errors.As(err, &ce) || ce.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(ce.Message, "max_payload") {
		t.Fatalf("a chunk larger than a NATS message: %v, want 413 naming max_payload", err)
	}
	if h := a.state.Head(in.ID); h.Position != 6 {
		t.Errorf("the log's head is %d after the rerun and the refused chunk, want 6", h.Position)
	}
	deadline = time.Now().Add(30 * time.Second)
	for rows, _ := count(); rows < 6 && time.Now().Before(deadline); rows, _ = count() {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a second load would show by now
	if rows, distinct := count(); rows != 6 || distinct != 6 {
		t.Fatalf("warehouse: %d rows, %d distinct sequences, want 6 of each", rows, distinct)
	}
	if n := a.state.Deduplicated(in.ID); n != 0 {
		t.Errorf("records_deduplicated %d after import chunks sent again, want 0 (not redeliveries)", n)
	}
}
