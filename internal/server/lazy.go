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
	opening  bool // one caller is opening it, without the lock
	lastTry  time.Time
	lastErr  error
	closed   bool
	warnedAt time.Time
	reopens  int
}

var _ warehouse.Warehouse = (*lazyWarehouse)(nil)

// get returns the open warehouse, or opens it. The lock is not held while
// opening (a PostgreSQL connect can take its whole timeout): one caller opens,
// and the others meanwhile get the last error at once instead of queueing behind
// it, so /status.json stays quick while the warehouse is unreachable.
func (l *lazyWarehouse) get(ctx context.Context) (warehouse.Warehouse, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errors.New("warehouse: closed")
	}
	if l.inner != nil {
		w := l.inner
		l.mu.Unlock()
		return w, nil
	}
	if l.opening || (time.Since(l.lastTry) < l.retryEvery && l.lastErr != nil) {
		err := l.lastErr
		l.mu.Unlock()
		if err == nil {
			err = errors.New("warehouse: being opened (records wait in the log)")
		}
		return nil, err
	}
	l.lastTry = time.Now()
	l.opening = true
	l.mu.Unlock()

	w, err := l.open(ctx)

	l.mu.Lock()
	defer l.mu.Unlock()
	l.opening = false
	if err != nil {
		l.lastErr = fmt.Errorf("warehouse unreachable (records wait in the log): %w", err)
		if time.Since(l.warnedAt) > 30*time.Second {
			l.logger.Error("cannot open the warehouse; retrying", "err", err)
			l.warnedAt = time.Now()
		}
		return nil, l.lastErr
	}
	if l.closed { // closed while opening: nobody else will close it
		w.Close()
		return nil, errors.New("warehouse: closed")
	}
	l.logger.Info("warehouse opened")
	l.inner, l.lastErr = w, nil
	return w, nil
}

// check closes w when err says it can do no more work, so that the next call
// opens the warehouse again. It returns err.
func (l *lazyWarehouse) check(w warehouse.Warehouse, err error) error {
	if err == nil {
		// A call can succeed and still leave the warehouse unusable (a DuckDB
		// load that committed but whose checkpoint failed).
		if r, ok := w.(interface{ NeedsReopen() bool }); !ok || !r.NeedsReopen() {
			return nil
		}
	} else if l.broken == nil || !l.broken(err) {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inner != w {
		return err // already replaced
	}
	if err != nil {
		l.logger.Error("the warehouse stopped after a fatal error; closing and opening it again (accepted records wait in the log)", "err", err)
	} else {
		l.logger.Warn("the warehouse needs to be opened again (its last checkpoint failed); closing and opening it again")
	}
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

func (l *lazyWarehouse) Tables(ctx context.Context, schema string) (map[string][]warehouse.Column, error) {
	w, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	t, err := w.Tables(ctx, schema)
	return t, l.check(w, err)
}

func (l *lazyWarehouse) CountRows(ctx context.Context, schema, table string) (int64, error) {
	w, err := l.get(ctx)
	if err != nil {
		return 0, err
	}
	n, err := w.CountRows(ctx, schema, table)
	return n, l.check(w, err)
}

func (l *lazyWarehouse) Recent(ctx context.Context, schema, table, orderBy string, limit int) (*warehouse.Result, error) {
	w, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	res, err := w.Recent(ctx, schema, table, orderBy, limit)
	return res, l.check(w, err)
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

// Close closes the warehouse; one being opened is closed when its open returns.
func (l *lazyWarehouse) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.inner != nil {
		return l.inner.Close()
	}
	return nil
}

func (l *lazyWarehouse) Reset(ctx context.Context, integration int64, schema string, prev, next warehouse.State) error {
	w, err := l.get(ctx)
	if err != nil {
		return err
	}
	return l.check(w, w.Reset(ctx, integration, schema, prev, next))
}
