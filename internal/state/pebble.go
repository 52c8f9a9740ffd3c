package state

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/hookhouse/hookhouse/internal/faults"
)

// Key layout. Big-endian integers keep each integration's records in position order.
//
//	'L' integration(8) position(8) -> receivedAt µs(8) id(16) body
//	'H' integration(8)             -> position(8) lastReceivedAt µs(8)
//	'C' control key                -> control value (see control package)
//
// and for delivery-id dedupe (dedupe.go):
//
//	'D' integration(8) sha256(id)(32)           -> claimedAt µs(8) expiresAt µs(8)
//	'E' expiresAt µs(8) integration(8) sha256(32) -> empty: the sweep's index
//	'N' integration(8)                          -> deliveries refused as duplicates(8)
const (
	prefixLog         = 'L'
	prefixHead        = 'H'
	prefixControl     = 'C'
	prefixClaim       = 'D'
	prefixClaimExpiry = 'E'
	prefixDupCount    = 'N'
)

// Options tune the log.
type Options struct {
	// MinFreeBytes: Append refuses with ErrNoSpace when the disk holding the log has
	// less free space than this plus the request. 0 means 64 MiB.
	MinFreeBytes int64
	// MaxGroupBytes caps one group commit; a single larger request still goes alone.
	MaxGroupBytes int
	// SyncObserver, if set, is called with the duration of each group commit.
	SyncObserver func(time.Duration, int)
	// SweepEvery is how often expired delivery-id claims are removed. 0 means
	// 10 minutes; negative turns the sweep off (tests call SweepClaims).
	SweepEvery time.Duration
	// GroupWait is how long the writer may hold a group open for more requests
	// when the group before it had at least groupWaitMin requests (many clients
	// at once): up to twice that many share the next fsync, which costs the
	// same CPU for 1 request as for 60. 0 means 1 ms; negative turns it off. A
	// lone request never waits.
	GroupWait time.Duration
}

// groupWaitMin is the smallest group after which the writer holds the next one
// open (Options.GroupWait).
const groupWaitMin = 4

// groupWaitStep is how often a writer holding a group open looks at its queue.
const groupWaitStep = 250 * time.Microsecond

// Pebble is the embedded State: the log and control data in one Pebble store.
type Pebble struct {
	db     *pebble.DB
	dir    string
	logger *slog.Logger
	opts   Options
	// minFree is opts.MinFreeBytes; atomic so that a test can move the reserve
	// while the probe goroutine reads it.
	minFree atomic.Int64

	appends chan *appendReq
	// Owned by the writer goroutine: reused from group to group.
	next  map[int64]Head // heads after the group being committed
	ids   []byte         // random bytes for the group's record ids
	idsAt int            // how many of ids are used
	stop  chan struct{}  // closed by Close: the writer, the prober and the sweeper return
	done  chan struct{}  // closed when the writer has returned
	swept chan struct{}  // closed when the sweeper has returned

	// closing is held for reading by every call that uses db (and while
	// queuing an append), and for writing by Close to set isClosed: once Close
	// has it, no call is using db and every later one returns ErrClosed.
	closing  sync.RWMutex
	isClosed bool

	// trimHold is held by HoldTrims (a backup) for writing; Trim tries it
	// for reading and removes nothing while it is held.
	trimHold sync.RWMutex

	mu      sync.Mutex
	heads   map[int64]Head
	dups    map[int64]int64 // Deduplicated; changed only by the writer
	recent  recentClaims    // the writer's memory of claim changes (dedupe.go)
	changed chan struct{}   // closed and replaced on every successful append
	closed  bool

	freeMu      sync.Mutex
	freeChecked time.Time
	freeBytes   int64

	// Writable answers from the last probe; see Writable and probeLoop.
	probeMu   sync.Mutex
	probeErr  error
	probeAt   time.Time     // when probeErr was measured; zero before the first probe
	probed    chan struct{} // closed and replaced when a probe finishes
	probeWake chan struct{} // buffered 1: asks probeLoop for a fresh probe
	probeDone chan struct{} // closed when probeLoop has returned
	probes    atomic.Int64  // probe writes made (tests check the rate)
}

// appendReq is one request to the writer: an append, possibly with a claim
// (AppendOnce), or a sweep of expired claims (then only sweep is set).
type appendReq struct {
	integration int64
	receivedAt  time.Time
	bodies      [][]byte
	times       []time.Time // per-record receipt times (AppendOnceAt); nil: receivedAt for all
	size        int
	claim       *claimReq
	sweep       *sweepReq
	first       uint64
	err         chan error
}

