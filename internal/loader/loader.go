// Package loader moves accepted records from the log into the warehouse: one
// worker per integration reads its log in order, closes a batch at BatchSize
// records or BatchWait, flattens it (flatten.go) and commits rows and the new log
// position in one warehouse transaction. After any failure it re-reads the
// position from the warehouse before trying again, so nothing is loaded twice.
package loader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/faults"
	"github.com/hookhouse/hookhouse/internal/state"
	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// Log is what the loader reads (state.Pebble). Only an integration's worker
// trims its log, after its own commits: a reset (reset.go) relies on that.
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
	// Installation is this installation's id (control.Store.Installation). It is
	// stored with every load position, and a position stored by another
	// installation is never used (see warehouse.Batch.Prev).
	Installation string
	BatchSize    int
	BatchWait    time.Duration
	MaxColumns   int
	Retention    time.Duration
	// TrimEvery is how often loaded records past Retention are removed (default 1m).
	TrimEvery time.Duration
	// MaxBatchBytes caps the bodies read into one batch.
	MaxBatchBytes int
	// MaxText, if above 0, is the longest text value the warehouse takes (the
	// embedded DuckDB's, config.Budget.DuckDBMaxText): a record with a longer
	// value is rejected into _sdc_rejected with the reason, and the record
	// text kept there is cut to half of it.
	MaxText int
	// AttemptsDir, if set, holds a note of each large load in progress, so
	// that a start after the process was killed during one (perhaps for
	// memory) splits that batch instead of being killed again (split.go).
	AttemptsDir string
	Observe     Observer
	// Resets records resets so that one interrupted by a restart is redone or
	// its reload shown (control.Store); nil: resets are not recorded.
	Resets Resets
	// Leases, on a cluster, makes one node at a time load each integration:
	// the one holding its lease (lease.go). Other nodes wait, answer Stats and
	// Sync from the warehouse's stored position, and take over when the holder
	// stops renewing. nil: a single node, this process loads every integration.
	Leases *Leases
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
	// Error is why loading this integration is failing, "" while it works.
	Error string
	// Paused: loading is paused by the operator; the backlog waits.
	Paused bool
	// Reset is the last reset's progress, nil if the integration never had one.
	Reset *ResetProgress
}

// Loader owns one worker goroutine per integration.
type Loader struct {
	log    Log
	wh     warehouse.Warehouse
	ctl    Integrations
	opts   Options
	logger *slog.Logger

	// ctx ends when Close begins: workers flush their open batch and stop.
	ctx    context.Context
	cancel context.CancelFunc
	// hard ends when Close's deadline is near: every warehouse call derives from
	// it, so a load still running is cancelled (rolled back; its records stay in
	// the log) and the workers return before the warehouse and the log close.
	hard       context.Context
	hardCancel context.CancelFunc
	started    atomic.Bool
	wg         sync.WaitGroup

	mu      sync.Mutex
	workers map[int64]*worker

	// handOverAfter: on a cluster, a node whose loads of an integration have
	// failed for this long gives its lease up (cluster.go).
	handOverAfter time.Duration

	// The warehouse's stored states, shared by the workers of integrations
	// this node does not load (cluster mode), read at most twice a second.
	statesMu  sync.Mutex
	statesAt  time.Time
	states    map[int64]warehouse.State
	statesErr error
}

