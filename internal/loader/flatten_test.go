package loader

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hookhouse/hookhouse/internal/samples"
	"github.com/hookhouse/hookhouse/internal/warehouse"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

var veroDir = samples.VeroDir()

var (
	baseTime  = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	batchTime = time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
)

// input makes the i-th test record: fixed UUID, receipt time and sequence.
func input(i int, body string) Input {
	var id [16]byte
	id[0], id[15] = 0xab, byte(i)
	id[14] = byte(i >> 8)
	return Input{
		ID:         id,
		ReceivedAt: baseTime.Add(time.Duration(i) * time.Second),
		Sequence:   baseTime.UnixMilli()*1_000_000 + int64(i),
		Body:       []byte(body),
	}
}

func idOf(i int) string { return uuid.UUID(input(i, "").ID).String() }

// flattenAll adds bodies to a new Flattener and takes one batch.
func flattenAll(t testing.TB, pk string, maxCols int, existing map[string][]warehouse.Column, bodies ...string) ([]warehouse.Table, int, int) {
	t.Helper()
	f := NewFlattener(pk, maxCols, existing)
	for i, b := range bodies {
		f.Add(input(i, b))
	}
	tables, loaded, rejected := f.Take(batchTime)
	checkTables(t, tables)
	return tables, loaded, rejected
}

// checkTables asserts what holds for every batch.
func checkTables(t testing.TB, tables []warehouse.Table) {
	t.Helper()
	for _, tb := range tables {
		if !validName.MatchString(tb.Name) || len(tb.Name) > 63 {
			t.Errorf("bad table name %q", tb.Name)
		}
		names := map[string]bool{}
		for _, c := range tb.Columns {
			if !validName.MatchString(c.Name) || len(c.Name) > 63 {
				t.Errorf("table %s: bad column name %q", tb.Name, c.Name)
			}
			if names[c.Name] {
				t.Errorf("table %s: column %q twice", tb.Name, c.Name)
			}
			names[c.Name] = true
		}
		for i, row := range tb.Rows {
			if len(row) > len(tb.Columns) {
				t.Errorf("table %s row %d: %d values for %d columns", tb.Name, i, len(row), len(tb.Columns))
				continue
			}
			for j, v := range row {
				if v != nil && !goTypeOK(tb.Columns[j].Type, v) {
					t.Errorf("table %s row %d column %s (%s): Go value %T %v", tb.Name, i, tb.Columns[j].Name, tb.Columns[j].Type, v, v)
				}
			}
		}
	}
}

func goTypeOK(typ warehouse.Type, v any) bool {
	switch typ {
	case warehouse.Text:
		_, ok := v.(string)
		return ok
	case warehouse.BigInt:
		_, ok := v.(int64)
		return ok
	case warehouse.Double:
		_, ok := v.(float64)
		return ok
	case warehouse.Boolean:
		_, ok := v.(bool)
		return ok
	case warehouse.Numeric:
		s, ok := v.(string)
		if !ok || s == "" {
			return false
		}
		s = strings.TrimPrefix(s, "-")
		return len(s) <= 38 && strings.Trim(s, "0123456789") == ""
	case warehouse.Timestamp:
		tm, ok := v.(time.Time)
		return ok && tm.Location() == time.UTC
	}
	return false
}

func findTable(tables []warehouse.Table, name string) *warehouse.Table {
	for i := range tables {
		if tables[i].Name == name {
			return &tables[i]
		}
	}
	return nil
}

func mustTable(t testing.TB, tables []warehouse.Table, name string) *warehouse.Table {
	t.Helper()
	tb := findTable(tables, name)
	if tb == nil {
		t.Fatalf("no table %s; have %v", name, tableNames(tables))
	}
	return tb
}

func tableNames(tables []warehouse.Table) []string {
	var names []string
	for _, tb := range tables {
		names = append(names, tb.Name)
	}
	return names
}

func colIndex(tb *warehouse.Table, name string) int {
	for i, c := range tb.Columns {
		if c.Name == name {
			return i
		}
	}
	return -1
}

func colType(t testing.TB, tb *warehouse.Table, name string) warehouse.Type {
	t.Helper()
	i := colIndex(tb, name)
	if i < 0 {
		t.Fatalf("table %s has no column %s; columns %v", tb.Name, name, colNames(tb))
	}
	return tb.Columns[i].Type
}

func colNames(tb *warehouse.Table) []string {
	var names []string
	for _, c := range tb.Columns {
		names = append(names, c.Name)
	}
	return names
}

// get returns row r's value of column name (nil if NULL or missing).
func get(tb *warehouse.Table, r int, name string) any {
	i := colIndex(tb, name)
	if i < 0 || i >= len(tb.Rows[r]) {
		return nil
	}
	return tb.Rows[r][i]
}

// rejectedReasons returns the reasons of the _sdc_rejected rows.
func rejectedReasons(tables []warehouse.Table) []string {
	tb := findTable(tables, warehouse.RejectedTable)
	if tb == nil {
		return nil
	}
	var out []string
	for r := range tb.Rows {
		out = append(out, get(tb, r, "reason").(string))
	}
	return out
}

// render writes tables deterministically for golden files.
func render(tables []warehouse.Table) string {
	var b strings.Builder
	for _, tb := range tables {
		fmt.Fprintf(&b, "table %s\n", tb.Name)
		for _, c := range tb.Columns {
			fmt.Fprintf(&b, "  column %s %s\n", c.Name, c.Type)
		}
		for i, row := range tb.Rows {
			fmt.Fprintf(&b, "  row %d\n", i)
			for j, v := range row {
				if v == nil {
					continue
				}
				fmt.Fprintf(&b, "    %s = %s\n", tb.Columns[j].Name, renderValue(v))
			}
		}
	}
	return b.String()
}

func renderValue(v any) string {
	switch v := v.(type) {
	case string:
		return strconv.Quote(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64) + "d"
	case bool:
		return strconv.FormatBool(v)
	case time.Time:
		return v.Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("%T(%v)", v, v)
}

func veroBodies(t testing.TB) (names, bodies []string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(veroDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Vero samples in %s: %v", veroDir, err)
	}
	sort.Strings(files)
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, filepath.Base(name))
		bodies = append(bodies, string(b))
	}
	return names, bodies
}