// OpenPebble opens (or creates) the store in dir.
func OpenPebble(dir string, logger *slog.Logger, opts Options) (*Pebble, error) {
	if opts.MinFreeBytes == 0 {
		opts.MinFreeBytes = 64 << 20
	}
	if opts.MaxGroupBytes == 0 {
		opts.MaxGroupBytes = 32 << 20
	}
	if opts.SweepEvery == 0 {
		opts.SweepEvery = 10 * time.Minute
	}
	if opts.GroupWait == 0 {
		opts.GroupWait = time.Millisecond
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state: create %s: %w", dir, err)
	}
	db, err := pebble.Open(dir, &pebble.Options{
		Logger:       pebbleLogger{logger},
		MemTableSize: 64 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("state: open pebble in %s: %w (is another hookhouse using this data dir?)", dir, err)
	}
	p := &Pebble{
		db:      db,
		dir:     dir,
		logger:  logger,
		opts:    opts,
		appends: make(chan *appendReq, 1024),
		next:    map[int64]Head{},
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		swept:   make(chan struct{}),
		heads:   map[int64]Head{},
		dups:    map[int64]int64{},
		changed: make(chan struct{}),

		probed:    make(chan struct{}),
		probeWake: make(chan struct{}, 1),
		probeDone: make(chan struct{}),
	}
	p.minFree.Store(opts.MinFreeBytes)
	if err := p.loadHeads(); err != nil {
		db.Close()
		return nil, err
	}
	if err := p.loadDupCounts(); err != nil {
		db.Close()
		return nil, err
	}
	go p.writeLoop()
	go p.probeLoop()
	go p.sweepLoop(opts.SweepEvery)
	return p, nil
}

func (p *Pebble) loadHeads() error {
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixHead}, UpperBound: []byte{prefixHead + 1}})
	if err != nil {
		return fmt.Errorf("state: read heads: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) != 9 || len(v) != 16 {
			return fmt.Errorf("state: corrupt head entry %x", k)
		}
		id := int64(binary.BigEndian.Uint64(k[1:]))
		p.heads[id] = Head{
			Position:       binary.BigEndian.Uint64(v),
			LastReceivedAt: time.UnixMicro(int64(binary.BigEndian.Uint64(v[8:]))).UTC(),
		}
	}
	return it.Error()
}

// Append stores bodies as records of integration, all or nothing, and returns once
// they are fsync'd. It returns the position of the first record.
func (p *Pebble) Append(ctx context.Context, integration int64, receivedAt time.Time, bodies [][]byte) (uint64, error) {
	size := 0
	for _, b := range bodies {
		size += len(b) + 64
	}
	if err := p.checkSpace(int64(size)); err != nil {
		return 0, err
	}
	req := appendReqs.Get().(*appendReq)
	req.integration, req.receivedAt, req.bodies, req.size = integration, receivedAt, bodies, size
	err := p.do(ctx, req)
	first := req.first
	// The writer is done with req once it has answered (or never got it).
	*req = appendReq{err: req.err}
	appendReqs.Put(req)
	return first, err
}

// appendReqs keeps plain appends' requests, each with its answer channel
// (buffered, empty when put back), so that an append allocates neither.
var appendReqs = sync.Pool{New: func() any { return &appendReq{err: make(chan error, 1)} }}

// do queues req for the writer and waits for its answer.
func (p *Pebble) do(ctx context.Context, req *appendReq) error {
	// The read lock keeps Close from stopping the writer between our check and
	// our send, so a queued request is always answered.
	p.closing.RLock()
	if p.isClosed {
		p.closing.RUnlock()
		return ErrClosed
	}
	select {
	case p.appends <- req:
	case <-ctx.Done():
		p.closing.RUnlock()
		return ctx.Err()
	}
	p.closing.RUnlock()
	// Once queued the request is committed or failed by the writer; wait for the
	// answer even if ctx ends, so that a 200 is never sent for an unknown outcome
	// and a failure is never reported for records that became durable.
	return <-req.err
}

