package postgres

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// pool is a small connection pool. pgxpool would need github.com/jackc/puddle/v2
// in go.mod; the few things the adapter needs fit here: a bounded number of
// connections, a liveness check of connections that sat idle, and dropping any
// connection that is broken or was left inside a transaction, so that the pool
// recovers by itself after the server restarts.
type pool struct {
	cfg   *pgx.ConnConfig
	slots chan struct{} // one token per open connection, capacity = max
	idle  chan idleConn // capacity = max, so Release never blocks

	mu     sync.Mutex
	closed bool
}

type idleConn struct {
	conn  *pgx.Conn
	since time.Time
}

const (
	// pingAfter: a connection idle longer than this is pinged before use (pgxpool
	// does the same), so a restarted server costs no failed call.
	pingAfter = time.Second
	// maxIdle: connections idle this long are closed instead of reused.
	maxIdle = 30 * time.Minute
)

var errPoolClosed = errors.New("postgres: warehouse is closed")

func newPool(cfg *pgx.ConnConfig, maxConns int) *pool {
	if maxConns <= 0 {
		maxConns = max(4, runtime.NumCPU())
	}
	return &pool{cfg: cfg, slots: make(chan struct{}, maxConns), idle: make(chan idleConn, maxConns)}
}

// acquire returns a connection, and whether it was used before; give it back with
// release.
func (p *pool) acquire(ctx context.Context) (_ *pgx.Conn, reused bool, _ error) {
	for {
		p.mu.Lock()
		closed := p.closed
		p.mu.Unlock()
		if closed {
			return nil, false, errPoolClosed
		}
		var ic idleConn
		select {
		case ic = <-p.idle:
		default:
			select {
			case ic = <-p.idle:
			case p.slots <- struct{}{}:
				conn, err := pgx.ConnectConfig(ctx, p.cfg)
				if err != nil {
					<-p.slots
					return nil, false, err
				}
				return conn, false, nil
			case <-ctx.Done():
				return nil, false, ctx.Err()
			}
		}
		idle := time.Since(ic.since)
		switch {
		case ic.conn.IsClosed() || idle > maxIdle:
			p.discard(ic.conn)
			continue
		case idle > pingAfter:
			if err := ic.conn.Ping(ctx); err != nil {
				p.discard(ic.conn)
				if ctx.Err() != nil {
					return nil, false, ctx.Err()
				}
				continue
			}
		}
		return ic.conn, true, nil
	}
}

// release gives conn back, or closes it when it is broken, busy or still inside a
// transaction, or when the pool is closed.
func (p *pool) release(conn *pgx.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || conn.IsClosed() || conn.PgConn().IsBusy() || conn.PgConn().TxStatus() != 'I' {
		p.discard(conn)
		return
	}
	p.idle <- idleConn{conn: conn, since: time.Now()}
}

func (p *pool) discard(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn.Close(ctx)
	<-p.slots
}

// conn returns a pooled connection on which first succeeded; give it back with
// p.release. A connection the server closed while it sat idle for less than
// pingAfter (a quick restart) fails on first use; then first runs once more on
// another connection, so first must be safe to repeat: a BEGIN, a read, a ping.
func (p *pool) conn(ctx context.Context, first func(*pgx.Conn) error) (*pgx.Conn, error) {
	for attempt := 0; ; attempt++ {
		conn, reused, err := p.acquire(ctx)
		if err != nil {
			return nil, err
		}
		if err = first(conn); err == nil {
			return conn, nil
		}
		closed := conn.IsClosed() // before release: then another caller may take it
		p.release(conn)
		if attempt > 0 || !reused || !closed || ctx.Err() != nil {
			return nil, err
		}
	}
}

// close closes the idle connections now and the others as they are released.
func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for {
		select {
		case ic := <-p.idle:
			p.discard(ic.conn)
		default:
			return
		}
	}
}
