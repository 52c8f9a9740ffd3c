package duckdb

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// TestBackupWhileLoading: a copy taken while batches commit is consistent (the
// load position it holds counts exactly the rows it holds), keeps the tables'
// types and hookhouse's own schema, opens as a warehouse of its own and loads
// on from its position; the live warehouse is not held up.
func TestBackupWhileLoading(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "warehouse.duckdb")
	d, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cols := []warehouse.Column{text("id"), bigint("n"), {Name: "amount", Type: warehouse.Numeric}, {Name: "at", Type: warehouse.Timestamp}}
	const per = 50
	batch := func(pos uint64) *warehouse.Batch {
		var rows [][]any
		for i := range per {
			rows = append(rows, []any{fmt.Sprintf("%d-%d", pos, i), int64(i), "12345678901234567890123456789012345678", warehouse.UTC(d0)})
		}
		return &warehouse.Batch{Integration: 7, Schema: "atom", Key: "id",
			Prev:   warehouse.State{Position: (pos - 1) * per, Sequence: int64(pos - 1)},
			State:  warehouse.State{Position: pos * per, Sequence: int64(pos)},
			Tables: []warehouse.Table{{Name: "data", Columns: cols, Rows: rows}}}
	}
	if err := d.Load(ctx, batch(1)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	loaded := make(chan uint64, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		pos := uint64(2)
		defer func() { loaded <- pos - 1 }()
		for ; ; pos++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := d.Load(ctx, batch(pos)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	if err := os.Mkdir(BackupDir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(BackupDir(path), "warehouse.duckdb")
	states, err := d.Backup(ctx, dest)
	close(stop)
	wg.Wait()
	last := <-loaded
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Backup(ctx, dest); err == nil {
		t.Error("a backup over an existing file was allowed")
	}
	// Anywhere else is refused by DuckDB itself.
	if _, err := d.Backup(ctx, filepath.Join(filepath.Dir(path), "elsewhere.duckdb")); err == nil {
		t.Error("a backup outside BackupDir was allowed")
	}
	if _, err := os.Stat(dest + ".wal"); err == nil {
		t.Error("the copy has a WAL beside it")
	}
	st := states[7]
	t.Logf("copy at position %d while the live warehouse loaded up to %d", st.Position, last*per)
	if st.Position < per || st.Position%per != 0 || st.Position > last*per {
		t.Fatalf("copy's position %d (live %d)", st.Position, last*per)
	}

	cp, err := Open(ctx, dest, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	got, err := cp.LoadState(ctx)
	if err != nil || !got[7].Same(st) {
		t.Fatalf("opened copy's LoadState = %v, %v; Backup said %v", got, err, st)
	}
	assertCount(t, cp, "atom.data", int64(st.Position))
	res, err := cp.Query(ctx, `SELECT count(DISTINCT id), min(amount)::VARCHAR, any_value(typeof(amount)), any_value(typeof("at")) FROM atom.data`, 1)
	if err != nil {
		t.Fatal(err)
	}
	if g := fmt.Sprint(res.Rows[0]...); g != fmt.Sprint(int64(st.Position), "12345678901234567890123456789012345678", "DECIMAL(38,0)", "TIMESTAMP WITH TIME ZONE") {
		t.Errorf("copy's rows: %s", g)
	}
	res, err = cp.Query(ctx, `SELECT count(*) FROM duckdb_constraints() WHERE schema_name = 'atom' AND table_name = 'data' AND constraint_type = 'PRIMARY KEY'`, 1)
	if err != nil || res.Rows[0][0].(int64) != 1 {
		t.Errorf("the copy's primary key: %v, %v", res, err)
	}
	// The copy is a warehouse: it loads on from its own position.
	next := st.Position/per + 1
	if err := cp.Load(ctx, batch(next)); err != nil {
		t.Fatal(err)
	}
	assertCount(t, cp, "atom.data", int64(st.Position+per))
}

var d0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
