package loader

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/hookhouse/hookhouse/internal/state"
)

// Loader leases: on a cluster (several hookhouse nodes sharing one state store
// and one warehouse) each integration is loaded by one node at a time, the one
// holding its lease. The lease is a control key, lease/<integration id>, whose
// value names the holder (node name and a random id of the process), a
// generation (+1 at every acquisition, never reset), a renewal count and, for
// people, when the holder's clock says it expires; a released lease keeps its
// generation and names no node. It is only ever written with PutIf, the
// store's compare-and-set on the exact old value.
//
// Timing, with the default TTL of 10 s:
//   - A holder renews every TTL/3 (3.3 s), retrying every TTL/10 after a
//     failed try. It stops loading (cancels its worker's batch, which rolls
//     back) when TTL−TTL/5 (8 s) have passed since it SENT its last renewal
//     that succeeded without another succeeding.
//   - Another node takes the lease only after it has seen the very same value
//     (same renewal) unchanged for a whole TTL on its own clock. It can first
//     have seen that value only after the holder sent it, so the takeover comes
//     at least TTL/5 (2 s) after the holder stopped.
//   - Nodes look every 1–1.5 s, and once more the moment a value they saw
//     would expire, so after a holder dies a successor holds the lease within
//     TTL + 1.5 s of the holder's last renewal (so ≤ 11.5 s after the death),
//     and loads after its BatchWait; a clean Close releases the lease (the
//     value then names no node) and the next node takes it at its next look
//     (≤ 1.5 s).
//
// Clock skew between nodes does not matter: nothing compares one node's clock
// with another's. Every deadline is measured on one node's own monotonic clock;
// only the clocks' rates must agree within TTL/5 per TTL (20 %), far beyond any
// real drift. The expiry in the value is informational (status pages).
//
// The lease makes loading efficient, not correct: a holder paused for longer
// than its deadline (a stopped VM, a long GC) may still commit one batch it had
// sent. The warehouse's fence (warehouse.Batch.Prev) refuses any batch whose
// starting position is no longer the stored one, so no record is loaded twice
// even then.

// LeaseKV is the compare-and-set store leases live in (state.Store).
type LeaseKV interface {
	Get(key string) ([]byte, error)
	PutIf(expect, kvs map[string][]byte) error
}

// DefaultLeaseTTL is the lease TTL the server uses.
const DefaultLeaseTTL = 10 * time.Second

// Leases hands out this node's loader leases; see above.
type Leases struct {
	kv       LeaseKV
	notFound error
	node     string
	process  string // random per process: a restarted node is another holder
	ttl      time.Duration
	logger   *slog.Logger

	mu   sync.Mutex
	seen map[int64]seenLease

	// forceHold (tests): acquire always succeeds without looking at the KV,
	// so that two loaders both think they hold the lease.
	forceHold bool
}

type seenLease struct {
	raw   []byte
	value leaseValue
	since time.Time // when this node first saw raw (monotonic)
	mine  bool
}

type leaseValue struct {
	Node       string    `json:"node"`
	Process    string    `json:"process"`
	Generation uint64    `json:"generation"`
	Renewal    uint64    `json:"renewal"`
	TTLMillis  int64     `json:"ttl_ms"`
	Expires    time.Time `json:"expires"` // by the holder's clock; informational
}

// NewLeases makes the leases of node over kv; notFound is the error kv.Get
// returns for a missing key (state.ErrNotFound). ttl 0 means DefaultLeaseTTL;
// node "" means the hostname. Every node needs its own name.
func NewLeases(kv LeaseKV, notFound error, node string, ttl time.Duration, logger *slog.Logger) *Leases {
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	var b [8]byte
	rand.Read(b[:])
	process := hex.EncodeToString(b[:])
	if node == "" {
		// A value naming no node is a free lease: every holder needs a name.
		if node, _ = os.Hostname(); node == "" {
			node = "node-" + process
		}
	}
	return &Leases{kv: kv, notFound: notFound, node: node, process: process, ttl: ttl, logger: logger, seen: map[int64]seenLease{}}
}

// Node is the name this node holds leases under.
func (ls *Leases) Node() string { return ls.node }

func leaseKey(integration int64) string { return "lease/" + strconv.FormatInt(integration, 10) }

