package duckdb

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// TestCrashBeforeCommit kills a process (SIGKILL) in the middle of a load, after
// all rows were appended and the state written but before COMMIT, and checks that
// the reopened file holds exactly the batches committed before.
func TestCrashBeforeCommit(t *testing.T) {
	if path := os.Getenv("HOOKHOUSE_DUCKDB_CRASH_FILE"); path != "" {
		crashChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "warehouse.duckdb")
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestCrashBeforeCommit$")
	cmd.Env = append(os.Environ(), "HOOKHOUSE_DUCKDB_CRASH_FILE="+path)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v\n%s", err, out)
	}

	d, err := Open(t.Context(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	assertCount(t, d, "crash.data", 3)
	cols, err := d.Columns(t.Context(), "crash", "data")
	if err != nil || len(cols) != 1 {
		t.Errorf("Columns = %v, %v; the column added by the killed batch must not exist", cols, err)
	}
	st, err := d.LoadState(t.Context())
	if err != nil || !st[1].Same(warehouse.State{Position: 3, Sequence: 3}) {
		t.Errorf("LoadState = %v, %v; want position 3", st, err)
	}
}

func crashChild(path string) {
	ctx := context.Background()
	d, err := Open(ctx, path, nil)
	if err != nil {
		panic(err)
	}
	b := &warehouse.Batch{Integration: 1, Schema: "crash", State: warehouse.State{Position: 3, Sequence: 3},
		Tables: []warehouse.Table{{Name: "data", Columns: []warehouse.Column{text("a")}, Rows: [][]any{{"1"}, {"2"}, {"3"}}}}}
	if err := d.Load(ctx, b); err != nil {
		panic(err)
	}
	d.beforeCommit = func(context.Context, *sql.Conn) error {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	b.Tables[0].Columns = append(b.Tables[0].Columns, text("b"))
	b.Tables[0].Rows = [][]any{{"4", "x"}, {"5", "y"}}
	b.Prev, b.State = b.State, warehouse.State{Position: 5, Sequence: 5}
	_ = d.Load(ctx, b)
	panic("not killed")
}
