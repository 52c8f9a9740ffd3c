package warehousetest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// testHostileQueries sends Query what an attacker holding the admin key would
// try, on a warehouse opened the way tests open it: as a superuser on
// PostgreSQL. Every statement must fail, no answer (result or error message) may
// carry a secret, and afterwards nothing has changed: no file written, no
// program run, no row or load state touched, and queries and loads still work.
//
// The rows are the same for both engines. A statement that only makes sense on
// one engine fails on the other as unknown syntax or an unknown function, which
// is also a refusal; what matters is that it fails on the engine it was made for.
func testHostileQueries(t *testing.T, w warehouse.Warehouse) {
	state := warehouse.State{Installation: "inst-hostile-5150", Position: 777001, Sequence: 424242}
	c := []warehouse.Column{bigint("id"), text("name")}
	load(t, w, &warehouse.Batch{Integration: 1, Schema: "hostile", State: state,
		Tables: []warehouse.Table{{Name: "data", Columns: c, Rows: [][]any{{int64(1), "one"}, {int64(2), "two"}}}}})
	rows := [][]any{{int64(1), "one"}, {int64(2), "two"}}
	// The control: the integration schema is readable, so the refusals below are
	// refusals, not a query path that fails for everything.
	wantRows(t, w, `SELECT id, name FROM hostile.data ORDER BY id`, rows)

	// What must not come back: a line of /etc/passwd, hookhouse's load state.
	secrets := []string{"root:", state.Installation, "777001", "424242"}
	tag := fmt.Sprintf("hookhouse-hostile-%d-%d", os.Getpid(), time.Now().UnixNano())
	written := filepath.Join(os.TempDir(), tag)    // a file a statement tries to write
	ran := filepath.Join(os.TempDir(), tag+"-ran") // a program a statement tries to run creates it
	t.Cleanup(func() { os.Remove(written); os.Remove(ran); os.Remove(written + ".duckdb") })
	superuser := `(SELECT rolname FROM pg_roles WHERE rolsuper ORDER BY oid LIMIT 1)`

	hostile := []struct{ sql, why string }{
		// The database host: files, programs, libraries, other databases.
		{`COPY (SELECT 1) TO PROGRAM 'touch ` + ran + `'`, "runs a program as the database's OS user"},
		{`COPY (SELECT 'x') TO '` + written + `'`, "writes a server file"},
		{`COPY hostile.data TO '` + written + `'`, "writes a server file"},
		{`COPY hostile.data FROM '/etc/passwd'`, "reads a server file (and writes)"},
		{`SELECT pg_read_file('/etc/passwd')`, "reads a server file"},
		{`SELECT pg_read_binary_file('/etc/passwd')`, "reads a server file"},
		{`SELECT * FROM pg_ls_dir('/')`, "lists a server directory"},
		{`SELECT * FROM pg_stat_file('/etc/passwd')`, "inspects a server file"},
		{`SELECT lo_import('/etc/passwd')`, "reads a server file into a large object"},
		{`SELECT lo_export(lo_import('/etc/passwd'), '` + written + `')`, "copies a server file"},
		{`SELECT * FROM read_csv('/etc/passwd')`, "reads a file"},
		{`SELECT * FROM read_text('/etc/passwd')`, "reads a file"},
		{`SELECT * FROM read_blob('/etc/passwd')`, "reads a file"},
		{`SELECT * FROM glob('/etc/*')`, "lists a directory"},
		{`SELECT * FROM dblink('dbname=postgres', 'SELECT rolname FROM pg_roles') AS t(a text)`, "reaches another database"},
		{`CREATE EXTENSION IF NOT EXISTS dblink`, "installs an extension"},
		{`ATTACH ':memory:' AS other`, "attaches a database"},
		{`ATTACH '` + written + `.duckdb' AS other`, "creates and attaches a database file"},
		{`INSTALL httpfs`, "downloads an extension"},
		{`LOAD httpfs`, "loads an extension"},
		{`LOAD 'auto_explain'`, "loads a shared library into the server"},

		// The server and its other sessions.
		{`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()`,
			"ends the loader's and other clients' sessions"},
		{`SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()`,
			"cancels the loader's statements"},
		{`SELECT pg_reload_conf()`, "reloads the server configuration"},
		{`SELECT pg_rotate_logfile()`, "rotates the server log"},
		{`SELECT current_setting('data_directory')`, "reads a superuser-only setting"},
		{`SELECT rolname, rolpassword FROM pg_authid`, "reads password hashes"},
		{`CHECKPOINT`, "checkpoints"},
		{`FORCE CHECKPOINT`, "aborts the transactions in flight, loads included"},
		{`SELECT * FROM checkpoint()`, "checkpoints from a SELECT"},
		{`SELECT * FROM force_checkpoint()`, "force-checkpoints from a SELECT"},
		{`SELECT * FROM truncate_duckdb_logs()`, "changes the instance's logs"},
		{`VACUUM`, "vacuums"},

		// Becoming someone stronger, or leaving the read-only session.
		{`SELECT set_config('role', ` + superuser + `, false)`, "switches to the superuser"},
		{`SELECT set_config('session_authorization', ` + superuser + `, false)`, "switches to the superuser"},
		{`RESET ROLE`, "undoes a SET ROLE"},
		{`SET ROLE postgres`, "switches to the superuser"},
		{`SET SESSION AUTHORIZATION postgres`, "switches to the superuser"},
		{`SET SESSION AUTHORIZATION DEFAULT`, "returns to the session's login"},
		{`RESET ALL`, "resets the session"},
		{`SET default_transaction_read_only = off`, "makes later transactions writable"},
		{`DO $$ BEGIN PERFORM pg_read_file('/etc/passwd'); END $$`, "runs a block"},
		{`COMMIT`, "ends the read-only transaction"},
		{`CREATE TEMP TABLE tt AS SELECT 1 AS a`, "writes a temporary table"},

		// EXPLAIN ANALYZE runs the statement it explains.
		{`EXPLAIN ANALYZE INSERT INTO hostile.data (id, name) VALUES (3, 'three')`, "writes"},
		{`EXPLAIN ANALYZE DELETE FROM hostile.data`, "writes"},
		{`EXPLAIN ANALYZE CREATE TABLE hostile.x AS SELECT 1 AS a`, "creates a table"},
		{`EXPLAIN ANALYZE CHECKPOINT`, "checkpoints"},
		{`EXPLAIN ANALYZE FORCE CHECKPOINT`, "force-checkpoints"},
		{`EXPLAIN ANALYZE COMMIT`, "ends the read-only transaction"},
		{`EXPLAIN (ANALYZE) CHECKPOINT`, "checkpoints"},
		{`EXPLAIN (ANALYZE, FORMAT json) CHECKPOINT`, "checkpoints"},
		{`EXPLAIN /* hidden */ ANALYZE CHECKPOINT`, "checkpoints"},
		{`EXPLAIN ANALYZE SELECT * FROM _hookhouse.load_state`, "reads hookhouse's own schema"},

		// Several statements: the second would run outside any check of the first.
		{`SELECT 1; SELECT pg_read_file('/etc/passwd')`, "reads a server file"},
		{`SELECT 1; CHECKPOINT`, "checkpoints"},
		{`COMMIT; DELETE FROM hostile.data`, "writes after leaving the transaction"},

		// Hookhouse's own schema is not integration data.
		{`SELECT * FROM _hookhouse.load_state`, "reads hookhouse's own schema"},
		{`SELECT * FROM "_hookhouse"."load_state"`, "reads hookhouse's own schema"},
		{`TABLE _hookhouse.load_state`, "reads hookhouse's own schema"},
		{`SELECT * FROM _hookhouse.migrations`, "reads hookhouse's own schema"},
		{`SELECT (SELECT max(position) FROM _hookhouse.load_state) AS p`, "reads hookhouse's own schema"},
		{`WITH s AS (SELECT * FROM _hookhouse.load_state) SELECT * FROM s`, "reads hookhouse's own schema"},
		{`SELECT d.* FROM hostile.data d JOIN _hookhouse.load_state s ON s.integration_id = d.id`, "reads hookhouse's own schema"},
		{`SELECT * FROM query_table('_hookhouse.load_state')`, "reads hookhouse's own schema"},
		{`SELECT * FROM query('SELECT * FROM _hookhouse.load_state')`, "reads hookhouse's own schema"},
		{`SELECT * FROM histogram(_hookhouse.load_state, position)`, "reads hookhouse's own schema"},
		{`SELECT * FROM duckdb_table_sample('_hookhouse.load_state')`, "samples hookhouse's own rows"},
		{`SELECT * FROM pragma_storage_info('_hookhouse.load_state')`, "reads min/max values of hookhouse's own rows"},
		{`PRAGMA storage_info('_hookhouse.load_state')`, "reads min/max values of hookhouse's own rows"},
	}
	for _, h := range hostile {
		res, err := w.Query(t.Context(), h.sql, 100)
		if err == nil {
			t.Errorf("Query(%q), which %s, succeeded: %+v", h.sql, h.why, res)
		}
		answer := fmt.Sprintf("%v %+v", err, res)
		for _, s := range secrets {
			if strings.Contains(answer, s) {
				t.Errorf("Query(%q), which %s: the answer holds %q: %s", h.sql, h.why, s, answer)
			}
		}
	}

	// PostgreSQL lets a read-only transaction create temporary tables, and EXPLAIN
	// ANALYZE runs CREATE TEMP TABLE … AS (DuckDB refuses it). Nothing of it may
	// outlive the query: its transaction is rolled back.
	_, _ = w.Query(t.Context(), `EXPLAIN ANALYZE CREATE TEMP TABLE tt AS SELECT 1 AS a`, 10)
	if res, err := w.Query(t.Context(), `SELECT * FROM tt`, 10); err == nil {
		t.Errorf("a temporary table outlived the query that made it: %+v", res)
	}

	for _, f := range []string{written, ran, written + ".duckdb"} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("a query created %s", f)
		}
	}
	wantRows(t, w, `SELECT id, name FROM hostile.data ORDER BY id`, rows)
	wantColumns(t, w, "hostile", "x", nil)
	wantState(t, w, map[int64]warehouse.State{1: state})
	if err := w.Ping(t.Context()); err != nil {
		t.Fatalf("Ping after the hostile queries: %v", err)
	}

	// Loading still works, and what it creates is readable at once, without
	// reopening: a new table in a known schema, and a new schema.
	next := warehouse.State{Installation: state.Installation, Position: state.Position + 1, Sequence: state.Sequence + 1}
	load(t, w, &warehouse.Batch{Integration: 1, Schema: "hostile", Prev: state, State: next,
		Tables: []warehouse.Table{
			{Name: "data", Columns: c, Rows: [][]any{{int64(3), "three"}}},
			{Name: "data__tags", Columns: []warehouse.Column{bigint("_sdc_source_key_id"), text("value")}, Rows: [][]any{{int64(3), "t"}}},
		}})
	load(t, w, &warehouse.Batch{Integration: 2, Schema: "hostile_later", State: warehouse.State{Installation: state.Installation, Position: 1},
		Tables: []warehouse.Table{{Name: "data", Columns: c, Rows: [][]any{{int64(9), "nine"}}}}})
	wantRows(t, w, `SELECT id, name FROM hostile.data ORDER BY id`, append(rows, []any{int64(3), "three"}))
	wantRows(t, w, `SELECT _sdc_source_key_id, value FROM hostile.data__tags`, [][]any{{int64(3), "t"}})
	wantRows(t, w, `SELECT id, name FROM hostile_later.data`, [][]any{{int64(9), "nine"}})
	if got, err := w.LoadState(t.Context()); err != nil || !got[1].Same(next) {
		t.Errorf("LoadState after the hostile queries = %v, %v; want integration 1 at %v", got, err, next)
	}
}