func TestVeroGolden(t *testing.T) {
	names, bodies := veroBodies(t)
	if len(bodies) != 14 {
		t.Fatalf("want 14 Vero samples, found %d: %v", len(bodies), names)
	}
	tables, loaded, rejected := flattenAll(t, "", 0, nil, bodies...)
	if loaded != 14 || rejected != 0 {
		t.Fatalf("loaded %d, rejected %d (%v); want 14, 0", loaded, rejected, rejectedReasons(tables))
	}
	got := render(tables)
	golden := filepath.Join("testdata", "vero.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestVeroGolden -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("tables differ from %s (go test -run TestVeroGolden -update rewrites it after review):\n%s", golden, diffLines(string(want), got))
	}

	if want := []string{"data", "data__changes___tags__add", "data__changes___tags__remove", warehouse.RejectedTable}; strings.Join(tableNames(tables), " ") != strings.Join(want, " ") {
		t.Errorf("tables %v, want %v", tableNames(tables), want)
	}
	data := mustTable(t, tables, "data")
	wantFirst := []string{"__sdc_primary_key", "_sdc_received_at", "_sdc_batched_at", "_sdc_sequence", "_sdc_table_version", "type"}
	if got := colNames(data)[:len(wantFirst)]; strings.Join(got, " ") != strings.Join(wantFirst, " ") {
		t.Errorf("data columns start %v, want %v", got, wantFirst)
	}
	if len(data.Rows) != 14 {
		t.Fatalf("data has %d rows", len(data.Rows))
	}
	for col, typ := range map[string]warehouse.Type{
		"__sdc_primary_key": warehouse.Text, "_sdc_received_at": warehouse.Timestamp,
		"_sdc_batched_at": warehouse.Timestamp, "_sdc_sequence": warehouse.BigInt,
		"_sdc_table_version": warehouse.BigInt, "sent_at": warehouse.BigInt,
		"user__id": warehouse.BigInt, "user__email": warehouse.Text,
		"campaign__trigger_event": warehouse.Text, "bounce_code": warehouse.Text,
		"bounce_code__bi": warehouse.BigInt, "changes__first_name": warehouse.Text,
	} {
		if got := colType(t, data, col); got != typ {
			t.Errorf("column %s is %s, want %s", col, got, typ)
		}
	}
	// 05 sends bounce_code as a string, 06 as a number.
	if v := get(data, 4, "bounce_code"); v != "550" {
		t.Errorf("05 bounce_code = %#v", v)
	}
	if v := get(data, 4, "bounce_code__bi"); v != nil {
		t.Errorf("05 bounce_code__bi = %#v, want NULL", v)
	}
	if v := get(data, 5, "bounce_code__bi"); v != int64(421) {
		t.Errorf("06 bounce_code__bi = %#v, want 421", v)
	}
	if v := get(data, 5, "bounce_code"); v != nil {
		t.Errorf("06 bounce_code = %#v, want NULL", v)
	}
	if v := get(data, 0, "campaign__trigger_event"); v != "signed up" {
		t.Errorf("01 campaign__trigger_event = %#v", v)
	}
	if v := get(data, 0, "user__email"); v != "ana@example.com" {
		t.Errorf("01 user__email = %#v", v)
	}
	for i := range data.Rows {
		if v := get(data, i, "__sdc_primary_key"); v != idOf(i) {
			t.Errorf("row %d __sdc_primary_key = %v, want %v", i, v, idOf(i))
		}
		if v := get(data, i, "_sdc_batched_at"); v != warehouse.UTC(batchTime) {
			t.Errorf("row %d _sdc_batched_at = %v", i, v)
		}
		if v := get(data, i, "_sdc_table_version"); v != int64(0) {
			t.Errorf("row %d _sdc_table_version = %v", i, v)
		}
	}
	for name, want := range map[string][]any{
		"data__changes___tags__add":    {"paying-customer", "beta"},
		"data__changes___tags__remove": {"trial"},
	} {
		tb := mustTable(t, tables, name)
		wantCols := []string{"_sdc_source_key___sdc_primary_key", "_sdc_level_0_id", "_sdc_received_at", "_sdc_batched_at", "_sdc_sequence", "_sdc_table_version", "value"}
		if strings.Join(colNames(tb), " ") != strings.Join(wantCols, " ") {
			t.Errorf("%s columns %v, want %v", name, colNames(tb), wantCols)
		}
		if len(tb.Rows) != len(want) {
			t.Fatalf("%s has %d rows, want %d", name, len(tb.Rows), len(want))
		}
		for i, v := range want {
			if got := get(tb, i, "value"); got != v {
				t.Errorf("%s row %d value = %#v, want %#v", name, i, got, v)
			}
			if got := get(tb, i, "_sdc_level_0_id"); got != int64(i) {
				t.Errorf("%s row %d level = %#v", name, i, got)
			}
			if got := get(tb, i, "_sdc_source_key___sdc_primary_key"); got != get(data, 13, "__sdc_primary_key") {
				t.Errorf("%s row %d source key = %v, want the parent's %v", name, i, got, get(data, 13, "__sdc_primary_key"))
			}
			if got := get(tb, i, "_sdc_sequence"); got != get(data, 13, "_sdc_sequence") {
				t.Errorf("%s row %d _sdc_sequence = %v", name, i, got)
			}
		}
	}
}

func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want %q\n  got  %q\n", i+1, wl, gl)
			if b.Len() > 4000 {
				break
			}
		}
	}
	return b.String()
}

