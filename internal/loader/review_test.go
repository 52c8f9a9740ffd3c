package loader

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/pgtest"
	"github.com/hookhouse/hookhouse/internal/state"
	"github.com/hookhouse/hookhouse/internal/warehouse"
	"github.com/hookhouse/hookhouse/internal/warehouse/postgres"
)

// engines opens a fresh, empty warehouse of each kind.
var engines = []struct {
	name string
	open func(t *testing.T) warehouse.Warehouse
	// keywords lists the engine's reserved words (every category that cannot
	// be used as a bare identifier everywhere).
	keywords string
}{
	{"duckdb", func(t *testing.T) warehouse.Warehouse {
		_, wh := openLogAndWarehouse(t)
		return wh
	}, `SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category <> 'unreserved' ORDER BY 1`},
	{"postgres", func(t *testing.T) warehouse.Warehouse {
		dsn, err := pgtest.Shared(t).NewDatabase(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		wh, err := postgres.Open(context.Background(), dsn, postgres.Options{}, quiet)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { wh.Close() })
		return wh
	}, `SELECT word FROM pg_get_keywords() WHERE catcode <> 'U' ORDER BY 1`},
}

// TestKeywordSchemasKeepLoading: an integration whose schema is a reserved word
// of the warehouse ("order", "select", "group"…) loads, rejects a record, and
// still loads after a restart, when the loader counts the rejected rows of
// <schema>._sdc_rejected. Every reserved keyword of each engine that the control
// store accepts as a schema name is tried.
func TestKeywordSchemasKeepLoading(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			wh := e.open(t)
			res, err := wh.Query(t.Context(), e.keywords, 0)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			log, err := state.OpenPebble(filepath.Join(dir, "state"), quiet, state.Options{MinFreeBytes: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer log.Close()
			ctl, err := control.Open(log, state.ErrNotFound, quiet)
			if err != nil {
				t.Fatal(err)
			}
			var ins []control.Integration
			var refused []string
			for _, row := range res.Rows {
				word := fmt.Sprint(row[0])
				in, err := ctl.Create(control.NewIntegration{Name: word, Type: "vero"}, time.Now())
				if err != nil {
					refused = append(refused, word) // e.g. "temp": reserved by control
					continue
				}
				if in.Schema != word {
					t.Fatalf("integration %q got schema %q", word, in.Schema)
				}
				ins = append(ins, *in)
			}
			if len(ins) < 50 {
				t.Fatalf("only %d keywords became schemas (refused: %v)", len(ins), refused)
			}
			t.Logf("%d reserved keywords as schemas; control refused %v", len(ins), refused)
			ctx := t.Context()
			for _, in := range ins {
				good, bad := []byte(`{"type":"sent","n":1}`), []byte(`{"type":"bad\u0000"}`)
				if _, err := log.Append(ctx, in.ID, time.Now(), [][]byte{good, bad}); err != nil {
					t.Fatal(err)
				}
			}
			opts := Options{Installation: ctl.Installation(), BatchWait: time.Hour}
			l := New(log, wh, ctl, opts, quiet)
			l.Start()
			for _, in := range ins {
				mustSync(t, l, in.ID)
			}
			if err := l.Close(ctx); err != nil {
				t.Fatal(err)
			}
			// Restart: prepare counts the rejected rows of every keyword schema.
			for _, in := range ins {
				if _, err := log.Append(ctx, in.ID, time.Now(), [][]byte{[]byte(`{"type":"opened"}`)}); err != nil {
					t.Fatal(err)
				}
			}
			l = New(log, wh, ctl, opts, quiet)
			l.Start()
			defer l.Close(ctx)
			for _, in := range ins {
				mustSync(t, l, in.ID)
				if s := l.Stats(in.ID); s.Loaded != 2 || s.Rejected != 1 || s.Backlog != 0 || s.Error != "" {
					t.Errorf("schema %s after restart: stats %+v, want 2 loaded, 1 rejected", in.Schema, s)
				}
				n, err := wh.CountRows(ctx, in.Schema, warehouse.DataTable)
				if err != nil || n != 2 {
					t.Errorf("schema %s: %d data rows, %v; want 2", in.Schema, n, err)
				}
			}
		})
	}
}

