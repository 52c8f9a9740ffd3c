package duckdb

import (
	"context"
	"errors"
	"github.com/hookhouse/hookhouse/internal/warehouse"
	"path/filepath"
	"strings"
	"testing"
)

// TestReopenAfterCheckpointOutOfMemory: DuckDB checkpoints a table of long
// strings with 2,048 rows of them pinned, so an autocheckpoint can fail for
// memory: the commit is durable, the instance is invalidated (Invalidated), the
// error is recognised as out of memory, and the file opens again with every
// committed row. (Here it reopens within its limit; RecoveryMemoryLimit is for
// a file whose open does not.)
func TestReopenAfterCheckpointOutOfMemory(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "w.duckdb")
	small := Options{MemoryLimit: 128 << 20}
	d, err := OpenWith(ctx, path, small, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.rw.ExecContext(ctx, `CREATE TABLE big (i BIGINT, pad VARCHAR)`); err != nil {
		t.Fatal(err)
	}
	committed := 0
	var failed error
	for k := 0; k < 40 && failed == nil; k++ {
		_, failed = d.rw.ExecContext(ctx, `INSERT INTO big SELECT i, repeat('x', 1048000) FROM range(32) t(i)`)
		if failed == nil || strings.Contains(failed.Error(), "COMMIT succeeded and is durable") {
			committed += 32 // a failed autocheckpoint comes after a durable commit
		}
	}
	d.Close()
	if failed == nil || !Invalidated(failed) || !outOfMemoryText(failed) {
		t.Fatalf("the autocheckpoint did not fail for memory with a 128 MiB pool: %v", failed)
	}
	t.Logf("after %d rows of 1 MiB: %v", committed, failed)
	if d, err := OpenWith(ctx, path, small, nil); err == nil {
		d.Close()
		t.Log("the file opened within 128 MiB without recovery")
	} else {
		t.Logf("within 128 MiB the file does not open: %v", err)
	}
	rec := small
	rec.RecoveryMemoryLimit = 1 << 30
	d, err = OpenWith(ctx, path, rec, nil)
	if err != nil {
		t.Fatalf("open with recovery: %v", err)
	}
	defer d.Close()
	var n int
	if err := d.rw.QueryRowContext(ctx, `SELECT count(*) FROM big`).Scan(&n); err != nil || n != committed {
		t.Fatalf("count = %d, %v; want %d", n, err, committed)
	}
}

// loadText loads batches of rows of one text value each (perBatch rows of
// size bytes, each row its own integration position) into schema.data, and
// returns the rows loaded, stopping at the first error or when NeedsReopen.
func loadText(t *testing.T, d *DB, schema string, batches, perBatch, size int, from uint64) (uint64, error) {
	t.Helper()
	pad := strings.Repeat("0123456789abcdef", size/16)
	pos := from
	for k := 0; k < batches; k++ {
		rows := make([][]any, perBatch)
		for i := range rows {
			rows[i] = []any{int64(pos) + int64(i), pad}
		}
		b := &warehouse.Batch{Integration: 1, Schema: schema, Prev: warehouse.State{Position: pos},
			State:  warehouse.State{Position: pos + uint64(perBatch), Sequence: int64(pos) + int64(perBatch)},
			Tables: []warehouse.Table{{Name: "data", Columns: []warehouse.Column{bigint("n"), text("pad")}, Rows: rows}}}
		if err := d.Load(t.Context(), b); err != nil {
			return pos, err
		}
		pos += uint64(perBatch)
		if d.NeedsReopen() {
			break
		}
	}
	return pos, nil
}

// TestTextAtTheCapLoads: text values of a 4,096th of DuckDB's pool (the cap,
// config.Budget.DuckDBMaxText) load and checkpoint in any number within the
// pool, in batches of an eighth of it (the loader's batch bytes): 6,144 values
// of 32 KiB (192 MiB) through a 128 MiB pool, the file opens again within it,
// and the dashboard's newest-rows query and a count work. (Values of 1 MiB
// fail after 171, TestDurableCommitWithFailedCheckpoint.)
func TestTextAtTheCapLoads(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "w.duckdb")
	small := Options{MemoryLimit: 128 << 20, Threads: 1}
	d, err := OpenWith(ctx, path, small, nil)
	if err != nil {
		t.Fatal(err)
	}
	const size, per = 32 << 10, 512 // 16 MiB batches
	n, err := loadText(t, d, "capped", 12, per, size, 0)
	if err != nil || d.NeedsReopen() {
		t.Fatalf("after %d rows of %d bytes: %v (needs reopen: %v)", n, size, err, d.NeedsReopen())
	}
	if _, err := d.rw.ExecContext(ctx, `CHECKPOINT`); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d, err = OpenWith(ctx, path, small, nil)
	if err != nil {
		t.Fatalf("open within 128 MiB: %v", err)
	}
	defer d.Close()
	assertCount(t, d, "capped.data", 12*per)
	res, err := d.Recent(ctx, "capped", "data", "n", 50)
	if err != nil || len(res.Rows) != 50 || len(res.Rows[0][1].(string)) != size {
		t.Fatalf("newest rows: %v", err)
	}
}

// TestDurableCommitWithFailedCheckpoint: when the checkpoint after a COMMIT
// fails (1 MiB values in a 128 MiB pool: DuckDB pins 2,048 rows of a column
// at once), the batch is committed: Load returns nil, not out of memory (the
// loader would split a batch that is in), NeedsReopen says the instance must
// be opened again, and every batch Load accepted is in the file.
func TestDurableCommitWithFailedCheckpoint(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "w.duckdb")
	small := Options{MemoryLimit: 128 << 20, Threads: 1}
	d, err := OpenWith(ctx, path, small, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := loadText(t, d, "big", 40, 19, 1<<20, 0)
	if err != nil {
		t.Fatalf("after %d rows: %v", n, err)
	}
	if !d.NeedsReopen() {
		t.Fatalf("%d rows of 1 MiB loaded into a 128 MiB pool and no checkpoint failed", n)
	}
	t.Logf("the checkpoint failed after %d rows of 1 MiB, the last batch committed", n)
	// The invalidated instance refuses the next load, quoting the checkpoint's
	// "failed to pin block": that is a reason to reopen, not to split.
	if _, err := loadText(t, d, "big", 1, 1, 16, n); err == nil || !Invalidated(err) || errors.Is(err, warehouse.ErrOutOfMemory) {
		t.Fatalf("a load on the invalidated instance = %v; want an Invalidated error that is not out of memory", err)
	} else {
		t.Logf("the next load: %.200s", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	rec := small
	rec.RecoveryMemoryLimit = 2 << 30
	d, err = OpenWith(ctx, path, rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	assertCount(t, d, "big.data", int64(n))
	st, err := d.LoadState(ctx)
	if err != nil || st[1].Position != n {
		t.Fatalf("load state %v, %v; want position %d", st, err, n)
	}
}