type worker struct {
	id   int64
	wake chan struct{} // capacity 1: stop waiting for the batch to fill (Sync, deletion)
	done chan struct{} // closed when the worker returns

	mu       sync.Mutex
	in       control.Integration // kept current by the supervisor
	position uint64              // committed position, known once known is true
	known    bool
	loaded   int64
	rejected int64
	lastLoad time.Time
	counted  bool          // loaded and rejected were read from the warehouse
	failing  int           // consecutive failures
	since    time.Time     // when the current run of failures began
	lastErr  error         // the last failure while failing > 0
	failures int64         // every failure so far, for Sync
	progress chan struct{} // closed and replaced whenever the above change

	// Resets (reset.go): a request waiting for the worker, the last reset, a
	// reset to redo because the last run stopped before it was committed, and
	// where this process first saw the reload (for its rate).
	resetReq     *resetRequest
	reset        *control.Reset
	redo         bool
	resetting    bool // handling a reset now
	resetSeenAt  time.Time
	resetSeenPos uint64
	// resetAdopted is when this node, not loading, adopted a committed
	// reset: warehouse positions read before are from before the reset.
	resetAdopted time.Time
	// Splitting (split.go); only the worker's goroutine uses these.
	split split

	// soft and hard are l.ctx and l.hard, or in cluster mode the same ended
	// also when this node loses the integration's lease; only the worker's
	// goroutine uses them.
	soft, hard context.Context
	// Cluster mode: the lease this node loads under, nil while another node
	// loads the integration (guarded by mu); countedAt is when a non-holder
	// last counted the rejected rows.
	holding   *lease
	countedAt time.Time
	gaveUp    bool      // run returned to hand the lease over (worker goroutine only)
	heldSince time.Time // when this node took the lease (worker goroutine only)
}

func newWorker(in control.Integration) *worker {
	w := &worker{id: in.ID, in: in, wake: make(chan struct{}, 1), done: make(chan struct{}), progress: make(chan struct{})}
	if in.Reset != nil {
		r := *in.Reset
		w.reset, w.redo = &r, r.CommittedAt == nil
	}
	return w
}

// changed wakes whoever waits on w.progress; w.mu must be held.
func (w *worker) changed() {
	close(w.progress)
	w.progress = make(chan struct{})
}

func (w *worker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) integration() control.Integration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.in
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
	l := &Loader{log: log, wh: wh, ctl: ctl, opts: opts, logger: logger, workers: map[int64]*worker{}, handOverAfter: time.Minute}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.hard, l.hardCancel = context.WithCancel(context.Background())
	return l
}

// Start runs the supervisor that starts a worker for each integration.
func (l *Loader) Start() {
	l.started.Store(true)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.supervise()
	}()
}

// ErrStillRunning is returned by Close when workers did not return even after
// their loads were cancelled: the caller must not close the warehouse or the log.
var ErrStillRunning = errors.New("loader: workers are still running")

// Close stops loading within ctx. First the soft stop: each worker commits its
// open batch and returns. When that takes longer than most of ctx's time, the
// hard stop cancels the loads still running (their transactions roll back and
// the records stay in the log for the next start) and Close waits for the
// workers once more. Only when they still run at ctx's end does it return
// ErrStillRunning; otherwise every worker has returned and nothing touches the
// warehouse or the log any more.
func (l *Loader) Close(ctx context.Context) error {
	l.cancel()
	defer l.hardCancel()
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	soft := ctx
	if deadline, ok := ctx.Deadline(); ok {
		// Keep a fifth of the time (at least 200 ms, at most 5 s) for the hard stop.
		grace := min(max(time.Until(deadline)/5, 200*time.Millisecond), 5*time.Second)
		var cancel context.CancelFunc
		soft, cancel = context.WithDeadline(ctx, deadline.Add(-grace))
		defer cancel()
	}
	select {
	case <-done:
		return nil
	case <-soft.Done():
	}
	l.logger.Warn("the open load batch did not commit in time; cancelling it (its records stay in the log and load at the next start)")
	l.hardCancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w after their loads were cancelled: %w", ErrStillRunning, ctx.Err())
	}
}

func (l *Loader) supervise() {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		for _, in := range l.ctl.AllIntegrations() {
			l.startWorker(in)
		}
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// startWorker starts in's worker if it has none, or tells the running one about
// changes (a deletion). It returns the worker, nil once the loader is stopping.
func (l *Loader) startWorker(in control.Integration) *worker {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w, ok := l.workers[in.ID]; ok {
		w.mu.Lock()
		changed := (w.in.DeletedAt == nil) != (in.DeletedAt == nil) || (w.in.PausedAt == nil) != (in.PausedAt == nil)
		asked := w.requestedLocked()
		w.in = in
		changed = changed || (asked == nil && w.requestedLocked() != nil) // a reset asked of another node
		w.mu.Unlock()
		if changed {
			w.poke() // a deleted one stops once everything accepted is loaded; a resumed one loads
		}
		return w
	}
	if l.ctx.Err() != nil {
		return nil
	}
	w := newWorker(in)
	l.workers[in.ID] = w
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer close(w.done)
		l.work(w)
	}()
	return w
}

