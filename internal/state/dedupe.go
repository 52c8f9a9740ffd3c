package state

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Delivery-id dedupe on Pebble (the Deduper contract is in state.go).
//
// A claim is a key of its own ('D' integration, SHA-256 of the id) written in
// the same batch, hence the same fsync, as the delivery's records: after a
// crash both exist or neither does. The writer goroutine decides every claim,
// in queue order, against the claims earlier in its own group and the
// committed store, so of concurrent redeliveries exactly one wins. Each claim
// also gets an index key ordered by expiry ('E'), so that the sweep reads only
// expired claims, however many live ones there are.
//
// Reading the store costs ~15 µs a claim (a memtable seek), too much for the
// single writer, which would spend a fifth of each group commit on it. So
// AppendOnce (and the sweep) reads its claim before queuing, noting the claim
// generation (the count of commits that changed claims) it read at, and the
// writer remembers
// what the last recentGens generations changed (recentClaims). The writer
// trusts the caller's read only when nothing can have changed the key since:
// the key is not among the recent changes and the read is no older than the
// oldest generation remembered. Otherwise it uses the recent change or reads
// the store itself. The read outside is a prefetch; the decision stays inside.

var (
	_ Deduper  = (*Pebble)(nil)
	_ Importer = (*Pebble)(nil)
)

const (
	claimKeyLen  = 1 + 8 + sha256.Size
	expiryKeyLen = 1 + 8 + 8 + sha256.Size
	// claimCost is what a claim adds to the disk for the free-space check:
	// both keys, their values and Pebble's per-key overhead.
	claimCost = claimKeyLen + expiryKeyLen + 16 + 64
	// recentGens is how many claim generations the writer remembers; a caller
	// whose read is older than that (it waited behind so many commits) has
	// its claim read again by the writer.
	recentGens = 256
	// sweepChunk bounds the claims one sweep request asks the writer to
	// delete, so a sweep adds little to a group commit.
	sweepChunk = 512
)

type claimKey [claimKeyLen]byte

// claimReq is AppendOnce's part of an appendReq; the writer fills in the outcome.
type claimReq struct {
	key    claimKey
	window int64 // µs
	pre    prefetch
	// uncounted: a duplicate is not counted in Deduplicated (imports).
	uncounted bool

	duplicate bool
	err       error // this request failed alone (a read error); others commit
}

// recentClaims is what the writer remembers of the latest claim changes.
type recentClaims struct {
	gen   atomic.Uint64 // generations committed; written by the writer after the commit is visible
	byKey map[claimKey]recentClaim
	ring  [recentGens][]claimKey // the keys generation g changed, at g % recentGens
}

type recentClaim struct {
	c   claim
	gen uint64
}

// prefetch is a claim as read outside the writer at generation gen; ok is
// false if the read failed (then the writer reads it).
type prefetch struct {
	seen claim
	gen  uint64
	ok   bool
}

// sweepReq asks the writer to remove claims whose index entries were found
// expired at now; the writer removes a claim only if it is still expired,
// since it may have been claimed again after the sweep read the index.
type sweepReq struct {
	now     int64      // µs
	expired [][]byte   // expiry index keys
	pre     []prefetch // their claims
	removed int
}

// claim is a claim's stored value, or that it is absent.
type claim struct {
	claimedAt, expiresAt int64 // µs
	exists               bool
}

// AppendOnce appends bodies as Append does and claims deliveryID for
// integration in the same durable write, unless a claim made within window
// already exists: then it appends nothing and returns duplicate=true. See
// Deduper for the full contract.
func (p *Pebble) AppendOnce(ctx context.Context, integration int64, receivedAt time.Time, deliveryID string, window time.Duration, bodies [][]byte) (first uint64, duplicate bool, err error) {
	return p.appendOnce(ctx, integration, receivedAt, nil, deliveryID, window, bodies, true)
}

// AppendOnceAt is AppendOnce for a backfill import (Importer): the claim is
// judged at now, record i gets receivedAt[i] as its receipt time, and a
// duplicate does not count in Deduplicated (an import run again is not a
// provider's redelivery).
func (p *Pebble) AppendOnceAt(ctx context.Context, integration int64, now time.Time, receivedAt []time.Time, importID string, window time.Duration, bodies [][]byte) (first uint64, duplicate bool, err error) {
	if len(receivedAt) != len(bodies) {
		return 0, false, fmt.Errorf("state: %d receipt times for %d records", len(receivedAt), len(bodies))
	}
	return p.appendOnce(ctx, integration, now, receivedAt, importID, window, bodies, false)
}