func TestTyping(t *testing.T) {
	for _, tc := range []struct {
		name string
		json string
		typ  warehouse.Type
		want any
	}{
		{"string", `"hello"`, warehouse.Text, "hello"},
		{"empty string", `""`, warehouse.Text, ""},
		{"date stays text", `"2026-01-01T00:00:00Z"`, warehouse.Text, "2026-01-01T00:00:00Z"},
		{"escapes", `"a\"b\\c\/d\n\t\u00e9"`, warehouse.Text, "a\"b\\c/d\n\té"},
		{"surrogate pair", `"\ud83d\ude00"`, warehouse.Text, "😀"},
		{"lone high surrogate", `"x\ud83dy"`, warehouse.Text, "x\uFFFDy"},
		{"lone low surrogate", `"\ude00"`, warehouse.Text, "\uFFFD"},
		{"high then non-low", `"\ud83d\u0041"`, warehouse.Text, "\uFFFDA"},
		{"utf-8 text", `"日本語"`, warehouse.Text, "日本語"},
		{"integer", `42`, warehouse.BigInt, int64(42)},
		{"negative integer", `-7`, warehouse.BigInt, int64(-7)},
		{"zero", `0`, warehouse.BigInt, int64(0)},
		{"minus zero", `-0`, warehouse.BigInt, int64(0)},
		{"max int64", `9223372036854775807`, warehouse.BigInt, int64(math.MaxInt64)},
		{"min int64", `-9223372036854775808`, warehouse.BigInt, int64(math.MinInt64)},
		{"beyond int64", `9223372036854775808`, warehouse.Numeric, "9223372036854775808"},
		{"below int64", `-9223372036854775809`, warehouse.Numeric, "-9223372036854775809"},
		{"38 digits", `12345678901234567890123456789012345678`, warehouse.Numeric, "12345678901234567890123456789012345678"},
		{"-38 digits", `-99999999999999999999999999999999999999`, warehouse.Numeric, "-99999999999999999999999999999999999999"},
		{"1.0 is double", `1.0`, warehouse.Double, 1.0},
		{"fraction", `3.25`, warehouse.Double, 3.25},
		{"exponent", `1e2`, warehouse.Double, 100.0},
		{"negative exponent", `-2.5E-3`, warehouse.Double, -0.0025},
		{"underflow is zero", `1e-400`, warehouse.Double, 0.0},
		{"max double", `1.7976931348623157e308`, warehouse.Double, math.MaxFloat64},
		{"true", `true`, warehouse.Boolean, true},
		{"false", `false`, warehouse.Boolean, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tables, loaded, rejected := flattenAll(t, "", 0, nil, `{"v":`+tc.json+`}`)
			if loaded != 1 || rejected != 0 {
				t.Fatalf("loaded %d rejected %d: %v", loaded, rejected, rejectedReasons(tables))
			}
			data := mustTable(t, tables, "data")
			if got := colType(t, data, "v"); got != tc.typ {
				t.Errorf("type %s, want %s", got, tc.typ)
			}
			if got := get(data, 0, "v"); got != tc.want {
				t.Errorf("value %#v (%T), want %#v (%T)", got, got, tc.want, tc.want)
			}
		})
	}
}

func TestTypingRejects(t *testing.T) {
	for _, tc := range []struct {
		name, json, reason string
	}{
		{"39 digits", `123456789012345678901234567890123456789`, "39 digits"},
		{"-39 digits", `-123456789012345678901234567890123456789`, "39 digits"},
		{"double overflow", `1e400`, "too large for double"},
		{"negative double overflow", `-1.8e308`, "too large for double"},
		{"NUL in a string", `"a\u0000b"`, "NUL"},
		{"NUL in an array element", `["ok", "\u0000"]`, "NUL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"keep":1,"v":` + tc.json + `}`
			tables, loaded, rejected := flattenAll(t, "", 0, nil, body)
			if loaded != 0 || rejected != 1 {
				t.Fatalf("loaded %d rejected %d, want 0, 1", loaded, rejected)
			}
			if names := tableNames(tables); len(names) != 1 || names[0] != warehouse.RejectedTable {
				t.Fatalf("tables %v, want only _sdc_rejected (nothing else from a rejected record)", names)
			}
			rej := mustTable(t, tables, warehouse.RejectedTable)
			reason := get(rej, 0, "reason").(string)
			if !strings.Contains(reason, tc.reason) || !strings.Contains(reason, `"v`) {
				t.Errorf("reason %q should name the field and say %q", reason, tc.reason)
			}
			if got := get(rej, 0, "record"); got != body {
				t.Errorf("record %q, want the raw body", got)
			}
			if got := get(rej, 0, "_sdc_rejected_at"); got != warehouse.UTC(batchTime) {
				t.Errorf("_sdc_rejected_at %v", got)
			}
		})
	}
}

func TestMixedTypes(t *testing.T) {
	tables, loaded, _ := flattenAll(t, "", 0, nil,
		`{"x":"a"}`,
		`{"x":1}`,
		`{"x":1.5}`,
		`{"x":true}`,
		`{"x":123456789012345678901234567890}`,
		`{"x":"b"}`,
		`{"x":2}`,
		`{"x":null}`,
	)
	if loaded != 8 {
		t.Fatalf("loaded %d", loaded)
	}
	data := mustTable(t, tables, "data")
	want := []struct {
		col string
		typ warehouse.Type
	}{{"x", warehouse.Text}, {"x__bi", warehouse.BigInt}, {"x__do", warehouse.Double}, {"x__bo", warehouse.Boolean}, {"x__de", warehouse.Numeric}}
	for _, w := range want {
		if got := colType(t, data, w.col); got != w.typ {
			t.Errorf("%s is %s, want %s", w.col, got, w.typ)
		}
	}
	if colIndex(data, "x__st") >= 0 {
		t.Errorf("x__st exists, but text owns the plain name")
	}
	expect := []struct {
		col string
		v   any
	}{{"x", "a"}, {"x__bi", int64(1)}, {"x__do", 1.5}, {"x__bo", true}, {"x__de", "123456789012345678901234567890"}, {"x", "b"}, {"x__bi", int64(2)}, {"", nil}}
	for r, e := range expect {
		for _, w := range want {
			got := get(data, r, w.col)
			if w.col == e.col {
				if got != e.v {
					t.Errorf("row %d %s = %#v, want %#v", r, w.col, got, e.v)
				}
			} else if got != nil {
				t.Errorf("row %d %s = %#v, want NULL: a row holds its value in exactly one column", r, w.col, got)
			}
		}
	}
	// New columns come at the end in order of first need.
	names := colNames(data)
	if got := strings.Join(names[len(names)-5:], " "); got != "x x__bi x__do x__bo x__de" {
		t.Errorf("columns end with %q", got)
	}
}