// writeLoop is the single writer: it owns the group commit.
//
// Each group takes what is queued when the last commit ends. Under load (the
// last group had groupWaitMin requests or more) it also waits up to GroupWait
// for the group to reach twice the last one's size: an fsync costs the server
// ~0.1–0.3 ms of CPU however many requests share it, so on a busy machine
// fewer, larger groups leave more CPU for requests. A 200 still waits for its
// group's fsync.
func (p *Pebble) writeLoop() {
	defer close(p.done)
	var group []*appendReq
	var wait *time.Timer // reused: one timer for the writer's life
	last := 0            // requests in the last group
	for {
		group = group[:0]
		select {
		case r := <-p.appends:
			group = append(group, r)
		case <-p.stop:
			p.failPending(ErrClosed)
			return
		}
		size := group[0].size
	drain:
		for size < p.opts.MaxGroupBytes {
			select {
			case r := <-p.appends:
				group = append(group, r)
				size += r.size
			default:
				break drain
			}
		}
		if p.opts.GroupWait > 0 && last >= groupWaitMin && len(group) < 2*last && size < p.opts.MaxGroupBytes {
			// Look at the queue every groupWaitStep instead of taking each
			// request as it comes: a receive would wake the writer once per
			// request, a cost of its own.
			deadline := time.Now().Add(p.opts.GroupWait)
		hold:
			for len(group)+len(p.appends) < 2*last {
				left := time.Until(deadline)
				if left <= 0 {
					break
				}
				if wait == nil {
					wait = time.NewTimer(min(left, groupWaitStep))
				} else {
					wait.Reset(min(left, groupWaitStep))
				}
				select {
				case <-wait.C:
				case <-p.stop:
					wait.Stop()
					break hold // commit what is here; the loop then fails the rest
				}
			}
		take:
			for size < p.opts.MaxGroupBytes {
				select {
				case r := <-p.appends:
					group = append(group, r)
					size += r.size
				default:
					break take
				}
			}
		}
		last = len(group)
		p.commit(group)
		clear(group) // drop the requests (and their bodies) until the next group
	}
}

func (p *Pebble) failPending(err error) {
	for {
		select {
		case r := <-p.appends:
			r.err <- err
		default:
			return
		}
	}
}

func (p *Pebble) commit(group []*appendReq) {
	b := p.db.NewBatch()
	defer b.Close()
	// Claims and sweeps are decided here, by the single writer, in queue order
	// and against what is already committed, so no two requests can both win
	// a claim. Plain appends skip this.
	var dups map[int64]int64
	var claims map[claimKey]claim
	for _, r := range group {
		if r.claim != nil || r.sweep != nil {
			dups, claims = p.decideClaims(b, group)
			break
		}
	}
	p.mu.Lock()
	next := p.next
	clear(next)
	for _, r := range group {
		if r.sweep != nil || (r.claim != nil && (r.claim.duplicate || r.claim.err != nil)) {
			continue
		}
		h, ok := next[r.integration]
		if !ok {
			h = p.heads[r.integration]
		}
		r.first = h.Position + 1
		us := r.receivedAt.UnixMicro()
		for i, body := range r.bodies {
			h.Position++
			if r.times != nil {
				us = r.times[i].UnixMicro()
			}
			// Encode straight into the batch: no intermediate copy of the body.
			op := b.SetDeferred(17, 24+len(body))
			putLogKey(op.Key, r.integration, h.Position)
			binary.BigEndian.PutUint64(op.Value, uint64(us))
			p.newID(op.Value[8:24])
			copy(op.Value[24:], body)
			_ = op.Finish()
		}
		if r.receivedAt.After(h.LastReceivedAt) {
			h.LastReceivedAt = r.receivedAt
		}
		next[r.integration] = h
	}
	p.mu.Unlock()
	for id, h := range next {
		// Set copies key and value into the batch: both can live on the stack.
		var k [9]byte
		var v [16]byte
		putHeadKey(k[:], id)
		binary.BigEndian.PutUint64(v[:], h.Position)
		binary.BigEndian.PutUint64(v[8:], uint64(h.LastReceivedAt.UnixMicro()))
		_ = b.Set(k[:], v[:], nil)
	}
	for id, n := range dups {
		_ = b.Set(dupCountKey(id), binary.BigEndian.AppendUint64(nil, uint64(n)), nil)
	}
	start := time.Now()
	faults.Point(faults.LogBeforeSync)
	err := b.Commit(pebble.Sync)
	if p.opts.SyncObserver != nil {
		p.opts.SyncObserver(time.Since(start), len(group))
	}
	if err != nil {
		p.logger.Error("log append failed; requests answered 503", "err", err, "requests", len(group))
		err = fmt.Errorf("state: append: %w", err)
	} else {
		faults.Point(faults.LogAfterSync)
		p.claimsCommitted(claims)
		p.mu.Lock()
		for id, h := range next {
			p.heads[id] = h
		}
		for id, n := range dups {
			p.dups[id] = n
		}
		if len(next) > 0 { // a group of duplicates and sweeps has nothing to read
			close(p.changed)
			p.changed = make(chan struct{})
		}
		p.mu.Unlock()
	}
	for _, r := range group {
		if r.claim != nil && r.claim.err != nil {
			r.err <- r.claim.err
			continue
		}
		r.err <- err
	}
}

