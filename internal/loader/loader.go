// Package loader moves accepted records from the log into the warehouse: one
// worker per integration reads its log in order, closes a batch at BatchSize
// records or BatchWait, flattens it (flatten.go) and commits rows and the new log
// position in one warehouse transaction. After any failure it re-reads the
// position from the warehouse before trying again, so nothing is loaded twice.
package loader

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/faults"
	"github.com/hookhouse/hookhouse/internal/state"
	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// Log is what the loader reads (state.Pebble).
type Log interface {
	Read(ctx context.Context, integration int64, after uint64, max, maxBytes int) ([]state.Record, error)
	Head(integration int64) state.Head
	Changed() <-chan struct{}
	Trim(integration int64, upTo uint64, cutoff time.Time) (uint64, error)
}

// Integrations lists every integration, deleted ones included (control.Store).
type Integrations interface {
	AllIntegrations() []control.Integration
}

// Observer is told about each committed batch (metrics); may be nil.
type Observer interface {
	Batch(integration int64, loaded, rejected int, took time.Duration)
}

// Options tune loading.
type Options struct {
	BatchSize  int
	BatchWait  time.Duration
	MaxColumns int
	Retention  time.Duration
	// TrimEvery is how often loaded records past Retention are removed (default 1m).
	TrimEvery time.Duration
	// MaxBatchBytes caps the bodies read into one batch.
	MaxBatchBytes int
	Observe       Observer
}

// Stats is one integration's loading picture.
type Stats struct {
	Received       int64
	Loaded         int64
	Rejected       int64
	LastReceivedAt time.Time
	LastLoadedAt   time.Time
	Backlog        int64
	Lag            time.Duration
}

// Loader owns one worker goroutine per integration.
type Loader struct {
	log    Log
	wh     warehouse.Warehouse
	ctl    Integrations
	opts   Options
	logger *slog.Logger

	ctx    context.Context // ends when Close begins: workers flush and stop
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	workers map[int64]*worker
	down    error // last warehouse error, nil when the last attempt worked
	downAt  time.Time
}

type worker struct {
	in control.Integration

	mu       sync.Mutex
	position uint64
	loaded   int64
	rejected int64
	lastLoad time.Time
	ready    bool // counts read from the warehouse
	failing  int  // consecutive failures
}

// New makes a loader; Start runs it.
func New(log Log, wh warehouse.Warehouse, ctl Integrations, opts Options, logger *slog.Logger) *Loader {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 10000
	}
	if opts.BatchWait <= 0 {
		opts.BatchWait = time.Second
	}
	if opts.MaxColumns <= 0 {
		opts.MaxColumns = 1000
	}
	if opts.TrimEvery <= 0 {
		opts.TrimEvery = time.Minute
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = 64 << 20
	}
	return &Loader{log: log, wh: wh, ctl: ctl, opts: opts, logger: logger, workers: map[int64]*worker{}}
}

// Start runs the supervisor that starts a worker for each integration.
func (l *Loader) Start() {
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.supervise()
	}()
}

// Close asks every worker to flush its open batch and waits for them until ctx ends.
func (l *Loader) Close(ctx context.Context) error {
	if l.cancel == nil {
		return nil
	}
	l.cancel()
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("loader: workers did not stop in time: %w", ctx.Err())
	}
}