func TestMixedTypesExistingColumns(t *testing.T) {
	existing := map[string][]warehouse.Column{
		"data": {
			wcol("__sdc_primary_key", warehouse.Text), wcol("_sdc_received_at", warehouse.Timestamp),
			wcol("_sdc_batched_at", warehouse.Timestamp), wcol("_sdc_sequence", warehouse.BigInt),
			wcol("_sdc_table_version", warehouse.BigInt), wcol("code", warehouse.Text), wcol("code__bi", warehouse.BigInt),
			wcol("n", warehouse.BigInt),
		},
	}
	f := NewFlattener("", 0, existing)
	f.Add(input(0, `{"code":421,"n":"seven","new":true}`))
	f.Add(input(1, `{"code":"550","n":7}`))
	tables, loaded, rejected := f.Take(batchTime)
	checkTables(t, tables)
	if loaded != 2 || rejected != 0 {
		t.Fatalf("loaded %d rejected %d %v", loaded, rejected, rejectedReasons(tables))
	}
	data := mustTable(t, tables, "data")
	if got := strings.Join(colNames(data)[8:], " "); got != "n__st new" {
		t.Errorf("new columns %q, want \"n__st new\" (code__bi is known)", got)
	}
	if get(data, 0, "code__bi") != int64(421) || get(data, 0, "code") != nil || get(data, 0, "n__st") != "seven" {
		t.Errorf("row 0 = %v", data.Rows[0])
	}
	if get(data, 1, "code") != "550" || get(data, 1, "n") != int64(7) {
		t.Errorf("row 1 = %v", data.Rows[1])
	}
	// Nothing new and no rows: no tables.
	if tables, _, _ := f.Take(batchTime); len(tables) != 0 {
		t.Errorf("empty Take returned %v", tableNames(tables))
	}
	// A second batch knows the columns of the first.
	f.Add(input(2, `{"n":"eight"}`))
	tables, _, _ = f.Take(batchTime)
	data = mustTable(t, tables, "data")
	if len(data.Columns) != 10 || get(data, 0, "n__st") != "eight" {
		t.Errorf("second batch: columns %v rows %v", colNames(data), data.Rows)
	}
}

func TestReservedAndCollisions(t *testing.T) {
	for _, tc := range []struct {
		name, body, reason, table string
	}{
		{"bigint suffix", `{"amount__bi":1}`, `"amount__bi" ends in the reserved suffix __bi`, "data"},
		{"text suffix nested", `{"a":{"b__st":"x"}}`, `"a.b__st" ends in the reserved suffix __st`, "data"},
		{"suffix by normalization", `{"Price--DE":"x"}`, `reserved suffix __de`, "data"},
		{"double suffix", `{"x__do":null}`, `reserved suffix __do`, "data"},
		{"boolean suffix in array element", `{"items":[{"ok__bo":true}]}`, `reserved suffix __bo`, "data__items"},
		{"_sdc prefix", `{"_sdc_sequence":5}`, `"_sdc_sequence" starts with the reserved prefix _sdc`, "data"},
		{"_SDC upper", `{"_SDC_x":5}`, `reserved prefix _sdc`, "data"},
		{"__sdc_primary_key", `{"__sdc_primary_key":"mine"}`, `reserved prefix _sdc`, "data"},
		{"_sdc nested", `{"a":{"_sdc_level_0_id":1}}`, `reserved prefix _sdc`, "data"},
		{"_sdc with a null value", `{"a":{"_sdc_x":null}}`, `"a._sdc_x" starts with the reserved prefix _sdc`, "data"},
		{"_sdc in element", `{"items":[{"_sdc_level_0_id":1}]}`, `reserved prefix _sdc`, "data__items"},
		{"case collision", `{"userId":1,"userid":2}`, `"userId" and "userid" both map to the column "userid"`, "data"},
		{"collision across types", `{"userId":1,"USERID":"x"}`, `both map to the column "userid"`, "data"},
		{"punctuation collision", `{"a-b":1,"a b":2}`, `both map to the column "a_b"`, "data"},
		{"nested vs flat", `{"a":{"b":1},"a__b":2}`, `"a.b" and "a__b" both map to the column "a__b"`, "data"},
		{"collision in element", `{"items":[{"X":1,"x":2}]}`, `both map to the column "x"`, "data__items"},
		{"arrays collide", `{"tags":[1],"Tags":[2]}`, `both map to the table data__tags`, "data"},
		{"escaped key collides", `{"\u0041":1,"a":2}`, `both map to the column "a"`, "data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tables, loaded, rejected := flattenAll(t, "", 0, nil, tc.body)
			if loaded != 0 || rejected != 1 {
				t.Fatalf("loaded %d rejected %d; want the record rejected", loaded, rejected)
			}
			if len(tables) != 1 {
				t.Errorf("tables %v: a rejected record adds no other table", tableNames(tables))
			}
			rej := mustTable(t, tables, warehouse.RejectedTable)
			if got := get(rej, 0, "reason").(string); !strings.Contains(got, tc.reason) {
				t.Errorf("reason %q, want it to contain %q", got, tc.reason)
			}
			if got := get(rej, 0, "table_name"); got != tc.table {
				t.Errorf("table_name %v, want %s", got, tc.table)
			}
			if got := get(rej, 0, "record"); got != tc.body {
				t.Errorf("record %v", got)
			}
		})
	}
}

func TestNotCollisions(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       map[string]any
	}{
		{"duplicate key: last wins", `{"a":1,"a":2}`, map[string]any{"a": int64(2)}},
		{"duplicate key: last wins across types", `{"a":"x","a":2}`, map[string]any{"a": int64(2)}},
		{"duplicate escaped key", `{"a":1,"\u0061":3}`, map[string]any{"a": int64(3)}},
		{"duplicate object key: last object wins whole", `{"o":{"x":1},"o":{"y":2}}`, map[string]any{"o__y": int64(2), "o__x": nil}},
		{"duplicate key: an earlier bad value does not count", `{"a":1e400,"a":1}`, map[string]any{"a": int64(1)}},
		{"null takes part in no collision", `{"userId":1,"userid":null}`, map[string]any{"userid": int64(1)}},
		{"objects with case-different keys", `{"a":{"x":1},"A":{"y":2}}`, map[string]any{"a__x": int64(1), "a__y": int64(2)}},
		{"nested key that looks like a suffix", `{"title":{"de":"Hallo","en":"Hello"}}`, map[string]any{"title__de": "Hallo", "title__en": "Hello"}},
		{"empty key", `{"":1,"o":{"":2}}`, map[string]any{"_": int64(1), "o___": int64(2)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tables, loaded, rejected := flattenAll(t, "", 0, nil, tc.body)
			if loaded != 1 || rejected != 0 {
				t.Fatalf("loaded %d rejected %d: %v", loaded, rejected, rejectedReasons(tables))
			}
			data := mustTable(t, tables, "data")
			for col, v := range tc.want {
				if got := get(data, 0, col); got != v {
					t.Errorf("%s = %#v, want %#v", col, got, v)
				}
			}
		})
	}
	// The same name in two elements of one array is no collision: they are rows.
	tables, loaded, _ := flattenAll(t, "", 0, nil, `{"items":[{"X":1},{"x":2}]}`)
	if loaded != 1 {
		t.Fatalf("elements: loaded %d: %v", loaded, rejectedReasons(tables))
	}
	items := mustTable(t, tables, "data__items")
	if get(items, 0, "x") != int64(1) || get(items, 1, "x") != int64(2) {
		t.Errorf("items rows %v", items.Rows)
	}
}

