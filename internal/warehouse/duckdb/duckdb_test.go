package duckdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/hookhouse/hookhouse/internal/warehouse"
	"github.com/hookhouse/hookhouse/internal/warehouse/warehousetest"
)

func openTest(t testing.TB) *DB {
	t.Helper()
	d, err := Open(context.Background(), filepath.Join(t.TempDir(), "warehouse.duckdb"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

func TestConformance(t *testing.T) {
	warehousetest.Run(t, func(t *testing.T) warehouse.Warehouse { return openTest(t) })
}

var errInjected = errors.New("injected failure before COMMIT")

// TestAppenderRowsRollBack shows that the Appender writes into the load's explicit
// transaction: its rows are invisible to other connections before COMMIT, and a
// failure after every table was appended (just before COMMIT) leaves nothing.
func TestAppenderRowsRollBack(t *testing.T) {
	ctx := t.Context()
	d := openTest(t)
	c := []warehouse.Column{text("id"), bigint("n")}
	batch := func(pos uint64, ids ...string) *warehouse.Batch {
		var rows [][]any
		for i, id := range ids {
			rows = append(rows, []any{id, int64(i)})
		}
		return &warehouse.Batch{Integration: 1, Schema: "atom",
			Prev:  warehouse.State{Position: pos - 1, Sequence: int64(pos - 1)},
			State: warehouse.State{Position: pos, Sequence: int64(pos)},
			Tables: []warehouse.Table{
				{Name: "data", Columns: c, Rows: rows},
				{Name: "data__sub", Columns: []warehouse.Column{text("_sdc_source_key_id"), bigint("v")}, Rows: [][]any{{"x", int64(1)}}},
			}}
	}
	if err := d.Load(ctx, batch(1, "a", "b")); err != nil {
		t.Fatal(err)
	}

	var sawInside, sawOutside int64
	d.beforeCommit = func(ctx context.Context, conn *sql.Conn) error {
		// Inside the transaction the appended rows are there…
		if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM atom.data`).Scan(&sawInside); err != nil {
			return err
		}
		// …while another connection still sees the last committed state.
		res, err := d.Query(ctx, `SELECT count(*) FROM atom.data`, 1)
		if err != nil {
			return err
		}
		sawOutside = res.Rows[0][0].(int64)
		return errInjected
	}
	err := d.Load(ctx, batch(2, "c", "d", "e"))
	if !errors.Is(err, errInjected) {
		t.Fatalf("Load = %v, want the injected error", err)
	}
	if sawInside != 5 || sawOutside != 2 {
		t.Errorf("before COMMIT: load transaction saw %d rows (want 5), another connection %d (want 2)", sawInside, sawOutside)
	}
	d.beforeCommit = nil
	assertCount(t, d, "atom.data", 2)
	assertCount(t, d, "atom.data__sub", 1)
	st, err := d.LoadState(ctx)
	if err != nil || !st[1].Same(warehouse.State{Position: 1, Sequence: 1}) {
		t.Errorf("LoadState = %v, %v; want position 1", st, err)
	}
	// The connection used by the failed load is usable again.
	if err := d.Load(ctx, batch(2, "c", "d", "e")); err != nil {
		t.Fatal(err)
	}
	assertCount(t, d, "atom.data", 5)
}

// TestLoadSurvivesReopen checks that a committed batch and its state are in the file.
func TestLoadSurvivesReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "warehouse.duckdb")
	d, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = d.Load(ctx, &warehouse.Batch{Integration: 4, Schema: "keep", State: warehouse.State{Position: 1 << 63, Sequence: 3},
		Tables: []warehouse.Table{{Name: "data", Columns: []warehouse.Column{text("a")}, Rows: [][]any{{"x"}, {"y"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d, err = Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	assertCount(t, d, "keep.data", 2)
	st, err := d.LoadState(ctx)
	if err != nil || !st[4].Same(warehouse.State{Position: 1 << 63, Sequence: 3}) {
		t.Errorf("LoadState after reopen = %v, %v", st, err)
	}
}

func assertCount(t *testing.T, d *DB, table string, want int64) {
	t.Helper()
	res, err := d.Query(t.Context(), `SELECT count(*) FROM `+table, 1)
	if err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	if got := res.Rows[0][0].(int64); got != want {
		t.Errorf("%s has %d rows, want %d", table, got, want)
	}
}

func text(n string) warehouse.Column   { return warehouse.Column{Name: n, Type: warehouse.Text} }
func bigint(n string) warehouse.Column { return warehouse.Column{Name: n, Type: warehouse.BigInt} }

// TestAppenderAutoFlushRollsBack loads more rows than the Appender buffers before it
// flushes on its own (DuckDB flushes every 204,800 rows), then fails before COMMIT.
func TestAppenderAutoFlushRollsBack(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 250,000 rows")
	}
	ctx := t.Context()
	d := openTest(t)
	rows := make([][]any, 250_000)
	for i := range rows {
		rows[i] = []any{int64(i)}
	}
	b := &warehouse.Batch{Integration: 1, Schema: "big", State: warehouse.State{Position: 1},
		Tables: []warehouse.Table{{Name: "data", Columns: []warehouse.Column{bigint("n")}}}}
	if err := d.Load(ctx, b); err != nil {
		t.Fatal(err)
	}
	b.Tables[0].Rows = rows
	b.Prev, b.State.Position = b.State, 2
	d.beforeCommit = func(context.Context, *sql.Conn) error { return errInjected }
	if err := d.Load(ctx, b); !errors.Is(err, errInjected) {
		t.Fatalf("Load = %v, want the injected error", err)
	}
	assertCount(t, d, "big.data", 0)
	d.beforeCommit = nil
	if err := d.Load(ctx, b); err != nil {
		t.Fatal(err)
	}
	assertCount(t, d, "big.data", 250_000)
}

// TestSchemasNamedLikeCatalogs loads into schemas whose names DuckDB also uses for
// catalogs; unqualified, "temp"."data" would be ambiguous.
func TestSchemasNamedLikeCatalogs(t *testing.T) {
	d := openTest(t)
	for i, s := range []string{"temp", "system", "main", "memory", "warehouse"} {
		b := &warehouse.Batch{Integration: int64(i + 1), Schema: s, Key: "a", State: warehouse.State{Position: 1},
			Tables: []warehouse.Table{
				{Name: "data", Columns: []warehouse.Column{text("a")}, Rows: [][]any{{"x"}}},
				{Name: "data__l", Columns: []warehouse.Column{text("_sdc_source_key_a"), text("v")}, Rows: [][]any{{"x", "1"}}},
			}}
		for range 2 {
			if err := d.Load(t.Context(), b); err != nil {
				t.Fatalf("schema %s: %v", s, err)
			}
			b.Tables[0].Columns = append(b.Tables[0].Columns, text("b"))
			b.Prev, b.State = b.State, warehouse.State{Position: b.State.Position + 1}
		}
		cols, err := d.Columns(t.Context(), s, "data")
		if err != nil || len(cols) != 2 {
			t.Errorf("schema %s: Columns = %v, %v", s, cols, err)
		}
		assertCount(t, d, `warehouse."`+s+`".data`, 1)
		assertCount(t, d, `warehouse."`+s+`".data__l`, 1)
	}
}

// TestInstanceSettings checks that the measured settings reach DuckDB.
func TestInstanceSettings(t *testing.T) {
	d := openTest(t)
	res, err := d.Query(t.Context(), `SELECT current_setting('checkpoint_threshold'), current_setting('threads'), current_setting('memory_limit')`, 1)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%v|%v|%v", res.Rows[0]...)
	t.Logf("checkpoint_threshold, threads, memory_limit = %s", got)
	// 64 MB and 2 GiB as DuckDB prints them (the limit is less on a machine under 4 GiB).
	want := fmt.Sprintf("61.0 MiB|%d|", max(1, runtime.NumCPU()/2))
	if memoryLimit() == maxMemory {
		want += "2.0 GiB"
	}
	if !strings.HasPrefix(got, want) {
		t.Errorf("settings = %q, want prefix %q", got, want)
	}
	if lim := memoryLimit(); lim > maxMemory || lim < 256<<20 {
		t.Errorf("memoryLimit() = %d", lim)
	}
}

// TestInvalidatedByTypeOnly: a query that raises the words of a fatal error is
// still an ordinary error, so users cannot make the server reopen DuckDB.
func TestInvalidatedByTypeOnly(t *testing.T) {
	d := openTest(t)
	_, err := d.Query(t.Context(), `SELECT error('FATAL Error: database has been invalidated')`, 1)
	if err == nil || Invalidated(err) {
		t.Fatalf("error() raised %v; Invalidated = %v", err, Invalidated(err))
	}
	if Invalidated(nil) || Invalidated(errors.New("database has been invalidated")) {
		t.Fatal("Invalidated is true for a nil or untyped error")
	}
}

func TestMemoryLimitFrom(t *testing.T) {
	const gib = int64(1) << 30
	meminfo := func(g int64) string { return fmt.Sprintf("MemFree: 1 kB\nMemTotal:       %d kB\n", g*gib>>10) }
	for _, c := range []struct {
		name            string
		meminfo, v2, v1 string
		want            int64
	}{
		{"big machine, no cgroup limit", meminfo(24), "max\n", "", maxMemory},
		{"cgroup v1 unlimited", meminfo(24), "", "9223372036854771712\n", maxMemory},
		{"small machine", meminfo(2), "", "", gib},
		{"container of 1 GiB (v2)", meminfo(24), "1073741824\n", "", gib / 2},
		{"container of 3 GiB (v1)", meminfo(24), "", "3221225472", 3 * gib / 2},
		{"tiny container", meminfo(24), "268435456", "", 256 << 20},
		{"nothing readable", "", "", "", maxMemory},
	} {
		if got := memoryLimitFrom(c.meminfo, c.v2, c.v1); got != c.want {
			t.Errorf("%s: memoryLimitFrom = %d MiB, want %d MiB", c.name, got>>20, c.want>>20)
		}
	}
}