// TestForeignLoadPositionIsRefused: a fresh installation (new data directory)
// pointed at a warehouse another installation loaded must not take over the
// other's load position, which would skip its own records. It refuses loudly:
// Sync fails with ErrStateMismatch, Stats carries the reason, LastError is set,
// and nothing is written. Once the operator removes the old position, every
// record loads.
func TestForeignLoadPositionIsRefused(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			wh := e.open(t)
			ctx := t.Context()
			in := control.Integration{ID: 1, Name: "Stitch Vero", Type: "vero", Schema: "stitch_vero"}
			bodies := veroSamples(t)

			// The old installation loads 14 records.
			oldLog, _ := openLogAndWarehouse(t)
			if _, err := oldLog.Append(ctx, 1, time.Now(), bodies); err != nil {
				t.Fatal(err)
			}
			old := New(oldLog, wh, fixedIntegrations{in}, Options{Installation: "old-install", BatchWait: time.Hour}, quiet)
			old.Start()
			mustSync(t, old, 1)
			old.Close(ctx)

			// A new installation with its own log receives 3.
			newLog, _ := openLogAndWarehouse(t)
			if _, err := newLog.Append(ctx, 1, time.Now(), bodies[:3]); err != nil {
				t.Fatal(err)
			}
			l := New(newLog, wh, fixedIntegrations{in}, Options{Installation: "new-install", BatchWait: time.Hour}, quiet)
			l.Start()
			defer l.Close(ctx)
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := l.Sync(sctx, 1)
			cancel()
			if !errors.Is(err, warehouse.ErrStateMismatch) || !strings.Contains(err.Error(), "old-install") {
				t.Fatalf("Sync = %v, want ErrStateMismatch naming the other installation", err)
			}
			s := l.Stats(1)
			if s.Loaded != 0 || s.Backlog != 3 || !strings.Contains(s.Error, "another hookhouse installation") {
				t.Errorf("stats %+v: want 0 loaded, 3 waiting and the reason", s)
			}
			if lerr, _ := l.LastError(); lerr == nil {
				t.Error("LastError is nil: /status would not show the loader as degraded")
			}
			if n, _ := wh.CountRows(ctx, "stitch_vero", "data"); n != 14 {
				t.Fatalf("data has %d rows, want the old installation's 14 only", n)
			}

			// What the message tells the operator: remove the other's row.
			takeOver(t, wh, 1, "stitch_vero", "new-install")
			mustSync(t, l, 1)
			if n, _ := wh.CountRows(ctx, "stitch_vero", "data"); n != 17 {
				t.Fatalf("data has %d rows after the takeover, want 14 + 3", n)
			}
			if s := l.Stats(1); s.Loaded != 3 || s.Error != "" {
				t.Errorf("stats after the takeover %+v", s)
			}
		})
	}
}