func TestEmptyAndNull(t *testing.T) {
	tables, loaded, _ := flattenAll(t, "", 0, nil,
		`{}`,
		`{"a":{},"b":[],"c":null,"d":{"e":{}},"f":[null,null],"g":[[]]}`,
		`{"h":1}`,
	)
	if loaded != 3 {
		t.Fatalf("loaded %d", loaded)
	}
	// _sdc_rejected comes with the first batch, empty.
	if got := tableNames(tables); len(got) != 2 || len(mustTable(t, tables, warehouse.RejectedTable).Rows) != 0 {
		t.Errorf("tables %v: empty objects, empty arrays and null elements make no table", got)
	}
	data := mustTable(t, tables, "data")
	if got := strings.Join(colNames(data), " "); got != "__sdc_primary_key _sdc_received_at _sdc_batched_at _sdc_sequence _sdc_table_version h" {
		t.Errorf("columns %q: null and empty values make no column", got)
	}
	if len(data.Rows) != 3 {
		t.Fatalf("rows %d", len(data.Rows))
	}
	if len(data.Rows[0]) > 5 || get(data, 2, "h") != int64(1) {
		t.Errorf("rows %v", data.Rows)
	}
	// A field that stops arriving keeps its column: NULL (a short row).
	f := NewFlattener("", 0, nil)
	f.Add(input(0, `{"a":1,"b":2}`))
	f.Add(input(1, `{"b":3}`))
	tables, _, _ = f.Take(batchTime)
	data = mustTable(t, tables, "data")
	if get(data, 1, "a") != nil || get(data, 1, "b") != int64(3) {
		t.Errorf("rows %v", data.Rows)
	}
}

func TestArrays(t *testing.T) {
	body := `{
		"id": 1,
		"tags": ["a", null, "c", 7],
		"items": [
			{"sku": "x1", "qty": 2, "opts": [{"k": "color", "v": "red"}, {"k": "size"}], "meta": {"codes": [10, 20]}},
			null,
			{"sku": "x3", "opts": []},
			{}
		],
		"grid": [[1, 2], [], [3], null, [[4]]]
	}`
	tables, loaded, rejected := flattenAll(t, "", 0, nil, body)
	if loaded != 1 || rejected != 0 {
		t.Fatalf("loaded %d rejected %d: %v", loaded, rejected, rejectedReasons(tables))
	}
	// Subtables come in order of first appearance, breadth first.
	wantTables := "data data__tags data__items data__items__opts data__items__meta__codes data__grid__value data__grid__value__value _sdc_rejected"
	if got := strings.Join(tableNames(tables), " "); got != wantTables {
		t.Fatalf("tables %q, want %q", got, wantTables)
	}
	data := mustTable(t, tables, "data")
	key := get(data, 0, "__sdc_primary_key")
	if colIndex(data, "tags") >= 0 || colIndex(data, "items") >= 0 {
		t.Errorf("arrays made data columns: %v", colNames(data))
	}

	tags := mustTable(t, tables, "data__tags")
	if got := strings.Join(colNames(tags), " "); got != "_sdc_source_key___sdc_primary_key _sdc_level_0_id _sdc_received_at _sdc_batched_at _sdc_sequence _sdc_table_version value value__bi" {
		t.Errorf("tags columns %q", got)
	}
	wantTags := [][2]any{{int64(0), "a"}, {int64(2), "c"}, {int64(3), int64(7)}}
	if len(tags.Rows) != len(wantTags) {
		t.Fatalf("tags rows %v: a null element makes no row", tags.Rows)
	}
	for i, w := range wantTags {
		v := get(tags, i, "value")
		if v == nil {
			v = get(tags, i, "value__bi")
		}
		if get(tags, i, "_sdc_level_0_id") != w[0] || v != w[1] || get(tags, i, "_sdc_source_key___sdc_primary_key") != key {
			t.Errorf("tags row %d = %v, want level %v value %v", i, tags.Rows[i], w[0], w[1])
		}
	}

	items := mustTable(t, tables, "data__items")
	if len(items.Rows) != 3 {
		t.Fatalf("items rows %v", items.Rows)
	}
	if get(items, 0, "sku") != "x1" || get(items, 0, "qty") != int64(2) || get(items, 1, "_sdc_level_0_id") != int64(2) || get(items, 2, "_sdc_level_0_id") != int64(3) {
		t.Errorf("items rows %v", items.Rows)
	}

	opts := mustTable(t, tables, "data__items__opts")
	if got := strings.Join(colNames(opts)[:3], " "); got != "_sdc_source_key___sdc_primary_key _sdc_level_0_id _sdc_level_1_id" {
		t.Errorf("opts columns %q", got)
	}
	if len(opts.Rows) != 2 || get(opts, 1, "_sdc_level_0_id") != int64(0) || get(opts, 1, "_sdc_level_1_id") != int64(1) || get(opts, 1, "k") != "size" || get(opts, 0, "v") != "red" {
		t.Errorf("opts rows %v", opts.Rows)
	}
	codes := mustTable(t, tables, "data__items__meta__codes")
	if len(codes.Rows) != 2 || get(codes, 1, "value") != int64(20) || get(codes, 1, "_sdc_level_1_id") != int64(1) {
		t.Errorf("codes rows %v", codes.Rows)
	}

	// [[1,2],[],[3],null,[[4]]]: the inner arrays' elements are rows of
	// data__grid__value, with the outer and the inner position.
	grid := mustTable(t, tables, "data__grid__value")
	want := [][3]int64{{0, 0, 1}, {0, 1, 2}, {2, 0, 3}}
	if len(grid.Rows) != len(want) {
		t.Fatalf("grid rows %v", grid.Rows)
	}
	for i, w := range want {
		if get(grid, i, "_sdc_level_0_id") != w[0] || get(grid, i, "_sdc_level_1_id") != w[1] || get(grid, i, "value") != w[2] {
			t.Errorf("grid row %d = %v, want %v", i, grid.Rows[i], w)
		}
	}
	deeper := mustTable(t, tables, "data__grid__value__value")
	if len(deeper.Rows) != 1 || get(deeper, 0, "_sdc_level_0_id") != int64(4) || get(deeper, 0, "_sdc_level_1_id") != int64(0) || get(deeper, 0, "_sdc_level_2_id") != int64(0) || get(deeper, 0, "value") != int64(4) {
		t.Errorf("grid value value rows %v (columns %v)", deeper.Rows, colNames(deeper))
	}
	if findTable(tables, "data__grid") != nil {
		t.Errorf("an array of arrays made rows of its own")
	}
}

