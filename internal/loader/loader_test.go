package loader

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	duckdbdriver "github.com/duckdb/duckdb-go/v2"
	"github.com/jackc/pgx/v5"

	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/pgtest"
	"github.com/hookhouse/hookhouse/internal/samples"
	"github.com/hookhouse/hookhouse/internal/state"
	"github.com/hookhouse/hookhouse/internal/warehouse"
	"github.com/hookhouse/hookhouse/internal/warehouse/duckdb"
	"github.com/hookhouse/hookhouse/internal/warehouse/postgres"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func veroSamples(tb testing.TB) [][]byte {
	tb.Helper()
	files, _ := filepath.Glob(filepath.Join(samples.VeroDir(), "*.json"))
	sort.Strings(files)
	if len(files) != 14 {
		tb.Fatalf("found %d Vero samples, want 14", len(files))
	}
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

type fixedIntegrations []control.Integration

func (f fixedIntegrations) AllIntegrations() []control.Integration { return f }

func openLogAndWarehouse(tb testing.TB) (*state.Pebble, *duckdb.DB) {
	tb.Helper()
	dir := tb.TempDir()
	log, err := state.OpenPebble(filepath.Join(dir, "state"), quiet, state.Options{MinFreeBytes: 1})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { log.Close() })
	wh, err := duckdb.Open(context.Background(), filepath.Join(dir, "wh.duckdb"), quiet)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { wh.Close() })
	return log, wh
}