// Sync loads everything the log holds for integration at the time of the call
// and returns once it is committed, or with the first load error after the call,
// or when ctx ends. It starts the integration's worker if the supervisor has not
// yet, and makes it skip BatchWait. Tests use it instead of waiting for the
// background loop.
func (l *Loader) Sync(ctx context.Context, integration int64) error {
	target := l.log.Head(integration).Position
	var w *worker
	for _, in := range l.ctl.AllIntegrations() {
		if in.ID == integration {
			w = l.startWorker(in)
		}
	}
	if w == nil {
		return fmt.Errorf("loader: sync integration %d: no such integration, or the loader is stopped", integration)
	}
	w.mu.Lock()
	failures := w.failures
	w.mu.Unlock()
	for {
		w.mu.Lock()
		pos, known, progress := w.position, w.known, w.progress
		known = known && !w.redo && !w.resetting && w.resetReq == nil // a reset first
		var err error
		if w.failures > failures {
			err = w.lastErr
		}
		w.mu.Unlock()
		if known && pos >= target {
			return nil
		}
		if w.integration().PausedAt != nil {
			return fmt.Errorf("loader: sync integration %d: loading is paused (at position %d of %d)", integration, pos, target)
		}
		if err != nil {
			return fmt.Errorf("loader: sync integration %d: %w", integration, err)
		}
		w.poke()
		select {
		case <-progress:
		case <-w.done:
			return fmt.Errorf("loader: sync integration %d: the loader stopped at position %d of %d", integration, pos, target)
		case <-ctx.Done():
			return fmt.Errorf("loader: sync integration %d: at position %d of %d: %w", integration, pos, target, ctx.Err())
		}
	}
}

