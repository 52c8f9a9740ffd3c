package loader

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// tightWarehouse is a real DuckDB warehouse with a memory ceiling in front: a
// batch whose text values add up to more than limit bytes fails the way a
// DuckDB "Out of Memory Error" does (wrapping warehouse.ErrOutOfMemory, nothing
// written); smaller ones load into DuckDB.
type tightWarehouse struct {
	warehouse.Warehouse
	limit int

	mu     sync.Mutex
	tries  []int // records per batch tried, in order
	oomErr int
}

func batchTextBytes(b *warehouse.Batch) (n, records int) {
	for _, t := range b.Tables {
		for _, row := range t.Rows {
			for _, v := range row {
				if s, ok := v.(string); ok {
					n += len(s)
				}
			}
		}
	}
	return n, int(b.State.Position - b.Prev.Position)
}

func (w *tightWarehouse) Load(ctx context.Context, b *warehouse.Batch) error {
	n, records := batchTextBytes(b)
	w.mu.Lock()
	w.tries = append(w.tries, records)
	over := n > w.limit
	if over {
		w.oomErr++
	}
	w.mu.Unlock()
	if over {
		return fmt.Errorf("duckdb: load integration %d: %w: Out of Memory Error: could not allocate %d bytes", b.Integration, warehouse.ErrOutOfMemory, n)
	}
	return w.Warehouse.Load(ctx, b)
}

