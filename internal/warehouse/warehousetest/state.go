package warehousetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// testStateIsFenced: Load advances the stored state only from the batch's Prev.
// Any other stored state (moved by another loader, stored by another
// installation, removed) refuses the batch with ErrStateMismatch and writes
// nothing; a state stored before installations had ids is claimed.
func testStateIsFenced(t *testing.T, w warehouse.Warehouse) {
	dataCols := []warehouse.Column{text("id")}
	batch := func(prev, next warehouse.State, id string) *warehouse.Batch {
		return &warehouse.Batch{Integration: 7, Schema: "fenced", Prev: prev, State: next,
			Tables: []warehouse.Table{{Name: "data", Columns: dataCols, Rows: [][]any{{id}}}}}
	}
	a1 := warehouse.State{Installation: "inst-a", Position: 1, Sequence: 10}
	load(t, w, batch(warehouse.State{}, a1, "r1"))
	wantState(t, w, map[int64]warehouse.State{7: a1})

	a2 := warehouse.State{Installation: "inst-a", Position: 2, Sequence: 20}
	refused := []struct {
		name  string
		b     *warehouse.Batch
		words []string // the message must say these
	}{
		{"no Prev, but a state is stored", batch(warehouse.State{}, a2, "x"), []string{"integration 7", "already has a load position (1)"}},
		{"stale position", batch(warehouse.State{Installation: "inst-a", Position: 5, Sequence: 50},
			warehouse.State{Installation: "inst-a", Position: 6}, "x"), []string{"moved from 5 to 1"}},
		{"another installation", batch(warehouse.State{Installation: "inst-b", Position: 1, Sequence: 10},
			warehouse.State{Installation: "inst-b", Position: 2}, "x"), []string{"inst-a", "inst-b", "another hookhouse installation", "fenced"}},
		{"another installation from scratch", batch(warehouse.State{}, warehouse.State{Installation: "inst-b", Position: 1}, "x"),
			[]string{"inst-a", "inst-b", "another hookhouse installation"}},
		{"claiming a state that has an installation", batch(warehouse.State{Position: 1, Sequence: 10},
			warehouse.State{Installation: "inst-b", Position: 2}, "x"), []string{"inst-a"}},
	}
	for _, r := range refused {
		err := w.Load(t.Context(), r.b)
		if !errors.Is(err, warehouse.ErrStateMismatch) {
			t.Fatalf("%s: Load = %v, want an error wrapping ErrStateMismatch", r.name, err)
		}
		for _, word := range r.words {
			if !strings.Contains(err.Error(), word) {
				t.Errorf("%s: the error %q does not say %q", r.name, err, word)
			}
		}
		wantState(t, w, map[int64]warehouse.State{7: a1})
		if n := count(t, w, "fenced", "data"); n != 1 {
			t.Fatalf("%s: data has %d rows after a refused batch, want 1", r.name, n)
		}
	}
	// The right Prev still works after all that.
	load(t, w, batch(a1, a2, "r2"))
	wantState(t, w, map[int64]warehouse.State{7: a2})

	// A state set back to position 0 (nothing loaded) continues from Prev
	// {installation, 0}, and only from that installation.
	zero := warehouse.State{Installation: "inst-a", Position: 0, Sequence: 20}
	load(t, w, &warehouse.Batch{Integration: 7, Schema: "fenced", Prev: a2, State: zero})
	wantState(t, w, map[int64]warehouse.State{7: zero})
	if err := w.Load(t.Context(), batch(warehouse.State{Installation: "inst-b"}, warehouse.State{Installation: "inst-b", Position: 1}, "x")); !errors.Is(err, warehouse.ErrStateMismatch) {
		t.Fatalf("another installation continuing a state at 0: %v, want ErrStateMismatch", err)
	}
	a3 := warehouse.State{Installation: "inst-a", Position: 1, Sequence: 30}
	if err := w.Load(t.Context(), batch(zero, a3, "r3")); err != nil {
		t.Fatalf("continuing from position 0: %v", err)
	}
	wantState(t, w, map[int64]warehouse.State{7: a3})
	if n := count(t, w, "fenced", "data"); n != 3 {
		t.Fatalf("data has %d rows, want 3", n)
	}

	// A state without an installation (stored before they existed) is claimed
	// by the first installation that loads from it.
	load(t, w, &warehouse.Batch{Integration: 8, Schema: "legacy", Prev: warehouse.State{}, State: warehouse.State{Position: 3, Sequence: 30}})
	if got := stored(t, w, 8); got.Installation != "" {
		t.Fatalf("stored installation %q, want none", got.Installation)
	}
	claimed := warehouse.State{Installation: "inst-c", Position: 4, Sequence: 40}
	load(t, w, &warehouse.Batch{Integration: 8, Schema: "legacy", Prev: warehouse.State{Position: 3, Sequence: 30}, State: claimed})
	wantState(t, w, map[int64]warehouse.State{7: a3, 8: claimed})
}

