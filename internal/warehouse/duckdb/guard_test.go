package duckdb

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// TestExplainedStatement pins where an EXPLAIN is split: exactly after what
// DuckDB reads as the EXPLAIN prefix, or not at all (then Query refuses).
func TestExplainedStatement(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"EXPLAIN SELECT 1", " SELECT 1", true},
		{"explain analyze select 1", " select 1", true},
		{"  EXPLAIN\n\tANALYSE\nSELECT 1", "\nSELECT 1", true},
		{"EXPLAIN ANALYZE(SELECT 1)", "(SELECT 1)", true},
		{"EXPLAIN (ANALYZE) CHECKPOINT", " CHECKPOINT", true},
		{"EXPLAIN (ANALYZE, FORMAT json) SELECT 1", " SELECT 1", true},
		{"EXPLAIN (ANALYZE true, FORMAT 'json') SELECT 1", " SELECT 1", true},
		{"EXPLAIN (SELECT * FROM t)", " (SELECT * FROM t)", true}, // a parenthesised SELECT, not options
		{"EXPLAIN (SELECT 1)", "", false},                         // reads as options: refused, not guessed
		{"EXPLAIN /* c */ ANALYZE CHECKPOINT", " /* c */ ANALYZE CHECKPOINT", true},
		// A quote in the options could hide a ')': never split there.
		{"EXPLAIN (ANALYZE, FORMAT ') SELECT 1 --') CHECKPOINT", " (ANALYZE, FORMAT ') SELECT 1 --') CHECKPOINT", true},
		{"EXPLAIN", "", false},
		{"EXPLAIN ANALYZE ", "", false},
		{"SELECT 1", "", false},
	} {
		got, ok := explainedStatement(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("explainedStatement(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestQueryGuardLetsReadsThrough: the checks of what a query reads must not
// cost the reads users make: catalog views, DuckDB's own statements for looking
// around, table functions over the integration tables, and EXPLAIN of them.
func TestQueryGuardLetsReadsThrough(t *testing.T) {
	d := openTest(t)
	loadSample(t, d)
	if err := d.Load(t.Context(), &warehouse.Batch{Integration: 2, Schema: "main", State: warehouse.State{Position: 1},
		Tables: []warehouse.Table{{Name: "data", Columns: []warehouse.Column{text("a")}, Rows: [][]any{{"m"}}}}}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`SELECT * FROM s.data`,
		`SELECT * FROM main.data`, // an integration may be called main
		`SELECT table_schema, table_name FROM information_schema.tables`,
		`SELECT count(*) FROM information_schema.columns WHERE table_schema = 's'`,
		`SHOW TABLES`, `SHOW ALL TABLES`, `DESCRIBE s.data`, `SUMMARIZE s.data`,
		`PRAGMA table_info('s.data')`, `PRAGMA show_tables`, `PRAGMA version`,
		`SELECT * FROM pragma_table_info('_hookhouse.load_state')`, // names and types, not rows
		`SELECT * FROM duckdb_tables()`, `SELECT * FROM duckdb_columns()`, `SELECT * FROM duckdb_settings()`,
		`SELECT * FROM generate_series(1, 3)`, `SELECT * FROM range(3)`, `SELECT unnest([1, 2])`,
		`SELECT * FROM histogram(s.data, id)`,
		`SELECT * FROM query_table('s.data')`,
		`SELECT * FROM query('SELECT name FROM s.data')`,
		`WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r`,
		`SELECT id, row_number() OVER (ORDER BY id) FROM s.data QUALIFY id > 0`,
		`EXPLAIN SELECT * FROM s.data`,
		`EXPLAIN ANALYZE SELECT * FROM s.data`,
		`EXPLAIN (ANALYZE, FORMAT json) SELECT count(*) FROM s.data`,
		`EXPLAIN (SELECT * FROM s.data)`,
	} {
		if _, err := d.Query(t.Context(), q, 10); err != nil {
			t.Errorf("Query(%q): %v", q, err)
		}
	}
}

// TestQueryGuardRefusals checks the messages of the DuckDB-only refusals (the
// conformance suite's HostileQueries checks that they happen).
func TestQueryGuardRefusals(t *testing.T) {
	d := openTest(t)
	loadSample(t, d)
	for _, tc := range []struct{ sql, says string }{
		{`EXPLAIN ANALYZE CHECKPOINT`, "EXPLAIN runs only for a SELECT"},
		{`EXPLAIN ANALYZE COMMIT`, "EXPLAIN runs only for a SELECT"},
		{`EXPLAIN /* c */ ANALYZE CHECKPOINT`, "ANALYZE"},
		{`EXPLAIN (SELECT 1)`, "write EXPLAIN"},
		{`SELECT * FROM _hookhouse.load_state`, "hookhouse's own schema"},
		{`SELECT * FROM "_HOOKHOUSE".load_state`, "hookhouse's own schema"},
		{`SELECT * FROM checkpoint()`, "table function checkpoint()"},
		{`PRAGMA storage_info('s.data')`, "PRAGMA storage_info"},
		{"SELECT 1 \x00; CHECKPOINT", "NUL"},
	} {
		_, err := d.Query(t.Context(), tc.sql, 10)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("Query(%q) = %v; want an error saying %q", tc.sql, err, tc.says)
		}
	}
}

// TestQueryTimesOut: a query stops at queryTimeout even when its caller would
// wait for ever, like statement_timeout on PostgreSQL.
func TestQueryTimesOut(t *testing.T) {
	d := openTest(t)
	defer func(old time.Duration) { queryTimeout = old }(queryTimeout)
	queryTimeout = 300 * time.Millisecond
	start := time.Now()
	_, err := d.Query(context.Background(), `SELECT sum(hash(a)) FROM range(1000000000000) t(a)`, 1)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "queries stop after 300ms") {
		t.Errorf("Query = %v, want a deadline error naming the limit", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("the query ran %v", el)
	}
	if _, err := d.Query(t.Context(), `SELECT 1`, 1); err != nil {
		t.Fatal(err)
	}
}