// run is one integration's worker.
func (l *Loader) run(w *worker) {
	in := w.integration()
	logger := l.logger.With("integration", in.ID, "schema", in.Schema)
	var (
		fl       *Flattener
		ready    *prepared // a flattened batch waiting to be committed
		st       warehouse.State
		backoff  time.Duration
		lastTrim time.Time
		lastWarn time.Time
		attempts = attempts{dir: l.opts.AttemptsDir}
		started  bool
	)
	stopping := func() bool { return w.soft.Err() != nil }
	deleted := func() bool { return w.integration().DeletedAt != nil }
	paused := func() bool { return w.integration().PausedAt != nil }
	fails := func(err error, what string) {
		if l.ctx.Err() == nil && w.soft.Err() != nil {
			return // the lease was lost: the cancelled load is no failure to report
		}
		w.mu.Lock()
		if w.failing == 0 {
			w.since = time.Now()
		}
		w.failing++
		w.failures++
		w.lastErr = err
		n := w.failing
		w.changed()
		w.mu.Unlock()
		if n == 1 || time.Since(lastWarn) > 30*time.Second {
			msg := what + "; accepted records stay in the log and loading is retried"
			if errors.Is(err, warehouse.ErrStateMismatch) {
				msg = what + ": the warehouse's load position is not this loader's; nothing is loaded until that is resolved"
				if l.opts.Leases != nil {
					msg = what + ": another node loaded this integration meanwhile (the warehouse refused this batch, so nothing is loaded twice); re-reading the load position"
				}
			}
			logger.Error(msg, "err", err, "failures_in_a_row", n)
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
				if stopping() || l.handOver(w, logger) {
					return
				}
				backoff = nextBackoff(backoff)
				sleep(w.soft, backoff)
				continue
			}
			if !started {
				started = true
				if prev, ok := attempts.unfinished(w.id, st.Position); ok {
					w.split = prev
					if w.split.outOfMemory(st.Position, prev.limit) {
						logger.Warn("the last run was stopped while it loaded the next batch (killed, perhaps for memory); loading that batch split",
							"records", prev.limit, "next_batch_records", w.split.limit, "rejecting_one", w.split.rejectAt != 0)
					}
				}
			}
			if l.log.Head(w.id).Position <= st.Position {
				w.mu.Lock() // nothing left to load: the failure is over
				w.failing, w.lastErr = 0, nil
				w.changed()
				w.mu.Unlock()
			}
		}
		if l.handleReset(w, st, logger) {
			fl, ready = nil, nil // the state and the tables are read again
			continue
		}
		if ready == nil && paused() {
			// Paused by the operator: nothing is loaded until resumed (the
			// supervisor pokes the worker then); receiving goes on.
			if stopping() {
				return
			}
			select {
			case <-w.wake:
			case <-w.soft.Done():
			}
			continue
		}
		if ready == nil {
			if l.log.Head(w.id).Position <= st.Position {
				if deleted() || stopping() {
					return // deleted integrations stop once everything accepted is loaded
				}
				changed := l.log.Changed()
				if l.log.Head(w.id).Position <= st.Position {
					select {
					case <-changed:
					case <-w.wake:
					case <-w.soft.Done():
					case <-l.refreshTick():
						l.refreshHead(w.soft, w.id)
					}
				}
				continue
			}
			// A batch is open: wait for it to fill or to reach its age.
			deadline := time.Now().Add(l.opts.BatchWait)
		wait:
			for !stopping() {
				changed := l.log.Changed()
				wait := time.Until(deadline)
				if wait <= 0 || l.log.Head(w.id).Position-st.Position >= uint64(l.opts.BatchSize) {
					break
				}
				t := time.NewTimer(wait)
				select {
				case <-changed:
				case <-t.C:
				case <-w.wake: // Sync or a deletion: load what is there now
					t.Stop()
					break wait
				case <-w.soft.Done():
				}
				t.Stop()
			}
			if w.resetAsked() || paused() {
				continue // a reset, or a pause that came while the batch filled, goes first
			}
		}
		ctx, cancel := context.WithTimeout(w.hard, 2*time.Minute)
		var err error
		if ready == nil {
			ready, err = l.prepareBatch(ctx, w, fl, st)
		}
		var records int
		if ready != nil {
			records = ready.records
		}
		var following *prepared
		if err == nil {
			following, err = l.commitPipelined(ctx, w, fl, ready)
		}
		cancel()
		if err != nil && errors.Is(err, warehouse.ErrOutOfMemory) && w.split.outOfMemory(st.Position, records) {
			// Not a failure of the warehouse: the batch did not fit in its
			// memory. Nothing of it was written; the next try reads fewer
			// records (or rejects the one that never fits), at once.
			fl, ready = nil, nil
			logger.Warn("the batch did not fit in the warehouse's memory; splitting it", "records", records,
				"next_batch_records", w.split.limit, "rejecting_one", w.split.rejectAt != 0, "err", err)
			continue
		}
		if err != nil {
			fl, ready = nil, nil // schema knowledge and state are re-read before the next try
			fails(err, "load failed")
			w.mu.Lock()
			n := w.failing
			w.mu.Unlock()
			if stopping() && (n > 3 || w.hard.Err() != nil) || l.handOver(w, logger) {
				return
			}
			backoff = nextBackoff(backoff)
			sleep(w.soft, backoff)
			continue
		}
		next := ready.batch.State
		w.split.committed(next.Position, ready.records, l.opts.BatchSize)
		ready = following
		if backoff > 0 {
			logger.Info("loading recovered")
		}
		backoff = 0
		st = next
		l.resetLoaded(w, st.Position, logger)
		if stopping() {
			return // the open batch is flushed; what is left stays in the log for the next start
		}
		if l.opts.Retention > 0 && time.Since(lastTrim) > l.opts.TrimEvery {
			lastTrim = time.Now()
			if n, err := l.log.Trim(w.id, st.Position, time.Now().Add(-l.opts.Retention)); err != nil {
				logger.Warn("log trim failed", "err", err)
			} else if n > 0 {
				logger.Debug("trimmed loaded records past retention", "records", n)
			}
		}
	}
}