// takeOver hands integration's load position to installation at position 0,
// what an operator does by deleting the other installation's row (the
// embedded DuckDB file cannot be written from outside while the server runs,
// so the test goes through the fence with the stored state as Prev).
func takeOver(t *testing.T, wh warehouse.Warehouse, integration int64, schema, installation string) {
	t.Helper()
	states, err := wh.LoadState(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	err = wh.Load(t.Context(), &warehouse.Batch{Integration: integration, Schema: schema,
		Prev: states[integration], State: warehouse.State{Installation: installation}})
	if err != nil {
		t.Fatalf("take over integration %d: %v", integration, err)
	}
}

// TestLogOlderThanWarehouseIsRefused: the same installation's data directory
// restored from an older backup has a log that ends before the warehouse's load
// position. New records would get positions the warehouse counts as loaded, so
// loading is refused instead of skipping them.
func TestLogOlderThanWarehouseIsRefused(t *testing.T) {
	log, wh := openLogAndWarehouse(t)
	ctx := t.Context()
	in := control.Integration{ID: 1, Name: "Stitch Vero", Type: "vero", Schema: "stitch_vero"}
	if err := wh.Load(ctx, &warehouse.Batch{Integration: 1, Schema: "stitch_vero",
		State: warehouse.State{Installation: "inst", Position: 10, Sequence: 10}}); err != nil {
		t.Fatal(err)
	}
	if _, err := log.Append(ctx, 1, time.Now(), veroSamples(t)[:3]); err != nil {
		t.Fatal(err)
	}
	l := New(log, wh, fixedIntegrations{in}, Options{Installation: "inst", BatchWait: time.Hour}, quiet)
	l.Start()
	defer l.Close(ctx)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := l.Sync(sctx, 1)
	if !errors.Is(err, warehouse.ErrStateMismatch) || !strings.Contains(err.Error(), "log ends at 3") {
		t.Fatalf("Sync = %v, want ErrStateMismatch saying the log is older", err)
	}
	if n, _ := wh.CountRows(ctx, "stitch_vero", "data"); n != 0 {
		t.Fatalf("%d rows loaded, want none", n)
	}
}

// TestTwoLoadersOneIntegration runs two loaders of one installation on one log
// and one warehouse at once (as two cluster nodes would without a lease): the
// fence lets only one commit each batch, so every record is loaded exactly once.
func TestTwoLoadersOneIntegration(t *testing.T) {
	log, wh := openLogAndWarehouse(t)
	ctx := t.Context()
	in := control.Integration{ID: 1, Name: "Stitch Vero", Type: "vero", Schema: "stitch_vero"}
	bodies := veroSamples(t)
	opts := Options{Installation: "inst", BatchSize: 7, BatchWait: time.Millisecond}
	a, b := New(log, wh, fixedIntegrations{in}, opts, quiet), New(log, wh, fixedIntegrations{in}, opts, quiet)
	a.Start()
	b.Start()
	defer a.Close(ctx)
	defer b.Close(ctx)
	for range 20 {
		if _, err := log.Append(ctx, 1, time.Now(), bodies); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := wh.LoadState(ctx)
		if err == nil && st[1].Position == 280 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("loading did not reach position 280 within 60 s: %v %v", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	res, err := wh.Query(ctx, `SELECT count(*), count(DISTINCT __sdc_primary_key), count(DISTINCT _sdc_sequence) FROM stitch_vero.data`, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(res.Rows[0]...); got != "280 280 280" {
		t.Fatalf("rows, distinct keys, distinct sequences = %s; want 280 of each", got)
	}
}

// mutableIntegrations is a control store whose integrations a test can delete.
type mutableIntegrations struct {
	mu  sync.Mutex
	ins []control.Integration
}

func (m *mutableIntegrations) AllIntegrations() []control.Integration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]control.Integration{}, m.ins...)
}

func (m *mutableIntegrations) delete(id int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	for i := range m.ins {
		if m.ins[i].ID == id {
			m.ins[i].DeletedAt = &now
		}
	}
}

// TestDeletedIntegrationWorkerStops: deleting an integration while the server
// runs stops its worker once everything accepted is loaded.
func TestDeletedIntegrationWorkerStops(t *testing.T) {
	log, wh := openLogAndWarehouse(t)
	ctx := t.Context()
	ctl := &mutableIntegrations{ins: []control.Integration{{ID: 1, Name: "a", Type: "vero", Schema: "a"}}}
	l := New(log, wh, ctl, Options{Installation: "inst", BatchWait: time.Hour}, quiet)
	l.Start()
	defer l.Close(ctx)
	if _, err := log.Append(ctx, 1, time.Now(), veroSamples(t)[:2]); err != nil {
		t.Fatal(err)
	}
	mustSync(t, l, 1)
	if _, err := log.Append(ctx, 1, time.Now(), veroSamples(t)[2:5]); err != nil {
		t.Fatal(err)
	}
	ctl.delete(1)
	l.mu.Lock()
	w := l.workers[1]
	l.mu.Unlock()
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the worker of a deleted integration is still running after 30 s")
	}
	if n, _ := wh.CountRows(ctx, "a", "data"); n != 5 {
		t.Fatalf("%d rows, want 5: the records accepted before the deletion must load first", n)
	}
	time.Sleep(500 * time.Millisecond) // a few supervisor rounds: it must not start another
	l.mu.Lock()
	again := l.workers[1]
	l.mu.Unlock()
	if again != w {
		t.Fatal("the supervisor started a new worker for the deleted integration")
	}
}

// failingCounts makes CountRows fail, as it did for keyword schemas.
type failingCounts struct{ warehouse.Warehouse }

func (failingCounts) CountRows(context.Context, string, string) (int64, error) {
	return 0, errors.New("count failed")
}

