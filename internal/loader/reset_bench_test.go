package loader

import (
	"context"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/pgtest"
	"github.com/hookhouse/hookhouse/internal/state"
	"github.com/hookhouse/hookhouse/internal/warehouse"
	"github.com/hookhouse/hookhouse/internal/warehouse/postgres"
)

// BenchmarkResetVero is the reload rate of a reset (docs/history.md): the
// whole path of Reset and the reload of 50,000 Vero-shaped records, through
// the real loader, log and DuckDB, per op one reset.
func BenchmarkResetVero(b *testing.B) {
	log, wh, total := benchLog(b)
	benchmarkReset(b, log, wh, total)
}

// BenchmarkResetVeroPostgres is BenchmarkResetVero into PostgreSQL.
func BenchmarkResetVeroPostgres(b *testing.B) {
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
	benchmarkReset(b, log, wh, total)
}

func benchmarkReset(b *testing.B, log *state.Pebble, wh warehouse.Warehouse, total int) {
	ctl, err := control.Open(log, state.ErrNotFound, quiet)
	if err != nil {
		b.Fatal(err)
	}
	in, err := ctl.Create(control.NewIntegration{Name: "Bench", Type: "vero"}, time.Now())
	if err != nil || in.ID != 1 {
		b.Fatalf("integration %v, %v: benchLog fills integration 1", in, err)
	}
	l := New(log, wh, ctl, Options{Installation: ctl.Installation(), Resets: ctl, BatchWait: time.Millisecond}, quiet)
	l.Start()
	defer l.Close(context.Background())
	ctx := context.Background()
	mustSync(b, l, in.ID)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := l.Reset(ctx, in.ID, false); err != nil {
			b.Fatal(err)
		}
		mustSync(b, l, in.ID)
	}
	b.ReportMetric(float64(b.N*total)/time.Since(start).Seconds(), "records/s")
	b.StopTimer()
	if n, err := wh.CountRows(ctx, in.Schema, warehouse.DataTable); err != nil || n != int64(total) {
		b.Fatalf("after the resets: %d rows, %v; want %d", n, err, total)
	}
}
