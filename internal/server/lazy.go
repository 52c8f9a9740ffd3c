package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// lazyWarehouse keeps a warehouse open, opening it again when needed:
//   - a server warehouse may be unreachable at start: the receiver keeps accepting
//     into the log, and every call tries to open it again (at most once per
//     retryEvery) until it works;
//   - an embedded DuckDB refuses all work after a fatal error (broken reports
//     those): the instance is closed and the next call opens the file again.
//
// The loader's own retry loop drives the attempts.
type lazyWarehouse struct {
	open       func(ctx context.Context) (warehouse.Warehouse, error)
	broken     func(error) bool // nil: no error needs a reopen
	logger     *slog.Logger
	retryEvery time.Duration

	mu       sync.Mutex
	inner    warehouse.Warehouse
	lastTry  time.Time
	lastErr  error
	closed   bool
	warnedAt time.Time
	reopens  int
}

var _ warehouse.Warehouse = (*lazyWarehouse)(nil)

func (l *lazyWarehouse) get(ctx context.Context) (warehouse.Warehouse, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errors.New("warehouse: closed")
	}
	if l.inner != nil {
		return l.inner, nil
	}
	if time.Since(l.lastTry) < l.retryEvery && l.lastErr != nil {
		return nil, l.lastErr
	}
	l.lastTry = time.Now()
	w, err := l.open(ctx)
	if err != nil {
		l.lastErr = fmt.Errorf("warehouse unreachable (records wait in the log): %w", err)
		if time.Since(l.warnedAt) > 30*time.Second {
			l.logger.Error("cannot open the warehouse; retrying", "err", err)
			l.warnedAt = time.Now()
		}
		return nil, l.lastErr
	}
	l.logger.Info("warehouse opened")
	l.inner, l.lastErr = w, nil
	return w, nil
}

// check closes w when err says it can do no more work, so that the next call
// opens the warehouse again. It returns err.
func (l *lazyWarehouse) check(w warehouse.Warehouse, err error) error {
	if err == nil || l.broken == nil || !l.broken(err) {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inner != w {
		return err // already replaced
	}
	l.logger.Error("the warehouse stopped after a fatal error; closing and opening it again (accepted records wait in the log)", "err", err)
	// Closed before anything opens the file again, under the lock: two instances
	// must never write one file.
	if cerr := w.Close(); cerr != nil {
		l.logger.Warn("closing the failed warehouse", "err", cerr)
	}
	l.inner, l.lastErr, l.lastTry = nil, err, time.Time{}
	l.reopens++
	return err
}

func (l *lazyWarehouse) LoadState(ctx context.Context) (map[int64]warehouse.State, error) {
	w, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	st, err := w.LoadState(ctx)
	return st, l.check(w, err)
}

func (l *lazyWarehouse) Columns(ctx context.Context, schema, table string) ([]warehouse.Column, error) {
	w, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	cols, err := w.Columns(ctx, schema, table)
	return cols, l.check(w, err)
}

func (l *lazyWarehouse) Load(ctx context.Context, b *warehouse.Batch) error {
	w, err := l.get(ctx)
	if err != nil {
		return err
	}
	return l.check(w, w.Load(ctx, b))
}

func (l *lazyWarehouse) Query(ctx context.Context, sql string, maxRows int) (*warehouse.Result, error) {
	w, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	res, err := w.Query(ctx, sql, maxRows)
	return res, l.check(w, err)
}

func (l *lazyWarehouse) Ping(ctx context.Context) error {
	w, err := l.get(ctx)
	if err != nil {
		return err
	}
	return l.check(w, w.Ping(ctx))
}

func (l *lazyWarehouse) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.inner != nil {
		return l.inner.Close()
	}
	return nil
}
