package duckdb

import (
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// TestMigratesWarehouseFromBeforeMigrations opens a file laid out as hookhouse
// made it before migrations were numbered (load_state without installation_id,
// no migrations table): the state survives, gains an empty installation, and the
// next load can claim it.
func TestMigratesWarehouseFromBeforeMigrations(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "warehouse.duckdb")
	raw, err := sql.Open("duckdb", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE SCHEMA "_hookhouse"`,
		`CREATE TABLE "_hookhouse"."load_state" (integration_id BIGINT PRIMARY KEY, position UBIGINT NOT NULL, sequence BIGINT NOT NULL, updated_at TIMESTAMPTZ NOT NULL)`,
		`INSERT INTO "_hookhouse"."load_state" VALUES (1, 42, 4200, now())`,
	} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 { // and opening an up-to-date file changes nothing
		d, err := Open(ctx, path, nil)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		st, err := d.LoadState(ctx)
		if err != nil || !st[1].Same(warehouse.State{Position: 42, Sequence: 4200}) {
			t.Fatalf("LoadState = %v, %v; want position 42 with no installation", st, err)
		}
		var versions int
		if err := d.rw.QueryRowContext(ctx, `SELECT count(*) FROM "_hookhouse"."migrations"`).Scan(&versions); err != nil || versions != 2 {
			t.Fatalf("migrations recorded: %d, %v; want 2", versions, err)
		}
		d.Close()
	}
	d, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	claimed := warehouse.State{Installation: "new", Position: 43, Sequence: 4300}
	if err := d.Load(ctx, &warehouse.Batch{Integration: 1, Schema: "s", Prev: warehouse.State{Position: 42, Sequence: 4200}, State: claimed}); err != nil {
		t.Fatalf("claiming the old state: %v", err)
	}
	if st, err := d.LoadState(ctx); err != nil || !st[1].Same(claimed) {
		t.Fatalf("LoadState = %v, %v; want %v", st, err, claimed)
	}
}