// testTwoLoadersOneWins: two loaders commit batches from the same Prev at once
// (two servers on one warehouse): exactly one batch is stored, never both.
func testTwoLoadersOneWins(t *testing.T, w warehouse.Warehouse) {
	const rounds = 10
	dataCols := []warehouse.Column{text("id")}
	prev := warehouse.State{}
	for round := 1; round <= rounds; round++ {
		next := warehouse.State{Installation: "inst", Position: uint64(round), Sequence: int64(round)}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range errs {
			wg.Go(func() {
				rows := make([][]any, 500)
				for r := range rows {
					rows[r] = []any{fmt.Sprintf("round%d-loader%d-%d", round, i, r)}
				}
				errs[i] = w.Load(t.Context(), &warehouse.Batch{Integration: 9, Schema: "race", Prev: prev, State: next,
					Tables: []warehouse.Table{{Name: "data", Columns: dataCols, Rows: rows}}})
			})
		}
		wg.Wait()
		won := 0
		for i, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, warehouse.ErrStateMismatch):
				t.Fatalf("round %d loader %d: %v, want success or ErrStateMismatch", round, i, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d loaders committed, want exactly 1 (errors: %v)", round, won, errs)
		}
		prev = next
	}
	if n := count(t, w, "race", "data"); n != rounds*500 {
		t.Fatalf("race.data has %d rows, want %d: a batch was stored twice or lost", n, rounds*500)
	}
	wantState(t, w, map[int64]warehouse.State{9: prev})
}

// testKeywordSchemas: schema, table and column names that are SQL keywords work
// in every named method (Tables, Columns, CountRows, Recent), because the
// adapter quotes them.
func testKeywordSchemas(t *testing.T, w warehouse.Warehouse) {
	for i, schema := range []string{"order", "select", "group", "user", "table", "from", "Mixed Case", `we"ird`} {
		dataCols := []warehouse.Column{text("select"), bigint(warehouse.ColSequence)}
		rejCols := warehouse.RejectedColumns
		load(t, w, &warehouse.Batch{Integration: int64(100 + i), Schema: schema,
			State: warehouse.State{Installation: "i", Position: 3, Sequence: 3},
			Tables: []warehouse.Table{
				{Name: "data", Columns: dataCols, Rows: [][]any{{"a", int64(1)}, {"b", int64(2)}}},
				{Name: warehouse.RejectedTable, Columns: rejCols, Rows: [][]any{{ts("2024-01-01T00:00:00Z"), "data", "why", "{}"}}},
			}})
		tables, err := w.Tables(t.Context(), schema)
		if err != nil {
			t.Fatalf("Tables(%q): %v", schema, err)
		}
		if len(tables) != 2 || len(tables["data"]) != 2 || len(tables[warehouse.RejectedTable]) != len(rejCols) {
			t.Fatalf("Tables(%q) = %v, want data (2 columns) and %s", schema, tables, warehouse.RejectedTable)
		}
		if tables["data"][0] != text("select") {
			t.Errorf("Tables(%q): data's first column is %v", schema, tables["data"][0])
		}
		for table, want := range map[string]int64{"data": 2, warehouse.RejectedTable: 1, "missing": 0} {
			n, err := w.CountRows(t.Context(), schema, table)
			if err != nil || n != want {
				t.Errorf("CountRows(%q, %q) = %d, %v; want %d", schema, table, n, err, want)
			}
		}
		res, err := w.Recent(t.Context(), schema, "data", warehouse.ColSequence, 1)
		if err != nil {
			t.Fatalf("Recent(%q): %v", schema, err)
		}
		if len(res.Rows) != 1 || res.Rows[0][0] != "b" {
			t.Errorf("Recent(%q, limit 1) = %v, want the row with the highest sequence (b)", schema, res.Rows)
		}
	}
	if tables, err := w.Tables(t.Context(), "no_such_schema"); err != nil || len(tables) != 0 {
		t.Errorf("Tables of a missing schema = %v, %v; want an empty map", tables, err)
	}
	if n, err := w.CountRows(t.Context(), "no_such_schema", "data"); err != nil || n != 0 {
		t.Errorf("CountRows of a missing schema = %d, %v; want 0", n, err)
	}
}
