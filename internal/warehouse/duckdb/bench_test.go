package duckdb

import (
	"context"
	"database/sql/driver"
	"fmt"
	"testing"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// benchColumns are 12 columns of a typical Vero data table.
var benchColumns = []warehouse.Column{
	{Name: warehouse.ColPrimaryKey, Type: warehouse.Text},
	{Name: warehouse.ColReceivedAt, Type: warehouse.Timestamp},
	{Name: warehouse.ColBatchedAt, Type: warehouse.Timestamp},
	{Name: warehouse.ColSequence, Type: warehouse.BigInt},
	{Name: warehouse.ColTableVersion, Type: warehouse.BigInt},
	{Name: "type", Type: warehouse.Text},
	{Name: "user__id", Type: warehouse.BigInt},
	{Name: "user__email", Type: warehouse.Text},
	{Name: "campaign__id", Type: warehouse.BigInt},
	{Name: "campaign__subject", Type: warehouse.Text},
	{Name: "amount", Type: warehouse.Double},
	{Name: "opened", Type: warehouse.Boolean},
}

func benchRow(i int64, now time.Time) []any {
	return []any{
		fmt.Sprintf("0b3c6f1e-8a55-4c1d-9f7e-%012d", i), now, now, 1_714_557_600_000_000_000 + i, int64(0),
		"email_opened", i % 50_000, fmt.Sprintf("user%d@example.com", i%50_000), i % 300,
		"Your weekly digest", float64(i%1000) / 10, i%3 == 0,
	}
}

// BenchmarkAppender is the floor: the raw DuckDB Appender, one op = one row,
// autocommitted at the end.
func BenchmarkAppender(b *testing.B) {
	d := openTest(b)
	ctx := context.Background()
	if err := d.Load(ctx, &warehouse.Batch{Integration: 1, Schema: "bench",
		Tables: []warehouse.Table{{Name: "data", Columns: benchColumns}}}); err != nil {
		b.Fatal(err)
	}
	conn, err := d.rw.Conn(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	now := time.Now().UTC()
	rows := make([][]driver.Value, 10_000)
	for i := range rows {
		r := benchRow(int64(i), now)
		rows[i] = make([]driver.Value, len(r))
		for j := range r {
			rows[i][j] = r[j]
		}
	}
	b.ResetTimer()
	err = conn.Raw(func(dc any) error {
		a, err := duckdb.NewAppender(dc.(driver.Conn), "", "bench", "data")
		if err != nil {
			return err
		}
		for i := 0; i < b.N; i++ {
			if err := a.AppendRow(rows[i%len(rows)]...); err != nil {
				return err
			}
		}
		return a.Close()
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkLoad measures Load: one op = one committed 10,000-row batch of the same
// 12 columns, with type checks, catalog lookups and the state upsert.
func BenchmarkLoad(b *testing.B) {
	benchmarkLoad(b, "")
}

// BenchmarkLoadUpsert is BenchmarkLoad with a key: every batch replaces 10,000 keys
// of a table that holds 50,000.
func BenchmarkLoadUpsert(b *testing.B) {
	benchmarkLoad(b, "user__id")
}

func benchmarkLoad(b *testing.B, key string) {
	const batchRows = 10_000
	d := openTest(b)
	ctx := context.Background()
	now := time.Now().UTC()
	batches := make([]*warehouse.Batch, 5)
	for k := range batches {
		rows := make([][]any, batchRows)
		for i := range rows {
			rows[i] = benchRow(int64(k*batchRows+i), now)
		}
		batches[k] = &warehouse.Batch{Integration: 1, Schema: "bench", Key: key,
			Tables: []warehouse.Table{{Name: "data", Columns: benchColumns, Rows: rows}}}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bt := batches[i%len(batches)]
		bt.Prev = warehouse.State{Position: uint64(i) * batchRows}
		bt.State = warehouse.State{Position: uint64(i+1) * batchRows, Sequence: int64(i)}
		if err := d.Load(ctx, bt); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batchRows)/b.Elapsed().Seconds(), "rows/s")
}
