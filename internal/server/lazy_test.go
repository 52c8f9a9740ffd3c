package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/warehouse"
	"github.com/hookhouse/hookhouse/internal/warehouse/duckdb"
)

// TestDuckDBReopensAfterFatalError fills the disk under a real DuckDB until a
// checkpoint fails, which makes DuckDB refuse every later statement
// ("database has been invalidated"). Once space is freed, loading must resume
// without a restart, from the committed load state, with every committed row
// present once.
func TestDuckDBReopensAfterFatalError(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs to fill needs root")
	}
	dir := t.TempDir()
	// DuckDB checkpoints at 64 MB of WAL; the checkpointed file does not fit
	// next to the WAL and the filler, and does once the filler is gone.
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount: %v %s", err, out)
		}
	})
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 130<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	open := func(ctx context.Context) (warehouse.Warehouse, error) {
		return duckdb.Open(ctx, filepath.Join(dir, "warehouse.duckdb"), logger)
	}
	first, err := open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wh := &lazyWarehouse{logger: logger, retryEvery: 50 * time.Millisecond, open: open, broken: duckdb.Invalidated, inner: first}
	defer wh.Close()

	const rowsPerBatch = 2000
	cols := []warehouse.Column{{Name: "id", Type: warehouse.Text}, {Name: "pad", Type: warehouse.Text}}
	// Random text, so that the checkpointed file is about as large as the WAL.
	pad := func() string {
		b := make([]byte, 250)
		rand.Read(b)
		return hex.EncodeToString(b)
	}
	batch := func(pos uint64) *warehouse.Batch {
		rows := make([][]any, rowsPerBatch)
		for j := range rows {
			rows[j] = []any{fmt.Sprintf("%d-%d", pos, j), pad()}
		}
		return &warehouse.Batch{Integration: 1, Schema: "fill",
			Prev:   warehouse.State{Position: pos - 1, Sequence: int64(pos - 1)},
			State:  warehouse.State{Position: pos, Sequence: int64(pos)},
			Tables: []warehouse.Table{{Name: "data", Columns: cols, Rows: rows}}}
	}

	var loadErr error
	for pos := uint64(1); pos <= 400 && loadErr == nil; pos++ {
		loadErr = wh.Load(ctx, batch(pos))
	}
	if loadErr == nil {
		t.Fatal("400 batches fit on the tmpfs: the disk never filled")
	}
	t.Logf("disk full: %v", loadErr)
	if !duckdb.Invalidated(loadErr) || wh.reopens != 1 {
		t.Fatalf("the failed checkpoint should count as fatal and close the instance once; reopens = %d", wh.reopens)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// As the loader does after a failure: re-read the committed state, continue after it.
	deadline := time.Now().Add(60 * time.Second)
	var pos uint64
	for {
		st, err := wh.LoadState(ctx)
		if err == nil {
			pos = st[1].Position
			if err = wh.Load(ctx, batch(pos+1)); err == nil {
				pos++
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("loading did not resume within 60 s of freeing space: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	res, err := wh.Query(ctx, "SELECT count(*), count(DISTINCT id) FROM fill.data", 1)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint(pos * rowsPerBatch)
	if got := fmt.Sprint(res.Rows[0]...); got != want+" "+want {
		t.Fatalf("rows, distinct ids = %s; want %s of each (load state position %d)", got, want, pos)
	}
	t.Logf("reopened %d time(s); %d batches, %s rows, each once", wh.reopens, pos, want)
}

// TestLazyWarehouseDoesNotQueueBehindAConnect: while one caller waits for a slow
// connect (an unreachable PostgreSQL takes its whole connect timeout), others get
// an answer at once instead of queueing behind the lock: /status.json must not
// hang during an outage.
func TestLazyWarehouseDoesNotQueueBehindAConnect(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	wh := &lazyWarehouse{logger: slog.New(slog.DiscardHandler), retryEvery: time.Millisecond,
		open: func(ctx context.Context) (warehouse.Warehouse, error) {
			close(entered)
			<-release
			return nil, fmt.Errorf("connect: timeout")
		}}
	defer wh.Close()
	first := make(chan error, 1)
	go func() { first <- wh.Ping(context.Background()) }()
	<-entered
	done := make(chan error, 1)
	go func() { done <- wh.Ping(context.Background()) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Ping succeeded while the warehouse was being opened")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a second caller waited for the first one's connect")
	}
	close(release)
	if err := <-first; err == nil || !strings.Contains(err.Error(), "connect: timeout") {
		t.Fatalf("first Ping = %v, want the connect error", err)
	}
}

// TestDuckDBReopensAfterDurableCommit: a load whose COMMIT is durable but whose
// checkpoint fails (1 MiB values in a 128 MiB pool) counts as loaded, and the
// instance it invalidated is closed and the file opened again before the next
// call, which loads on from the committed state; every row is there once.
func TestDuckDBReopensAfterDurableCommit(t *testing.T) {
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	path := filepath.Join(t.TempDir(), "warehouse.duckdb")
	open := func(ctx context.Context) (warehouse.Warehouse, error) {
		return duckdb.OpenWith(ctx, path, duckdb.Options{MemoryLimit: 128 << 20, Threads: 1, RecoveryMemoryLimit: 2 << 30}, logger)
	}
	first, err := open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wh := &lazyWarehouse{logger: logger, retryEvery: 50 * time.Millisecond, open: open, broken: duckdb.Invalidated, inner: first}
	defer wh.Close()
	pad := strings.Repeat("x", 1<<20)
	cols := []warehouse.Column{{Name: "id", Type: warehouse.BigInt}, {Name: "pad", Type: warehouse.Text}}
	const per = 19
	pos := uint64(0)
	for k := 0; k < 20 && wh.reopens == 0; k++ {
		rows := make([][]any, per)
		for j := range rows {
			rows[j] = []any{int64(pos) + int64(j), pad}
		}
		b := &warehouse.Batch{Integration: 1, Schema: "big", Prev: warehouse.State{Position: pos},
			State:  warehouse.State{Position: pos + per, Sequence: int64(pos + per)},
			Tables: []warehouse.Table{{Name: "data", Columns: cols, Rows: rows}}}
		if err := wh.Load(ctx, b); err != nil {
			t.Fatalf("batch after %d: %v", pos, err)
		}
		pos += per
	}
	if wh.reopens != 1 {
		t.Fatalf("%d rows of 1 MiB in a 128 MiB pool: reopens = %d, want 1", pos, wh.reopens)
	}
	st, err := wh.LoadState(ctx)
	if err != nil || st[1].Position != pos {
		t.Fatalf("after the reopen: state %v, %v; want position %d", st, err, pos)
	}
	res, err := wh.Query(ctx, "SELECT count(*), count(DISTINCT id) FROM big.data", 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(res.Rows[0]...); got != fmt.Sprintf("%d %d", pos, pos) {
		t.Fatalf("rows, distinct ids = %s; want %d of each", got, pos)
	}
	t.Logf("the checkpoint failed after %d rows; reopened once, every row there once", pos)
}
