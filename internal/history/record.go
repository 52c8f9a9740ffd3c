package history

import (
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Every integration keeps three rolling series, one per window, each a ring of
// exactly the window's length: a record is added to its minute, 10-minute and
// hour bucket at once. That costs three counter updates per call instead of
// one, and buys windows that are exact at every moment (the current hour
// already holds the current minute) with no roll-up step to schedule, to
// catch up after downtime, or to merge at read time. A ring slot is reused
// when its bucket ages out, so memory is fixed per integration: 372 buckets.
type resolution struct {
	key   byte  // in state keys
	width int64 // seconds per bucket
	n     int   // buckets kept: the window's length
}

var resolutions = [3]resolution{
	{'m', 60, 60},    // Hour
	{'t', 600, 144},  // Day
	{'h', 3600, 168}, // Week
}

const bucketsPerSeries = 60 + 144 + 168

// bucket is one ring slot.
type bucket struct {
	idx      int64 // bucket number: Unix seconds / width; 0 while empty
	received int64
	loaded   int64
	rejected int64
	lagMs    int64       // the largest lag recorded in the bucket
	sigFail  int64       // signature failures
	refused  []codeCount // non-200 answers by status code; kept on reuse
	dirty    bool        // changed since the last flush
	stored   bool        // the state holds a key for idx
}

type codeCount struct {
	code int
	n    int64
}

func (b *bucket) reset(idx int64) {
	*b = bucket{idx: idx, refused: b.refused[:0], dirty: b.dirty}
}

// series is one integration's rings on one node.
type series struct {
	id    int64
	rings [3][]bucket
}

func newSeries(id int64) *series {
	s := &series{id: id}
	all := make([]bucket, bucketsPerSeries)
	for r, res := range resolutions {
		s.rings[r], all = all[:res.n:res.n], all[res.n:]
	}
	return s
}

// slotRef names a ring slot of this node's series.
type slotRef struct {
	s    *series
	res  uint8
	slot uint16
}

func (r slotRef) bucket() *bucket { return &r.s.rings[r.res][r.slot] }

// bucketKey names a bucket of this node that the state may hold.
type bucketKey struct {
	integration int64
	res         uint8
	idx         int64
}

// Options tune a History.
type Options struct {
	// Node names this node's keys in the state (default "local"); it must not
	// contain '/'. Nodes sharing one state each write only their own keys.
	Node string
	// FlushEvery is how often changed buckets are written (default 10s): a
	// crash loses at most this much history.
	FlushEvery time.Duration
	// Lag, if set, is called every FlushEvery by the flush goroutine, and each
	// integration's answer is recorded with Lag.
	Lag func() map[int64]time.Duration
}

// History records traffic and loading figures per integration and serves them
// as chart points. Recording is safe for concurrent use and cheap: a mutex and
// a few counter updates, no I/O and, in the steady state, no allocation.
type History struct {
	kv     KV
	logger *slog.Logger
	now    func() time.Time
	opts   Options

	mu      sync.Mutex
	own     map[int64]*series            // this node's buckets
	peers   map[string]map[int64]*series // other nodes' buckets as loaded at Open (a shared KV would add a watch)
	dirty   []slotRef                    // slots whose dirty flag was set since the last flush
	deletes []bucketKey                  // stored buckets that aged out
	swept   int64                        // the minute of the last sweep
	scratch bucket                       // takes records the clock put behind a whole window
	started bool
	closed  bool

	flushMu sync.Mutex // one flush at a time; guards flight
	flight  []inflight

	stop chan struct{} // closed by Close
	done chan struct{} // closed when the flush goroutine returns
}

// Open loads the history kept in kv with the default Options. now is the clock
// (nil: time.Now).
func Open(kv KV, logger *slog.Logger, now func() time.Time) (*History, error) {
	return OpenWith(kv, logger, now, Options{})
}

// OpenWith is Open with Options. It deletes what has aged out of every window.
// Nothing runs in the background until Start.
func OpenWith(kv KV, logger *slog.Logger, now func() time.Time, opts Options) (*History, error) {
	if opts.Node == "" {
		opts.Node = "local"
	}
	if strings.Contains(opts.Node, "/") {
		return nil, errors.New("history: node name " + opts.Node + " must not contain '/'")
	}
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = 10 * time.Second
	}
	if now == nil {
		now = time.Now
	}
	h := &History{
		kv: kv, logger: logger, now: now, opts: opts,
		own:   map[int64]*series{},
		peers: map[string]map[int64]*series{},
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	h.scratch.dirty = true
	if err := h.load(); err != nil {
		return nil, err
	}
	return h, nil
}

// Received counts records acknowledged with a 200.
func (h *History) Received(integration int64, records int) {
	if records <= 0 {
		return
	}
	sec := h.now().Unix()
	h.mu.Lock()
	s := h.series(integration)
	for r := range s.rings {
		h.bucket(s, r, sec).received += int64(records)
	}
	h.mu.Unlock()
}

// Refused counts an answer other than 200; integration is 0 when the request
// named no valid integration.
func (h *History) Refused(integration int64, status int) {
	sec := h.now().Unix()
	h.mu.Lock()
	s := h.series(integration)
	for r := range s.rings {
		b := h.bucket(s, r, sec)
		found := false
		for i := range b.refused {
			if b.refused[i].code == status {
				b.refused[i].n++
				found = true
				break
			}
		}
		if !found {
			b.refused = append(b.refused, codeCount{status, 1})
		}
	}
	h.mu.Unlock()
}

// Loaded counts records loaded into the warehouse and into _sdc_rejected.
func (h *History) Loaded(integration int64, loaded, rejected int) {
	if loaded <= 0 && rejected <= 0 {
		return
	}
	sec := h.now().Unix()
	h.mu.Lock()
	s := h.series(integration)
	for r := range s.rings {
		b := h.bucket(s, r, sec)
		b.loaded += int64(loaded)
		b.rejected += int64(rejected)
	}
	h.mu.Unlock()
}

// SignatureFailed counts a delivery whose signature did not verify, whether
// it was refused (enforce) or accepted anyway (monitor).
func (h *History) SignatureFailed(integration int64) {
	sec := h.now().Unix()
	h.mu.Lock()
	s := h.series(integration)
	for r := range s.rings {
		h.bucket(s, r, sec).sigFail++
	}
	h.mu.Unlock()
}

// Lag records a lag sample; each bucket keeps the largest.
func (h *History) Lag(integration int64, d time.Duration) {
	ms := d.Milliseconds()
	if ms <= 0 {
		return // nothing waiting: no bucket needed
	}
	sec := h.now().Unix()
	h.mu.Lock()
	s := h.series(integration)
	for r := range s.rings {
		b := h.bucket(s, r, sec)
		b.lagMs = max(b.lagMs, ms)
	}
	h.mu.Unlock()
}

// series returns this node's series of integration, creating it. h.mu is held.
func (h *History) series(integration int64) *series {
	s := h.own[integration]
	if s == nil {
		s = newSeries(integration)
		h.own[integration] = s
	}
	return s
}

// bucket returns the bucket of ring r that holds second sec, starting it if
// the slot still holds an older one, and marks it dirty. h.mu is held.
func (h *History) bucket(s *series, r int, sec int64) *bucket {
	res := &resolutions[r]
	idx := sec / res.width
	slot := int(idx % int64(res.n))
	b := &s.rings[r][slot]
	if b.idx != idx {
		if b.idx > idx {
			// The clock went back by more than the window: the slot holds a newer
			// bucket, which the record must not reset.
			return &h.scratch
		}
		if b.stored {
			h.deletes = append(h.deletes, bucketKey{s.id, uint8(r), b.idx})
		}
		b.reset(idx)
	}
	if !b.dirty {
		b.dirty = true
		h.dirty = append(h.dirty, slotRef{s, uint8(r), uint16(slot)})
	}
	return b
}

// Points returns window w of integration: one Point per bucket, oldest first,
// the last being the current bucket, aligned to bucket boundaries in UTC,
// zero where nothing was recorded. Integration 0 sums every integration (and
// the refusals that named none); its Lag is the largest. Every node's buckets
// are summed. An unknown window gives nil.
func (h *History) Points(integration int64, w Window) []Point {
	if w < Hour || w > Week {
		return nil
	}
	r := int(w - Hour)
	res := resolutions[r]
	first := h.now().Unix()/res.width - int64(res.n) + 1
	out := make([]Point, res.n)
	for i := range out {
		out[i].At = time.Unix((first+int64(i))*res.width, 0).UTC()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	add := func(s *series) {
		if s == nil {
			return
		}
		ring := s.rings[r]
		for i := range out {
			idx := first + int64(i)
			b := &ring[idx%int64(res.n)]
			if b.idx != idx {
				continue
			}
			p := &out[i]
			p.Received += b.received
			p.Loaded += b.loaded
			p.Rejected += b.rejected
			p.Lag = max(p.Lag, float64(b.lagMs)/1000)
			p.SignatureFailures += b.sigFail
			for _, c := range b.refused {
				if p.Refused == nil {
					p.Refused = map[int]int64{}
				}
				p.Refused[c.code] += c.n
			}
		}
	}
	each := func(node map[int64]*series) {
		if integration != 0 {
			add(node[integration])
			return
		}
		for _, s := range node {
			add(s)
		}
	}
	each(h.own)
	for _, node := range h.peers {
		each(node)
	}
	return out
}

// sweep empties every slot whose bucket has left its window, queues the
// stored ones for deletion, and forgets series with nothing left, so that an
// integration idle (or deleted) for a week costs nothing. Peers' keys are
// their owners' to delete (or the next Open's). h.mu is held.
func (h *History) sweep(sec int64) {
	sweepNode := func(node map[int64]*series, own bool) {
		for id, s := range node {
			live := false
			for r, res := range resolutions {
				oldest := sec/res.width - int64(res.n) + 1
				for i := range s.rings[r] {
					b := &s.rings[r][i]
					if b.idx == 0 {
						continue
					}
					if b.idx >= oldest {
						live = true
						continue
					}
					if own && b.stored {
						h.deletes = append(h.deletes, bucketKey{id, uint8(r), b.idx})
					}
					b.reset(0)
					b.dirty = false // nothing left to write; a queued slotRef skips it
				}
			}
			if !live {
				delete(node, id)
			}
		}
	}
	sweepNode(h.own, true)
	for name, node := range h.peers {
		sweepNode(node, false)
		if len(node) == 0 {
			delete(h.peers, name)
		}
	}
}
