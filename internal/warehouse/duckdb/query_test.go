package duckdb

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

func loadSample(t *testing.T, d *DB) {
	t.Helper()
	err := d.Load(t.Context(), &warehouse.Batch{Integration: 1, Schema: "s", State: warehouse.State{Position: 2, Sequence: 2},
		Tables: []warehouse.Table{{Name: "data", Columns: []warehouse.Column{bigint("id"), text("name")},
			Rows: [][]any{{int64(1), "one"}, {int64(2), "two"}}}}})
	if err != nil {
		t.Fatal(err)
	}
}

// runUnchecked runs q the way Query does but without the statement-type check, to
// show what the database refuses by itself.
func runUnchecked(t *testing.T, d *DB, q string) error {
	t.Helper()
	conn, err := d.ro.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), `BEGIN TRANSACTION READ ONLY`); err != nil {
		t.Fatal(err)
	}
	err = conn.Raw(func(dc any) error {
		_, err := runReadOnly(t.Context(), dc.(*duckdb.Conn), q, 10, false)
		return err
	})
	return classify(err)
}

// TestDatabaseAloneRefusesWrites runs writes with the statement-type check switched
// off: DuckDB's READ ONLY transaction and the locked instance configuration must
// refuse them by themselves.
func TestDatabaseAloneRefusesWrites(t *testing.T) {
	d := openTest(t)
	loadSample(t, d)
	dir := t.TempDir()
	for _, q := range []string{
		// the READ ONLY transaction
		`INSERT INTO s.data VALUES (3, 'three')`,
		`UPDATE s.data SET name = 'x'`,
		`DELETE FROM s.data`,
		`CREATE TABLE s.x (a INT)`,
		`CREATE SCHEMA s2`,
		`CREATE SEQUENCE s.seq`,
		`CREATE VIEW s.v AS SELECT 1`,
		`ALTER TABLE s.data ADD COLUMN z INT`,
		`DROP TABLE s.data`,
		`TRUNCATE s.data`,
		`INSERT INTO "_hookhouse"."load_state" (integration_id, position, sequence, updated_at) VALUES (9, 9, 9, now())`,
		// enable_external_access = false
		`COPY s.data TO '` + dir + `/out.csv'`,
		`ATTACH '` + dir + `/other.duckdb' AS other`,
		`EXPORT DATABASE '` + dir + `/export'`,
		`SELECT * FROM read_csv('/etc/passwd')`,
		`INSTALL httpfs`,
		`LOAD httpfs`,
		// lock_configuration = true
		`SET enable_external_access = true`,
		`SET lock_configuration = false`,
		`SET memory_limit = '1MB'`,
		`PRAGMA threads = 1`,
	} {
		if err := runUnchecked(t, d, q); !errors.Is(err, warehouse.ErrReadOnly) {
			t.Errorf("%s without the statement-type check: %v, want a read-only error", q, err)
		}
	}
	if err := runUnchecked(t, d, `CALL force_checkpoint()`); err == nil {
		t.Error("FORCE CHECKPOINT in a READ ONLY transaction succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("statements created files: %v", entries)
	}
	assertCount(t, d, "s.data", 2)
}

// TestQueryRefusesDuckDBSideEffects covers what DuckDB can do beyond table writes:
// files, extensions, settings, attached databases, checkpoints, session state.
func TestQueryRefusesDuckDBSideEffects(t *testing.T) {
	d := openTest(t)
	loadSample(t, d)
	dir := t.TempDir()
	out := filepath.Join(dir, "out.csv")
	for _, q := range []string{
		`COPY s.data TO '` + out + `'`,
		`COPY (SELECT 1) TO '` + out + `'`,
		`EXPORT DATABASE '` + dir + `/export'`,
		`SELECT * FROM read_csv('/etc/passwd')`,
		`SELECT * FROM read_text('/etc/hostname')`,
		`SELECT * FROM glob('/etc/*')`,
		`ATTACH '` + dir + `/other.duckdb' AS other`,
		`ATTACH ':memory:' AS mem`,
		`DETACH warehouse`,
		`USE memory`,
		`INSTALL httpfs`,
		`LOAD httpfs`,
		`SET enable_external_access = true`,
		`SET lock_configuration = false`,
		`SET memory_limit = '1MB'`,
		`RESET threads`,
		`PRAGMA threads = 1`,
		`SET search_path = 's'`,
		`SET VARIABLE x = 1`,
		`CHECKPOINT`,
		`FORCE CHECKPOINT`,
		`VACUUM`,
		`ANALYZE`,
		`CREATE TEMP TABLE t AS SELECT 1`,
		`CREATE TEMP MACRO f(a) AS a + 1`,
		`CALL force_checkpoint()`,
		`BEGIN TRANSACTION`,
		`PREPARE p AS DELETE FROM s.data`,
	} {
		_, err := d.Query(t.Context(), q, 10)
		if !errors.Is(err, warehouse.ErrReadOnly) {
			t.Errorf("Query(%q) = %v, want an error wrapping ErrReadOnly", q, err)
		}
	}
	// Refused before DuckDB can even classify them (no such secret type loaded).
	for _, q := range []string{
		`CREATE SECRET (TYPE s3, KEY_ID 'a', SECRET 'b')`,
		`CREATE PERSISTENT SECRET p (TYPE s3, KEY_ID 'a', SECRET 'b')`,
	} {
		if _, err := d.Query(t.Context(), q, 10); err == nil {
			t.Errorf("Query(%q) succeeded", q)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("queries created files: %v", entries)
	}
	res, err := d.Query(t.Context(), `SELECT database_name FROM duckdb_databases() WHERE NOT internal ORDER BY 1`, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Rows, [][]any{{"warehouse"}}) {
		t.Errorf("attached databases: %v, want only warehouse", res.Rows)
	}
	res, err = d.Query(t.Context(), `SELECT current_setting('enable_external_access')`, 1)
	if err != nil || res.Rows[0][0] != false {
		t.Errorf("enable_external_access = %v, %v", res, err)
	}
	assertCount(t, d, "s.data", 2)
}

func TestQueryNeedsOneStatement(t *testing.T) {
	d := openTest(t)
	loadSample(t, d)
	_, err := d.Query(t.Context(), `SELECT 1; SELECT 2`, 10)
	if err == nil || !strings.Contains(err.Error(), "exactly one SQL statement") {
		t.Errorf("two statements: %v", err)
	}
	for _, q := range []string{
		`SHOW TABLES`, `DESCRIBE s.data`, `PRAGMA table_info('s.data')`, `SELECT * FROM pragma_table_info('s.data')`,
		`EXPLAIN SELECT * FROM s.data`, `FROM s.data`, `VALUES (1), (2)`, `WITH x AS (SELECT 1 AS a) SELECT a FROM x`,
		`SUMMARIZE s.data`, `SELECT * FROM duckdb_tables()`,
	} {
		if _, err := d.Query(t.Context(), q, 10); err != nil {
			t.Errorf("Query(%q): %v", q, err)
		}
	}
}

func TestQueryValues(t *testing.T) {
	d := openTest(t)
	res, err := d.Query(t.Context(), `SELECT
		1::TINYINT, 2::INTEGER, 3::UINTEGER, 9223372036854775807::UBIGINT, 18446744073709551615::UBIGINT,
		170141183460469231731687303715884105727::HUGEINT, 12.50::DECIMAL(10,2), 0.1::FLOAT, 0.1::DOUBLE,
		'nan'::DOUBLE, 'inf'::DOUBLE, '-inf'::DOUBLE,
		DATE '2024-02-29', TIME '12:34:56.789', TIMESTAMP '2024-01-02 03:04:05.123456',
		TIMESTAMPTZ '2024-01-02 03:04:05.5+02', TIMESTAMP_NS '2024-01-02 03:04:05.123456789',
		'1f0c9b5e-3a5e-4a8e-9d3b-6a1f0c9b5e3a'::UUID, INTERVAL '1 month 2 days 3 hours 0.5 seconds',
		[1, 2, NULL], {'a': 1, 'b': 'x'}, MAP {'k': 1}, '\xAA\x41\x5C'::BLOB, '{"a":[1,2]}'::JSON,
		'héllo', true, NULL`, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{
		int64(1), int64(2), int64(3), int64(9223372036854775807), "18446744073709551615",
		"170141183460469231731687303715884105727", "12.5", 0.1, 0.1,
		"NaN", "Infinity", "-Infinity",
		"2024-02-29", "12:34:56.789000", "2024-01-02T03:04:05.123456Z",
		"2024-01-02T01:04:05.500000Z", "2024-01-02T03:04:05.123456Z",
		"1f0c9b5e-3a5e-4a8e-9d3b-6a1f0c9b5e3a", "P1M2DT3H0.5S",
		`[1,2,null]`, `{"a":1,"b":"x"}`, `[{"key":"k","value":1}]`, `\xAAA\x5C`, `{"a":[1,2]}`,
		"héllo", true, nil,
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != len(want) {
		t.Fatalf("got %v", res.Rows)
	}
	for i, w := range want {
		if g := res.Rows[0][i]; !reflect.DeepEqual(g, w) {
			t.Errorf("column %d (%s): got %T(%v), want %T(%v)", i, res.Columns[i], g, g, w, w)
		}
	}
	if _, err := json.Marshal(res); err != nil {
		t.Errorf("result does not encode as JSON: %v", err)
	}
}

func TestQueryCancel(t *testing.T) {
	d := openTest(t)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := d.Query(ctx, `SELECT sum(hash(a)) FROM range(1000000000000) t(a)`, 1)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Query = %v, want a deadline error", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("cancelled query returned after %v", el)
	}
	// The warehouse still answers.
	if _, err := d.Query(t.Context(), `SELECT 1`, 1); err != nil {
		t.Fatal(err)
	}
}

// TestQueryDoesNotBlockLoad runs a long query and loads meanwhile.
func TestQueryDoesNotBlockLoad(t *testing.T) {
	d := openTest(t)
	loadSample(t, d)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := d.Query(ctx, `SELECT sum(hash(a)) FROM range(1000000000000) t(a), s.data`, 1)
		done <- err
	}()
	time.Sleep(200 * time.Millisecond) // let the query start
	for i := range 5 {
		err := d.Load(t.Context(), &warehouse.Batch{Integration: 1, Schema: "s",
			Prev: warehouse.State{Position: uint64(2 + i)}, State: warehouse.State{Position: uint64(3 + i)},
			Tables: []warehouse.Table{{Name: "data", Columns: []warehouse.Column{bigint("id"), text("name")},
				Rows: [][]any{{int64(3 + i), "more"}}}}})
		if err != nil {
			t.Fatalf("Load while a query runs: %v", err)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("the query ended before the loads (%v); it should still be running", err)
	default:
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Query = %v, want cancelled", err)
	}
	assertCount(t, d, "s.data", 7)
}

// TestUpsertWhileSnapshotOpen replaces the same key again and again while a reader
// holds an old snapshot, which DuckDB's primary-key index must cope with.
func TestUpsertWhileSnapshotOpen(t *testing.T) {
	d := openTest(t)
	ctx := t.Context()
	batch := func(seq int64) *warehouse.Batch {
		return &warehouse.Batch{Integration: 1, Schema: "u", Key: "id",
			Prev: warehouse.State{Position: uint64(seq - 1)}, State: warehouse.State{Position: uint64(seq)},
			Tables: []warehouse.Table{{Name: "data", Columns: []warehouse.Column{text("id"), bigint("seq")},
				Rows: [][]any{{"k", seq}}}}}
	}
	if err := d.Load(ctx, batch(1)); err != nil {
		t.Fatal(err)
	}
	reader, err := d.ro.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if _, err := reader.ExecContext(ctx, `BEGIN TRANSACTION READ ONLY`); err != nil {
		t.Fatal(err)
	}
	var seq int64
	if err := reader.QueryRowContext(ctx, `SELECT seq FROM u.data`).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	for i := int64(2); i <= 5; i++ {
		if err := d.Load(ctx, batch(i)); err != nil {
			t.Fatalf("upsert %d with an open snapshot: %v", i, err)
		}
	}
	if err := reader.QueryRowContext(ctx, `SELECT seq FROM u.data`).Scan(&seq); err != nil || seq != 1 {
		t.Errorf("snapshot sees seq %d, %v; want 1", seq, err)
	}
	if _, err := reader.ExecContext(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	res, err := d.Query(ctx, `SELECT id, seq FROM u.data`, 10)
	if err != nil || !reflect.DeepEqual(res.Rows, [][]any{{"k", int64(5)}}) {
		t.Errorf("after upserts: %v, %v", res, err)
	}
}

// TestQueryLimitsWork shows that maxRows limits the work, not only the answer: the
// first query would never finish if DuckDB produced every row before the first fetch.
func TestQueryLimitsWork(t *testing.T) {
	d := openTest(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		sql  string
		cols []string
		rows [][]any
	}{
		{`SELECT i FROM range(1000000000000) t(i)`, []string{"i"}, [][]any{{int64(0)}, {int64(1)}, {int64(2)}}},
		{`SELECT i FROM range(1000000) t(i) ORDER BY i DESC;`, []string{"i"}, [][]any{{int64(999999)}, {int64(999998)}, {int64(999997)}}},
		{`SELECT 1 AS a, 2 AS a FROM range(10) -- comment`, []string{"a", "a"}, [][]any{{int64(1), int64(2)}, {int64(1), int64(2)}, {int64(1), int64(2)}}},
	} {
		res, err := d.Query(ctx, tc.sql, 3)
		if err != nil {
			t.Fatalf("Query(%q): %v", tc.sql, err)
		}
		if !reflect.DeepEqual(res.Columns, tc.cols) || !reflect.DeepEqual(res.Rows, tc.rows) || !res.Truncated {
			t.Errorf("Query(%q) = %+v, want columns %v rows %v truncated", tc.sql, res, tc.cols, tc.rows)
		}
	}
	res, err := d.Query(ctx, `PRAGMA table_info('_hookhouse.load_state')`, 2)
	if err != nil || len(res.Rows) != 2 || !res.Truncated {
		t.Errorf("PRAGMA with a limit: %+v, %v", res, err)
	}
}