// TestSplitOnOutOfMemory: a backlog whose batches do not fit in the
// warehouse's memory is loaded in halves, down to one record; a record that
// never fits is rejected into _sdc_rejected with the reason (its text cut when
// even the whole text does not fit), and every record ends up exactly once in
// data or _sdc_rejected.
func TestSplitOnOutOfMemory(t *testing.T) {
	log, db := openLogAndWarehouse(t)
	wh := &tightWarehouse{Warehouse: db, limit: 5 << 20}
	ctx := context.Background()
	in := control.Integration{ID: 1, Name: "Big", Type: "webhooks", Schema: "big"}
	// 40 records of 300 KB (12 MB in all: too much for one batch) and, at
	// position 21, one of 6 MB that never fits, not even as a rejection.
	var bodies [][]byte
	for i := 1; i <= 41; i++ {
		size := 300_000
		if i == 21 {
			size = 6 << 20
		}
		bodies = append(bodies, fmt.Appendf(nil, `{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", size)))
	}
	if _, err := log.Append(ctx, 1, time.Now(), bodies); err != nil {
		t.Fatal(err)
	}
	l := New(log, wh, fixedIntegrations{in}, Options{BatchWait: 10 * time.Millisecond, MaxBatchBytes: 64 << 20}, quiet)
	l.Start()
	defer l.Close(ctx)
	mustSync(t, l, 1)

	q := func(sql string) string {
		t.Helper()
		res, err := db.Query(ctx, sql, 100)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		var out []string
		for _, row := range res.Rows {
			var f []string
			for _, v := range row {
				f = append(f, fmt.Sprint(v))
			}
			out = append(out, strings.Join(f, " "))
		}
		return strings.Join(out, "|")
	}
	if got := q(`select count(*), count(distinct n), min(n), max(n), sum(n) from big.data`); got != "40 40 1 41 840" {
		t.Fatalf("data: count, distinct, min, max, sum = %s", got)
	}
	got := q(`select table_name, reason, length(record), starts_with(record, '{"n":21,') from big._sdc_rejected`)
	for _, want := range []string{"data", "ran out of memory loading this record alone", "raise --memory-limit",
		fmt.Sprintf("only the first %d of its %d bytes are kept", maxRejectedText, len(bodies[20])), fmt.Sprint(maxRejectedText), "true"} {
		if !strings.Contains(got, want) {
			t.Fatalf("_sdc_rejected = %q, want it to hold %q", got, want)
		}
	}
	if s := l.Stats(1); s.Loaded != 40 || s.Rejected != 1 || s.Backlog != 0 || s.Error != "" {
		t.Fatalf("stats = %+v", s)
	}
	wh.mu.Lock()
	tries := fmt.Sprint(wh.tries)
	wh.mu.Unlock()
	t.Logf("records per load attempt: %s (%d out of memory)", tries, wh.oomErr)
	// The first try is the whole backlog; the one record is tried alone, as
	// a rejection with its whole text, and loads as one with its text cut.
	if !strings.HasPrefix(tries, "[41 20 ") || !strings.Contains(tries, " 1 1 1 ") {
		t.Fatalf("records per load attempt = %s, want the backlog halved from 41 and the big record tried alone", tries)
	}
	// After the split the remaining backlog loads in batches again, not one by one.
	if n := len(wh.tries); n > 20 {
		t.Fatalf("%d load attempts for 41 records: the split did not end", n)
	}
}

// TestSplitAfterKill: a note of a large load in progress, left by a process
// killed during it, makes the next start load that batch in halves; the note is
// removed, and everything loads once.
func TestSplitAfterKill(t *testing.T) {
	log, db := openLogAndWarehouse(t)
	wh := &tightWarehouse{Warehouse: db, limit: 1 << 30}
	ctx := context.Background()
	in := control.Integration{ID: 7, Name: "Big", Type: "webhooks", Schema: "big"}
	var bodies [][]byte
	for i := 1; i <= 16; i++ {
		bodies = append(bodies, fmt.Appendf(nil, `{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", 200_000)))
	}
	if _, err := log.Append(ctx, 7, time.Now(), bodies); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// What a run killed while loading the 16 records from position 0 leaves.
	a := attempts{dir: dir}
	if !a.begin(7, 0, 16, split{}) {
		t.Fatal("could not write the note")
	}
	// A note for another position (an older run) is ignored.
	if !(attempts{dir: dir}).begin(8, 5, 16, split{}) {
		t.Fatal("could not write the note")
	}
	if _, ok := a.unfinished(8, 0); ok {
		t.Fatal("a note for the batch after position 5 was taken for the batch after 0")
	}
	l := New(log, wh, fixedIntegrations{in}, Options{BatchWait: 10 * time.Millisecond, AttemptsDir: dir}, quiet)
	l.Start()
	defer l.Close(ctx)
	mustSync(t, l, 7)
	wh.mu.Lock()
	tries := fmt.Sprint(wh.tries)
	wh.mu.Unlock()
	if tries != "[8 8]" {
		t.Fatalf("records per load attempt = %s, want [8 8]: the batch the killed run loaded, in halves", tries)
	}
	if res, err := db.Query(ctx, `select count(*), count(distinct n) from big.data`, 1); err != nil || fmt.Sprint(res.Rows[0]...) != "16 16" {
		t.Fatalf("big.data = %v %v", res, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("notes left after loading: %v", entries)
	}
}

// TestManyKeysPastTheLimit: keys past the column limit go to _sdc_extra
// without growing the naming caches (extraOnly), with the same results as the
// ordinary path: the last of duplicate keys wins, two keys naming one column
// reject the record, a reserved key rejects it, nulls write nothing; and one
// object of 200,000 keys costs little heap per key.
func TestManyKeysPastTheLimit(t *testing.T) {
	body := func(extra string) string {
		var b strings.Builder
		b.WriteString(`{"a":1`)
		for i := 0; i < 30; i++ {
			fmt.Fprintf(&b, `,"c%02d":%d`, i, i)
		}
		return b.String() + extra + "}"
	}
	tables, loaded, rejected := flattenAll(t, "", 20, nil,
		body(`,"x":"first","n":null,"x":"last","y":true`),
		body(`,"userId":1,"userid":2`),
		body(`,"z__st":1`),
	)
	if loaded != 1 || rejected != 2 {
		t.Fatalf("loaded %d, rejected %d; want 1 and 2 (%v)", loaded, rejected, rejectedReasons(tables))
	}
	data := mustTable(t, tables, warehouse.DataTable)
	extra := fmt.Sprint(get(data, 0, warehouse.ColExtra))
	if !strings.Contains(extra, `"x":"last"`) || strings.Contains(extra, "first") || strings.Contains(extra, `"n"`) || !strings.HasSuffix(extra, `"y":true}`) {
		t.Fatalf("_sdc_extra = %s", extra)
	}
	reasons := strings.Join(rejectedReasons(tables), "|")
	if !strings.Contains(reasons, "userid") || !strings.Contains(reasons, "z__st") {
		t.Fatalf("reasons = %s", reasons)
	}

	// Heap per key of one object of 200,000 keys, flattened twice (the second
	// time with the caches of the first).
	var b strings.Builder
	b.WriteString("{")
	for i := 0; i < 200_000; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%07d":%d`, i, i)
	}
	b.WriteString("}")
	f := NewFlattener("", 1000, nil)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f.Add(input(1, b.String()))
	f.Add(input(2, b.String()))
	runtime.GC()
	var live runtime.MemStats
	runtime.ReadMemStats(&live)
	perKey := (int64(live.HeapAlloc) - int64(before.HeapAlloc)) / 400_000
	tables, loaded, _ = f.Take(batchTime)
	if loaded != 2 {
		t.Fatalf("loaded %d: %v", loaded, rejectedReasons(tables))
	}
	// Measured: 70 bytes (the pending rows, _sdc_extra's text, the parsed
	// record); 174 with the naming caches grown for every key.
	t.Logf("live heap after flattening: %d bytes per key", perKey)
	if perKey > 110 {
		t.Fatalf("live heap after flattening: %d bytes per key past the column limit, want at most 110", perKey)
	}
}

// TestTextLimit: with a text limit (the embedded DuckDB's), a record with a
// longer text value anywhere (a column, a subtable, _sdc_extra) is rejected
// with a reason naming the column, its length and the limit, adding no rows
// and no columns; the record text _sdc_rejected keeps, whatever the reason, is
// cut to half the limit on a whole character; values up to the limit load.
func TestTextLimit(t *testing.T) {
	const limit = 1000
	f := NewFlattener("", 20, nil)
	f.LimitText(limit)
	long := strings.Repeat("é", 600) // 1,200 bytes
	var wide strings.Builder         // past 20 columns: into _sdc_extra
	for i := 0; i < 30; i++ {
		fmt.Fprintf(&wide, `,"k%02d":%d`, i, i)
	}
	for i, b := range []string{
		`{"a":"` + strings.Repeat("x", limit) + `"}`, // at the limit: loads
		`{"a":"` + long + `","b":1}`,
		`{"a":"x","items":[{"v":"` + long + `"}]}`,
		`{"a":"x"` + wide.String() + `,"z":"` + long + `"}`,
		`{"a":` + long, // not JSON
	} {
		f.Add(input(i, b))
	}
	tables, loaded, rejected := f.Take(batchTime)
	checkTables(t, tables)
	if loaded != 1 || rejected != 4 {
		t.Fatalf("loaded %d, rejected %d; want 1 and 4: %v", loaded, rejected, rejectedReasons(tables))
	}
	data := mustTable(t, tables, warehouse.DataTable)
	if len(data.Rows) != 1 || colIndex(data, "b") >= 0 || findTable(tables, "data__items") != nil {
		t.Fatalf("the rejected records left rows or columns: %v, %v", tableNames(tables), data.Columns)
	}
	reasons := rejectedReasons(tables)
	for i, want := range []string{
		"the value of column a is 1200 bytes; the embedded DuckDB warehouse takes text values of up to 1000 bytes",
		"the value of column data__items.v is 1200 bytes",
		"the value of column _sdc_extra is",
		"not a valid JSON object",
	} {
		if !strings.Contains(reasons[i], want) || !strings.Contains(reasons[i], "; only the first ") {
			t.Errorf("reason %d = %q, want it to say %q and that the text is cut", i, reasons[i], want)
		}
	}
	rej := mustTable(t, tables, warehouse.RejectedTable)
	for r := range rej.Rows {
		rec := get(rej, r, "record").(string)
		if len(rec) > limit/2 || !utf8.ValidString(rec) {
			t.Errorf("rejected record %d keeps %d bytes (valid UTF-8: %v), want at most %d", r, len(rec), utf8.ValidString(rec), limit/2)
		}
	}
}

// TestRejectionAfterOutOfMemoryFits: with a text limit, a record that runs out
// of memory alone is rejected with its text already cut to half the limit, so
// the rejection loads at its first try (a rejection of the whole text would
// run out of memory too and be retried cut).
func TestRejectionAfterOutOfMemoryFits(t *testing.T) {
	log, db := openLogAndWarehouse(t)
	// Every record alone is over the warehouse's memory, its cut rejection under.
	wh := &tightWarehouse{Warehouse: db, limit: 200_000}
	ctx := context.Background()
	in := control.Integration{ID: 3, Name: "Tight", Type: "webhooks", Schema: "tight"}
	var bodies [][]byte
	for i := 1; i <= 3; i++ {
		bodies = append(bodies, fmt.Appendf(nil, `{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", 250_000)))
	}
	if _, err := log.Append(ctx, 3, time.Now(), bodies); err != nil {
		t.Fatal(err)
	}
	l := New(log, wh, fixedIntegrations{in}, Options{BatchWait: 10 * time.Millisecond, MaxText: 300_000}, quiet)
	l.Start()
	defer l.Close(ctx)
	mustSync(t, l, 3)
	res, err := db.Query(ctx, `select count(*), max(length(record)), min(reason) from tight._sdc_rejected`, 1)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintln(res.Rows[0]...)
	if !strings.HasPrefix(got, "3 150000 the warehouse ran out of memory loading this record alone") || !strings.Contains(got, "only the first 150000 of its") {
		t.Fatalf("_sdc_rejected: count, longest record, reason = %s", got)
	}
	wh.mu.Lock()
	tries := fmt.Sprint(wh.tries)
	wh.mu.Unlock()
	// Each record is tried alone once as a row (out of memory) and once as a
	// rejection, which loads: [3 1 1 2 1 1 1 1].
	t.Logf("records per load attempt: %s", tries)
	if tries != "[3 1 1 2 1 1 1 1]" {
		t.Fatalf("records per load attempt = %s: a rejection was retried", tries)
	}
}