// lease is one lease this node holds. Its goroutine renews it until it is
// lost or released; ctx ends at the same moment, and the worker loads only
// under ctx.
type lease struct {
	ls          *Leases
	integration int64
	ctx         context.Context
	cancel      context.CancelFunc
	stop        chan struct{} // closed by release
	done        chan struct{} // closed when the renewing goroutine returned
	generation  uint64

	mu  sync.Mutex
	raw []byte // the value stored by the last PutIf that succeeded
	why string // why it was lost
}

// acquire tries once to take integration's lease: when no one holds it, or
// its value has not changed for a TTL as this node has seen it. It returns nil
// and no error while someone else holds it.
func (ls *Leases) acquire(integration int64) (*lease, error) {
	if ls.forceHold {
		return ls.start(integration, nil, leaseValue{Generation: 1}, time.Now()), nil
	}
	key := leaseKey(integration)
	raw, err := ls.kv.Get(key)
	if err != nil && !errors.Is(err, ls.notFound) {
		return nil, err
	}
	now := time.Now()
	var cur leaseValue
	if err == nil {
		if jerr := json.Unmarshal(raw, &cur); jerr != nil {
			// Not ours to read: treat like any holder that stops renewing.
			cur = leaseValue{Node: "(unreadable lease value)"}
		}
		ls.mu.Lock()
		s, ok := ls.seen[integration]
		if !ok || !bytes.Equal(s.raw, raw) {
			s = seenLease{raw: raw, value: cur, since: now}
			ls.seen[integration] = s
		}
		ls.mu.Unlock()
		ttl := max(ls.ttl, time.Duration(cur.TTLMillis)*time.Millisecond)
		if cur.Node != "" && now.Sub(s.since) < ttl {
			return nil, nil // held, as far as this node can tell
		}
	} else {
		raw = nil
		ls.mu.Lock()
		delete(ls.seen, integration)
		ls.mu.Unlock()
	}
	next := leaseValue{Node: ls.node, Process: ls.process, Generation: cur.Generation + 1, TTLMillis: ls.ttl.Milliseconds(),
		Expires: time.Now().Add(ls.ttl).UTC()}
	b, _ := json.Marshal(next)
	sent := time.Now()
	if err := ls.kv.PutIf(map[string][]byte{key: raw}, map[string][]byte{key: b}); err != nil {
		if isConflict(err) {
			return nil, nil // another node was first, or the holder renewed
		}
		return nil, err
	}
	if raw != nil && cur.Node != "" {
		ls.logger.Info("took over the loader lease of a node that stopped renewing it", "integration", integration,
			"previous_node", cur.Node, "generation", next.Generation)
	} else {
		ls.logger.Info("acquired the loader lease", "integration", integration, "generation", next.Generation)
	}
	return ls.start(integration, b, next, sent), nil
}

// isConflict: a PutIf refused because the value changed.
func isConflict(err error) bool { return errors.Is(err, state.ErrConflict) }