// enter is called by every method that uses db: it returns ErrClosed once
// Close has begun, and otherwise keeps Close from closing db until leave.
// Between the two a method must not call another that enters: a read lock
// taken again while Close waits for the write lock deadlocks.
func (p *Pebble) enter() error {
	p.closing.RLock()
	if p.isClosed {
		p.closing.RUnlock()
		return ErrClosed
	}
	return nil
}

func (p *Pebble) leave() { p.closing.RUnlock() }

// Heads returns a copy of every integration's head.
func (p *Pebble) Heads() map[int64]Head {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[int64]Head, len(p.heads))
	for k, v := range p.heads {
		out[k] = v
	}
	return out
}

// Head returns one integration's head.
func (p *Pebble) Head(integration int64) Head {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.heads[integration]
}

// Changed returns a channel closed at the next successful append.
func (p *Pebble) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

// Read returns up to max records of integration after position, in order, and at
// most maxBytes of bodies (always at least one record if any).
func (p *Pebble) Read(ctx context.Context, integration int64, after uint64, max, maxBytes int) ([]Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	it, err := p.db.NewIter(&pebble.IterOptions{
		LowerBound: logKey(integration, after+1),
		UpperBound: logKey(integration+1, 0),
	})
	if err != nil {
		return nil, fmt.Errorf("state: read log: %w", err)
	}
	defer it.Close()
	// Size the result for the records there are (at most max), and copy the
	// bodies into shared slabs instead of one allocation each: a batch of
	// 10,000 records is then a handful of allocations, not 10,000 and more.
	var out []Record
	if head := p.Head(integration).Position; head > after {
		out = make([]Record, 0, min(uint64(max), head-after, 1<<14)) // grows past 16,384 as needed
	}
	var slab []byte
	size := 0
	for it.First(); it.Valid() && len(out) < max; it.Next() {
		k, v := it.Key(), it.Value()
		if len(v) < 24 {
			return nil, fmt.Errorf("state: corrupt log entry %x", k)
		}
		body := v[24:]
		if len(body) > cap(slab)-len(slab) {
			slab = make([]byte, 0, readSlab(len(body), maxBytes-size))
		}
		n := len(slab)
		slab = append(slab, body...)
		r := Record{
			Integration: integration,
			Position:    binary.BigEndian.Uint64(k[9:]),
			ReceivedAt:  time.UnixMicro(int64(binary.BigEndian.Uint64(v))).UTC(),
			Body:        slab[n:len(slab):len(slab)], // capped: an append by the caller copies
		}
		copy(r.ID[:], v[8:24])
		out = append(out, r)
		size += len(r.Body)
		if size >= maxBytes {
			break
		}
	}
	return out, it.Error()
}

// readSlab is the size of the next slab Read copies bodies into: 256 KiB, or
// less when the batch's byte budget has less left, and never less than the
// body at hand. A record kept longer than its batch keeps its slab alive, so
// slabs stay small.
func readSlab(body, budgetLeft int) int {
	n := min(256<<10, max(budgetLeft, 4<<10))
	return max(n, body)
}

// Trim removes records of integration at or below upTo that were received before
// cutoff. It returns how many positions it removed: 0 while a backup holds
// trims (HoldTrims).
func (p *Pebble) Trim(integration int64, upTo uint64, cutoff time.Time) (uint64, error) {
	if !p.trimHold.TryRLock() {
		return 0, nil
	}
	defer p.trimHold.RUnlock()
	if err := p.enter(); err != nil {
		return 0, err
	}
	defer p.leave()
	it, err := p.db.NewIter(&pebble.IterOptions{
		LowerBound: logKey(integration, 0),
		UpperBound: logKey(integration, upTo+1),
	})
	if err != nil {
		return 0, err
	}
	var first, end uint64
	cut := uint64(cutoff.UnixMicro())
	for it.First(); it.Valid(); it.Next() {
		pos := binary.BigEndian.Uint64(it.Key()[9:])
		if first == 0 {
			first = pos
		}
		if binary.BigEndian.Uint64(it.Value()) >= cut {
			break
		}
		end = pos + 1
	}
	if err := it.Close(); err != nil {
		return 0, err
	}
	if end == 0 {
		return 0, nil
	}
	if err := p.reserve(64, minFreeControl); err != nil {
		return 0, fmt.Errorf("state: trim log: %w", err)
	}
	if err := p.db.DeleteRange(logKey(integration, first), logKey(integration, end), pebble.NoSync); err != nil {
		return 0, fmt.Errorf("state: trim log: %w", err)
	}
	return end - first, nil
}

