package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookhouse/hookhouse/internal/pgtest"
	"github.com/hookhouse/hookhouse/internal/warehouse"
	"github.com/hookhouse/hookhouse/internal/warehouse/warehousetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.CloseShared()
	os.Exit(code)
}

func TestConformance(t *testing.T) {
	warehousetest.Run(t, func(t *testing.T) warehouse.Warehouse {
		db, _ := openDB(t)
		return db
	})
}

// openDB opens the adapter on a fresh database and returns it with the database's
// URL, for checking behind the adapter's back.
func openDB(t testing.TB) (*DB, string) {
	t.Helper()
	dsn, err := pgtest.Shared(t).NewDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	db, err := Open(context.Background(), dsn, Options{}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, dsn
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// rawConn connects to dsn directly, bypassing the adapter.
func rawConn(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// mustLoad loads b, which must succeed; a b without Prev gets the stored state.
func mustLoad(t testing.TB, db *DB, b *warehouse.Batch) {
	t.Helper()
	if b.Prev == (warehouse.State{}) {
		st, err := db.LoadState(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		b.Prev = st[b.Integration]
	}
	if err := db.Load(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

func col(name string, typ warehouse.Type) warehouse.Column {
	return warehouse.Column{Name: name, Type: typ}
}

// pgTypes returns "name type" for each column of schema.table as PostgreSQL has it.
func pgTypes(t *testing.T, conn *pgx.Conn, schema, table string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `
SELECT a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`, pgx.Identifier{schema, table}.Sanitize())
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestCreatesSchemaTablesAndTypes(t *testing.T) {
	db, dsn := openDB(t)
	conn := rawConn(t, dsn)
	all := []warehouse.Column{
		col("t", warehouse.Text), col("b", warehouse.BigInt), col("d", warehouse.Double),
		col("o", warehouse.Boolean), col("n", warehouse.Numeric), col("ts", warehouse.Timestamp),
	}
	mustLoad(t, db, &warehouse.Batch{Integration: 1, Schema: "Mixed Case", State: warehouse.State{Position: 1},
		Tables: []warehouse.Table{{Name: "data", Columns: all}}})
	want := []string{"t text", "b bigint", "d double precision", "o boolean", "n numeric", "ts timestamp with time zone"}
	if got := pgTypes(t, conn, "Mixed Case", "data"); !reflect.DeepEqual(got, want) {
		t.Fatalf("columns %q, want %q", got, want)
	}
	got, err := db.Columns(t.Context(), "Mixed Case", "data")
	if err != nil || !reflect.DeepEqual(got, all) {
		t.Fatalf("Columns = %v, %v; want %v", got, err, all)
	}
	// Nothing hookhouse did not create: no primary key without a Key.
	var n int
	conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_index WHERE indrelid = '"Mixed Case".data'::regclass`).Scan(&n)
	if n != 0 {
		t.Errorf("append-only data table has %d indexes, want 0", n)
	}

	// Tables and types created outside hookhouse read as the nearest warehouse type.
	if _, err := conn.Exec(t.Context(), `CREATE TABLE "Mixed Case".ext (a integer, b real, c varchar(5), d timestamp, e jsonb, f date)`); err != nil {
		t.Fatal(err)
	}
	got, err = db.Columns(t.Context(), "Mixed Case", "ext")
	wantExt := []warehouse.Column{col("a", warehouse.BigInt), col("b", warehouse.Double), col("c", warehouse.Text),
		col("d", warehouse.Timestamp), col("e", warehouse.Text), col("f", warehouse.Text)}
	if err != nil || !reflect.DeepEqual(got, wantExt) {
		t.Fatalf("Columns(ext) = %v, %v; want %v", got, err, wantExt)
	}
	if _, err := conn.Exec(t.Context(), `CREATE TABLE "Mixed Case".empty ()`); err != nil {
		t.Fatal(err)
	}
	if got, err := db.Columns(t.Context(), "Mixed Case", "empty"); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Columns(empty) = %#v, %v; want an empty non-nil slice", got, err)
	}
}

func TestCopiesEveryTypeExactly(t *testing.T) {
	db, dsn := openDB(t)
	conn := rawConn(t, dsn)
	c := []warehouse.Column{
		col("id", warehouse.BigInt), col("t", warehouse.Text), col("d", warehouse.Double),
		col("o", warehouse.Boolean), col("n", warehouse.Numeric), col("ts", warehouse.Timestamp),
	}
	us := time.Date(2024, 2, 29, 23, 59, 59, 123456789, time.FixedZone("x", -7*3600))
	mustLoad(t, db, &warehouse.Batch{Integration: 1, Schema: "types", State: warehouse.State{Position: 1},
		Tables: []warehouse.Table{{Name: "data", Columns: c, Rows: [][]any{
			{int64(1), "a\\b\tc\nd'e\"f", 1.5, true, "123456789012345678901234567890", us},
			{int64(2), "", -0.0, false, "-99999999999999999999999999999999999999", time.Unix(0, 1000)},
			{int64(3)},
		}}}})
	var text, num, tsText string
	err := conn.QueryRow(t.Context(), `SELECT t, n::text, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM types.data WHERE id = 1`).
		Scan(&text, &num, &tsText)
	if err != nil {
		t.Fatal(err)
	}
	if text != "a\\b\tc\nd'e\"f" || num != "123456789012345678901234567890" || tsText != "2024-03-01 06:59:59.123456" {
		t.Errorf("row 1 stored as %q %q %q", text, num, tsText)
	}
	var nulls int
	conn.QueryRow(t.Context(), `SELECT num_nulls(t, d, o, n, ts) FROM types.data WHERE id = 3`).Scan(&nulls)
	if nulls != 5 {
		t.Errorf("short row: %d NULLs, want 5", nulls)
	}

	res, err := db.Query(t.Context(), `SELECT n, ts FROM types.data ORDER BY id`, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]any{
		{"123456789012345678901234567890", "2024-03-01T06:59:59.123456Z"},
		{"-99999999999999999999999999999999999999", "1970-01-01T00:00:00.000001Z"},
		{nil, nil},
	}
	if !reflect.DeepEqual(res.Rows, want) {
		t.Errorf("Query rows %v, want %v", res.Rows, want)
	}
}

func TestRefusesBadValues(t *testing.T) {
	db, _ := openDB(t)
	for _, tc := range []struct {
		typ   warehouse.Type
		value any
		msg   string
	}{
		{warehouse.Text, "nul\x00byte", "NUL"},
		{warehouse.Text, int64(1), "int64"},
		{warehouse.BigInt, 1.0, "float64"},
		{warehouse.BigInt, 1, "int"},
		{warehouse.Double, int64(1), "int64"},
		{warehouse.Boolean, "true", "string"},
		{warehouse.Numeric, "1.5", "decimal digits"},
		{warehouse.Numeric, "1e5", "decimal digits"},
		{warehouse.Numeric, "-", "decimal digits"},
		{warehouse.Numeric, int64(5), "int64"},
		{warehouse.Timestamp, "2024-01-01T00:00:00Z", "string"},
	} {
		err := db.Load(t.Context(), &warehouse.Batch{Integration: 1, Schema: "bad", State: warehouse.State{Position: 1},
			Tables: []warehouse.Table{{Name: "data", Columns: []warehouse.Column{col("v", tc.typ)}, Rows: [][]any{{tc.value}}}}})
		var le *LoadError
		if !errors.As(err, &le) || le.Table != "data" || !strings.Contains(err.Error(), tc.msg) ||
			!strings.Contains(err.Error(), "integration 1") {
			t.Errorf("%s value %#v: got %v, want a LoadError for table data mentioning %q", tc.typ, tc.value, err, tc.msg)
		}
	}
	if cols, _ := db.Columns(t.Context(), "bad", "data"); cols != nil {
		t.Errorf("failed batches left a table with %v", cols)
	}

	for _, b := range []*warehouse.Batch{
		{Schema: ""},
		{Schema: strings.Repeat("s", 64)},
		{Schema: "s", Tables: []warehouse.Table{{Name: "data", Columns: []warehouse.Column{col(strings.Repeat("c", 64), warehouse.Text)}}}},
		{Schema: "s", Tables: []warehouse.Table{{Name: "data", Columns: []warehouse.Column{col("c", 0)}}}},
		{Schema: "s", Tables: []warehouse.Table{{Name: "data"}, {Name: "data"}}},
		{Schema: "s", Key: "id", Tables: []warehouse.Table{{Name: "data", Columns: []warehouse.Column{col("x", warehouse.Text)}, Rows: [][]any{{"x"}}}}},
		{Schema: "s", Key: "id", Tables: []warehouse.Table{{Name: "data", Columns: []warehouse.Column{col("id", warehouse.Text)}, Rows: [][]any{{nil}}}}},
		{Schema: "s", State: warehouse.State{Position: 1 << 63}},
	} {
		if err := db.Load(t.Context(), b); err == nil {
			t.Errorf("Load(%+v) succeeded", b)
		}
	}
	if st, _ := db.LoadState(t.Context()); len(st) != 0 {
		t.Errorf("state after failures: %v", st)
	}
}

// TestFailedBatchLeavesNothing makes PostgreSQL itself refuse a row late in a batch
// that also creates a table and adds a column: all of it must go.
func TestFailedBatchLeavesNothing(t *testing.T) {
	db, dsn := openDB(t)
	conn := rawConn(t, dsn)
	base := []warehouse.Column{col("a", warehouse.Text)}
	mustLoad(t, db, &warehouse.Batch{Integration: 4, Schema: "s", State: warehouse.State{Position: 1, Sequence: 10},
		Tables: []warehouse.Table{{Name: "data", Columns: base, Rows: [][]any{{"ok"}}}}})
	if _, err := conn.Exec(t.Context(), `ALTER TABLE s.data ADD CONSTRAINT no_bad CHECK (a <> 'bad')`); err != nil {
		t.Fatal(err)
	}
	err := db.Load(t.Context(), &warehouse.Batch{Integration: 4, Schema: "s",
		Prev: warehouse.State{Position: 1, Sequence: 10}, State: warehouse.State{Position: 2, Sequence: 20},
		Tables: []warehouse.Table{
			{Name: "data__new", Columns: []warehouse.Column{col("_sdc_source_key_a", warehouse.Text)}, Rows: [][]any{{"x"}}},
			{Name: "data", Columns: append(base, col("b", warehouse.BigInt)), Rows: [][]any{{"fine", int64(1)}, {"bad", int64(2)}}},
		}})
	if err == nil || !strings.Contains(err.Error(), "no_bad") {
		t.Fatalf("Load = %v, want the check violation", err)
	}
	if got := pgTypes(t, conn, "s", "data"); !reflect.DeepEqual(got, []string{"a text"}) {
		t.Errorf("data columns after failure: %v", got)
	}
	if cols, _ := db.Columns(t.Context(), "s", "data__new"); cols != nil {
		t.Errorf("data__new exists after failure")
	}
	var n int
	conn.QueryRow(t.Context(), `SELECT count(*) FROM s.data`).Scan(&n)
	if n != 1 {
		t.Errorf("data has %d rows, want 1", n)
	}
	st, err := db.LoadState(t.Context())
	if err != nil || len(st) != 1 || !st[4].Same(warehouse.State{Position: 1, Sequence: 10}) {
		t.Errorf("state %v, %v", st, err)
	}
	// The pool is usable after a failed transaction.
	mustLoad(t, db, &warehouse.Batch{Integration: 4, Schema: "s", State: warehouse.State{Position: 2, Sequence: 20},
		Tables: []warehouse.Table{{Name: "data", Columns: base, Rows: [][]any{{"fine"}}}}})
}

func TestTypeChangedOutsideHookhouse(t *testing.T) {
	db, dsn := openDB(t)
	conn := rawConn(t, dsn)
	c := []warehouse.Column{col("a", warehouse.BigInt)}
	mustLoad(t, db, &warehouse.Batch{Integration: 1, Schema: "s", State: warehouse.State{Position: 1},
		Tables: []warehouse.Table{{Name: "data", Columns: c}}})
	conn.Exec(t.Context(), `ALTER TABLE s.data ALTER COLUMN a TYPE text`)
	err := db.Load(t.Context(), &warehouse.Batch{Integration: 1, Schema: "s",
		Prev: warehouse.State{Position: 1}, State: warehouse.State{Position: 2},
		Tables: []warehouse.Table{{Name: "data", Columns: c, Rows: [][]any{{int64(1)}}}}})
	if err == nil || !strings.Contains(err.Error(), `column "a" is text`) || !strings.Contains(err.Error(), "restore its type") {
		t.Fatalf("Load = %v, want a type mismatch naming the column and a next step", err)
	}
}

func TestUpsertKeysAndSubtables(t *testing.T) {
	db, dsn := openDB(t)
	conn := rawConn(t, dsn)
	// The first batch has only rejected records: data exists before its key column.
	mustLoad(t, db, &warehouse.Batch{Integration: 1, Schema: "up", Key: "id", State: warehouse.State{Position: 1},
		Tables: []warehouse.Table{
			{Name: "data", Columns: []warehouse.Column{col("_sdc_sequence", warehouse.BigInt)}},
			{Name: warehouse.RejectedTable, Columns: warehouse.RejectedColumns, Rows: [][]any{
				{time.Now(), "data", "missing key", "{}"},
			}},
		}})
	dataCols := []warehouse.Column{col("_sdc_sequence", warehouse.BigInt), col("id", warehouse.Text), col("v", warehouse.Text)}
	tagCols := []warehouse.Column{col("_sdc_source_key_id", warehouse.Text), col("_sdc_level_0_id", warehouse.BigInt), col("value", warehouse.Text)}
	mustLoad(t, db, &warehouse.Batch{Integration: 1, Schema: "up", Key: "id", State: warehouse.State{Position: 2},
		Tables: []warehouse.Table{
			{Name: "data", Columns: dataCols, Rows: [][]any{{int64(1), "a", "a1"}, {int64(2), "b", "b1"}}},
			{Name: "data__tags", Columns: tagCols, Rows: [][]any{{"a", int64(0), "x"}, {"b", int64(0), "y"}}},
		}})
	var pk string
	err := conn.QueryRow(t.Context(), `SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'up.data'::regclass AND contype = 'p'`).Scan(&pk)
	if err != nil || pk != "PRIMARY KEY (id)" {
		t.Fatalf("primary key %q, %v", pk, err)
	}
	var idx string
	err = conn.QueryRow(t.Context(), `SELECT indexdef FROM pg_indexes WHERE schemaname = 'up' AND tablename = 'data__tags'`).Scan(&idx)
	if err != nil || !strings.Contains(idx, "(_sdc_source_key_id)") {
		t.Errorf("subtable index %q, %v", idx, err)
	}

	// A user table in the schema that looks like nothing of ours is left alone.
	conn.Exec(t.Context(), `CREATE TABLE up.notes (id text, note text); INSERT INTO up.notes VALUES ('a', 'keep')`)
	// Key a again, twice in one batch (the last wins), without tags.
	mustLoad(t, db, &warehouse.Batch{Integration: 1, Schema: "up", Key: "id", State: warehouse.State{Position: 3},
		Tables: []warehouse.Table{
			{Name: "data", Columns: dataCols, Rows: [][]any{{int64(3), "a", "a2"}, {int64(4), "a", "a3"}}},
		}})
	rows, _ := conn.Query(t.Context(), `SELECT id || ':' || v || ':' || _sdc_sequence FROM up.data ORDER BY id`)
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || !reflect.DeepEqual(got, []string{"a:a3:4", "b:b1:2"}) {
		t.Errorf("data %v, %v", got, err)
	}
	rows, _ = conn.Query(t.Context(), `SELECT _sdc_source_key_id || ':' || value FROM up.data__tags ORDER BY 1`)
	got, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || !reflect.DeepEqual(got, []string{"b:y"}) {
		t.Errorf("tags %v, %v", got, err)
	}
	var note string
	conn.QueryRow(t.Context(), `SELECT note FROM up.notes`).Scan(&note)
	if note != "keep" {
		t.Errorf("a table that is no subtable lost its row")
	}
}

// TestConcurrentSchemaCreation opens and loads into one new schema from many
// sessions at once: without the advisory locks PostgreSQL fails some CREATE
// SCHEMA/TABLE IF NOT EXISTS with a unique violation.
func TestConcurrentSchemaCreation(t *testing.T) {
	for round := range 3 {
		dsn, err := pgtest.Shared(t).NewDatabase(t.Context()) // no _hookhouse schema yet
		if err != nil {
			t.Fatal(err)
		}
		schema := fmt.Sprintf("race_%d", round)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := range 8 {
			wg.Go(func() {
				db, err := Open(t.Context(), dsn, Options{}, nil) // separate pools: separate sessions
				if err != nil {
					errs <- err
					return
				}
				defer db.Close()
				errs <- db.Load(t.Context(), &warehouse.Batch{Integration: int64(i + 1), Schema: schema,
					State: warehouse.State{Position: 1},
					Tables: []warehouse.Table{
						{Name: "data", Columns: []warehouse.Column{col("a", warehouse.Text), col(fmt.Sprintf("c%d", i), warehouse.Text)},
							Rows: [][]any{{"x"}}},
						{Name: warehouse.RejectedTable, Columns: warehouse.RejectedColumns},
					}})
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
	}
}

func TestQueryReadOnly(t *testing.T) {
	db, dsn := openDB(t)
	mustLoad(t, db, &warehouse.Batch{Integration: 1, Schema: "ro", State: warehouse.State{Position: 1},
		Tables: []warehouse.Table{{Name: "data", Columns: []warehouse.Column{col("a", warehouse.Text)}, Rows: [][]any{{"x"}}}}})
	for _, sql := range []string{
		`INSERT INTO ro.data VALUES ('y')`,
		`CREATE TABLE ro.t (a int)`,
		`CREATE TEMP TABLE t (a int)`,
		`DROP TABLE ro.data`,
		`DROP SCHEMA ro CASCADE`,
		`SELECT * FROM ro.data FOR UPDATE`,
		`WITH d AS (DELETE FROM ro.data RETURNING *) SELECT * FROM d`,
	} {
		_, err := db.Query(t.Context(), sql, 10)
		if !errors.Is(err, warehouse.ErrReadOnly) {
			t.Errorf("Query(%q) = %v, want ErrReadOnly", sql, err)
		}
	}
	for _, sql := range []string{`SELECT 1/0`, `SELECT * FROM nowhere`, `SELEKT 1`, `SELECT 1; SELECT 2`} {
		if _, err := db.Query(t.Context(), sql, 10); err == nil || errors.Is(err, warehouse.ErrReadOnly) {
			t.Errorf("Query(%q) = %v, want an error that is not ErrReadOnly", sql, err)
		}
	}

	// Session state does not outlive a query on the pooled connections.
	for range 8 {
		if _, err := db.Query(t.Context(), `SELECT pg_advisory_lock(42)`, 1); err != nil {
			t.Fatal(err)
		}
	}
	conn := rawConn(t, dsn)
	var locked bool
	conn.QueryRow(t.Context(), `SELECT pg_try_advisory_lock(42)`).Scan(&locked)
	if !locked {
		t.Error("a query's session advisory lock outlived the query")
	}
	res, err := db.Query(t.Context(), `SELECT current_setting('transaction_read_only')`, 1)
	if err != nil || res.Rows[0][0] != "on" {
		t.Errorf("transaction_read_only = %v, %v", res, err)
	}
}

func TestQueryLimitsAndValues(t *testing.T) {
	db, _ := openDB(t)
	ctx := t.Context()

	// Truncation stops a big result instead of reading it all.
	res, err := db.Query(ctx, `SELECT generate_series(1, 50000000) AS n`, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Truncated || !reflect.DeepEqual(res.Rows, [][]any{{int64(1)}, {int64(2)}, {int64(3)}}) {
		t.Errorf("truncated result %+v", res)
	}
	res, err = db.Query(ctx, `SELECT 1 UNION ALL SELECT 2`, 2)
	if err != nil || res.Truncated || len(res.Rows) != 2 {
		t.Errorf("exact fit: %+v, %v", res, err)
	}

	// Statements a cursor cannot hold still run.
	res, err = db.Query(ctx, `SHOW transaction_read_only`, 10)
	if err != nil || !reflect.DeepEqual(res.Rows, [][]any{{"on"}}) {
		t.Errorf("SHOW: %+v, %v", res, err)
	}
	res, err = db.Query(ctx, `EXPLAIN SELECT 1`, 1)
	if err != nil || len(res.Rows) != 1 || !res.Truncated && len(res.Rows) == 0 {
		t.Errorf("EXPLAIN: %+v, %v", res, err)
	}

	// The statement timeout follows a shorter context deadline.
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := db.Query(short, `SELECT pg_sleep(30)`, 1); err == nil {
		t.Error("pg_sleep(30) with a 500ms deadline succeeded")
	}
	if _, err := db.Query(ctx, `SELECT 1`, 1); err != nil {
		t.Errorf("query after a timeout: %v", err)
	}

	res, err = db.Query(ctx, `SELECT 1::smallint, 2::int, 0.1::real, 'NaN'::float8, 'NaN'::numeric, 1.50::numeric,
		'2024-01-02'::date, '2024-01-02 03:04:05.678901+02'::timestamptz, '2024-01-02 03:04:05'::timestamp,
		'infinity'::timestamptz, '\x0102'::bytea, '{"a": [1, 2]}'::jsonb, ARRAY[1, 2],
		'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, '1 day 2 hours'::interval, NULL`, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{int64(1), int64(2), 0.1, "NaN", "NaN", "1.50",
		"2024-01-02", "2024-01-02T01:04:05.678901Z", "2024-01-02T03:04:05.000000Z",
		"infinity", `\x0102`, `{"a":[1,2]}`, "[1,2]",
		"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "1 day 02:00:00", nil}
	if len(res.Rows) != 1 || !reflect.DeepEqual(res.Rows[0], want) {
		t.Errorf("values:\ngot  %#v\nwant %#v", res.Rows, want)
	}
}

func TestLoadStateWithoutTable(t *testing.T) {
	db, dsn := openDB(t)
	rawConn(t, dsn).Exec(t.Context(), `DROP SCHEMA "_hookhouse" CASCADE`)
	st, err := db.LoadState(t.Context())
	if err != nil || st == nil || len(st) != 0 {
		t.Fatalf("LoadState = %v, %v; want an empty map", st, err)
	}
}

func TestClosed(t *testing.T) {
	db, _ := openDB(t)
	db.Close()
	if err := db.Ping(t.Context()); err == nil {
		t.Error("Ping after Close succeeded")
	}
	if err := db.Load(t.Context(), &warehouse.Batch{Schema: "s"}); err == nil {
		t.Error("Load after Close succeeded")
	}
}

func TestOpenFailsClearly(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := Open(ctx, "postgres://u:secret@127.0.0.1:1/db?connect_timeout=2", Options{}, nil)
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("Open of an unreachable server = %v", err)
	}
	_, err = Open(ctx, "postgres://u:secret@127.0.0.1:bad/db", Options{}, nil)
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("Open of a bad URL = %v", err)
	}
}

func TestPoolMaxConns(t *testing.T) {
	dsn, err := pgtest.Shared(t).NewDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(dsn)
	q := u.Query()
	q.Set("pool_max_conns", "zero")
	u.RawQuery = q.Encode()
	if _, err := Open(t.Context(), u.String(), Options{}, nil); err == nil || !strings.Contains(err.Error(), "pool_max_conns") {
		t.Fatalf("Open with a bad pool_max_conns = %v", err)
	}
	q.Set("pool_max_conns", "1")
	u.RawQuery = q.Encode()
	db, err := Open(t.Context(), u.String(), Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// One connection serves every caller in turn. (Queries have a pool of their
	// own, under their own login, which pool_max_conns caps too.)
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			res, err := db.Query(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = current_user`, 1)
			if err != nil {
				t.Error(err)
				return
			}
			if n := res.Rows[0][0].(int64); n != 1 {
				t.Errorf("%d sessions, want 1", n)
			}
		})
	}
	wg.Wait()
}