func (ls *Leases) start(integration int64, raw []byte, v leaseValue, sent time.Time) *lease {
	l := &lease{ls: ls, integration: integration, raw: raw, generation: v.Generation,
		stop: make(chan struct{}), done: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	ls.mu.Lock()
	ls.seen[integration] = seenLease{raw: raw, value: v, since: sent, mine: true}
	ls.mu.Unlock()
	go l.hold(v, sent)
	return l
}

// hold renews the lease every TTL/3 until it is released, or lost: a renewal
// found another value, or none succeeded before the deadline.
func (l *lease) hold(v leaseValue, sent time.Time) {
	defer close(l.done)
	ls := l.ls
	ttl := ls.ttl
	deadline := sent.Add(ttl - ttl/5)
	deadTimer := time.NewTimer(time.Until(deadline))
	defer deadTimer.Stop()
	next := time.NewTimer(ttl / 3)
	defer next.Stop()
	lost := func(why string) {
		l.mu.Lock()
		l.why = why
		l.mu.Unlock()
		l.cancel()
		ls.logger.Warn("lost the loader lease; this node stops loading the integration", "integration", l.integration, "why", why)
	}
	// Renewals run one at a time in their own goroutine so that a PutIf that
	// hangs cannot hold back the deadline.
	type result struct {
		raw  []byte
		sent time.Time
		err  error
	}
	results := make(chan result, 1)
	renewing := false
	// settle notes a renewal that succeeded after the lease ended, so that
	// release finds the value stored and frees it.
	settle := func(r result) {
		if r.err == nil {
			l.mu.Lock()
			l.raw = r.raw
			l.mu.Unlock()
		}
	}
	for {
		select {
		case <-l.stop:
			l.cancel()
			if renewing {
				settle(<-results)
			}
			return
		case <-deadTimer.C:
			lost("no renewal succeeded before the lease's deadline (the state store did not answer)")
			if renewing {
				settle(<-results)
			}
			return
		case <-next.C:
			if renewing {
				continue
			}
			renewing = true
			v.Renewal++
			v.Expires = time.Now().Add(ttl).UTC()
			b, _ := json.Marshal(v)
			l.mu.Lock()
			old := l.raw
			l.mu.Unlock()
			go func() {
				s := time.Now()
				if ls.forceHold {
					results <- result{raw: b, sent: s}
					return
				}
				key := leaseKey(l.integration)
				err := ls.kv.PutIf(map[string][]byte{key: old}, map[string][]byte{key: b})
				results <- result{raw: b, sent: s, err: err}
			}()
		case r := <-results:
			renewing = false
			switch {
			case r.err == nil:
				l.mu.Lock()
				l.raw = r.raw
				l.mu.Unlock()
				ls.mu.Lock()
				ls.seen[l.integration] = seenLease{raw: r.raw, value: v, since: r.sent, mine: true}
				ls.mu.Unlock()
				deadline = r.sent.Add(ttl - ttl/5)
				deadTimer.Reset(time.Until(deadline))
				next.Reset(ttl / 3)
			case isConflict(r.err):
				lost("another node holds the lease now")
				return
			default:
				ls.logger.Warn("renewing the loader lease failed; retrying", "integration", l.integration, "err", r.err,
					"stops_loading_in", time.Until(deadline).Round(time.Millisecond))
				next.Reset(ttl / 10)
			}
		}
	}
}

// lost is closed when this node must stop loading under the lease.
func (l *lease) lost() <-chan struct{} { return l.ctx.Done() }

// release stops renewing and gives the lease up (if the key still holds this
// node's value, it becomes a free lease of the same generation), so that
// another node takes it at once.
func (l *lease) release() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
	ls := l.ls
	ls.mu.Lock()
	if s, ok := ls.seen[l.integration]; ok && s.mine {
		delete(ls.seen, l.integration)
	}
	ls.mu.Unlock()
	l.mu.Lock()
	raw := l.raw
	l.mu.Unlock()
	if ls.forceHold || raw == nil {
		return
	}
	key := leaseKey(l.integration)
	free, _ := json.Marshal(leaseValue{Generation: l.generation})
	err := ls.kv.PutIf(map[string][]byte{key: raw}, map[string][]byte{key: free})
	switch {
	case err == nil:
		ls.logger.Info("released the loader lease", "integration", l.integration)
	case isConflict(err):
		// Someone else holds it already: nothing to give up.
	default:
		ls.logger.Warn("releasing the loader lease failed; another node takes it once it expires", "integration", l.integration, "err", err)
	}
}

// expiresIn is how long until the lease value this node last saw for
// integration, held by another node, counts as expired if it stays the same;
// false if there is none.
func (ls *Leases) expiresIn(integration int64) (time.Duration, bool) {
	ls.mu.Lock()
	s, ok := ls.seen[integration]
	ls.mu.Unlock()
	if !ok || s.mine || s.value.Node == "" {
		return 0, false
	}
	ttl := max(ls.ttl, time.Duration(s.value.TTLMillis)*time.Millisecond)
	return max(time.Until(s.since.Add(ttl)), 0), true
}

// holder reports who holds integration's lease as this node last saw it:
// itself while it holds it, another node until its value has gone unchanged
// for a TTL.
func (ls *Leases) holder(integration int64) (string, bool) {
	ls.mu.Lock()
	s, ok := ls.seen[integration]
	ls.mu.Unlock()
	if !ok || s.raw == nil && !s.mine || s.value.Node == "" {
		return "", false
	}
	if s.mine {
		return ls.node, true
	}
	ttl := max(ls.ttl, time.Duration(s.value.TTLMillis)*time.Millisecond)
	if time.Since(s.since) >= ttl+2*time.Second {
		return "", false // not renewed as far as this node has seen: expired
	}
	return s.value.Node, true
}
