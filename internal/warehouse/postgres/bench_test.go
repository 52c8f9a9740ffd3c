package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

const benchRows = 10000

// benchColumns are 12 columns shaped like a Vero data table.
var benchColumns = []warehouse.Column{
	{Name: warehouse.ColPrimaryKey, Type: warehouse.Text},
	{Name: warehouse.ColReceivedAt, Type: warehouse.Timestamp},
	{Name: warehouse.ColBatchedAt, Type: warehouse.Timestamp},
	{Name: warehouse.ColSequence, Type: warehouse.BigInt},
	{Name: warehouse.ColTableVersion, Type: warehouse.BigInt},
	{Name: "type", Type: warehouse.Text},
	{Name: "user__id", Type: warehouse.BigInt},
	{Name: "user__email", Type: warehouse.Text},
	{Name: "campaign__name", Type: warehouse.Text},
	{Name: "amount", Type: warehouse.Double},
	{Name: "opened", Type: warehouse.Boolean},
	{Name: "changes__note", Type: warehouse.Text},
}

func benchBatchRows() [][]any {
	now := time.Now().UTC()
	rows := make([][]any, benchRows)
	for i := range rows {
		rows[i] = []any{
			fmt.Sprintf("0b6f1c2e-6a4d-4f7e-9d1b-%012d", i), now, now, now.UnixMilli()*1_000_000 + int64(i), int64(0),
			"email_opened", int64(100000 + i), fmt.Sprintf("user%d@example.com", i), "Spring newsletter",
			float64(i) * 1.25, i%2 == 0, nil,
		}
	}
	return rows
}

// BenchmarkRawCopy is the floor: pgx CopyFrom of the same rows into an existing
// table, no transaction around it, no checks.
func BenchmarkRawCopy(b *testing.B) {
	db, dsn := openDB(b)
	mustLoad(b, db, &warehouse.Batch{Integration: 1, Schema: "bench", Tables: []warehouse.Table{{Name: "data", Columns: benchColumns}}})
	conn := rawConn(b, dsn)
	rows := benchBatchRows()
	names := make([]string, len(benchColumns))
	for i, c := range benchColumns {
		names[i] = c.Name
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := conn.CopyFrom(context.Background(), pgx.Identifier{"bench", "data"}, names, pgx.CopyFromRows(rows)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchRows)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkLoad is Load of 10,000-row batches: catalog check, COPY, load state and
// commit in one transaction.
func BenchmarkLoad(b *testing.B) {
	db, _ := openDB(b)
	rows := benchBatchRows()
	pos := uint64(0)
	b.ResetTimer()
	for b.Loop() {
		pos++
		mustLoad(b, db, &warehouse.Batch{Integration: 1, Schema: "bench",
			Prev: warehouse.State{Position: pos - 1}, State: warehouse.State{Position: pos},
			Tables: []warehouse.Table{{Name: "data", Columns: benchColumns, Rows: rows}}})
	}
	b.ReportMetric(float64(b.N*benchRows)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkLoadUpsert is Load of 10,000-row batches with a key: COPY into the
// staging table, then INSERT … ON CONFLICT; every batch rewrites the same keys.
func BenchmarkLoadUpsert(b *testing.B) {
	db, _ := openDB(b)
	rows := benchBatchRows()
	pos := uint64(0)
	b.ResetTimer()
	for b.Loop() {
		pos++
		mustLoad(b, db, &warehouse.Batch{Integration: 1, Schema: "bench", Key: "user__id",
			Prev: warehouse.State{Position: pos - 1}, State: warehouse.State{Position: pos},
			Tables: []warehouse.Table{{Name: "data", Columns: benchColumns, Rows: rows}}})
	}
	b.ReportMetric(float64(b.N*benchRows)/b.Elapsed().Seconds(), "rows/s")
}