func (l *Loader) supervise() {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		for _, in := range l.ctl.AllIntegrations() {
			l.mu.Lock()
			_, ok := l.workers[in.ID]
			if !ok && l.ctx.Err() == nil {
				w := &worker{in: in}
				l.workers[in.ID] = w
				l.wg.Add(1)
				go func() {
					defer l.wg.Done()
					l.run(w)
				}()
			}
			l.mu.Unlock()
		}
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// run is one integration's worker.
func (l *Loader) run(w *worker) {
	logger := l.logger.With("integration", w.in.ID, "schema", w.in.Schema)
	var (
		fl       *Flattener
		ready    *prepared // a flattened batch waiting to be committed
		st       warehouse.State
		backoff  time.Duration
		lastTrim time.Time
		lastWarn time.Time
	)
	stopping := func() bool { return l.ctx.Err() != nil }
	fails := func(err error, what string) {
		w.mu.Lock()
		w.failing++
		n := w.failing
		w.mu.Unlock()
		l.setDown(err)
		if n == 1 || time.Since(lastWarn) > 30*time.Second {
			logger.Error(what+"; accepted records stay in the log and loading is retried", "err", err, "failures_in_a_row", n)
			lastWarn = time.Now()
		}
	}
	for {
		// (Re)learn where the warehouse is: at start and after any failure.
		if fl == nil {
			var err error
			st, fl, err = l.prepare(w)
			if err != nil {
				fails(err, "cannot read load state from the warehouse")
				if stopping() {
					return
				}
				backoff = nextBackoff(backoff)
				sleep(l.ctx, backoff)
				continue
			}
		}
		if ready == nil {
			if l.log.Head(w.in.ID).Position <= st.Position {
				if w.in.DeletedAt != nil || stopping() {
					return // deleted integrations stop once everything accepted is loaded
				}
				changed := l.log.Changed()
				if l.log.Head(w.in.ID).Position <= st.Position {
					select {
					case <-changed:
					case <-l.ctx.Done():
					}
				}
				continue
			}
			// A batch is open: wait for it to fill or to reach its age.
			deadline := time.Now().Add(l.opts.BatchWait)
			for !stopping() {
				changed := l.log.Changed()
				wait := time.Until(deadline)
				if wait <= 0 || l.log.Head(w.in.ID).Position-st.Position >= uint64(l.opts.BatchSize) {
					break
				}
				t := time.NewTimer(wait)
				select {
				case <-changed:
				case <-t.C:
				case <-l.ctx.Done():
				}
				t.Stop()
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		var err error
		if ready == nil {
			ready, err = l.prepareBatch(ctx, w, fl, st)
		}
		var following *prepared
		if err == nil {
			following, err = l.commitPipelined(ctx, w, fl, ready)
		}
		cancel()
		if err != nil {
			fl, ready = nil, nil // schema knowledge and state are re-read before the next try
			fails(err, "load failed")
			w.mu.Lock()
			n := w.failing
			w.mu.Unlock()
			if stopping() && n > 3 {
				return
			}
			backoff = nextBackoff(backoff)
			sleep(l.ctx, backoff)
			continue
		}
		next := ready.batch.State
		ready = following
		if backoff > 0 {
			logger.Info("loading recovered")
		}
		backoff = 0
		st = next
		l.setDown(nil)
		if stopping() {
			return // the open batch is flushed; what is left stays in the log for the next start
		}
		if l.opts.Retention > 0 && time.Since(lastTrim) > l.opts.TrimEvery {
			lastTrim = time.Now()
			if n, err := l.log.Trim(w.in.ID, st.Position, time.Now().Add(-l.opts.Retention)); err != nil {
				logger.Warn("log trim failed", "err", err)
			} else if n > 0 {
				logger.Debug("trimmed loaded records past retention", "records", n)
			}
		}
	}
}

// prepare reads the integration's load state and existing tables.
func (l *Loader) prepare(w *worker) (warehouse.State, *Flattener, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	states, err := l.wh.LoadState(ctx)
	if err != nil {
		return warehouse.State{}, nil, fmt.Errorf("loader: read load state: %w", err)
	}
	st := states[w.in.ID]
	existing, err := l.tables(ctx, w.in.Schema)
	if err != nil {
		return st, nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.ready {
		// Counts survive restarts: rejected rows are in the warehouse, and every
		// other record up to the position was loaded.
		var rejected int64
		if _, ok := existing[warehouse.RejectedTable]; ok {
			res, err := l.wh.Query(ctx, "SELECT count(*) FROM "+w.in.Schema+"."+warehouse.RejectedTable, 1)
			if err != nil {
				return st, nil, fmt.Errorf("loader: count rejected records: %w", err)
			}
			if len(res.Rows) == 1 {
				rejected = toInt(res.Rows[0][0])
			}
		}
		w.rejected = rejected
		w.loaded = int64(st.Position) - rejected
		w.ready = true
	}
	w.position = st.Position
	return st, NewFlattener(w.in.PrimaryKey, l.opts.MaxColumns, existing), nil
}

// tables returns the existing tables of schema with their columns.
func (l *Loader) tables(ctx context.Context, schema string) (map[string][]warehouse.Column, error) {
	// schema holds only [a-z0-9_] (control.checkSchema), so it is safe as a literal.
	res, err := l.wh.Query(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = '"+schema+"'", 100000)
	if err != nil {
		return nil, fmt.Errorf("loader: list tables of %s: %w", schema, err)
	}
	out := map[string][]warehouse.Column{}
	for _, row := range res.Rows {
		name, _ := row[0].(string)
		cols, err := l.wh.Columns(ctx, schema, name)
		if err != nil {
			return nil, fmt.Errorf("loader: columns of %s.%s: %w", schema, name, err)
		}
		if cols != nil {
			out[name] = cols
		}
	}
	return out, nil
}

// prepared is a batch read from the log and flattened, ready to commit.
type prepared struct {
	batch            *warehouse.Batch
	records          int
	loaded, rejected int
	start            time.Time
}

// loadBatch reads, flattens and commits one batch.
func (l *Loader) loadBatch(ctx context.Context, w *worker, fl *Flattener, st warehouse.State) (warehouse.State, error) {
	p, err := l.prepareBatch(ctx, w, fl, st)
	if err != nil {
		return st, err
	}
	if err := l.commitBatch(ctx, w, p); err != nil {
		return st, err
	}
	return p.batch.State, nil
}

// commitPipelined commits p while flattening the following batch when a full one
// is already waiting in the log, so flattening overlaps the warehouse's work. The
// following batch is returned only if p committed; on any error it is dropped and
// the caller re-reads the state from the warehouse.
func (l *Loader) commitPipelined(ctx context.Context, w *worker, fl *Flattener, p *prepared) (*prepared, error) {
	if (l.ctx != nil && l.ctx.Err() != nil) || l.log.Head(w.in.ID).Position-p.batch.State.Position < uint64(l.opts.BatchSize) {
		return nil, l.commitBatch(ctx, w, p)
	}
	var (
		next    *prepared
		nextErr error
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		next, nextErr = l.prepareBatch(ctx, w, fl, p.batch.State)
	}()
	err := l.commitBatch(ctx, w, p)
	<-done
	if err != nil || nextErr != nil {
		return nil, err // a failed prepare is simply redone after this commit
	}
	return next, nil
}

// prepareBatch reads the records after st and flattens them into a batch.
func (l *Loader) prepareBatch(ctx context.Context, w *worker, fl *Flattener, st warehouse.State) (*prepared, error) {
	recs, err := l.log.Read(ctx, w.in.ID, st.Position, l.opts.BatchSize, l.opts.MaxBatchBytes)
	if err != nil {
		return nil, err
	}
	p := &prepared{start: time.Now(), records: len(recs)}
	next := st
	for _, r := range recs {
		if r.Position != next.Position+1 {
			return nil, fmt.Errorf("loader: log of integration %d jumps from position %d to %d: records were removed before they were loaded", w.in.ID, next.Position, r.Position)
		}
		seq := r.ReceivedAt.UnixMilli() * 1_000_000
		if seq <= next.Sequence {
			seq = next.Sequence + 1
		}
		next.Sequence = seq
		next.Position = r.Position
		fl.Add(Input{ID: r.ID, ReceivedAt: r.ReceivedAt, Sequence: seq, Body: r.Body})
	}
	tables, loaded, rejected := fl.Take(time.Now())
	p.loaded, p.rejected = loaded, rejected
	p.batch = &warehouse.Batch{Integration: w.in.ID, Schema: w.in.Schema, Tables: tables, State: next}
	if w.in.PrimaryKey != "" {
		p.batch.Key = ColumnName(w.in.PrimaryKey)
	}
	return p, nil
}

// commitBatch writes a prepared batch, stamping _sdc_batched_at just before.
func (l *Loader) commitBatch(ctx context.Context, w *worker, p *prepared) error {
	if p.records == 0 {
		return nil
	}
	now := warehouse.UTC(time.Now())
	stampBatchedAt(p.batch.Tables, now)
	if err := l.wh.Load(ctx, p.batch); err != nil {
		return fmt.Errorf("loader: integration %d: load %d records into schema %s: %w", w.in.ID, p.records, w.in.Schema, err)
	}
	faults.Point(faults.LoaderAfterCommit)
	w.mu.Lock()
	w.position = p.batch.State.Position
	w.loaded += int64(p.loaded)
	w.rejected += int64(p.rejected)
	w.lastLoad = now
	w.failing = 0
	w.mu.Unlock()
	if l.opts.Observe != nil {
		l.opts.Observe.Batch(w.in.ID, p.loaded, p.rejected, time.Since(p.start))
	}
	return nil
}

// stampBatchedAt sets every row's _sdc_batched_at (_sdc_rejected_at in
// _sdc_rejected) to t.
func stampBatchedAt(tables []warehouse.Table, t time.Time) {
	at := any(t)
	for _, tb := range tables {
		col := warehouse.ColBatchedAt
		if tb.Name == warehouse.RejectedTable {
			col = warehouse.RejectedColumns[0].Name
		}
		idx := slices.IndexFunc(tb.Columns, func(c warehouse.Column) bool { return c.Name == col })
		if idx < 0 {
			continue
		}
		for _, row := range tb.Rows {
			if idx < len(row) {
				row[idx] = at
			}
		}
	}
}

// Stats returns one integration's loading picture.
func (l *Loader) Stats(integration int64) Stats {
	head := l.log.Head(integration)
	s := Stats{Received: int64(head.Position), LastReceivedAt: head.LastReceivedAt}
	l.mu.Lock()
	w := l.workers[integration]
	l.mu.Unlock()
	var pos uint64
	if w != nil {
		w.mu.Lock()
		pos, s.Loaded, s.Rejected, s.LastLoadedAt = w.position, w.loaded, w.rejected, w.lastLoad
		w.mu.Unlock()
	}
	if head.Position > pos {
		s.Backlog = int64(head.Position - pos)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if recs, err := l.log.Read(ctx, integration, pos, 1, 1); err == nil && len(recs) == 1 {
			s.Lag = time.Since(recs[0].ReceivedAt)
		}
	}
	return s
}

// LastError reports the last load error and since when loading has failed; nil
// when the last attempt worked.
func (l *Loader) LastError() (error, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.down, l.downAt
}

// Running reports whether the loader has been started and not closed.
func (l *Loader) Running() bool { return l.ctx != nil && l.ctx.Err() == nil }

func (l *Loader) setDown(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		l.down = nil
		return
	}
	if l.down == nil {
		l.downAt = time.Now()
	}
	l.down = err
}

func nextBackoff(d time.Duration) time.Duration {
	switch {
	case d == 0:
		d = 100 * time.Millisecond
	case d < 10*time.Second:
		d *= 2
	default:
		d = 10 * time.Second
	}
	return d + time.Duration(rand.Int64N(int64(d/4)+1))
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func toInt(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case int32:
		return int64(n)
	case int:
		return int64(n)
	case float64:
		return int64(n)
	case uint64:
		return int64(n)
	case string:
		var x int64
		fmt.Sscan(n, &x)
		return x
	}
	return 0
}
