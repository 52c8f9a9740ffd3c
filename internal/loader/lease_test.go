package loader

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/state"
)

// cutKV is a real store that can be cut off from one node: while cut, every
// call fails as a store that does not answer would (the node's side of a
// partition).
type cutKV struct {
	LeaseKV
	cut atomic.Bool
}

var errCut = errors.New("test: the state store does not answer")

func (c *cutKV) Get(key string) ([]byte, error) {
	if c.cut.Load() {
		return nil, errCut
	}
	return c.LeaseKV.Get(key)
}

func (c *cutKV) PutIf(expect, kvs map[string][]byte) error {
	if c.cut.Load() {
		return errCut
	}
	return c.LeaseKV.PutIf(expect, kvs)
}

func openPebbleKV(t *testing.T) *state.Pebble {
	t.Helper()
	p, err := state.OpenPebble(filepath.Join(t.TempDir(), "state"), quiet, state.Options{MinFreeBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// acquireWithin retries acquire every 10 ms until it succeeds or d passes.
func acquireWithin(t *testing.T, ls *Leases, integration int64, d time.Duration) (*lease, time.Time) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		l, err := ls.acquire(integration)
		if err != nil {
			t.Fatal(err)
		}
		if l != nil {
			return l, time.Now()
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil, time.Time{}
}

// TestLeaseAcquireRace: many nodes racing for the same lease over one store
// (Pebble's compare-and-set): exactly one wins each round, the value names it,
// and once it releases, the next round has exactly one winner again.
func TestLeaseAcquireRace(t *testing.T) {
	kv := openPebbleKV(t)
	const nodes = 8
	var ls []*Leases
	for i := range nodes {
		ls = append(ls, NewLeases(kv, state.ErrNotFound, "node-"+string(rune('a'+i)), time.Minute, quiet))
	}
	for round := range 5 {
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			won  []*lease
			who  []string
			errs []error
		)
		start := make(chan struct{})
		for i := range nodes {
			wg.Go(func() {
				<-start
				l, err := ls[i].acquire(7)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				if l != nil {
					won = append(won, l)
					who = append(who, ls[i].node)
				}
			})
		}
		close(start)
		wg.Wait()
		if len(errs) > 0 || len(won) != 1 {
			t.Fatalf("round %d: %d winners %v, errors %v; want exactly one winner", round, len(won), who, errs)
		}
		raw, err := kv.Get("lease/7")
		if err != nil {
			t.Fatal(err)
		}
		var v leaseValue
		if err := json.Unmarshal(raw, &v); err != nil || v.Node != who[0] || v.TTLMillis != 60000 {
			t.Fatalf("round %d: stored lease %s (%v), want held by %s with ttl_ms 60000", round, raw, err, who[0])
		}
		for i := range nodes {
			if ls[i].node == who[0] {
				if node, ok := ls[i].holder(7); !ok || node != who[0] {
					t.Fatalf("the winner says the holder is %q, %v", node, ok)
				}
			}
		}
		if v.Generation != uint64(round+1) {
			t.Fatalf("round %d: generation %d, want %d (+1 at every acquisition)", round, v.Generation, round+1)
		}
		won[0].release()
		raw, _ = kv.Get("lease/7")
		if err := json.Unmarshal(raw, &v); err != nil || v.Node != "" || v.Generation != uint64(round+1) {
			t.Fatalf("round %d: after release the lease is %s, want free with its generation", round, raw)
		}
		for i := range nodes {
			if node, ok := ls[i].holder(7); ls[i].node == who[0] && ok {
				t.Fatalf("round %d: after release %s says %s holds the lease", round, ls[i].node, node)
			}
		}
	}
}

// TestLeaseRenewalKeepsIt: a holder that renews keeps its lease for many TTLs
// while another node keeps trying, and never loses it.
func TestLeaseRenewalKeepsIt(t *testing.T) {
	kv := openPebbleKV(t)
	ttl := 3 * time.Second // renewals every second; margins of 0.6 s even on a busy machine
	a := NewLeases(kv, state.ErrNotFound, "a", ttl, quiet)
	b := NewLeases(kv, state.ErrNotFound, "b", ttl, quiet)
	la, err := a.acquire(1)
	if err != nil || la == nil {
		t.Fatalf("a: %v, %v", la, err)
	}
	defer la.release()
	end := time.Now().Add(3 * ttl)
	for time.Now().Before(end) {
		lb, err := b.acquire(1)
		if err != nil {
			t.Fatal(err)
		}
		if lb != nil {
			t.Fatal("b took a lease that a renews")
		}
		select {
		case <-la.lost():
			t.Fatalf("a lost its lease: %s", la.why)
		case <-time.After(50 * time.Millisecond):
		}
		if node, ok := b.holder(1); !ok || node != "a" {
			t.Fatalf("b sees holder %q, %v; want a", node, ok)
		}
	}
	raw, _ := kv.Get("lease/1")
	var v leaseValue
	json.Unmarshal(raw, &v)
	if v.Renewal < 5 {
		t.Fatalf("after 3 TTLs the lease was renewed %d times, want at least 5 (every TTL/3)", v.Renewal)
	}
}

// TestLeaseHolderStopsBeforeTakeover: a holder cut off from the store (its
// renewals fail) stops loading before any other node even tries to take its
// lease, and the other node does take it, without any clock shared between
// them.
func TestLeaseHolderStopsBeforeTakeover(t *testing.T) {
	for round := range 3 {
		kv := openPebbleKV(t)
		ttl := 2 * time.Second // the holder stops 0.4 s before anyone may try
		cut := &cutKV{LeaseKV: kv}
		a := NewLeases(cut, state.ErrNotFound, "a", ttl, quiet)
		la, err := a.acquire(1)
		if err != nil || la == nil {
			t.Fatalf("a: %v, %v", la, err)
		}
		// Every PutIf b makes is an attempt to take the lease: a must have
		// stopped loading by then.
		var early atomic.Int32
		watch := &hookKV{LeaseKV: kv, beforePutIf: func() {
			select {
			case <-la.lost():
			default:
				early.Add(1)
			}
		}}
		b := NewLeases(watch, state.ErrNotFound, "b", ttl, quiet)
		if lb, _ := b.acquire(1); lb != nil {
			t.Fatal("b took a fresh lease")
		}
		time.Sleep(time.Duration(round) * ttl / 4)
		cut.cut.Store(true)
		cutAt := time.Now()
		lb, takenAt := acquireWithin(t, b, 1, 10*ttl)
		if lb == nil {
			t.Fatalf("round %d: b never took the lease of a holder cut off", round)
		}
		if n := early.Load(); n > 0 {
			t.Fatalf("round %d: b tried to take the lease %d times while a still loaded", round, n)
		}
		t.Logf("round %d: cut at 0, a stopped (%s), b took over at +%v", round, la.why, takenAt.Sub(cutAt).Round(time.Millisecond))
		if node, ok := b.holder(1); !ok || node != "b" {
			t.Fatalf("b says the holder is %q, %v", node, ok)
		}
		// a, back again, cannot take it while b renews, and its release does
		// not delete b's lease.
		cut.cut.Store(false)
		la.release()
		if _, err := kv.Get("lease/1"); err != nil {
			t.Fatalf("a's release removed b's lease: %v", err)
		}
		if l, _ := a.acquire(1); l != nil {
			t.Fatal("a took the lease back from b")
		}
		lb.release()
	}
}

// hookKV calls beforePutIf before each PutIf.
type hookKV struct {
	LeaseKV
	beforePutIf func()
}

func (h *hookKV) PutIf(expect, kvs map[string][]byte) error {
	h.beforePutIf()
	return h.LeaseKV.PutIf(expect, kvs)
}

// TestLeaseConflictLosesAtOnce: when the value changes under a holder (a node
// that decided the holder was dead), the holder's next renewal finds it and it
// stops loading at once, long before its deadline.
func TestLeaseConflictLosesAtOnce(t *testing.T) {
	kv := openPebbleKV(t)
	ttl := 3 * time.Second
	a := NewLeases(kv, state.ErrNotFound, "a", ttl, quiet)
	la, err := a.acquire(1)
	if err != nil || la == nil {
		t.Fatalf("a: %v, %v", la, err)
	}
	defer la.release()
	raw, _ := kv.Get("lease/1")
	if err := kv.PutIf(map[string][]byte{"lease/1": raw}, map[string][]byte{"lease/1": []byte(`{"node":"intruder","generation":9}`)}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-la.lost():
		if la.why != "another node holds the lease now" {
			t.Fatalf("lost because %q", la.why)
		}
	case <-time.After(ttl - ttl/5):
		t.Fatal("a kept loading until its deadline though its lease was taken")
	}
}

// TestLeaseReleaseHandsOver: a released lease is taken by the next try of
// another node at once, not after a TTL.
func TestLeaseReleaseHandsOver(t *testing.T) {
	kv := openPebbleKV(t)
	ttl := time.Hour
	a := NewLeases(kv, state.ErrNotFound, "a", ttl, quiet)
	b := NewLeases(kv, state.ErrNotFound, "b", ttl, quiet)
	la, _ := a.acquire(3)
	if la == nil {
		t.Fatal("a did not get a free lease")
	}
	if lb, _ := b.acquire(3); lb != nil {
		t.Fatal("b took a held lease")
	}
	la.release()
	lb, err := b.acquire(3)
	if err != nil || lb == nil {
		t.Fatalf("b did not take the released lease at once: %v", err)
	}
	defer lb.release()
	raw, _ := kv.Get("lease/3")
	var v leaseValue
	json.Unmarshal(raw, &v)
	if v.Node != "b" {
		t.Fatalf("lease = %s", raw)
	}
}