func (p *Pebble) appendOnce(ctx context.Context, integration int64, receivedAt time.Time, times []time.Time, deliveryID string, window time.Duration, bodies [][]byte, count bool) (first uint64, duplicate bool, err error) {
	if deliveryID == "" {
		return 0, false, errors.New("state: AppendOnce needs a delivery id (use Append for deliveries without one)")
	}
	if window < time.Microsecond {
		return 0, false, fmt.Errorf("state: dedupe window %s must be positive", window)
	}
	size := claimCost
	for _, b := range bodies {
		size += len(b) + 64
	}
	if err := p.checkSpace(int64(size)); err != nil {
		return 0, false, err
	}
	c := &claimReq{key: newClaimKey(integration, deliveryID), window: window.Microseconds(), uncounted: !count}
	if err := p.enter(); err != nil {
		return 0, false, err
	}
	c.pre = p.prefetchClaim(c.key)
	p.leave()
	req := &appendReq{integration: integration, receivedAt: receivedAt, times: times, bodies: bodies, size: size, claim: c, err: make(chan error, 1)}
	if err := p.do(ctx, req); err != nil {
		return 0, false, err
	}
	if c.duplicate {
		return 0, true, nil
	}
	return req.first, false, nil
}

// Deduplicated returns how many records of integration AppendOnce has refused
// as parts of duplicate deliveries (the stats' records_deduplicated); the count
// is stored with the claims and survives restarts.
func (p *Pebble) Deduplicated(integration int64) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dups[integration]
}

// decideClaims runs in the writer for a group that holds claims or sweeps. In
// queue order it marks duplicates, writes the claims that win and the sweeps'
// deletions to b, and returns the new duplicate counts of the integrations
// that had any and the claims the group changes (for claimsCommitted).
func (p *Pebble) decideClaims(b *pebble.Batch, group []*appendReq) (dups map[int64]int64, pending map[claimKey]claim) {
	// pending holds what this group has written so far, which the store does
	// not show until the batch commits.
	pending = map[claimKey]claim{}
	gen := p.recent.gen.Load()
	horizon := uint64(0) // changes after this generation are in recent
	if gen > recentGens {
		horizon = gen - recentGens
	}
	lookup := func(k claimKey, pre prefetch) (claim, error) {
		if c, ok := pending[k]; ok {
			return c, nil
		}
		if rc, ok := p.recent.byKey[k]; ok {
			return rc.c, nil // the key's latest committed change
		}
		if pre.ok && pre.gen >= horizon {
			return pre.seen, nil // unchanged since the caller read it
		}
		return p.readClaim(k)
	}
	for _, r := range group {
		switch {
		case r.claim != nil:
			now := r.receivedAt.UnixMicro()
			c, err := lookup(r.claim.key, r.claim.pre)
			if err != nil {
				r.claim.err = err
				continue
			}
			if c.exists && now < c.expiresAt && now < c.claimedAt+r.claim.window {
				r.claim.duplicate = true
				if r.claim.uncounted {
					continue
				}
				if dups == nil {
					dups = map[int64]int64{}
				}
				if _, ok := dups[r.integration]; !ok {
					p.mu.Lock()
					dups[r.integration] = p.dups[r.integration]
					p.mu.Unlock()
				}
				dups[r.integration] += int64(len(r.bodies)) // records, as the stats say
				continue
			}
			c = claim{claimedAt: now, expiresAt: now + r.claim.window, exists: true}
			pending[r.claim.key] = c
			_ = b.Set(r.claim.key[:], encodeClaim(c), nil)
			_ = b.Set(expiryKey(c.expiresAt, r.claim.key), nil, nil)
		case r.sweep != nil:
			for i, ek := range r.sweep.expired {
				k := claimKeyOf(ek)
				c, err := lookup(k, r.sweep.pre[i])
				if err != nil {
					continue // keep the index entry: the next sweep tries again
				}
				// The entry goes either way: the claim is expired, gone, or
				// was made again and has an entry of its own.
				_ = b.Delete(ek, nil)
				if c.exists && c.expiresAt <= r.sweep.now {
					pending[k] = claim{}
					_ = b.Delete(k[:], nil)
					r.sweep.removed++
				}
			}
		}
	}
	return dups, pending
}

// claimsCommitted records, in the writer, the claim changes of a group whose
// commit succeeded (and is visible to reads), as the next generation.
func (p *Pebble) claimsCommitted(pending map[claimKey]claim) {
	if len(pending) == 0 {
		return
	}
	r := &p.recent
	if r.byKey == nil {
		r.byKey = map[claimKey]recentClaim{}
	}
	g := r.gen.Load() + 1
	slot := &r.ring[g%recentGens]
	if g > recentGens { // forget generation g-recentGens, unless a key changed again since
		for _, k := range *slot {
			if r.byKey[k].gen == g-recentGens {
				delete(r.byKey, k)
			}
		}
	}
	keys := (*slot)[:0]
	for k, c := range pending {
		r.byKey[k] = recentClaim{c: c, gen: g}
		keys = append(keys, k)
	}
	*slot = keys
	r.gen.Store(g)
}

// prefetchClaim reads claim k for the writer to decide on; the caller has
// entered.
func (p *Pebble) prefetchClaim(k claimKey) prefetch {
	gen := p.recent.gen.Load() // before the read, which sees at least this generation
	c, err := p.readClaim(k)
	return prefetch{seen: c, gen: gen, ok: err == nil}
}

