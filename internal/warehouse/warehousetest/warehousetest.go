// Package warehousetest is the conformance suite every warehouse adapter runs:
//
//	func TestConformance(t *testing.T) {
//		warehousetest.Run(t, func(t *testing.T) warehouse.Warehouse { ... a fresh, empty warehouse ... })
//	}
//
// It uses only warehouse.Warehouse methods and portable SQL (double-quoted
// identifiers, count(*), ORDER BY), so the same tests hold DuckDB and PostgreSQL to
// the same contract. Beyond what warehouse.go states, the suite pins down:
//
//   - Load is strict about Go types: a value whose Go type does not match its
//     column's warehouse.Type (e.g. a string in a timestamp column) fails the batch.
//   - A failed Load leaves nothing behind: no rows, no new tables or columns, no state.
//   - Upserts (Batch.Key) delete, for every replaced key, the rows of every subtable
//     of the schema (tables named data__*, whose first column is the source key),
//     not only of the subtables present in the batch: a record whose array is now
//     empty brings no subtable rows, yet its old elements must go.
//   - Query refuses writes with an error wrapping warehouse.ErrReadOnly; text that
//     tries to end the read-only transaction ("COMMIT; DELETE …") fails or does
//     nothing; timestamps come back as RFC 3339 UTC with exactly six fractional
//     digits, numerics as decimal strings, integers as int64.
package warehousetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// Run runs the suite. open must return a fresh, empty warehouse each time it is
// called and arrange for it to be closed when t ends (t.Cleanup).
func Run(t *testing.T, open func(t *testing.T) warehouse.Warehouse) {
	tests := []struct {
		name string
		fn   func(t *testing.T, w warehouse.Warehouse)
	}{
		{"CreatesSchemaAndTables", testCreatesSchemaAndTables},
		{"AddsColumnsAtTheEnd", testAddsColumnsAtTheEnd},
		{"RoundTripsEveryType", testRoundTripsEveryType},
		{"PadsShortRowsWithNull", testPadsShortRows},
		{"RefusesRowsLongerThanColumns", testRefusesLongRows},
		{"StateOnlyFromCommittedBatches", testStateOnlyFromCommittedBatches},
		{"FailedFirstBatchLeavesNoTables", testFailedFirstBatch},
		{"BatchWithoutTablesStoresState", testBatchWithoutTables},
		{"CancelledLoadLeavesNothing", testCancelledLoad},
		{"UpsertBigIntKey", func(t *testing.T, w warehouse.Warehouse) { testUpsert(t, w, warehouse.BigInt) }},
		{"UpsertTextKey", func(t *testing.T, w warehouse.Warehouse) { testUpsert(t, w, warehouse.Text) }},
		{"QuotesIdentifiers", testQuotesIdentifiers},
		{"ConcurrentLoads", testConcurrentLoads},
		{"StateIsFenced", testStateIsFenced},
		{"TwoLoadersOneWins", testTwoLoadersOneWins},
		{"Reset", testReset},
		{"KeywordSchemas", testKeywordSchemas},
		{"QueryResults", testQueryResults},
		{"QueryIsReadOnly", testQueryIsReadOnly},
		{"QueryMissingTable", testQueryMissingTable},
		{"HostileQueries", testHostileQueries},
		{"Ping", func(t *testing.T, w warehouse.Warehouse) {
			if err := w.Ping(t.Context()); err != nil {
				t.Fatalf("Ping: %v", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := open(t)
			if w == nil {
				t.Fatal("open returned nil")
			}
			tc.fn(t, w)
		})
	}
}

// Column shorthands.
func text(n string) warehouse.Column    { return warehouse.Column{Name: n, Type: warehouse.Text} }
func bigint(n string) warehouse.Column  { return warehouse.Column{Name: n, Type: warehouse.BigInt} }
func double(n string) warehouse.Column  { return warehouse.Column{Name: n, Type: warehouse.Double} }
func boolean(n string) warehouse.Column { return warehouse.Column{Name: n, Type: warehouse.Boolean} }
func numeric(n string) warehouse.Column { return warehouse.Column{Name: n, Type: warehouse.Numeric} }
func tstamp(n string) warehouse.Column  { return warehouse.Column{Name: n, Type: warehouse.Timestamp} }

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

// stdColumns are the leading columns of a Vero-style data table (SPEC §5).
var stdColumns = []warehouse.Column{
	text(warehouse.ColPrimaryKey), tstamp(warehouse.ColReceivedAt), tstamp(warehouse.ColBatchedAt),
	bigint(warehouse.ColSequence), bigint(warehouse.ColTableVersion),
}

func cols(lists ...[]warehouse.Column) []warehouse.Column {
	var out []warehouse.Column
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// load loads b, which must succeed. A b without Prev gets the stored state as its
// Prev, so tests about other things need not track positions.
func load(t *testing.T, w warehouse.Warehouse, b *warehouse.Batch) {
	t.Helper()
	if b.Prev == (warehouse.State{}) {
		b.Prev = stored(t, w, b.Integration)
	}
	if err := w.Load(t.Context(), b); err != nil {
		t.Fatalf("Load(integration %d, schema %s): %v", b.Integration, b.Schema, err)
	}
}

// stored is integration's stored state, the zero State if none.
func stored(t *testing.T, w warehouse.Warehouse, integration int64) warehouse.State {
	t.Helper()
	states, err := w.LoadState(t.Context())
	if err != nil {
		t.Fatalf("LoadState: %v", err)
	}
	return states[integration]
}

func query(t *testing.T, w warehouse.Warehouse, sql string, maxRows int) *warehouse.Result {
	t.Helper()
	res, err := w.Query(t.Context(), sql, maxRows)
	if err != nil {
		t.Fatalf("Query(%q): %v", sql, err)
	}
	if res == nil {
		t.Fatalf("Query(%q) returned nil result", sql)
	}
	if _, err := json.Marshal(res); err != nil {
		t.Fatalf("Query(%q): result does not encode as JSON: %v", sql, err)
	}
	return res
}

// wantRows runs sql and compares the rows (values and Go types) with want.
func wantRows(t *testing.T, w warehouse.Warehouse, sql string, want [][]any) {
	t.Helper()
	res := query(t, w, sql, 0)
	if res.Truncated {
		t.Errorf("Query(%q, 0): Truncated = true", sql)
	}
	if len(res.Rows) != len(want) {
		t.Fatalf("Query(%q): %d rows, want %d\ngot:  %s\nwant: %s", sql, len(res.Rows), len(want), show(res.Rows), show(want))
	}
	for i := range want {
		if !reflect.DeepEqual(res.Rows[i], want[i]) {
			t.Errorf("Query(%q) row %d:\ngot:  %s\nwant: %s", sql, i, show([][]any{res.Rows[i]}), show([][]any{want[i]}))
		}
	}
}

// show prints rows with Go types so that int32(1) and int64(1) differ visibly.
func show(rows [][]any) string {
	var sb strings.Builder
	for _, r := range rows {
		sb.WriteString("[")
		for j, v := range r {
			if j > 0 {
				sb.WriteString(" ")
			}
			fmt.Fprintf(&sb, "%T(%v)", v, v)
		}
		sb.WriteString("]")
	}
	return sb.String()
}

func count(t *testing.T, w warehouse.Warehouse, schema, table string) int64 {
	t.Helper()
	res := query(t, w, fmt.Sprintf(`SELECT count(*) FROM "%s"."%s"`, schema, table), 0)
	if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
		t.Fatalf("count of %s.%s: unexpected result %v", schema, table, res.Rows)
	}
	n, ok := res.Rows[0][0].(int64)
	if !ok {
		t.Fatalf("count of %s.%s: %T, want int64", schema, table, res.Rows[0][0])
	}
	return n
}

func wantColumns(t *testing.T, w warehouse.Warehouse, schema, table string, want []warehouse.Column) {
	t.Helper()
	got, err := w.Columns(t.Context(), schema, table)
	if err != nil {
		t.Fatalf("Columns(%s, %s): %v", schema, table, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Columns(%s, %s):\ngot:  %v\nwant: %v", schema, table, got, want)
	}
}

func wantState(t *testing.T, w warehouse.Warehouse, want map[int64]warehouse.State) {
	t.Helper()
	got, err := w.LoadState(t.Context())
	if err != nil {
		t.Fatalf("LoadState: %v", err)
	}
	if got == nil {
		t.Fatal("LoadState returned a nil map")
	}
	// LoadedAt is the time of the commit: recent, then left out of the comparison.
	for id, st := range got {
		if age := time.Since(st.LoadedAt); age < -time.Minute || age > 10*time.Minute {
			t.Errorf("LoadState: integration %d was stored at %v, not just now", id, st.LoadedAt)
		}
		st.LoadedAt = time.Time{}
		got[id] = st
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("LoadState:\ngot:  %v\nwant: %v", got, want)
	}
}

func testCreatesSchemaAndTables(t *testing.T, w warehouse.Warehouse) {
	wantState(t, w, map[int64]warehouse.State{})
	wantColumns(t, w, "stitch_vero", "data", nil)

	recv := ts("2024-05-01T10:00:00.5Z")
	dataCols := cols(stdColumns, []warehouse.Column{text("type"), text("user__email")})
	subCols := []warehouse.Column{
		text("_sdc_source_key___sdc_primary_key"), bigint("_sdc_level_0_id"),
		tstamp(warehouse.ColReceivedAt), tstamp(warehouse.ColBatchedAt),
		bigint(warehouse.ColSequence), bigint(warehouse.ColTableVersion), text("value"),
	}
	load(t, w, &warehouse.Batch{
		Integration: 1, Schema: "stitch_vero",
		Tables: []warehouse.Table{
			{Name: "data", Columns: dataCols, Rows: [][]any{
				{"u1", recv, recv, int64(1714557600500000001), int64(0), "user_created", "a@example.com"},
				{"u2", recv, recv, int64(1714557600500000002), int64(0), "email_opened", nil},
			}},
			{Name: "data__changes___tags__add", Columns: subCols, Rows: [][]any{
				{"u1", int64(0), recv, recv, int64(1714557600500000001), int64(0), "vip"},
				{"u1", int64(1), recv, recv, int64(1714557600500000001), int64(0), "beta"},
			}},
			{Name: warehouse.RejectedTable, Columns: warehouse.RejectedColumns},
		},
		State: warehouse.State{Position: 2, Sequence: 1714557600500000002},
	})

	wantColumns(t, w, "stitch_vero", "data", dataCols)
	wantColumns(t, w, "stitch_vero", "data__changes___tags__add", subCols)
	wantColumns(t, w, "stitch_vero", warehouse.RejectedTable, warehouse.RejectedColumns)
	wantColumns(t, w, "stitch_vero", "no_such_table", nil)
	wantColumns(t, w, "no_such_schema", "data", nil)
	if n := count(t, w, "stitch_vero", "data"); n != 2 {
		t.Errorf("data has %d rows, want 2", n)
	}
	if n := count(t, w, "stitch_vero", "data__changes___tags__add"); n != 2 {
		t.Errorf("subtable has %d rows, want 2", n)
	}
	if n := count(t, w, "stitch_vero", warehouse.RejectedTable); n != 0 {
		t.Errorf("_sdc_rejected has %d rows, want 0", n)
	}
	wantState(t, w, map[int64]warehouse.State{1: {Position: 2, Sequence: 1714557600500000002}})

	// The Stitch latest-version query from SPEC §5 works.
	wantRows(t, w, `SELECT o.__sdc_primary_key, o.type FROM stitch_vero.data o
		JOIN (SELECT MAX(_sdc_sequence) AS seq, __sdc_primary_key FROM stitch_vero.data GROUP BY __sdc_primary_key) oo
		ON o.__sdc_primary_key = oo.__sdc_primary_key AND o._sdc_sequence = oo.seq
		ORDER BY 1`, [][]any{{"u1", "user_created"}, {"u2", "email_opened"}})

	// A second batch into existing tables appends.
	load(t, w, &warehouse.Batch{
		Integration: 1, Schema: "stitch_vero",
		Tables: []warehouse.Table{
			{Name: "data", Columns: dataCols, Rows: [][]any{
				{"u3", recv, recv, int64(1714557600500000003), int64(0), "user_updated", "b@example.com"},
			}},
			{Name: warehouse.RejectedTable, Columns: warehouse.RejectedColumns, Rows: [][]any{
				{recv, "data", "field collision: userId, userid", `{"userId":1,"userid":2}`},
			}},
		},
		State: warehouse.State{Position: 4, Sequence: 1714557600500000003},
	})
	if n := count(t, w, "stitch_vero", "data"); n != 3 {
		t.Errorf("data has %d rows, want 3", n)
	}
	wantRows(t, w, `SELECT table_name, reason, record FROM stitch_vero._sdc_rejected`,
		[][]any{{"data", "field collision: userId, userid", `{"userId":1,"userid":2}`}})
	wantState(t, w, map[int64]warehouse.State{1: {Position: 4, Sequence: 1714557600500000003}})
}

func testAddsColumnsAtTheEnd(t *testing.T, w warehouse.Warehouse) {
	v1 := []warehouse.Column{text("a"), bigint("b")}
	load(t, w, &warehouse.Batch{Integration: 1, Schema: "evo", State: warehouse.State{Position: 1},
		Tables: []warehouse.Table{{Name: "data", Columns: v1, Rows: [][]any{{"one", int64(1)}}}}})
	wantColumns(t, w, "evo", "data", v1)

	v2 := cols(v1, []warehouse.Column{double("c"), boolean("d")})
	load(t, w, &warehouse.Batch{Integration: 1, Schema: "evo", State: warehouse.State{Position: 2},
		Tables: []warehouse.Table{{Name: "data", Columns: v2, Rows: [][]any{{"two", int64(2), 2.5, true}}}}})
	wantColumns(t, w, "evo", "data", v2)

	// New columns without rows are still added.
	v3 := cols(v2, []warehouse.Column{numeric("e"), tstamp("f"), text("b__st")})
	load(t, w, &warehouse.Batch{Integration: 1, Schema: "evo", State: warehouse.State{Position: 3},
		Tables: []warehouse.Table{{Name: "data", Columns: v3}}})
	wantColumns(t, w, "evo", "data", v3)

	load(t, w, &warehouse.Batch{Integration: 1, Schema: "evo", State: warehouse.State{Position: 4},
		Tables: []warehouse.Table{{Name: "data", Columns: v3, Rows: [][]any{
			{"three", nil, 3.25, false, "3", ts("2024-01-01T00:00:00Z"), "three"},
		}}}})
	wantRows(t, w, `SELECT a, b, c, d, e, f, b__st FROM evo.data ORDER BY a`, [][]any{
		{"one", int64(1), nil, nil, nil, nil, nil},
		{"three", nil, 3.25, false, "3", "2024-01-01T00:00:00.000000Z", "three"},
		{"two", int64(2), 2.5, true, nil, nil, nil},
	})
	wantState(t, w, map[int64]warehouse.State{1: {Position: 4}})
}

func testRoundTripsEveryType(t *testing.T, w warehouse.Warehouse) {
	c := []warehouse.Column{bigint("id"), text("t"), bigint("i"), double("d"), boolean("b"), numeric("n"), tstamp("ts")}
	ist := time.FixedZone("IST", 5*3600+1800)
	load(t, w, &warehouse.Batch{Integration: 3, Schema: "types", State: warehouse.State{Position: 9, Sequence: 99},
		Tables: []warehouse.Table{{Name: "data", Columns: c, Rows: [][]any{
			{int64(1), "héllo wörld 🎉", int64(9223372036854775807), 3.5, true,
				"123456789012345678901234567890", ts("2024-02-29T23:59:59.123456Z")},
			{int64(2), "", int64(-9223372036854775808), -0.25, false,
				"-99999999999999999999999999999999999999", time.Date(2024, 3, 1, 5, 29, 59, 123456789, ist)},
			{int64(3), "it's \"quoted\"\\ and\nnew line\ttab", int64(0), 1e300, nil,
				"0", ts("1969-07-20T20:17:40Z")},
			{int64(4), nil, nil, nil, nil, nil, nil},
			{int64(5), "x", int64(-1), 0.1, true, "99999999999999999999999999999999999999", ts("2038-01-19T03:14:08.000001Z")},
		}}}})
	wantColumns(t, w, "types", "data", c)
	wantRows(t, w, `SELECT id, t, i, d, b, n, ts FROM types.data ORDER BY id`, [][]any{
		{int64(1), "héllo wörld 🎉", int64(9223372036854775807), 3.5, true,
			"123456789012345678901234567890", "2024-02-29T23:59:59.123456Z"},
		{int64(2), "", int64(-9223372036854775808), -0.25, false,
			"-99999999999999999999999999999999999999", "2024-02-29T23:59:59.123456Z"},
		{int64(3), "it's \"quoted\"\\ and\nnew line\ttab", int64(0), 1e300, nil,
			"0", "1969-07-20T20:17:40.000000Z"},
		{int64(4), nil, nil, nil, nil, nil, nil},
		{int64(5), "x", int64(-1), 0.1, true, "99999999999999999999999999999999999999", "2038-01-19T03:14:08.000001Z"},
	})
	// Values compare in SQL as their types: the timestamp is an instant, the
	// numeric a number, the empty string not NULL.
	wantRows(t, w, `SELECT id FROM types.data WHERE ts = (SELECT ts FROM types.data WHERE id = 1) ORDER BY id`,
		[][]any{{int64(1)}, {int64(2)}})
	wantRows(t, w, `SELECT id FROM types.data WHERE n > 100000000000000000000 ORDER BY id`,
		[][]any{{int64(1)}, {int64(5)}})
	wantRows(t, w, `SELECT id FROM types.data WHERE t = '' OR t IS NULL ORDER BY id`,
		[][]any{{int64(2)}, {int64(4)}})
	wantState(t, w, map[int64]warehouse.State{3: {Position: 9, Sequence: 99}})
}

func testPadsShortRows(t *testing.T, w warehouse.Warehouse) {
	c := []warehouse.Column{text("k"), text("a"), bigint("b"), tstamp("c")}
	load(t, w, &warehouse.Batch{Integration: 1, Schema: "short", State: warehouse.State{Position: 1},
		Tables: []warehouse.Table{{Name: "data", Columns: c, Rows: [][]any{
			{"1"},
			{"2", "a"},
			{"3", "a", int64(3)},
			{"4", "a", int64(4), ts("2024-01-01T00:00:00Z")},
			{},
		}}}})
	wantRows(t, w, `SELECT k, a, b, c FROM short.data ORDER BY k`, [][]any{
		{"1", nil, nil, nil},
		{"2", "a", nil, nil},
		{"3", "a", int64(3), nil},
		{"4", "a", int64(4), "2024-01-01T00:00:00.000000Z"},
		{nil, nil, nil, nil},
	})
}

func testRefusesLongRows(t *testing.T, w warehouse.Warehouse) {
	err := w.Load(t.Context(), &warehouse.Batch{Integration: 1, Schema: "long", State: warehouse.State{Position: 1},
		Tables: []warehouse.Table{{Name: "data", Columns: []warehouse.Column{text("a")}, Rows: [][]any{
			{"ok"}, {"too", "many"},
		}}}})
	if err == nil {
		t.Fatal("Load of a row with more values than columns succeeded")
	}
	wantColumns(t, w, "long", "data", nil)
	wantState(t, w, map[int64]warehouse.State{})
}

// testStateOnlyFromCommittedBatches is the exactly-once resume contract: a batch
// that fails mid-way, in its LAST table, leaves no rows, tables, columns or state.
func testStateOnlyFromCommittedBatches(t *testing.T, w warehouse.Warehouse) {
	wantState(t, w, map[int64]warehouse.State{})
	dataCols := []warehouse.Column{text("id"), bigint(warehouse.ColSequence)}
	load(t, w, &warehouse.Batch{Integration: 1, Schema: "s_one", State: warehouse.State{Position: 10, Sequence: 1000},
		Tables: []warehouse.Table{{Name: "data", Columns: dataCols, Rows: [][]any{{"a", int64(1000)}}}}})
	load(t, w, &warehouse.Batch{Integration: 2, Schema: "s_two", State: warehouse.State{Position: 3, Sequence: 30},
		Tables: []warehouse.Table{{Name: "data", Columns: dataCols, Rows: [][]any{{"b", int64(30)}}}}})
	committed := map[int64]warehouse.State{1: {Position: 10, Sequence: 1000}, 2: {Position: 3, Sequence: 30}}
	wantState(t, w, committed)

	evolved := cols(dataCols, []warehouse.Column{text("extra")})
	itemCols := []warehouse.Column{text("_sdc_source_key_id"), bigint("_sdc_level_0_id"), text("value")}
	batch := func(bad any, badCol warehouse.Column) *warehouse.Batch {
		rejCols := cols(warehouse.RejectedColumns, []warehouse.Column{badCol})
		return &warehouse.Batch{Integration: 1, Schema: "s_one", Prev: committed[1], State: warehouse.State{Position: 20, Sequence: 2000},
			Tables: []warehouse.Table{
				{Name: "data", Columns: evolved, Rows: [][]any{{"c", int64(1001), "x"}, {"d", int64(1002), nil}}},
				{Name: "data__items", Columns: itemCols, Rows: [][]any{{"c", int64(0), "i0"}, {"c", int64(1), "i1"}}},
				{Name: warehouse.RejectedTable, Columns: rejCols, Rows: [][]any{
					{ts("2024-01-01T00:00:00Z"), "data", "ok", "{}", nil},
					{ts("2024-01-01T00:00:00Z"), "data", "bad", "{}", bad},
				}},
			}}
	}
	failures := []struct {
		name string
		bad  any
		col  warehouse.Column
	}{
		{"string in timestamp column", "not a timestamp", tstamp("when")},
		{"string in bigint column", "twelve", bigint("n")},
		{"string in numeric column", "1.5e3", numeric("n")},
		{"struct in text column", struct{ X int }{1}, text("s")},
	}
	for _, f := range failures {
		if err := w.Load(t.Context(), batch(f.bad, f.col)); err == nil {
			t.Fatalf("Load with a %s succeeded", f.name)
		}
		wantState(t, w, committed)
		if n := count(t, w, "s_one", "data"); n != 1 {
			t.Fatalf("after failed Load (%s): data has %d rows, want 1", f.name, n)
		}
		wantColumns(t, w, "s_one", "data", dataCols)
		wantColumns(t, w, "s_one", "data__items", nil)
		wantColumns(t, w, "s_one", warehouse.RejectedTable, nil)
	}

	// The retry of the same records, now valid, loads them exactly once.
	load(t, w, batch(nil, tstamp("when")))
	committed[1] = warehouse.State{Position: 20, Sequence: 2000}
	wantState(t, w, committed)
	wantRows(t, w, `SELECT id, _sdc_sequence, extra FROM s_one.data ORDER BY id`, [][]any{
		{"a", int64(1000), nil}, {"c", int64(1001), "x"}, {"d", int64(1002), nil},
	})
	if n := count(t, w, "s_one", "data__items"); n != 2 {
		t.Errorf("data__items has %d rows, want 2", n)
	}
	if n := count(t, w, "s_one", warehouse.RejectedTable); n != 2 {
		t.Errorf("_sdc_rejected has %d rows, want 2", n)
	}
	if n := count(t, w, "s_two", "data"); n != 1 {
		t.Errorf("another integration's data has %d rows, want 1", n)
	}

	// Positions beyond 32 bits survive.
	load(t, w, &warehouse.Batch{Integration: 2, Schema: "s_two", State: warehouse.State{Position: 1 << 40, Sequence: 1<<62 + 7}})
	committed[2] = warehouse.State{Position: 1 << 40, Sequence: 1<<62 + 7}
	wantState(t, w, committed)
}

func testFailedFirstBatch(t *testing.T, w warehouse.Warehouse) {
	err := w.Load(t.Context(), &warehouse.Batch{Integration: 5, Schema: "fresh", State: warehouse.State{Position: 1, Sequence: 1},
		Tables: []warehouse.Table{
			{Name: "data", Columns: []warehouse.Column{text("a")}, Rows: [][]any{{"fine"}}},
			{Name: "data__x", Columns: []warehouse.Column{text("_sdc_source_key_a"), bigint("v")}, Rows: [][]any{{"fine", 1.5}}},
		}})
	if err == nil {
		t.Fatal("Load with a float64 in a bigint column succeeded")
	}
	wantColumns(t, w, "fresh", "data", nil)
	wantColumns(t, w, "fresh", "data__x", nil)
	wantState(t, w, map[int64]warehouse.State{})
}

func testCancelledLoad(t *testing.T, w warehouse.Warehouse) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := w.Load(ctx, &warehouse.Batch{Integration: 1, Schema: "cancelled", State: warehouse.State{Position: 1},
		Tables: []warehouse.Table{{Name: "data", Columns: []warehouse.Column{text("a")}, Rows: [][]any{{"x"}}}}})
	if err == nil {
		t.Fatal("Load with a cancelled context succeeded")
	}
	wantColumns(t, w, "cancelled", "data", nil)
	wantState(t, w, map[int64]warehouse.State{})
}

func testBatchWithoutTables(t *testing.T, w warehouse.Warehouse) {
	load(t, w, &warehouse.Batch{Integration: 8, Schema: "quiet", State: warehouse.State{Position: 5, Sequence: 50}})
	wantState(t, w, map[int64]warehouse.State{8: {Position: 5, Sequence: 50}})
}

func testUpsert(t *testing.T, w warehouse.Warehouse, keyType warehouse.Type) {
	key := func(i int) any {
		if keyType == warehouse.BigInt {
			return int64(i)
		}
		return fmt.Sprintf("k%d", i)
	}
	keyCol := warehouse.Column{Name: "id", Type: keyType}
	srcCol := warehouse.Column{Name: "_sdc_source_key_id", Type: keyType}
	dataCols := []warehouse.Column{keyCol, bigint(warehouse.ColSequence), text("name")}
	tagCols := []warehouse.Column{srcCol, bigint("_sdc_level_0_id"), text("value")}
	itemCols := []warehouse.Column{srcCol, bigint("_sdc_level_0_id"), bigint("qty")}

	load(t, w, &warehouse.Batch{Integration: 1, Schema: "up", Key: "id", State: warehouse.State{Position: 3, Sequence: 3},
		Tables: []warehouse.Table{
			{Name: "data", Columns: dataCols, Rows: [][]any{
				{key(1), int64(1), "one"}, {key(2), int64(2), "two"}, {key(3), int64(3), "three"},
			}},
			{Name: "data__tags", Columns: tagCols, Rows: [][]any{
				{key(1), int64(0), "a"}, {key(1), int64(1), "b"}, {key(2), int64(0), "c"}, {key(3), int64(0), "d"},
			}},
			{Name: "data__items", Columns: itemCols, Rows: [][]any{{key(1), int64(0), int64(10)}, {key(2), int64(0), int64(20)}}},
			{Name: warehouse.RejectedTable, Columns: warehouse.RejectedColumns, Rows: [][]any{
				{ts("2024-01-01T00:00:00Z"), "data", "missing key", `{"name":"x"}`},
			}},
		}})
	// Another integration with the same key values must not be touched.
	load(t, w, &warehouse.Batch{Integration: 2, Schema: "up_other", Key: "id", State: warehouse.State{Position: 1, Sequence: 1},
		Tables: []warehouse.Table{
			{Name: "data", Columns: dataCols, Rows: [][]any{{key(2), int64(1), "other two"}}},
			{Name: "data__tags", Columns: tagCols, Rows: [][]any{{key(2), int64(0), "other"}}},
		}})

	// Key 2 comes again with new tags and a new column; key 4 is new; key 3 stays.
	dataCols2 := cols(dataCols, []warehouse.Column{text("color")})
	load(t, w, &warehouse.Batch{Integration: 1, Schema: "up", Key: "id", State: warehouse.State{Position: 5, Sequence: 5},
		Tables: []warehouse.Table{
			{Name: "data", Columns: dataCols2, Rows: [][]any{
				{key(2), int64(4), "TWO", "red"}, {key(4), int64(5), "four"},
			}},
			{Name: "data__tags", Columns: tagCols, Rows: [][]any{
				{key(2), int64(0), "x"}, {key(2), int64(1), "y"}, {key(2), int64(2), "z"}, {key(4), int64(0), "w"},
			}},
		}})
	wantRows(t, w, `SELECT id, _sdc_sequence, name, color FROM up.data ORDER BY id`, [][]any{
		{key(1), int64(1), "one", nil},
		{key(2), int64(4), "TWO", "red"},
		{key(3), int64(3), "three", nil},
		{key(4), int64(5), "four", nil},
	})
	wantRows(t, w, `SELECT _sdc_source_key_id, _sdc_level_0_id, value FROM up.data__tags ORDER BY 1, 2`, [][]any{
		{key(1), int64(0), "a"}, {key(1), int64(1), "b"},
		{key(2), int64(0), "x"}, {key(2), int64(1), "y"}, {key(2), int64(2), "z"},
		{key(3), int64(0), "d"},
		{key(4), int64(0), "w"},
	})
	// Key 2's items are gone although the batch had no data__items table: its
	// new version has no items.
	wantRows(t, w, `SELECT _sdc_source_key_id, qty FROM up.data__items ORDER BY 1`, [][]any{{key(1), int64(10)}})
	wantRows(t, w, `SELECT id, name FROM up_other.data`, [][]any{{key(2), "other two"}})
	wantRows(t, w, `SELECT value FROM up_other.data__tags`, [][]any{{"other"}})
	if n := count(t, w, "up", warehouse.RejectedTable); n != 1 {
		t.Errorf("_sdc_rejected has %d rows, want 1", n)
	}

	// The same key loaded again in later batches keeps replacing.
	for seq := int64(6); seq <= 8; seq++ {
		load(t, w, &warehouse.Batch{Integration: 1, Schema: "up", Key: "id", State: warehouse.State{Position: uint64(seq), Sequence: seq},
			Tables: []warehouse.Table{{Name: "data", Columns: dataCols2, Rows: [][]any{{key(1), seq, "one again"}}}}})
	}
	wantRows(t, w, `SELECT id, _sdc_sequence, name FROM up.data WHERE id = `+sqlLiteral(key(1)), [][]any{{key(1), int64(8), "one again"}})
	wantRows(t, w, `SELECT count(*) FROM up.data__tags WHERE _sdc_source_key_id = `+sqlLiteral(key(1)), [][]any{{int64(0)}})
	if n := count(t, w, "up", "data"); n != 4 {
		t.Errorf("up.data has %d rows, want 4", n)
	}
	wantState(t, w, map[int64]warehouse.State{1: {Position: 8, Sequence: 8}, 2: {Position: 1, Sequence: 1}})
}

func sqlLiteral(v any) string {
	if s, ok := v.(string); ok {
		return "'" + strings.ReplaceAll(s, "'", "''") + "'"
	}
	return fmt.Sprint(v)
}

// testQuotesIdentifiers uses names that are valid after hookhouse's naming rules
// (SPEC §5) but are SQL keywords.
func testQuotesIdentifiers(t *testing.T, w warehouse.Warehouse) {
	dataCols := []warehouse.Column{text("order"), text("group"), bigint("select"), text("from")}
	subCols := []warehouse.Column{text("_sdc_source_key_order"), bigint("_sdc_level_0_id"), text("user")}
	b := &warehouse.Batch{Integration: 1, Schema: "select", Key: "order", State: warehouse.State{Position: 1},
		Tables: []warehouse.Table{
			{Name: "data", Columns: dataCols, Rows: [][]any{{"o1", "g1", int64(1), "f1"}, {"o2", "g2", int64(2), "f2"}}},
			{Name: "data__order", Columns: subCols, Rows: [][]any{{"o1", int64(0), "u1"}}},
		}}
	load(t, w, b)
	b.Tables[0].Columns = cols(dataCols, []warehouse.Column{boolean("table")})
	b.Tables[0].Rows = [][]any{{"o1", "g1b", int64(3), "f1b", true}}
	b.Tables[1].Rows = [][]any{{"o1", int64(0), "u2"}}
	b.State = warehouse.State{Position: 2}
	load(t, w, b)
	wantColumns(t, w, "select", "data", b.Tables[0].Columns)
	wantColumns(t, w, "select", "data__order", subCols)
	wantRows(t, w, `SELECT "order", "group", "select", "from", "table" FROM "select"."data" ORDER BY "order"`, [][]any{
		{"o1", "g1b", int64(3), "f1b", true},
		{"o2", "g2", int64(2), "f2", nil},
	})
	wantRows(t, w, `SELECT "_sdc_source_key_order", "user" FROM "select"."data__order"`, [][]any{{"o1", "u2"}})
}

func testConcurrentLoads(t *testing.T, w warehouse.Warehouse) {
	const workers, batches, rowsPer = 4, 5, 200
	c := cols(stdColumns, []warehouse.Column{text("event"), double("amount")})
	var wg sync.WaitGroup
	errs := make(chan error, workers*batches)
	for i := 1; i <= workers; i++ {
		wg.Go(func() {
			schema := fmt.Sprintf("conc_%d", i)
			wcols := append([]warehouse.Column{}, c...)
			for j := 1; j <= batches; j++ {
				rows := make([][]any, rowsPer)
				for r := range rows {
					seq := int64(j*rowsPer + r)
					rows[r] = []any{fmt.Sprintf("%d-%d-%d", i, j, r), ts("2024-01-01T00:00:00Z"), ts("2024-01-01T00:00:01Z"), seq, int64(0), "e", float64(r)}
				}
				tables := []warehouse.Table{{Name: "data", Columns: wcols, Rows: rows}}
				if j%2 == 0 {
					// Evolve now and then, so that catalog changes of several
					// integrations interleave. The rows stay short: NULL-padded.
					wcols = append(wcols, text(fmt.Sprintf("f%d", j)))
					tables[0].Columns = wcols
					tables = append(tables, warehouse.Table{Name: warehouse.RejectedTable, Columns: warehouse.RejectedColumns})
				}
				var prev warehouse.State
				if j > 1 {
					prev = warehouse.State{Position: uint64(j - 1), Sequence: int64((j-1)*rowsPer + rowsPer - 1)}
				}
				err := w.Load(t.Context(), &warehouse.Batch{Integration: int64(i), Schema: schema, Tables: tables,
					Prev: prev, State: warehouse.State{Position: uint64(j), Sequence: int64(j*rowsPer + rowsPer - 1)}})
				if err != nil {
					errs <- fmt.Errorf("integration %d batch %d: %w", i, j, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	want := map[int64]warehouse.State{}
	for i := 1; i <= workers; i++ {
		if n := count(t, w, fmt.Sprintf("conc_%d", i), "data"); n != batches*rowsPer {
			t.Errorf("conc_%d.data has %d rows, want %d", i, n, batches*rowsPer)
		}
		want[int64(i)] = warehouse.State{Position: batches, Sequence: batches*rowsPer + rowsPer - 1}
	}
	wantState(t, w, want)
}

func testQueryResults(t *testing.T, w warehouse.Warehouse) {
	c := []warehouse.Column{bigint("id"), text("name")}
	var rows [][]any
	for i := 1; i <= 5; i++ {
		rows = append(rows, []any{int64(i), fmt.Sprintf("n%d", i)})
	}
	load(t, w, &warehouse.Batch{Integration: 1, Schema: "q", State: warehouse.State{Position: 1},
		Tables: []warehouse.Table{{Name: "data", Columns: c, Rows: rows}}})

	const sql = `SELECT id, name AS label FROM q.data ORDER BY id`
	for _, tc := range []struct {
		max       int
		rows      int
		truncated bool
	}{{3, 3, true}, {4, 4, true}, {5, 5, false}, {100, 5, false}} {
		res := query(t, w, sql, tc.max)
		if !reflect.DeepEqual(res.Columns, []string{"id", "label"}) {
			t.Errorf("columns %v, want [id label]", res.Columns)
		}
		if len(res.Rows) != tc.rows || res.Truncated != tc.truncated {
			t.Errorf("maxRows %d: %d rows, truncated %v; want %d rows, truncated %v",
				tc.max, len(res.Rows), res.Truncated, tc.rows, tc.truncated)
		}
		for i, r := range res.Rows {
			if want := []any{int64(i + 1), fmt.Sprintf("n%d", i+1)}; !reflect.DeepEqual(r, want) {
				t.Errorf("maxRows %d row %d: %s, want %s", tc.max, i, show([][]any{r}), show([][]any{want}))
			}
		}
	}

	res := query(t, w, `SELECT id FROM q.data WHERE id > 100`, 10)
	if len(res.Rows) != 0 || res.Truncated || !reflect.DeepEqual(res.Columns, []string{"id"}) {
		t.Errorf("empty result: %+v", res)
	}
	wantRows(t, w, `SELECT 1 AS one, 'a' AS s, CAST(2.5 AS double precision) AS d, true AS b, CAST(NULL AS text) AS n`,
		[][]any{{int64(1), "a", 2.5, true, nil}})
}

func testQueryIsReadOnly(t *testing.T, w warehouse.Warehouse) {
	c := []warehouse.Column{bigint("id"), text("name")}
	load(t, w, &warehouse.Batch{Integration: 1, Schema: "ro", State: warehouse.State{Position: 7, Sequence: 70},
		Tables: []warehouse.Table{{Name: "data", Columns: c, Rows: [][]any{{int64(1), "one"}, {int64(2), "two"}}}}})

	intact := func(after string) {
		t.Helper()
		wantRows(t, w, `SELECT id, name FROM ro.data ORDER BY id`, [][]any{{int64(1), "one"}, {int64(2), "two"}})
		wantColumns(t, w, "ro", "data", c)
		wantColumns(t, w, "ro", "x", nil)
		wantColumns(t, w, "ro_new", "x", nil)
		wantState(t, w, map[int64]warehouse.State{1: {Position: 7, Sequence: 70}})
		if t.Failed() {
			t.Fatalf("the warehouse changed after %q", after)
		}
	}

	refused := []string{
		`INSERT INTO ro.data (id, name) VALUES (3, 'three')`,
		`UPDATE ro.data SET name = 'changed'`,
		`DELETE FROM ro.data`,
		`CREATE TABLE ro.x (a bigint)`,
		`CREATE TABLE ro.x AS SELECT * FROM ro.data`,
		`CREATE SCHEMA ro_new`,
		`CREATE VIEW ro.x AS SELECT 1 AS a`,
		`ALTER TABLE ro.data ADD COLUMN z bigint`,
		`DROP TABLE ro.data`,
		`DROP SCHEMA ro CASCADE`,
		`TRUNCATE ro.data`,
		`INSERT INTO "_hookhouse"."load_state" SELECT * FROM "_hookhouse"."load_state"`,
		`DELETE FROM "_hookhouse"."load_state"`,
	}
	for _, sql := range refused {
		_, err := w.Query(t.Context(), sql, 10)
		if !errors.Is(err, warehouse.ErrReadOnly) {
			t.Errorf("Query(%q) = %v, want an error wrapping warehouse.ErrReadOnly", sql, err)
		}
		intact(sql)
	}

	// Attempts to leave the read-only transaction: they may fail in any way, but
	// must change nothing.
	escapes := []string{
		`COMMIT; DELETE FROM ro.data`,
		`ROLLBACK; DROP TABLE ro.data`,
		`END; CREATE TABLE ro.x (a bigint)`,
		`SELECT 1; DELETE FROM ro.data`,
		`COMMIT`,
		`WITH d AS (DELETE FROM ro.data RETURNING *) SELECT count(*) FROM d`,
	}
	for _, sql := range escapes {
		_, _ = w.Query(t.Context(), sql, 10)
		intact(sql)
		// The next query still works.
		if n := count(t, w, "ro", "data"); n != 2 {
			t.Fatalf("after %q: %d rows", sql, n)
		}
	}
}

func testQueryMissingTable(t *testing.T, w warehouse.Warehouse) {
	load(t, w, &warehouse.Batch{Integration: 1, Schema: "present", State: warehouse.State{Position: 1},
		Tables: []warehouse.Table{{Name: "data", Columns: []warehouse.Column{text("a")}}}})
	for _, sql := range []string{`SELECT * FROM present.nope_table`, `SELECT * FROM nope_schema.data`} {
		_, err := w.Query(t.Context(), sql, 10)
		if err == nil {
			t.Fatalf("Query(%q) succeeded", sql)
		}
		if errors.Is(err, warehouse.ErrReadOnly) {
			t.Errorf("Query(%q) = %v: a missing table is not a write", sql, err)
		}
		if !strings.Contains(err.Error(), "nope_") {
			t.Errorf("Query(%q) = %q: the error should name what is missing", sql, err)
		}
	}
}
