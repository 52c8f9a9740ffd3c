package duckdb

import (
	"context"
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