// prepare reads the integration's load state and existing tables. The state it
// returns is the batch's Prev: the stored state when it is this installation's
// (or one stored before installations had ids, which this installation claims),
// or the zero State when none is stored. A state stored by another installation,
// or one ahead of this log, is refused with warehouse.ErrStateMismatch: using it
// would skip records.
func (l *Loader) prepare(w *worker) (warehouse.State, *Flattener, error) {
	ctx, cancel := context.WithTimeout(w.hard, 30*time.Second)
	defer cancel()
	in := w.integration()
	states, err := l.wh.LoadState(ctx)
	if err != nil {
		return warehouse.State{}, nil, fmt.Errorf("loader: read load state: %w", err)
	}
	st, found := states[in.ID]
	mine := l.opts.Installation
	if found && st.Installation != mine && st.Installation != "" {
		probe := &warehouse.Batch{Integration: in.ID, Schema: in.Schema,
			Prev: warehouse.State{Installation: mine}, State: warehouse.State{Installation: mine}}
		return st, nil, fmt.Errorf("loader: %w", warehouse.Mismatch(probe, st, true))
	}
	if l.opts.Leases != nil && st.Position > l.log.Head(in.ID).Position {
		// On a cluster this node learns of other nodes' appends a moment
		// after the node that loaded them did.
		l.waitHead(ctx, in.ID, st.Position)
	}
	if head := l.log.Head(in.ID).Position; st.Position > head {
		return st, nil, fmt.Errorf("loader: %w: the warehouse has loaded integration %d up to log position %d, but this installation's log ends at %d: "+
			"the log is older than the warehouse (a data directory restored from an older backup?). Loading is refused so that no new record is skipped; "+
			"restore a newer backup of the data directory, or point this installation at a warehouse it loaded",
			warehouse.ErrStateMismatch, in.ID, st.Position, head)
	}
	w.mu.Lock()
	w.position, w.known = st.Position, true
	if w.lastLoad.IsZero() && st.Position > 0 {
		w.lastLoad = st.LoadedAt // the last commit before this start
	}
	w.changed()
	w.mu.Unlock()
	existing, err := l.wh.Tables(ctx, in.Schema)
	if err != nil {
		return st, nil, fmt.Errorf("loader: tables of schema %s: %w", in.Schema, err)
	}
	w.mu.Lock()
	counted := w.counted
	w.mu.Unlock()
	if !counted {
		// Counts survive restarts: rejected rows are in the warehouse, and every
		// other record up to the position was loaded.
		rejected, err := l.wh.CountRows(ctx, in.Schema, warehouse.RejectedTable)
		if err != nil {
			return st, nil, fmt.Errorf("loader: count rejected records: %w", err)
		}
		w.mu.Lock()
		w.rejected = rejected
		w.loaded = int64(st.Position) - rejected
		w.counted = true
		w.mu.Unlock()
	}
	fl := NewFlattener(in.PrimaryKey, l.opts.MaxColumns, existing)
	fl.LimitText(l.opts.MaxText)
	return st, fl, nil
}

// prepared is a batch read from the log and flattened, ready to commit.
type prepared struct {
	batch            *warehouse.Batch
	records          int
	bytes            int // of the records' bodies
	loaded, rejected int
	start            time.Time
}

// commitPipelined commits p while flattening the following batch when a full one
// is already waiting in the log, so flattening overlaps the warehouse's work. The
// following batch is returned only if p committed; on any error it is dropped and
// the caller re-reads the state from the warehouse.
func (l *Loader) commitPipelined(ctx context.Context, w *worker, fl *Flattener, p *prepared) (*prepared, error) {
	if w.soft.Err() != nil || w.split.active() || l.log.Head(p.batch.Integration).Position-p.batch.State.Position < uint64(l.opts.BatchSize) {
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
		// Either way the flattener may hold part of a batch: the error makes the
		// worker drop it and re-read the state, which includes p if it committed.
		return nil, errors.Join(err, nextErr)
	}
	return next, nil
}