// TestStatsWhilePrepareFails: when a restarted loader cannot finish preparing,
// the stats still count what the warehouse's position says was handled, instead
// of 0 loaded and everything in the backlog.
func TestStatsWhilePrepareFails(t *testing.T) {
	log, wh := openLogAndWarehouse(t)
	ctx := t.Context()
	in := control.Integration{ID: 1, Name: "a", Type: "vero", Schema: "a"}
	if _, err := log.Append(ctx, 1, time.Now(), veroSamples(t)); err != nil {
		t.Fatal(err)
	}
	l := New(log, wh, fixedIntegrations{in}, Options{Installation: "inst", BatchWait: time.Hour}, quiet)
	l.Start()
	mustSync(t, l, 1)
	l.Close(ctx)

	l = New(log, failingCounts{wh}, fixedIntegrations{in}, Options{Installation: "inst", BatchWait: time.Hour}, quiet)
	l.Start()
	defer l.Close(ctx)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := log.Append(ctx, 1, time.Now(), veroSamples(t)[:1]); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(sctx, 1); err == nil || !strings.Contains(err.Error(), "count failed") {
		t.Fatalf("Sync = %v, want the count failure", err)
	}
	if s := l.Stats(1); s.Loaded != 14 || s.Backlog != 1 || s.Error == "" {
		t.Fatalf("stats %+v: want 14 loaded, 1 waiting and the error", s)
	}
}

// slowLoads blocks every Load until its context ends, like a huge batch.
type slowLoads struct {
	warehouse.Warehouse
	started chan struct{}
}

func (s slowLoads) Load(ctx context.Context, b *warehouse.Batch) error {
	select {
	case s.started <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return ctx.Err()
}

// TestCloseCancelsLoadsAtTheDeadline: a load still running when Close's deadline
// nears is cancelled through the hard-stop context, and Close returns only after
// the worker has, so the warehouse and the log can be closed safely.
func TestCloseCancelsLoadsAtTheDeadline(t *testing.T) {
	log, wh := openLogAndWarehouse(t)
	in := control.Integration{ID: 1, Name: "a", Type: "vero", Schema: "a"}
	if _, err := log.Append(t.Context(), 1, time.Now(), veroSamples(t)); err != nil {
		t.Fatal(err)
	}
	slow := slowLoads{wh, make(chan struct{}, 1)}
	l := New(log, slow, fixedIntegrations{in}, Options{Installation: "inst", BatchWait: time.Millisecond}, quiet)
	l.Start()
	select {
	case <-slow.started:
	case <-time.After(30 * time.Second):
		t.Fatal("no load started within 30 s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	if err := l.Close(ctx); err != nil {
		t.Fatalf("Close = %v, want nil: the hard stop cancels the load", err)
	}
	t.Logf("Close returned after %v", time.Since(start).Round(time.Millisecond))
	l.mu.Lock()
	w := l.workers[1]
	l.mu.Unlock()
	select {
	case <-w.done:
	default:
		t.Fatal("Close returned while the worker still runs")
	}
	// Nothing uses them any more: closing is safe, and nothing was loaded.
	wh.Close()
	log.Close()
}

// TestRestartKeepsLoadStats: after a restart an idle integration still shows when
// it last loaded (from the warehouse's load state), and its _sdc_rejected table
// exists from the first batch on, before anything was rejected.
func TestRestartKeepsLoadStats(t *testing.T) {
	log, wh := openLogAndWarehouse(t)
	ctx := t.Context()
	in := control.Integration{ID: 1, Name: "a", Type: "vero", Schema: "a"}
	if _, err := log.Append(ctx, 1, time.Now(), veroSamples(t)[:2]); err != nil {
		t.Fatal(err)
	}
	l := New(log, wh, fixedIntegrations{in}, Options{Installation: "inst", BatchWait: time.Hour}, quiet)
	l.Start()
	mustSync(t, l, 1)
	before := l.Stats(1).LastLoadedAt
	l.Close(ctx)
	if n, err := wh.CountRows(ctx, "a", warehouse.RejectedTable); err != nil || n != 0 {
		t.Fatalf("CountRows(a._sdc_rejected) = %d, %v", n, err)
	}
	if res, err := wh.Query(ctx, `SELECT count(*) FROM a._sdc_rejected`, 1); err != nil || fmt.Sprint(res.Rows[0][0]) != "0" {
		t.Fatalf("querying a._sdc_rejected before any rejection: %v, %v", res, err)
	}

	l = New(log, wh, fixedIntegrations{in}, Options{Installation: "inst", BatchWait: time.Hour}, quiet)
	l.Start()
	defer l.Close(ctx)
	mustSync(t, l, 1)
	s := l.Stats(1)
	if s.LastLoadedAt.IsZero() || s.LastLoadedAt.Sub(before).Abs() > time.Second || s.Loaded != 2 {
		t.Fatalf("after a restart: stats %+v, want 2 loaded, last at %v", s, before)
	}
}
