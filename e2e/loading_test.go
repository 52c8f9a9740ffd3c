package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/config"
	"github.com/hookhouse/hookhouse/internal/pgtest"
)

var update = flag.Bool("update", false, "rewrite golden files")

// warehouses runs fn once per warehouse: embedded DuckDB, and PostgreSQL (a
// throwaway server started by pgtest, or HOOKHOUSE_TEST_PG).
func warehouses(t *testing.T, fn func(t *testing.T, mod func(*config.Config))) {
	t.Run("duckdb", func(t *testing.T) { fn(t, nil) })
	t.Run("postgres", func(t *testing.T) {
		dsn, err := pgtest.Shared(t).NewDatabase(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		fn(t, func(c *config.Config) { c.Warehouse = dsn })
	})
}

// canonicalType maps each warehouse's information_schema type name to the SPEC's
// name, so one golden file serves both. The only differences are these names.
func canonicalType(s string) string {
	switch strings.ToLower(s) {
	case "varchar", "text", "character varying":
		return "text"
	case "bigint", "int8":
		return "bigint"
	case "double", "double precision", "float8":
		return "double precision"
	case "boolean", "bool":
		return "boolean"
	case "timestamp with time zone", "timestamptz":
		return "timestamp with time zone"
	}
	if strings.HasPrefix(strings.ToLower(s), "decimal") || strings.HasPrefix(strings.ToLower(s), "numeric") {
		return "numeric"
	}
	return "?" + s
}

// TestVeroGolden loads every Vero sample through the real server and compares
// the warehouse (columns and types from information_schema, and values) with
// one golden file, on DuckDB and on PostgreSQL.
func TestVeroGolden(t *testing.T) {
	warehouses(t, func(t *testing.T, mod func(*config.Config)) {
		in := startServer(t, mod)
		ctx := context.Background()
		id, hook := setupVero(t, in)
		files := veroFiles(t)
		for _, f := range files {
			if status, resp := post(t, hook, "application/json", mustRead(t, f)); status != 200 {
				t.Fatalf("POST %s = %d %s", f, status, resp)
			}
		}
		waitLoaded(t, in.Client, id, int64(len(files)))
		q := func(sql string) [][]any {
			t.Helper()
			r, err := in.Client.Query(ctx, sql)
			if err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
			return r.Rows
		}
		var out strings.Builder
		for _, row := range q(`select table_name, column_name, data_type from information_schema.columns
			where table_schema = 'stitch_vero' order by table_name, ordinal_position`) {
			fmt.Fprintf(&out, "column %v.%v %s\n", row[0], row[1], canonicalType(fmt.Sprint(row[2])))
		}
		for _, row := range q(`select type, user__email, campaign__trigger_event, bounce_code, bounce_code__bi, _sdc_table_version
			from stitch_vero.data order by _sdc_sequence`) {
			fmt.Fprintf(&out, "data %v\n", row)
		}
		for _, tbl := range []string{"data__changes___tags__add", "data__changes___tags__remove"} {
			for _, row := range q(`select s._sdc_level_0_id, s.value, d.user__email from stitch_vero.` + tbl + ` s
				join stitch_vero.data d on d.__sdc_primary_key = s._sdc_source_key___sdc_primary_key
				order by s._sdc_level_0_id`) {
				fmt.Fprintf(&out, "%s %v\n", tbl, row)
			}
		}
		golden(t, "testdata/vero.golden", out.String())

		// _sdc_sequence: 19 digits, strictly increasing in POST order.
		seqs := q(`select cast(_sdc_sequence as varchar), type from stitch_vero.data order by _sdc_received_at, _sdc_sequence`)
		prev := ""
		for i, r := range seqs {
			s := fmt.Sprint(r[0])
			if len(s) != 19 || s <= prev {
				t.Fatalf("row %d: _sdc_sequence %s is not 19 digits increasing after %s", i, s, prev)
			}
			prev = s
		}
		// Every row has its own UUID and times.
		chk := q(`select count(*), count(distinct __sdc_primary_key), count(_sdc_received_at), count(_sdc_batched_at) from stitch_vero.data`)
		if fmt.Sprint(chk[0]...) != fmt.Sprint(14, 14, 14, 14) && fmt.Sprintf("%v %v %v %v", chk[0]...) != "14 14 14 14" {
			t.Fatalf("row checks = %v", chk[0])
		}
		// The latest-version query from SPEC §5 returns exactly one row per user__id.
		latest := q(`SELECT o.user__id, o._sdc_sequence FROM stitch_vero.data o
			JOIN (SELECT MAX(_sdc_sequence) AS seq, user__id FROM stitch_vero.data GROUP BY user__id) oo
			ON o.user__id = oo.user__id AND o._sdc_sequence = oo.seq ORDER BY 1`)
		users := q(`select count(distinct user__id) from stitch_vero.data`)
		if fmt.Sprint(len(latest)) != fmt.Sprint(users[0][0]) || len(latest) < 3 {
			t.Fatalf("latest-version query gave %d rows for %v users", len(latest), users[0][0])
		}
		seen := map[string]bool{}
		for _, r := range latest {
			k := fmt.Sprint(r[0])
			if seen[k] {
				t.Fatalf("latest-version query returned user %s twice", k)
			}
			seen[k] = true
		}
		// Writes through the query endpoint are refused by the database.
		if _, err := in.Client.Query(ctx, "delete from stitch_vero.data"); err == nil {
			t.Fatal("a DELETE through /api/v1/query succeeded")
		}
		if n := q(`select count(*) from stitch_vero.data`); fmt.Sprint(n[0][0]) != "14" {
			t.Fatalf("rows after refused delete = %v", n[0][0])
		}
	})
}

// waitLoaded waits until n records of integration id are loaded or rejected.
func waitLoaded(t testing.TB, c *client.Client, id, n int64) {
	t.Helper()
	waitFor(t, 60*time.Second, fmt.Sprintf("%d records loaded", n), func() (bool, string) {
		in, err := c.Integration(context.Background(), id)
		if err != nil {
			return false, err.Error()
		}
		s := in.Stats
		return s.RecordsLoaded+s.RecordsRejected == n && s.Backlog == 0, fmt.Sprintf("%+v", *s)
	})
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./e2e -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Fatalf("%s differs from the warehouse:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
