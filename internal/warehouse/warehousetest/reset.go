package warehousetest

import (
	"errors"
	"maps"
	"slices"
	"testing"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// testReset: Reset drops every table of the integration's schema (data,
// subtables, _sdc_rejected) and sets its state back in one transaction, fenced
// like Load; other schemas stay; loading continues from the lower position into
// new tables.
func testReset(t *testing.T, w warehouse.Warehouse) {
	const schema = "order" // a keyword: names are quoted
	batch := func(prev, next warehouse.State, ids ...string) *warehouse.Batch {
		b := &warehouse.Batch{Integration: 7, Schema: schema, Prev: prev, State: next, Tables: []warehouse.Table{
			{Name: "data", Columns: []warehouse.Column{text("id")}},
			{Name: "data__items", Columns: []warehouse.Column{text("_sdc_source_key_id"), text("value")}, Rows: [][]any{{"x", "v"}}},
			{Name: warehouse.RejectedTable, Columns: warehouse.RejectedColumns, Rows: [][]any{{ts("2026-01-01T00:00:00Z"), "data", "why", "{}"}}},
		}}
		for _, id := range ids {
			b.Tables[0].Rows = append(b.Tables[0].Rows, []any{id})
		}
		return b
	}
	a3 := warehouse.State{Installation: "inst-a", Position: 3, Sequence: 30}
	load(t, w, batch(warehouse.State{}, a3, "r1", "r2"))
	other := &warehouse.Batch{Integration: 8, Schema: "other", State: warehouse.State{Installation: "inst-a", Position: 1, Sequence: 5},
		Tables: []warehouse.Table{{Name: "data", Columns: []warehouse.Column{text("id")}, Rows: [][]any{{"o1"}}}}}
	load(t, w, other)

	// A stale prev changes nothing.
	stale := warehouse.State{Installation: "inst-a", Position: 2, Sequence: 20}
	err := w.Reset(t.Context(), 7, schema, stale, warehouse.State{Installation: "inst-a"})
	if !errors.Is(err, warehouse.ErrStateMismatch) {
		t.Fatalf("Reset from a stale state = %v, want ErrStateMismatch", err)
	}
	if n := count(t, w, schema, "data"); n != 2 {
		t.Fatalf("data has %d rows after a refused reset, want 2", n)
	}
	wantState(t, w, map[int64]warehouse.State{7: a3, 8: other.State})

	// Back to the start: every table of the schema goes, the other schema stays.
	zero := warehouse.State{Installation: "inst-a"}
	if err := w.Reset(t.Context(), 7, schema, a3, zero); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	tables, err := w.Tables(t.Context(), schema)
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) != 0 {
		t.Fatalf("tables after Reset: %v, want none", slices.Sorted(maps.Keys(tables)))
	}
	if n, err := w.CountRows(t.Context(), schema, warehouse.RejectedTable); err != nil || n != 0 {
		t.Fatalf("CountRows(_sdc_rejected) after Reset = %d, %v", n, err)
	}
	wantState(t, w, map[int64]warehouse.State{7: zero, 8: other.State})
	if n := count(t, w, "other", "data"); n != 1 {
		t.Fatalf("other.data has %d rows, want 1", n)
	}
	// Resetting again from the same state is a no-op that succeeds (a reset
	// redone after a crash between its commit and what follows).
	if err := w.Reset(t.Context(), 7, schema, zero, zero); err != nil {
		t.Fatalf("Reset again: %v", err)
	}

	// Loading continues from position 0 into new tables.
	b1 := warehouse.State{Installation: "inst-a", Position: 3, Sequence: 31}
	if err := w.Load(t.Context(), batch(zero, b1, "r1", "r2")); err != nil {
		t.Fatalf("load after Reset: %v", err)
	}
	if n := count(t, w, schema, "data"); n != 2 {
		t.Fatalf("data has %d rows after the reload, want 2", n)
	}
	if n := count(t, w, schema, "data__items"); n != 1 {
		t.Fatalf("data__items has %d rows after the reload, want 1", n)
	}

	// To a middle position (the log's head was trimmed): the state keeps it.
	mid := warehouse.State{Installation: "inst-a", Position: 1}
	if err := w.Reset(t.Context(), 7, schema, b1, mid); err != nil {
		t.Fatalf("Reset to position 1: %v", err)
	}
	wantState(t, w, map[int64]warehouse.State{7: mid, 8: other.State})
	load(t, w, batch(mid, warehouse.State{Installation: "inst-a", Position: 3, Sequence: 40}, "r2"))
	if n := count(t, w, schema, "data"); n != 1 {
		t.Fatalf("data has %d rows, want 1", n)
	}

	// Never forward, and never without an installation.
	cur := stored(t, w, 7)
	for _, next := range []warehouse.State{{Installation: "inst-a", Position: 4}, {Position: 0}} {
		if err := w.Reset(t.Context(), 7, schema, cur, next); err == nil {
			t.Fatalf("Reset to %+v succeeded", next)
		}
	}
	// Another installation's state is not reset.
	err = w.Reset(t.Context(), 8, "other", warehouse.State{Installation: "inst-b", Position: 1, Sequence: 5}, warehouse.State{Installation: "inst-b"})
	if !errors.Is(err, warehouse.ErrStateMismatch) {
		t.Fatalf("Reset of another installation's state = %v, want ErrStateMismatch", err)
	}
	if n := count(t, w, "other", "data"); n != 1 {
		t.Fatalf("other.data has %d rows, want 1", n)
	}
	// An integration that never loaded anything: a state at 0 is stored.
	if err := w.Reset(t.Context(), 9, "never", warehouse.State{}, zero); err != nil {
		t.Fatalf("Reset of an integration without state: %v", err)
	}
	if st := stored(t, w, 9); !st.Same(zero) {
		t.Fatalf("state after resetting a new integration = %+v", st)
	}
}