// TestLoaderRetention runs the real loader on a real log and DuckDB: records are
// loaded, then removed from the log once loaded and older than the retention
// window, while unloaded or young records stay.
func TestLoaderRetention(t *testing.T) {
	log, wh := openLogAndWarehouse(t)
	ctx := context.Background()
	in := control.Integration{ID: 1, Name: "Stitch Vero", Type: "vero", Schema: "stitch_vero"}
	old := time.Now().Add(-time.Hour)
	bodies := veroSamples(t)
	if _, err := log.Append(ctx, 1, old, bodies); err != nil {
		t.Fatal(err)
	}
	l := New(log, wh, fixedIntegrations{in}, Options{BatchWait: 10 * time.Millisecond, Retention: 30 * time.Minute, TrimEvery: 10 * time.Millisecond}, quiet)
	l.Start()
	defer l.Close(ctx)
	deadline := time.Now().Add(30 * time.Second)
	for {
		recs, err := log.Read(ctx, 1, 0, 100, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d old, loaded records still in the log: retention did not remove them (stats %+v)", len(recs), l.Stats(1))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Young records stay after loading (and after the trims that follow).
	if _, err := log.Append(ctx, 1, time.Now(), bodies[:2]); err != nil {
		t.Fatal(err)
	}
	mustSync(t, l, 1)
	time.Sleep(100 * time.Millisecond) // several TrimEvery periods
	recs, _ := log.Read(ctx, 1, 0, 100, 1<<20)
	if len(recs) != 2 || recs[0].Position != 15 {
		t.Fatalf("young records: %d in the log, want 2 from position 15", len(recs))
	}
	res, err := wh.Query(ctx, "select count(*) from stitch_vero.data", 1)
	if err != nil || fmt.Sprint(res.Rows[0][0]) != "16" {
		t.Fatalf("warehouse rows = %v, %v; want 16", res, err)
	}
	if s := l.Stats(1); s.Received != 16 || s.Loaded != 16 || s.Backlog != 0 {
		t.Fatalf("stats = %+v", s)
	}
}

// mustSync loads everything in the log for integration, within 30 s.
func mustSync(t testing.TB, l *Loader, integration int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Sync(ctx, integration); err != nil {
		t.Fatalf("Sync(%d): %v (stats %+v)", integration, err, l.Stats(integration))
	}
}

// TestLoaderResumesFromWarehouse: a new loader on the same log and warehouse
// continues from the stored position, loading nothing twice.
func TestLoaderResumesFromWarehouse(t *testing.T) {
	log, wh := openLogAndWarehouse(t)
	ctx := context.Background()
	in := control.Integration{ID: 1, Name: "Stitch Vero", Type: "vero", Schema: "stitch_vero"}
	bodies := veroSamples(t)
	run := func() *Loader {
		l := New(log, wh, fixedIntegrations{in}, Options{Installation: "inst", BatchWait: time.Hour}, quiet)
		l.Start()
		mustSync(t, l, 1) // Sync does not wait for BatchWait
		return l
	}
	log.Append(ctx, 1, time.Now(), bodies)
	l := run()
	l.Close(ctx)
	log.Append(ctx, 1, time.Now(), bodies[:5])
	l = run()
	defer l.Close(ctx)
	if s := l.Stats(1); s.Loaded != 19 {
		t.Fatalf("after restart stats = %+v, want 19 loaded", s)
	}
	res, _ := wh.Query(ctx, "select count(*), count(distinct __sdc_primary_key), count(distinct _sdc_sequence) from stitch_vero.data", 1)
	if fmt.Sprintf("%v %v %v", res.Rows[0]...) != "19 19 19" {
		t.Fatalf("rows = %v", res.Rows[0])
	}
}

const benchBatch = 10_000

// benchLog fills a log with Vero-shaped records, rotating over the 14 samples.
func benchLog(b *testing.B) (*state.Pebble, *duckdb.DB, int) {
	log, wh := openLogAndWarehouse(b)
	bodies := veroSamples(b)
	const total = 5 * benchBatch
	for i := 0; i < total; i += 1000 {
		chunk := make([][]byte, 1000)
		for j := range chunk {
			chunk[j] = bodies[(i+j)%len(bodies)]
		}
		if _, err := log.Append(context.Background(), 1, time.Now(), chunk); err != nil {
			b.Fatal(err)
		}
	}
	return log, wh, total
}

// BenchmarkLoaderVero is the loader's whole path per 10,000-record batch: read
// from the log, flatten (including subtables), and commit into DuckDB.
func BenchmarkLoaderVero(b *testing.B) {
	log, wh, total := benchLog(b)
	benchmarkLoader(b, log, wh, total)
}

// BenchmarkLoaderVeroPostgres is BenchmarkLoaderVero into PostgreSQL.
func BenchmarkLoaderVeroPostgres(b *testing.B) {
	log, _, total := benchLog(b)
	dsn, err := pgtest.Shared(b).NewDatabase(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	wh, err := postgres.Open(context.Background(), dsn, postgres.Options{}, quiet)
	if err != nil {
		b.Fatal(err)
	}
	defer wh.Close()
	benchmarkLoader(b, log, wh, total)
}

func benchmarkLoader(b *testing.B, log *state.Pebble, wh warehouse.Warehouse, total int) {
	in := control.Integration{ID: 1, Name: "Bench", Type: "vero", Schema: "bench"}
	l := New(log, wh, fixedIntegrations{in}, Options{Installation: "bench"}, quiet)
	w := newWorker(in)
	w.soft, w.hard = l.ctx, l.hard // as startWorker sets them on a single node
	st, fl, err := l.prepare(w)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	var ready *prepared
	for i := 0; i < b.N; i++ {
		// As the worker does: commit one batch while flattening the next.
		if ready == nil {
			if st.Position >= uint64(total) {
				// Read the same records again (rows are appended anew): set the
				// stored position back to 0, as a reset would.
				rewound := warehouse.State{Installation: st.Installation, Sequence: st.Sequence}
				if err := wh.Load(ctx, &warehouse.Batch{Integration: 1, Schema: "bench", Prev: st, State: rewound}); err != nil {
					b.Fatal(err)
				}
				st = rewound
			}
			if ready, err = l.prepareBatch(ctx, w, fl, st); err != nil {
				b.Fatal(err)
			}
		}
		following, err := l.commitPipelined(ctx, w, fl, ready)
		if err != nil {
			b.Fatal(err)
		}
		st, ready = ready.batch.State, following
	}
	b.ReportMetric(float64(b.N*benchBatch)/time.Since(start).Seconds(), "records/s")
}

// veroTables flattens 10,000 Vero-shaped records the way the loader does.
func veroTables(b *testing.B) []warehouse.Table {
	bodies := veroSamples(b)
	fl := NewFlattener("", 1000, nil)
	now := time.Now()
	for i := 0; i < benchBatch; i++ {
		fl.Add(Input{ID: [16]byte{byte(i), byte(i >> 8)}, ReceivedAt: now, Sequence: int64(i + 1), Body: bodies[i%len(bodies)]})
	}
	tables, _, _ := fl.Take(now)
	return tables
}

// BenchmarkRawCopyVeroPostgres copies the very rows the loader produces for the
// same records with bare COPY on one connection, outside any transaction: the
// floor BenchmarkLoaderVeroPostgres is compared with.
func BenchmarkRawCopyVeroPostgres(b *testing.B) {
	tables := veroTables(b)
	ctx := context.Background()
	dsn, err := pgtest.Shared(b).NewDatabase(ctx)
	if err != nil {
		b.Fatal(err)
	}
	wh, err := postgres.Open(ctx, dsn, postgres.Options{}, quiet)
	if err != nil {
		b.Fatal(err)
	}
	empty := make([]warehouse.Table, len(tables))
	for i, t := range tables {
		empty[i] = warehouse.Table{Name: t.Name, Columns: t.Columns}
	}
	if err := wh.Load(ctx, &warehouse.Batch{Integration: 1, Schema: "bench", Tables: empty}); err != nil {
		b.Fatal(err)
	}
	wh.Close()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	rows := make([][][]any, len(tables))
	names := make([][]string, len(tables))
	for ti, t := range tables {
		for _, c := range t.Columns {
			names[ti] = append(names[ti], c.Name)
		}
		for _, r := range t.Rows {
			v := make([]any, len(t.Columns))
			copy(v, r)
			rows[ti] = append(rows[ti], v)
		}
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for ti, t := range tables {
			if _, err := conn.CopyFrom(ctx, pgx.Identifier{"bench", t.Name}, names[ti], pgx.CopyFromRows(rows[ti])); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*benchBatch)/time.Since(start).Seconds(), "records/s")
}

// BenchmarkRawAppenderVero appends the very rows the loader produces for the same
// records (data and subtables, already flattened) with a bare DuckDB Appender and
// no transaction, on a DuckDB opened with the adapter's settings: the floor the
// loader is compared with.
func BenchmarkRawAppenderVero(b *testing.B) {
	tables := veroTables(b)
	dir := b.TempDir()
	path := filepath.Join(dir, "raw.duckdb")
	wh, err := duckdb.Open(context.Background(), path, quiet)
	if err != nil {
		b.Fatal(err)
	}
	empty := make([]warehouse.Table, len(tables))
	for i, t := range tables {
		empty[i] = warehouse.Table{Name: t.Name, Columns: t.Columns}
	}
	if err := wh.Load(context.Background(), &warehouse.Batch{Integration: 1, Schema: "bench", Tables: empty}); err != nil {
		b.Fatal(err)
	}
	wh.Close()
	db, err := sql.Open("duckdb", duckdb.DSN(path))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	rows := make([][][]driver.Value, len(tables))
	for ti, t := range tables {
		for _, r := range t.Rows {
			v := make([]driver.Value, len(t.Columns))
			for j := range r {
				v[j] = r[j]
			}
			rows[ti] = append(rows[ti], v)
		}
	}
	b.ResetTimer()
	start := time.Now()
	err = conn.Raw(func(dc any) error {
		for i := 0; i < b.N; i++ {
			for ti, t := range tables {
				a, err := duckdbdriver.NewAppender(dc.(driver.Conn), "", "bench", t.Name)
				if err != nil {
					return err
				}
				for _, r := range rows[ti] {
					if err := a.AppendRow(r...); err != nil {
						return err
					}
				}
				if err := a.Close(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N*benchBatch)/time.Since(start).Seconds(), "records/s")
}

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.CloseShared()
	os.Exit(code)
}