// prepareBatch reads the records after st and flattens them into a batch.
func (l *Loader) prepareBatch(ctx context.Context, w *worker, fl *Flattener, st warehouse.State) (*prepared, error) {
	in := w.integration()
	recs, err := l.log.Read(ctx, in.ID, st.Position, w.split.size(l.opts.BatchSize), l.opts.MaxBatchBytes)
	if err != nil {
		return nil, err
	}
	p := &prepared{start: time.Now(), records: len(recs)}
	for _, r := range recs {
		p.bytes += len(r.Body)
	}
	next := st
	next.Installation = l.opts.Installation
	for i, r := range recs {
		// Flattening never blocks, so it checks ctx itself (a shutdown's hard stop).
		if i%1024 == 1023 {
			if err := ctx.Err(); err != nil {
				// fl now holds part of a batch: the caller must drop it (any
				// error makes the worker re-read the warehouse and start anew).
				return nil, err
			}
		}
		if r.Position != next.Position+1 {
			return nil, fmt.Errorf("loader: log of integration %d jumps from position %d to %d: records were removed before they were loaded", in.ID, next.Position, r.Position)
		}
		seq := r.ReceivedAt.UnixMilli() * 1_000_000
		if seq <= next.Sequence {
			seq = next.Sequence + 1
		}
		next.Sequence = seq
		next.Position = r.Position
		rec := Input{ID: r.ID, ReceivedAt: r.ReceivedAt, Sequence: seq, Body: r.Body}
		if reason, truncate, ok := w.split.reject(r.Position); ok {
			fl.Reject(rec, reason, truncate)
			continue
		}
		fl.Add(rec)
	}
	tables, loaded, rejected := fl.Take(time.Now())
	p.loaded, p.rejected = loaded, rejected
	p.batch = &warehouse.Batch{Integration: in.ID, Schema: in.Schema, Tables: tables, Prev: st, State: next}
	if in.PrimaryKey != "" {
		p.batch.Key = ColumnName(in.PrimaryKey)
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
	noted := p.bytes >= attemptNoteBytes && attempts{dir: l.opts.AttemptsDir}.begin(p.batch.Integration, p.batch.Prev.Position, p.records, w.split)
	err := l.wh.Load(ctx, p.batch)
	if noted {
		attempts{dir: l.opts.AttemptsDir}.end(p.batch.Integration)
	}
	if err != nil {
		return fmt.Errorf("loader: integration %d: load %d records into schema %s: %w", p.batch.Integration, p.records, p.batch.Schema, err)
	}
	faults.Point(faults.LoaderAfterCommit)
	w.mu.Lock()
	w.position, w.known = p.batch.State.Position, true
	w.loaded += int64(p.loaded)
	w.rejected += int64(p.rejected)
	w.lastLoad = now
	w.failing, w.lastErr = 0, nil
	w.changed()
	w.mu.Unlock()
	if l.opts.Observe != nil {
		l.opts.Observe.Batch(p.batch.Integration, p.loaded, p.rejected, time.Since(p.start))
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
		if !w.counted {
			// Rejections not counted yet: everything up to the position was
			// handled, and telling loaded from rejected must wait.
			s.Loaded = int64(w.position)
		}
		if w.failing > 0 && w.lastErr != nil {
			s.Error = w.lastErr.Error()
		}
		s.Paused = w.in.PausedAt != nil
		if w.reset != nil {
			p := w.resetProgressLocked(time.Now())
			s.Reset = &p
		}
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

// LastError reports why loading fails and since when, nil while every
// integration's last attempt worked. Of several failing integrations it names
// one whose load position is refused (warehouse.ErrStateMismatch) first, then
// the one failing longest.
func (l *Loader) LastError() (error, time.Time) {
	l.mu.Lock()
	workers := make([]*worker, 0, len(l.workers))
	for _, w := range l.workers {
		workers = append(workers, w)
	}
	l.mu.Unlock()
	var (
		worst    error
		since    time.Time
		mismatch bool
	)
	for _, w := range workers {
		w.mu.Lock()
		err, at := w.lastErr, w.since
		w.mu.Unlock()
		if err == nil {
			continue
		}
		m := errors.Is(err, warehouse.ErrStateMismatch)
		if worst == nil || (m && !mismatch) || (m == mismatch && at.Before(since)) {
			worst, since, mismatch = err, at, m
		}
	}
	return worst, since
}

// Running reports whether the loader has been started and not closed.
func (l *Loader) Running() bool { return l.started.Load() && l.ctx.Err() == nil }

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