func (p *Pebble) readClaim(k claimKey) (claim, error) {
	v, closer, err := p.db.Get(k[:])
	if errors.Is(err, pebble.ErrNotFound) {
		return claim{}, nil
	}
	if err != nil {
		return claim{}, fmt.Errorf("state: read delivery claim: %w", err)
	}
	defer closer.Close()
	if len(v) != 16 {
		return claim{}, fmt.Errorf("state: corrupt delivery claim %x", k)
	}
	return claim{
		claimedAt: int64(binary.BigEndian.Uint64(v)),
		expiresAt: int64(binary.BigEndian.Uint64(v[8:])),
		exists:    true,
	}, nil
}

// SweepClaims removes the claims that expired before now and returns how many
// it removed. The sweeper calls it every Options.SweepEvery; tests call it
// directly. Deletions go through the writer, which keeps a claim made again
// since the index was read.
func (p *Pebble) SweepClaims(ctx context.Context, now time.Time) (int, error) {
	removed := 0
	from := []byte{prefixClaimExpiry}
	for {
		expired, pre, err := p.expiredClaims(from, now, sweepChunk)
		if err != nil || len(expired) == 0 {
			return removed, err
		}
		if err := p.reserve(int64(len(expired)*(claimKeyLen+expiryKeyLen)), minFreeControl); err != nil {
			return removed, fmt.Errorf("state: sweep delivery claims: %w", err)
		}
		s := &sweepReq{now: now.UnixMicro(), expired: expired, pre: pre}
		if err := p.do(ctx, &appendReq{sweep: s, err: make(chan error, 1)}); err != nil {
			return removed, err
		}
		removed += s.removed
		from = append(bytes.Clone(expired[len(expired)-1]), 0) // just after the last one
	}
}

// expiredClaims returns up to max expiry index keys from from on that expired
// at or before now, and their claims as they are now.
func (p *Pebble) expiredClaims(from []byte, now time.Time, max int) ([][]byte, []prefetch, error) {
	if err := p.enter(); err != nil {
		return nil, nil, err
	}
	defer p.leave()
	hi := make([]byte, 9)
	hi[0] = prefixClaimExpiry
	binary.BigEndian.PutUint64(hi[1:], uint64(now.UnixMicro())+1)
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: from, UpperBound: hi})
	if err != nil {
		return nil, nil, fmt.Errorf("state: read delivery claims: %w", err)
	}
	defer it.Close()
	var out [][]byte
	var pre []prefetch
	for it.First(); it.Valid() && len(out) < max; it.Next() {
		if len(it.Key()) != expiryKeyLen {
			return nil, nil, fmt.Errorf("state: corrupt delivery claim index %x", it.Key())
		}
		out = append(out, bytes.Clone(it.Key()))
		pre = append(pre, p.prefetchClaim(claimKeyOf(it.Key())))
	}
	return out, pre, it.Error()
}

// sweepLoop runs SweepClaims every interval until Close.
func (p *Pebble) sweepLoop(every time.Duration) {
	defer close(p.swept)
	if every < 0 {
		<-p.stop
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		n, err := p.SweepClaims(context.Background(), time.Now())
		switch {
		case errors.Is(err, ErrClosed):
			return
		case err != nil:
			p.logger.Warn("sweeping expired delivery ids failed; will retry", "err", err, "removed", n)
		case n > 0:
			p.logger.Debug("swept expired delivery ids", "removed", n)
		}
	}
}

func (p *Pebble) loadDupCounts() error {
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixDupCount}, UpperBound: []byte{prefixDupCount + 1}})
	if err != nil {
		return fmt.Errorf("state: read duplicate counts: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) != 9 || len(v) != 8 {
			return fmt.Errorf("state: corrupt duplicate count %x", k)
		}
		p.dups[int64(binary.BigEndian.Uint64(k[1:]))] = int64(binary.BigEndian.Uint64(v))
	}
	return it.Error()
}

func newClaimKey(integration int64, deliveryID string) claimKey {
	var k claimKey
	k[0] = prefixClaim
	binary.BigEndian.PutUint64(k[1:], uint64(integration))
	h := sha256.Sum256([]byte(deliveryID))
	copy(k[9:], h[:])
	return k
}

// claimKeyOf returns the claim an expiry index key belongs to.
func claimKeyOf(expiryKey []byte) claimKey {
	var k claimKey
	k[0] = prefixClaim
	copy(k[1:], expiryKey[9:])
	return k
}

func encodeClaim(c claim) []byte {
	v := make([]byte, 16)
	binary.BigEndian.PutUint64(v, uint64(c.claimedAt))
	binary.BigEndian.PutUint64(v[8:], uint64(c.expiresAt))
	return v
}

// expiryKey is the sweep index entry of claim k expiring at expiresAt: the
// expiry first so the expired ones are a key range, then k without its prefix.
func expiryKey(expiresAt int64, k claimKey) []byte {
	e := make([]byte, expiryKeyLen)
	e[0] = prefixClaimExpiry
	binary.BigEndian.PutUint64(e[1:], uint64(expiresAt))
	copy(e[9:], k[1:])
	return e
}

func dupCountKey(integration int64) []byte {
	k := make([]byte, 9)
	k[0] = prefixDupCount
	binary.BigEndian.PutUint64(k[1:], uint64(integration))
	return k
}
