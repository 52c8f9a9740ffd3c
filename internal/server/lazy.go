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

// lazyWarehouse lets hookhouse start while a server warehouse is unreachable:
// the receiver keeps accepting into the log, and every call tries to open the
// warehouse again (at most once per retryEvery) until it works. The loader's own
// retry loop drives the attempts.
type lazyWarehouse struct {
	open       func(ctx context.Context) (warehouse.Warehouse, error)
	logger     *slog.Logger
	retryEvery time.Duration

	mu       sync.Mutex
	inner    warehouse.Warehouse
	lastTry  time.Time
	lastErr  error
	closed   bool
	warnedAt time.Time
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

func (l *lazyWarehouse) LoadState(ctx context.Context) (map[int64]warehouse.State, error) {
	w, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return w.LoadState(ctx)
}

func (l *lazyWarehouse) Columns(ctx context.Context, schema, table string) ([]warehouse.Column, error) {
	w, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return w.Columns(ctx, schema, table)
}

func (l *lazyWarehouse) Load(ctx context.Context, b *warehouse.Batch) error {
	w, err := l.get(ctx)
	if err != nil {
		return err
	}
	return w.Load(ctx, b)
}

func (l *lazyWarehouse) Query(ctx context.Context, sql string, maxRows int) (*warehouse.Result, error) {
	w, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return w.Query(ctx, sql, maxRows)
}

func (l *lazyWarehouse) Ping(ctx context.Context) error {
	w, err := l.get(ctx)
	if err != nil {
		return err
	}
	return w.Ping(ctx)
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