func TestColumnLimit(t *testing.T) {
	const keys = 5000
	const limit = 1000
	var b strings.Builder
	b.WriteString(`{"nested":{"deep":"d"},`)
	for i := 0; i < keys; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		switch i % 3 {
		case 0:
			fmt.Fprintf(&b, `"k%04d":%d`, i, i)
		case 1:
			fmt.Fprintf(&b, `"k%04d":"s\"%d"`, i, i)
		default:
			fmt.Fprintf(&b, `"k%04d":%v`, i, i%2 == 0)
		}
	}
	b.WriteString(`,"list":[1]}`)
	body := b.String()
	// The second record brings 10 more new fields, and a value of another
	// type for a field that has its column.
	body2 := `{"k0000":"now text","z1":1,"z2":2,"z3":3,"z4":4,"z5":5,"z6":6,"z7":7,"z8":8,"z9":9,"z10":10}`
	tables, loaded, rejected := flattenAll(t, "", limit, nil, body, body2)
	if loaded != 2 || rejected != 0 {
		t.Fatalf("loaded %d rejected %d %v", loaded, rejected, rejectedReasons(tables))
	}
	data := mustTable(t, tables, "data")
	if len(data.Columns) != limit {
		t.Errorf("data has %d columns, want exactly the limit %d", len(data.Columns), limit)
	}
	if last := data.Columns[len(data.Columns)-1]; last.Name != "_sdc_extra" || last.Type != warehouse.Text {
		t.Errorf("last column %v, want _sdc_extra text", last)
	}
	// Every value is either in its column or in _sdc_extra: nothing is lost.
	var want, want2 map[string]any
	if err := json.Unmarshal([]byte(body), &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(body2), &want2); err != nil {
		t.Fatal(err)
	}
	for r, w := range []map[string]any{want, want2} {
		extraText, _ := get(data, r, "_sdc_extra").(string)
		extra := map[string]any{}
		if extraText != "" {
			d := json.NewDecoder(strings.NewReader(extraText))
			d.UseNumber()
			if err := d.Decode(&extra); err != nil {
				t.Fatalf("row %d _sdc_extra is not JSON: %v: %.200s", r, err, extraText)
			}
		}
		found := 0
		for k, v := range w {
			if k == "list" {
				continue
			}
			if k == "nested" {
				k, v = "nested__deep", "d"
			}
			inCol := get(data, r, k)
			if inCol == nil && r == 1 && k == "k0000" {
				inCol = get(data, r, "k0000__st")
			}
			inExtra, isExtra := extra[k]
			switch {
			case inCol != nil && isExtra:
				t.Errorf("row %d %s is both in a column and in _sdc_extra", r, k)
			case inCol != nil:
				if fmt.Sprint(inCol) != fmt.Sprint(v) {
					t.Errorf("row %d column %s = %v, want %v", r, k, inCol, v)
				}
				found++
			case isExtra:
				if fmt.Sprint(inExtra) != fmt.Sprint(v) {
					t.Errorf("row %d _sdc_extra[%s] = %v, want %v", r, k, inExtra, v)
				}
				found++
			default:
				t.Errorf("row %d: %s is lost", r, k)
			}
		}
		if found != len(w)-boolInt(r == 0) || len(extra) == 0 {
			t.Errorf("row %d: found %d of %d values, %d in _sdc_extra", r, found, len(w), len(extra))
		}
	}
	// The array still becomes its subtable.
	if list := mustTable(t, tables, "data__list"); len(list.Rows) != 1 {
		t.Errorf("list rows %v", list.Rows)
	}
	// Column order: the first fields in order of appearance.
	if got := strings.Join(colNames(data)[5:8], " "); got != "nested__deep k0000 k0001" {
		t.Errorf("first field columns %q", got)
	}
}

