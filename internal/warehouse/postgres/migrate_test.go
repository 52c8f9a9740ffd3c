package postgres

import (
	"context"
	"testing"

	"github.com/hookhouse/hookhouse/internal/pgtest"
	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// TestMigratesWarehouseFromBeforeMigrations opens a database laid out as
// hookhouse made it before migrations were numbered (load_state without
// installation_id, no migrations table): the state survives with an empty
// installation, and the next load can claim it.
func TestMigratesWarehouseFromBeforeMigrations(t *testing.T) {
	ctx := t.Context()
	dsn, err := pgtest.Shared(t).NewDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	conn := rawConn(t, dsn)
	if _, err := conn.Exec(ctx, `CREATE SCHEMA "_hookhouse";
CREATE TABLE "_hookhouse"."load_state" (integration_id bigint PRIMARY KEY, position bigint NOT NULL, sequence bigint NOT NULL, updated_at timestamptz NOT NULL);
INSERT INTO "_hookhouse"."load_state" VALUES (1, 42, 4200, now())`); err != nil {
		t.Fatal(err)
	}
	for range 2 { // and opening an up-to-date database changes nothing
		db, err := Open(ctx, dsn, Options{}, testLogger(t))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		st, err := db.LoadState(ctx)
		if err != nil || !st[1].Same(warehouse.State{Position: 42, Sequence: 4200}) {
			t.Fatalf("LoadState = %v, %v; want position 42 with no installation", st, err)
		}
		var versions int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM "_hookhouse"."migrations"`).Scan(&versions); err != nil || versions != 2 {
			t.Fatalf("migrations recorded: %d, %v; want 2", versions, err)
		}
		db.Close()
	}
	db, err := Open(ctx, dsn, Options{}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	claimed := warehouse.State{Installation: "new", Position: 43, Sequence: 4300}
	if err := db.Load(ctx, &warehouse.Batch{Integration: 1, Schema: "s", Prev: warehouse.State{Position: 42, Sequence: 4200}, State: claimed}); err != nil {
		t.Fatalf("claiming the old state: %v", err)
	}
	if st, err := db.LoadState(ctx); err != nil || !st[1].Same(claimed) {
		t.Fatalf("LoadState = %v, %v; want %v", st, err, claimed)
	}
}
