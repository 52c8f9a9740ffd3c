package loader

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/state"
	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// resetEnv is a real log, control store and warehouse with one integration.
type resetEnv struct {
	log *state.Pebble
	ctl *control.Store
	wh  warehouse.Warehouse
	in  *control.Integration
}

func newResetEnv(t *testing.T, wh warehouse.Warehouse) *resetEnv {
	t.Helper()
	log, err := state.OpenPebble(filepath.Join(t.TempDir(), "state"), quiet, state.Options{MinFreeBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	ctl, err := control.Open(log, state.ErrNotFound, quiet)
	if err != nil {
		t.Fatal(err)
	}
	in, err := ctl.Create(control.NewIntegration{Name: "Stitch Vero", Type: "vero"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &resetEnv{log: log, ctl: ctl, wh: wh, in: in}
}

func (e *resetEnv) loader(opts Options) *Loader {
	opts.Installation = e.ctl.Installation()
	opts.Resets = e.ctl
	if opts.BatchWait == 0 {
		opts.BatchWait = time.Hour
	}
	l := New(e.log, e.wh, e.ctl, opts, quiet)
	l.Start()
	return l
}

// append adds n records: every fifth has an array (a subtable row per
// element), every seventh is rejected (a NUL in a string).
func (e *resetEnv) append(t *testing.T, from, n int, at time.Time) {
	t.Helper()
	bodies := make([][]byte, n)
	for i := range bodies {
		k := from + i
		switch {
		case k%7 == 0:
			bodies[i] = []byte(`{"type":"bad\u0000","k":` + fmt.Sprint(k) + `}`)
		case k%5 == 0:
			bodies[i] = fmt.Appendf(nil, `{"type":"sent","k":%d,"items":[%d,%d]}`, k, k, k+1)
		default:
			bodies[i] = fmt.Appendf(nil, `{"type":"sent","k":%d}`, k)
		}
	}
	// Several records per millisecond: _sdc_sequence must count up within it.
	if _, err := e.log.Append(t.Context(), e.in.ID, at, bodies); err != nil {
		t.Fatal(err)
	}
}

// rows is every data row's key, receipt time and sequence, in sequence order,
// and the subtable and rejected counts.
func (e *resetEnv) rows(t *testing.T) (data [][]any, items, rejected int64) {
	t.Helper()
	res, err := e.wh.Query(t.Context(), `SELECT "__sdc_primary_key", "_sdc_received_at", "_sdc_sequence", "k" FROM "stitch_vero"."data" ORDER BY "_sdc_sequence"`, 0)
	if err != nil {
		t.Fatal(err)
	}
	items, err = e.wh.CountRows(t.Context(), "stitch_vero", "data__items")
	if err != nil {
		t.Fatal(err)
	}
	rejected, err = e.wh.CountRows(t.Context(), "stitch_vero", warehouse.RejectedTable)
	if err != nil {
		t.Fatal(err)
	}
	return res.Rows, items, rejected
}

// TestResetReloadsTheLog: a reset drops the tables and reloads every record
// in the log in order, with the same __sdc_primary_key, _sdc_received_at and
// _sdc_sequence, while records keep arriving; progress reaches its target.
func TestResetReloadsTheLog(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng.name, func(t *testing.T) {
			e := newResetEnv(t, eng.open(t))
			at := time.Now().Add(-time.Minute)
			for i := range 6 {
				e.append(t, i*40, 40, at.Add(time.Duration(i)*time.Millisecond))
			}
			l := e.loader(Options{BatchSize: 25})
			defer l.Close(context.Background())
			mustSync(t, l, e.in.ID)
			before, items, rejected := e.rows(t)
			if len(before) != 240-35 || items == 0 || rejected != 35 {
				t.Fatalf("before the reset: %d rows, %d items, %d rejected", len(before), items, rejected)
			}

			// Records keep arriving while the reset runs.
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 10 {
					e.append(t, 240+i*10, 10, time.Now())
				}
			}()
			p, err := l.Reset(t.Context(), e.in.ID, false)
			if err != nil {
				t.Fatal(err)
			}
			if p.From != 1 || p.Target < 240 || p.Total != int64(p.Target) || p.CommittedAt.IsZero() {
				t.Fatalf("progress right after the reset: %+v", p)
			}
			wg.Wait()
			mustSync(t, l, e.in.ID)
			after, items2, rejected2 := e.rows(t)
			if len(after) != 340-49 || rejected2 != 49 {
				t.Fatalf("after the reset: %d rows, %d rejected; want %d and 49", len(after), rejected2, 340-49)
			}
			if !reflect.DeepEqual(after[:len(before)], before) {
				t.Fatalf("reloaded rows differ from the originals:\nbefore %v\nafter  %v", before[:3], after[:3])
			}
			if items2 <= items {
				t.Fatalf("data__items: %d rows after, %d before", items2, items)
			}
			seen := map[any]bool{}
			for _, r := range after {
				if seen[r[0]] {
					t.Fatalf("key %v twice", r[0])
				}
				seen[r[0]] = true
			}
			s := l.Stats(e.in.ID)
			if s.Reset == nil || !s.Reset.Done() || s.Reset.Reloaded != s.Reset.Total || s.Loaded != 340-49 || s.Rejected != 49 {
				t.Fatalf("stats after the reload: %+v reset %+v", s, s.Reset)
			}
			got, _ := e.ctl.Integration(e.in.ID)
			if got.Reset == nil || got.Reset.CommittedAt == nil || got.Reset.FinishedAt == nil {
				t.Fatalf("recorded reset %+v: want committed and finished", got.Reset)
			}
		})
	}
}

// TestResetRefusedWhenTrimmed: after retention trimmed the log's head, a reset
// is refused with how much is gone, nothing changes; accepting a partial reset
// reloads what is left.
func TestResetRefusedWhenTrimmed(t *testing.T) {
	e := newResetEnv(t, engines[0].open(t))
	old := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e.append(t, 1, 12, old)
	l := e.loader(Options{Retention: time.Hour, TrimEvery: time.Nanosecond})
	defer l.Close(context.Background())
	mustSync(t, l, e.in.ID) // loads and trims the 12 old records
	e.append(t, 13, 5, time.Now())
	mustSync(t, l, e.in.ID)
	if recs, _ := e.log.Read(t.Context(), e.in.ID, 0, 1, 1); len(recs) != 1 || recs[0].Position != 13 {
		t.Fatalf("the log should start at 13 after the trim: %+v", recs)
	}
	before, _, _ := e.rows(t)
	_, err := l.Reset(t.Context(), e.in.ID, false)
	if !errors.Is(err, ErrPartial) {
		t.Fatalf("Reset = %v, want ErrPartial", err)
	}
	for _, want := range []string{"first 12 records", "positions 1–12", "retention of 1h0m0s", "--accept-partial"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal %q does not say %q", err, want)
		}
	}
	if after, _, _ := e.rows(t); len(after) != len(before) {
		t.Fatalf("a refused reset changed the table: %d rows, had %d", len(after), len(before))
	}
	p, err := l.Reset(t.Context(), e.in.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	if p.From != 13 || p.Total != 5 {
		t.Fatalf("partial reset progress %+v, want from 13, 5 records", p)
	}
	mustSync(t, l, e.in.ID)
	after, _, _ := e.rows(t)
	if len(after) != 5-1 { // 14 is rejected
		t.Fatalf("after a partial reset: %d rows, want 4", len(after))
	}
	if !reflect.DeepEqual(after, before[len(before)-4:]) {
		t.Fatalf("partial reload differs:\n%v\n%v", after, before[len(before)-4:])
	}
}

// TestResetRedoneAfterRestart: a reset recorded but not committed when the
// server stopped (crash between recording and the warehouse commit, or between
// the commit and recording it) is redone at the next start, and the result is
// the same: every record once, as before.
func TestResetRedoneAfterRestart(t *testing.T) {
	for _, committed := range []bool{false, true} {
		t.Run(fmt.Sprintf("warehouse-committed=%v", committed), func(t *testing.T) {
			e := newResetEnv(t, engines[0].open(t))
			e.append(t, 1, 50, time.Now())
			l := e.loader(Options{BatchSize: 20})
			mustSync(t, l, e.in.ID)
			before, items, rejected := e.rows(t)
			if err := l.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			// What a crash leaves behind.
			if _, err := e.ctl.SetReset(e.in.ID, &control.Reset{RequestedAt: time.Now().UTC(), From: 1, Target: 50}); err != nil {
				t.Fatal(err)
			}
			if committed {
				st, _ := e.wh.LoadState(t.Context())
				if err := e.wh.Reset(t.Context(), e.in.ID, e.in.Schema, st[e.in.ID], warehouse.State{Installation: e.ctl.Installation()}); err != nil {
					t.Fatal(err)
				}
			}
			l = e.loader(Options{BatchSize: 20})
			defer l.Close(context.Background())
			mustSync(t, l, e.in.ID)
			after, items2, rejected2 := e.rows(t)
			if !reflect.DeepEqual(after, before) || items2 != items || rejected2 != rejected {
				t.Fatalf("after the redone reset: %d rows %d items %d rejected; before %d %d %d", len(after), items2, rejected2, len(before), items, rejected)
			}
			got, _ := e.ctl.Integration(e.in.ID)
			if got.Reset == nil || got.Reset.CommittedAt == nil || got.Reset.FinishedAt == nil {
				t.Fatalf("recorded reset %+v: want it redone and finished", got.Reset)
			}
			if !committed {
				// It was really redone: the tables were made again by this loader.
				st, _ := e.wh.LoadState(t.Context())
				if st[e.in.ID].LoadedAt.Before(*got.Reset.CommittedAt) {
					t.Fatal("the load state predates the redone reset")
				}
			}
		})
	}
}

// TestResetWhilePaused: a paused integration is reset at once (its tables are
// dropped) but reloads only when loading resumes.
func TestResetWhilePaused(t *testing.T) {
	e := newResetEnv(t, engines[0].open(t))
	e.append(t, 1, 30, time.Now())
	l := e.loader(Options{BatchWait: 10 * time.Millisecond})
	defer l.Close(context.Background())
	mustSync(t, l, e.in.ID)
	before, _, _ := e.rows(t)
	waitStats := func(what string, ok func(Stats) bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !ok(l.Stats(e.in.ID)) {
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s: stats %+v", what, l.Stats(e.in.ID))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if _, err := e.ctl.SetPaused(e.in.ID, true, time.Now()); err != nil {
		t.Fatal(err)
	}
	waitStats("paused", func(s Stats) bool { return s.Paused })
	p, err := l.Reset(t.Context(), e.in.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	if p.Total != 30 || p.Reloaded != 0 || p.Done() {
		t.Fatalf("progress of a paused reset: %+v", p)
	}
	time.Sleep(300 * time.Millisecond) // a loader that ignored the pause would load now
	if n, err := e.wh.CountRows(t.Context(), "stitch_vero", warehouse.DataTable); err != nil || n != 0 {
		t.Fatalf("while paused after the reset: %d rows, %v", n, err)
	}
	if _, err := e.ctl.SetPaused(e.in.ID, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	waitStats("the reload", func(s Stats) bool { return s.Reset != nil && s.Reset.Done() })
	if after, _, _ := e.rows(t); !reflect.DeepEqual(after, before) {
		t.Fatalf("reloaded after resume: %d rows, want the %d originals", len(after), len(before))
	}
}