func wcol(name string, typ warehouse.Type) warehouse.Column {
	return warehouse.Column{Name: name, Type: typ}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestColumnLimitSmall(t *testing.T) {
	// A limit below the standard columns still loads everything.
	tables, loaded, _ := flattenAll(t, "", 3, nil, `{"a":1,"b":"x"}`)
	if loaded != 1 {
		t.Fatalf("loaded %d", loaded)
	}
	data := mustTable(t, tables, "data")
	if got := strings.Join(colNames(data), " "); got != "__sdc_primary_key _sdc_received_at _sdc_batched_at _sdc_sequence _sdc_table_version _sdc_extra" {
		t.Errorf("columns %q", got)
	}
	if got := get(data, 0, "_sdc_extra"); got != `{"a":1,"b":"x"}` {
		t.Errorf("_sdc_extra = %v", got)
	}
	// Exactly one field column fits at 7.
	tables, _, _ = flattenAll(t, "", 7, nil, `{"a":1,"b":"x","c":{"d":true}}`, `{"a":"t"}`)
	data = mustTable(t, tables, "data")
	if got := strings.Join(colNames(data)[5:], " "); got != "a _sdc_extra" {
		t.Errorf("columns %q", got)
	}
	if get(data, 0, "_sdc_extra") != `{"b":"x","c__d":true}` || get(data, 1, "_sdc_extra") != `{"a":"t"}` {
		t.Errorf("rows %v", data.Rows)
	}
}

func TestPrimaryKey(t *testing.T) {
	tables, loaded, rejected := flattenAll(t, "userId", 0, nil,
		`{"name":"a","userId":1,"tags":["x","y"]}`,
		`{"userId":2,"name":"b","tags":["z"]}`,
		`{"userId":1,"name":"a2","tags":["w"]}`,
		`{"name":"no key"}`,
		`{"userId":null}`,
		`{"userId":{"x":1}}`,
		`{"userId":[1]}`,
		`{"userId":"3"}`,
		`{"userId":3,"userid":4}`,
	)
	if loaded != 3 || rejected != 6 {
		t.Fatalf("loaded %d rejected %d: %v", loaded, rejected, rejectedReasons(tables))
	}
	data := mustTable(t, tables, "data")
	if got := strings.Join(colNames(data), " "); got != "_sdc_received_at _sdc_batched_at _sdc_sequence _sdc_table_version userid name" {
		t.Errorf("data columns %q: no __sdc_primary_key, key first", got)
	}
	if len(data.Rows) != 2 {
		t.Fatalf("data rows %v: the last record per key wins", data.Rows)
	}
	if get(data, 0, "userid") != int64(2) || get(data, 1, "userid") != int64(1) || get(data, 1, "name") != "a2" {
		t.Errorf("data rows %v", data.Rows)
	}
	tags := mustTable(t, tables, "data__tags")
	if got := colNames(tags)[0]; got != "_sdc_source_key_userid" || tags.Columns[0].Type != warehouse.BigInt {
		t.Errorf("tags source key column %v", tags.Columns[0])
	}
	var got []string
	for r := range tags.Rows {
		got = append(got, fmt.Sprint(get(tags, r, "_sdc_source_key_userid"), "=", get(tags, r, "value")))
	}
	if strings.Join(got, " ") != "2=z 1=w" {
		t.Errorf("tags rows %v: the superseded record's rows must go", got)
	}
	reasons := rejectedReasons(tables)
	for i, want := range []string{"is missing", "is null", "is an object", "is an array", `holds a text value, but the key column "userid" is bigint`, "both map to the column"} {
		if i >= len(reasons) || !strings.Contains(reasons[i], want) || (i < 5 && !strings.Contains(reasons[i], `"userId"`)) {
			t.Errorf("reason %d = %q, want %q", i, reasons[i], want)
		}
	}
}

func TestPrimaryKeyTypes(t *testing.T) {
	for _, tc := range []struct {
		body string
		typ  warehouse.Type
	}{
		{`{"id":"abc"}`, warehouse.Text},
		{`{"id":12}`, warehouse.BigInt},
		{`{"id":1.5}`, warehouse.Double},
		{`{"id":true}`, warehouse.Boolean},
		{`{"id":123456789012345678901234567890}`, warehouse.Numeric},
	} {
		tables, loaded, _ := flattenAll(t, "id", 0, nil, tc.body, `{"id":{"no":1}}`)
		if loaded != 1 {
			t.Errorf("%s: loaded %d", tc.body, loaded)
			continue
		}
		if got := colType(t, mustTable(t, tables, "data"), "id"); got != tc.typ {
			t.Errorf("%s: key column %s, want %s", tc.body, got, tc.typ)
		}
	}
	// An existing key column decides the type.
	existing := map[string][]warehouse.Column{"data": {wcol("_sdc_received_at", warehouse.Timestamp), wcol("_sdc_batched_at", warehouse.Timestamp), wcol("_sdc_sequence", warehouse.BigInt), wcol("_sdc_table_version", warehouse.BigInt), wcol("email", warehouse.Text), wcol("key", warehouse.Text)}}
	tables, loaded, rejected := flattenAll(t, "Key", 0, existing, `{"Key":"k1","x":1}`, `{"Key":5}`, `{"Key":"k1","x":2}`)
	if loaded != 2 || rejected != 1 {
		t.Fatalf("loaded %d rejected %d %v", loaded, rejected, rejectedReasons(tables))
	}
	data := mustTable(t, tables, "data")
	if colIndex(data, "key") != 5 || len(data.Rows) != 1 || get(data, 0, "x") != int64(2) {
		t.Errorf("data %v rows %v", colNames(data), data.Rows)
	}
}

func TestAtomicity(t *testing.T) {
	f := NewFlattener("", 0, nil)
	// Rejected late (in a nested array): nothing of it may stay.
	f.Add(input(0, `{"a":1,"b":{"c":"x"},"list":[{"d":1},{"e":1e999}]}`))
	tables, loaded, rejected := f.Take(batchTime)
	if loaded != 0 || rejected != 1 || len(tables) != 1 {
		t.Fatalf("loaded %d rejected %d tables %v", loaded, rejected, tableNames(tables))
	}
	if got := mustTable(t, tables, warehouse.RejectedTable); get(got, 0, "table_name") != "data__list" {
		t.Errorf("table_name %v", get(got, 0, "table_name"))
	}
	f.Add(input(1, `{"z":true,"list":[{"y":2}],"a":"now text"}`))
	tables, loaded, _ = f.Take(batchTime)
	if loaded != 1 {
		t.Fatalf("loaded %d", loaded)
	}
	data := mustTable(t, tables, "data")
	if got := strings.Join(colNames(data)[5:], " "); got != "z a" {
		t.Errorf("data field columns %q: the rejected record's columns must not exist", got)
	}
	list := mustTable(t, tables, "data__list")
	if got := strings.Join(colNames(list)[6:], " "); got != "y" {
		t.Errorf("list field columns %q", got)
	}
	if tables[0].Name != "data" || tables[1].Name != "data__list" {
		t.Errorf("order %v", tableNames(tables))
	}
}

func TestUnparsable(t *testing.T) {
	for _, body := range []string{
		``, `   `, `[]`, `[{"a":1}]`, `"x"`, `42`, `null`, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":1} x`,
		`{"a":01}`, `{"a":1.}`, `{"a":-}`, `{"a":1e}`, `{"a":tru}`, `{"a":"\x"}`, `{"a":"\u12"}`,
		"{\"a\":\"tab\there\"}", "{\"a\":\"\xff\"}", "{\"a\":1}\x00", `{"a":[1,2}`, `{'a':1}`,
		strings.Repeat(`{"a":`, 600) + "1" + strings.Repeat("}", 600),
	} {
		tables, loaded, rejected := flattenAll(t, "", 0, nil, body)
		if loaded != 0 || rejected != 1 {
			t.Errorf("%q: loaded %d rejected %d", clip(body, 40), loaded, rejected)
			continue
		}
		rej := mustTable(t, tables, warehouse.RejectedTable)
		if reason := get(rej, 0, "reason").(string); !strings.Contains(reason, "not") {
			t.Errorf("%q: reason %q", clip(body, 40), reason)
		}
		if rec := get(rej, 0, "record").(string); strings.ContainsRune(rec, 0) || !utf8Valid(rec) {
			t.Errorf("%q: record text %q cannot be stored", clip(body, 40), rec)
		}
	}
	// Deep but within the limit is fine.
	deep := strings.Repeat(`{"a":`, 64) + "1" + strings.Repeat("}", 64)
	tables, loaded, _ := flattenAll(t, "", 0, nil, deep)
	if loaded != 1 {
		t.Fatalf("depth 64: %v", rejectedReasons(tables))
	}
	if data := mustTable(t, tables, "data"); len(data.Columns[len(data.Columns)-1].Name) != 59 {
		t.Errorf("deep column %q should be shortened to 59 bytes", data.Columns[len(data.Columns)-1].Name)
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "") == s }

func TestTakeOrderAndBatches(t *testing.T) {
	f := NewFlattener("", 0, map[string][]warehouse.Column{"_sdc_rejected": warehouse.RejectedColumns})
	f.Add(input(0, `{"b":[1],"a":[2]}`))
	f.Add(input(1, `not json`))
	f.Add(input(2, `{"c":[3],"a":[4]}`))
	tables, loaded, rejected := f.Take(batchTime)
	if got := strings.Join(tableNames(tables), " "); got != "data data__b data__a data__c _sdc_rejected" {
		t.Errorf("order %q", got)
	}
	if loaded != 2 || rejected != 1 {
		t.Errorf("loaded %d rejected %d", loaded, rejected)
	}
	// The next batch only has what it touches, and no new columns for known tables.
	f.Add(input(3, `{"a":[5]}`))
	tables, loaded, rejected = f.Take(batchTime.Add(time.Second))
	if got := strings.Join(tableNames(tables), " "); got != "data data__a" || loaded != 1 || rejected != 0 {
		t.Errorf("second batch %q loaded %d rejected %d", got, loaded, rejected)
	}
	if a := mustTable(t, tables, "data__a"); len(a.Rows) != 1 || get(a, 0, "_sdc_batched_at") != warehouse.UTC(batchTime.Add(time.Second)) {
		t.Errorf("second batch rows %v", a.Rows)
	}
}

func TestLongNamesInRecords(t *testing.T) {
	long := strings.Repeat("very_long_field_name_", 4)
	body := fmt.Sprintf(`{"%s1":1,"%s2":2,"%s":{"%s":[1]}}`, long, long, long, long)
	tables, loaded, _ := flattenAll(t, "", 0, nil, body)
	if loaded != 1 {
		t.Fatalf("loaded %d: %v", loaded, rejectedReasons(tables))
	}
	data := mustTable(t, tables, "data")
	c1, c2 := ColumnName(long+"1"), ColumnName(long+"2")
	if c1 == c2 || get(data, 0, c1) != int64(1) || get(data, 0, c2) != int64(2) {
		t.Errorf("columns %v rows %v", colNames(data), data.Rows)
	}
	sub := TableName("data__" + normalize(long) + "__" + normalize(long))
	if len(sub) != 63 || findTable(tables, sub) == nil {
		t.Errorf("subtable %q missing from %v", sub, tableNames(tables))
	}
}

// BenchmarkFlatten flattens the Vero samples round-robin, taking a batch every
// 10,000 records as the loader does. ns/op is per record.
func BenchmarkFlatten(b *testing.B) {
	_, bodies := veroBodies(b)
	inputs := make([]Input, len(bodies))
	total := 0
	for i, body := range bodies {
		inputs[i] = input(i, body)
		total += len(body)
	}
	f := NewFlattener("", 0, nil)
	b.SetBytes(int64(total / len(bodies)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.Add(inputs[i%len(inputs)])
		if i%10000 == 9999 {
			f.Take(batchTime)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkParse is the JSON reading alone.
func BenchmarkParse(b *testing.B) {
	_, bodies := veroBodies(b)
	var p parser
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := p.parse(bodies[i%len(bodies)]); err != nil {
			b.Fatal(err)
		}
	}
}

func TestColumnLimitAcrossRecords(t *testing.T) {
	const records = 5000
	bodies := make([]string, records)
	for i := range bodies {
		bodies[i] = fmt.Sprintf(`{"common":%d,"f%04d":"v%d"}`, i, i, i)
	}
	tables, loaded, _ := flattenAll(t, "", 100, nil, bodies...)
	if loaded != records {
		t.Fatalf("loaded %d: %v", loaded, rejectedReasons(tables)[:1])
	}
	data := mustTable(t, tables, "data")
	if len(data.Columns) != 100 {
		t.Errorf("%d columns, want 100", len(data.Columns))
	}
	inExtra := 0
	for r := range data.Rows {
		key := fmt.Sprintf("f%04d", r)
		want := fmt.Sprintf("v%d", r)
		if get(data, r, "common") != int64(r) {
			t.Fatalf("row %d common = %v", r, get(data, r, "common"))
		}
		if v := get(data, r, key); v != nil {
			if v != want {
				t.Errorf("row %d %s = %v", r, key, v)
			}
			continue
		}
		extra, _ := get(data, r, "_sdc_extra").(string)
		if want := `{"` + key + `":"` + want + `"}`; extra != want {
			t.Fatalf("row %d _sdc_extra = %q, want %q", r, extra, want)
		}
		inExtra++
	}
	// 5 standard columns, common, _sdc_extra: 93 field columns.
	if inExtra != records-93 {
		t.Errorf("%d values in _sdc_extra, want %d", inExtra, records-93)
	}
}

func TestUnicodeKeys(t *testing.T) {
	tables, loaded, _ := flattenAll(t, "", 0, nil, `{"Émail":"a","user":{"Prénom":"b","名前":"c"},"\u00c9tat":"d"}`)
	if loaded != 1 {
		t.Fatalf("loaded %d: %v", loaded, rejectedReasons(tables))
	}
	data := mustTable(t, tables, "data")
	for col, want := range map[string]any{"_mail": "a", "user__pr_nom": "b", "user____": "c", "_tat": "d"} {
		if got := get(data, 0, col); got != want {
			t.Errorf("%s = %#v, want %#v (columns %v)", col, got, want, colNames(data))
		}
	}
}

func TestSplitColumnTakenByNestedField(t *testing.T) {
	tables, loaded, rejected := flattenAll(t, "", 0, nil,
		`{"title":"plain"}`,
		`{"title":{"de":"Hallo"}}`,
		`{"title":12345678901234567890123}`, // numeric would go to title__de, which is text
		`{"title":{"de":"Tschüss"}}`,
	)
	if loaded != 3 || rejected != 1 {
		t.Fatalf("loaded %d rejected %d: %v", loaded, rejected, rejectedReasons(tables))
	}
	if r := rejectedReasons(tables)[0]; !strings.Contains(r, `"title__de", exists with type text`) || !strings.Contains(r, `"title"`) {
		t.Errorf("reason %q", r)
	}
	data := mustTable(t, tables, "data")
	if got := strings.Join(colNames(data)[5:], " "); got != "title title__de" {
		t.Errorf("columns %q", got)
	}
}