// Close stops the writer (failing queued appends with ErrClosed), the prober
// and the sweeper, waits for calls in progress, and closes Pebble. Calls made during or after
// Close return ErrClosed.
func (p *Pebble) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.closing.Lock()
	p.isClosed = true
	p.closing.Unlock()
	close(p.stop)
	<-p.done
	<-p.probeDone
	<-p.swept
	return p.db.Close()
}

// Get reads a control value.
func (p *Pebble) Get(key string) ([]byte, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	v, c, err := p.db.Get(controlKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("state: get %s: %w", key, err)
	}
	defer c.Close()
	return bytes.Clone(v), nil
}

// Put writes control values durably and atomically (nil value deletes).
func (p *Pebble) Put(kvs map[string][]byte) error {
	size := 0
	for k, v := range kvs {
		size += len(k) + len(v) + 16
	}
	if err := p.enter(); err != nil {
		return err
	}
	defer p.leave()
	if err := p.reserve(int64(size), minFreeControl); err != nil {
		return fmt.Errorf("state: write control data: %w", err)
	}
	b := p.db.NewBatch()
	defer b.Close()
	for k, v := range kvs {
		if v == nil {
			_ = b.Delete(controlKey(k), nil)
		} else {
			_ = b.Set(controlKey(k), v, nil)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("state: write control data: %w", err)
	}
	return nil
}

// Scan calls fn for every control key with the prefix, in key order. fn must
// not call the Pebble (see enter).
func (p *Pebble) Scan(prefix string, fn func(key string, value []byte) error) error {
	if err := p.enter(); err != nil {
		return err
	}
	defer p.leave()
	lo := controlKey(prefix)
	hi := append(bytes.Clone(lo), 0xff)
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if err := fn(string(it.Key()[1:]), bytes.Clone(it.Value())); err != nil {
			return err
		}
	}
	return it.Error()
}

// Dir is where the store lives.
func (p *Pebble) Dir() string { return filepath.Clean(p.dir) }

func logKey(integration int64, pos uint64) []byte {
	k := make([]byte, 17)
	putLogKey(k, integration, pos)
	return k
}

func putLogKey(k []byte, integration int64, pos uint64) {
	k[0] = prefixLog
	binary.BigEndian.PutUint64(k[1:], uint64(integration))
	binary.BigEndian.PutUint64(k[9:], pos)
}

func headKey(integration int64) []byte {
	k := make([]byte, 9)
	putHeadKey(k, integration)
	return k
}

func putHeadKey(k []byte, integration int64) {
	k[0] = prefixHead
	binary.BigEndian.PutUint64(k[1:], uint64(integration))
}

// idBatch is how many record ids the writer draws from crypto/rand at once.
const idBatch = 256

// newID writes a random (version 4) UUID into dst, as uuid.New does, from
// random bytes read idBatch ids at a time. Only the writer calls it.
func (p *Pebble) newID(dst []byte) {
	if p.idsAt == len(p.ids) {
		if p.ids == nil {
			p.ids = make([]byte, 16*idBatch)
		}
		_, _ = rand.Read(p.ids) // crypto/rand.Read never fails (it crashes the program instead)
		p.idsAt = 0
	}
	copy(dst, p.ids[p.idsAt:p.idsAt+16])
	p.idsAt += 16
	dst[6] = dst[6]&0x0f | 0x40 // version 4
	dst[8] = dst[8]&0x3f | 0x80 // RFC 4122 variant
}

func controlKey(k string) []byte { return append([]byte{prefixControl}, k...) }

// pebbleLogger sends Pebble's own messages to slog.
type pebbleLogger struct{ l *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}
func (l pebbleLogger) Errorf(format string, args ...any) {
	l.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}
func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
	os.Exit(1)
}
