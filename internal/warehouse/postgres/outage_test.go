package postgres

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/pgtest"
	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// TestOutage stops the server under an open DB: calls fail by themselves (not by
// running into the caller's deadline) and, after a restart, work again without
// reopening anything.
func TestOutage(t *testing.T) {
	ctx := t.Context()
	srv, err := pgtest.Start(ctx) // its own server: stopping the shared one would hit other tests
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dsn, err := srv.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(dsn)
	q := u.Query()
	q.Set("connect_timeout", "2")
	u.RawQuery = q.Encode()
	db, err := Open(ctx, u.String(), Options{}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	c := []warehouse.Column{col("n", warehouse.BigInt)}
	batch := func(pos int) *warehouse.Batch {
		return &warehouse.Batch{Integration: 1, Schema: "s",
			Prev: warehouse.State{Position: uint64(pos - 1)}, State: warehouse.State{Position: uint64(pos)},
			Tables: []warehouse.Table{{Name: "data", Columns: c, Rows: [][]any{{int64(pos)}}}}}
	}
	mustLoad(t, db, batch(1))

	if err := srv.Stop(); errors.Is(err, errors.ErrUnsupported) {
		t.Skip("the server from HOOKHOUSE_TEST_PG cannot be stopped")
	} else if err != nil {
		t.Fatal(err)
	}
	// Several rounds, so that broken pooled connections and failed dials both occur.
	for range 3 {
		callCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := db.Ping(callCtx)
		if err == nil || callCtx.Err() != nil {
			t.Errorf("Ping with the server down = %v (context: %v), want a prompt error", err, callCtx.Err())
		}
		err = db.Load(callCtx, batch(2))
		var le *LoadError
		if !errors.As(err, &le) || callCtx.Err() != nil {
			t.Errorf("Load with the server down = %v (context: %v), want a prompt LoadError", err, callCtx.Err())
		}
		if _, err := db.Query(callCtx, "SELECT 1", 1); err == nil {
			t.Error("Query with the server down succeeded")
		}
		cancel()
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := db.Ping(ctx); err != nil {
		t.Fatalf("Ping after restart: %v", err)
	}
	mustLoad(t, db, batch(2))
	st, err := db.LoadState(ctx)
	if err != nil || len(st) != 1 || !st[1].Same(warehouse.State{Position: 2}) {
		t.Errorf("state after restart: %v, %v", st, err)
	}

	// A restart quicker than the idle ping interval: the connections in the pool
	// are dead but look fresh, and the first call must not fail because of them.
	for _, call := range []struct {
		name string
		fn   func() error
	}{
		{"Load", func() error { return db.Load(ctx, batch(3)) }},
		{"Ping", func() error { return db.Ping(ctx) }},
		{"Query", func() error { _, err := db.Query(ctx, "SELECT 1", 1); return err }},
		{"LoadState", func() error { _, err := db.LoadState(ctx); return err }},
		{"Columns", func() error { _, err := db.Columns(ctx, "s", "data"); return err }},
	} {
		if err := db.Ping(ctx); err != nil { // a connection idles in the pool
			t.Fatal(err)
		}
		start := time.Now()
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > pingAfter {
			t.Logf("restart took %v, longer than %v: the idle ping covers it", d, pingAfter)
		}
		if err := call.fn(); err != nil {
			t.Errorf("%s right after a quick restart: %v", call.name, err)
		}
	}
	var n int64
	res, err := db.Query(ctx, "SELECT count(*) FROM s.data", 1)
	if err == nil {
		n, _ = res.Rows[0][0].(int64)
	}
	if n != 3 {
		t.Errorf("data has %d rows (%v), want 3", n, err)
	}
}
