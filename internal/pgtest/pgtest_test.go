package pgtest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestServerLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, err := Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		if s.dir != "" {
			if _, err := os.Stat(s.dir); !os.IsNotExist(err) {
				t.Errorf("Close left %s behind (stat: %v)", s.dir, err)
			}
		}
	}()

	dsn1, err := s.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dsn2, err := s.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if dsn1 == dsn2 {
		t.Fatalf("two databases share the URL %s", dsn1)
	}
	// The databases are separate: a table in one is not in the other.
	execSQL(t, ctx, dsn1, "CREATE TABLE only_in_one (x int); INSERT INTO only_in_one VALUES (42)")
	if n := count(t, ctx, dsn2, "SELECT count(*) FROM pg_class WHERE relname = 'only_in_one'"); n != 0 {
		t.Fatalf("table visible in the second database")
	}

	if err := s.Stop(); errors.Is(err, errors.ErrUnsupported) {
		t.Skip("server from HOOKHOUSE_TEST_PG cannot be stopped")
	} else if err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	if conn, err := pgx.Connect(cctx, dsn1); err == nil {
		conn.Close(ctx)
		t.Fatal("connected to a stopped server")
	}
	ccancel()
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}

	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if n := count(t, ctx, dsn1, "SELECT x FROM only_in_one"); n != 42 {
		t.Fatalf("after restart: got %d, want 42", n)
	}
	if err := s.Restart(); err != nil { // restart of a running server
		t.Fatal(err)
	}
	if n := count(t, ctx, dsn2, "SELECT 7"); n != 7 {
		t.Fatalf("after second restart: got %d", n)
	}
}

func TestShared(t *testing.T) {
	a, b := Shared(t), Shared(t)
	if a != b {
		t.Fatal("Shared returned two servers")
	}
	ctx := context.Background()
	dsn, err := a.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, ctx, dsn, "SELECT 1"); n != 1 {
		t.Fatal(n)
	}
}

func TestMissingBinaries(t *testing.T) {
	empty := t.TempDir()
	t.Setenv("PATH", empty)
	_, err := findBinDirIn("no-such-pg_config", filepath.Join(empty, "*", "bin"))
	if err == nil || !strings.Contains(err.Error(), "not found") || !strings.Contains(err.Error(), EnvURL) {
		t.Fatalf("want a clear not-found error naming %s, got %v", EnvURL, err)
	}
}

func TestFindBinDir(t *testing.T) {
	dir, err := findBinDir()
	if err != nil {
		t.Skip(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "initdb")); err != nil {
		t.Fatal(err)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	CloseShared()
	os.Exit(code)
}

func execSQL(t *testing.T, ctx context.Context, dsn, sql string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatal(err)
	}
}

func count(t *testing.T, ctx context.Context, dsn, sql string) int64 {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, sql).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
