package history

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// KV is the durable store the history is kept in: state.Pebble's control keys
// now, a JetStream KV shared by the nodes of a cluster later.
type KV interface {
	// Put writes every key atomically and durably (a nil value deletes the key)
	// and returns once they are on disk; it is too slow to call per request.
	Put(kvs map[string][]byte) error
	// Scan calls fn for every key with the prefix, in key order, and stops at
	// fn's first error; fn must not call the KV.
	Scan(prefix string, fn func(key string, value []byte) error) error
}

// Key layout, one key per bucket:
//
//	history/<node>/<integration>/<m|t|h>/<bucket start, Unix seconds> -> bucket
//
// A flush writes only the buckets that changed (at most three per recording
// integration: its current minute, 10 minutes and hour), so its size follows
// the number of busy integrations, not the traffic. Each node writes and
// deletes only keys under its own name; an expired key of any node is deleted
// by the next Open, which is safe because a bucket's expiry depends only on
// its time. Per integration and node the state holds at most 372 keys.
const keyPrefix = "history/"

func (h *History) key(integration int64, r uint8, idx int64) string {
	return formatKey(h.opts.Node, integration, int(r), idx)
}

func formatKey(node string, integration int64, r int, idx int64) string {
	res := resolutions[r]
	b := make([]byte, 0, len(keyPrefix)+len(node)+40)
	b = append(b, keyPrefix...)
	b = append(b, node...)
	b = append(b, '/')
	b = strconv.AppendInt(b, integration, 10)
	b = append(b, '/', res.key, '/')
	b = strconv.AppendInt(b, idx*res.width, 10)
	return string(b)
}

func parseKey(k string) (node string, integration int64, r int, idx int64, ok bool) {
	parts := strings.Split(strings.TrimPrefix(k, keyPrefix), "/")
	if len(parts) != 4 || parts[0] == "" || len(parts[2]) != 1 {
		return "", 0, 0, 0, false
	}
	r = strings.IndexByte("mth", parts[2][0])
	if r < 0 {
		return "", 0, 0, 0, false
	}
	integration, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || integration < 0 {
		return "", 0, 0, 0, false
	}
	start, err := strconv.ParseInt(parts[3], 10, 64)
	width := resolutions[r].width
	if err != nil || start <= 0 || start%width != 0 {
		return "", 0, 0, 0, false
	}
	return parts[0], integration, r, start / width, true
}

// Bucket encoding: a version byte, then uvarints.
//
//	v1: received, loaded, rejected, lag ms, the number of status codes, and
//	    each code with its count;
//	v2: received, loaded, rejected, lag ms, signature failures, then the
//	    codes as in v1.
//
// Both are read. A bucket without signature failures is still written as v1,
// so most buckets stay readable by a hookhouse from before v2 (a rollback, or
// an older node of a cluster); one that cannot read a v2 bucket skips it and
// lets it expire.
const (
	encodingV1 = 1
	encodingV2 = 2
)

func encodeBucket(b *bucket) []byte {
	out := make([]byte, 1, 1+6*binary.MaxVarintLen64+len(b.refused)*(3+binary.MaxVarintLen64))
	out[0] = encodingV1
	out = binary.AppendUvarint(out, uint64(b.received))
	out = binary.AppendUvarint(out, uint64(b.loaded))
	out = binary.AppendUvarint(out, uint64(b.rejected))
	out = binary.AppendUvarint(out, uint64(b.lagMs))
	if b.sigFail > 0 {
		out[0] = encodingV2
		out = binary.AppendUvarint(out, uint64(b.sigFail))
	}
	out = binary.AppendUvarint(out, uint64(len(b.refused)))
	for _, c := range b.refused {
		out = binary.AppendUvarint(out, uint64(c.code))
		out = binary.AppendUvarint(out, uint64(c.n))
	}
	return out
}

func decodeBucket(v []byte) (bucket, bool) {
	var b bucket
	if len(v) == 0 || (v[0] != encodingV1 && v[0] != encodingV2) {
		return b, false
	}
	fields := []*int64{&b.received, &b.loaded, &b.rejected, &b.lagMs}
	if v[0] == encodingV2 {
		fields = append(fields, &b.sigFail)
	}
	v = v[1:]
	next := func() (int64, bool) {
		x, n := binary.Uvarint(v)
		if n <= 0 || x > 1<<62 {
			return 0, false
		}
		v = v[n:]
		return int64(x), true
	}
	var codes int64
	for _, p := range append(fields, &codes) {
		x, ok := next()
		if !ok {
			return b, false
		}
		*p = x
	}
	if codes > 1000 {
		return b, false
	}
	for range codes {
		code, ok1 := next()
		n, ok2 := next()
		if !ok1 || !ok2 {
			return b, false
		}
		b.refused = append(b.refused, codeCount{int(code), n})
	}
	return b, len(v) == 0
}

// load reads every node's buckets into memory and deletes the ones that have
// aged out of their window.
func (h *History) load() error {
	sec := h.now().Unix()
	var stale []string
	err := h.kv.Scan(keyPrefix, func(k string, v []byte) error {
		node, id, r, idx, ok := parseKey(k)
		if !ok {
			h.logger.Warn("history: ignoring a key it cannot read", "key", k)
			return nil
		}
		res := resolutions[r]
		if idx <= sec/res.width-int64(res.n) {
			stale = append(stale, k)
			return nil
		}
		b, ok := decodeBucket(v)
		if !ok {
			// Perhaps written by a newer hookhouse: leave it, it expires.
			h.logger.Warn("history: ignoring a bucket it cannot read", "key", k)
			return nil
		}
		own := node == h.opts.Node
		nodeSeries := h.own
		if !own {
			if h.peers[node] == nil {
				h.peers[node] = map[int64]*series{}
			}
			nodeSeries = h.peers[node]
		}
		s := nodeSeries[id]
		if s == nil {
			s = newSeries(id)
			nodeSeries[id] = s
		}
		slot := &s.rings[r][idx%int64(res.n)]
		switch {
		case slot.idx > idx: // the clock went back once: keep the newer bucket
			stale = append(stale, k)
			return nil
		case slot.idx != 0:
			stale = append(stale, formatKey(node, id, r, slot.idx))
		}
		b.idx, b.stored = idx, own
		*slot = b
		return nil
	})
	if err != nil {
		return fmt.Errorf("history: load from the state: %w", err)
	}
	if len(stale) > 0 {
		kvs := make(map[string][]byte, len(stale))
		for _, k := range stale {
			kvs[k] = nil
		}
		if err := h.kv.Put(kvs); err != nil {
			// Harmless: they are ignored, and deleted by the next start.
			h.logger.Warn("history: could not delete expired buckets", "buckets", len(stale), "err", err)
		}
	}
	return nil
}

type inflight struct {
	ref slotRef
	idx int64
}

// Flush writes every bucket changed since the last flush and deletes the ones
// that aged out, in one Put. The flush goroutine calls it every FlushEvery and
// Close calls it last; tests call it directly. After a failed Put the buckets
// stay marked, and the next Flush tries again.
func (h *History) Flush() error {
	h.flushMu.Lock()
	defer h.flushMu.Unlock()
	sec := h.now().Unix()

	h.mu.Lock()
	if m := sec / 60; m != h.swept {
		h.sweep(sec)
		h.swept = m
	}
	kvs := make(map[string][]byte, len(h.dirty)+len(h.deletes))
	deletes := h.deletes
	h.deletes = nil
	for _, d := range deletes {
		kvs[h.key(d.integration, d.res, d.idx)] = nil
	}
	// After the deletes: should the clock have gone back to a deleted bucket, the
	// slot that holds it again wins.
	flight := h.flight[:0]
	for _, ref := range h.dirty {
		b := ref.bucket()
		if !b.dirty {
			continue // emptied by sweep, or listed twice
		}
		b.dirty = false
		kvs[h.key(ref.s.id, ref.res, b.idx)] = encodeBucket(b)
		flight = append(flight, inflight{ref, b.idx})
	}
	clear(h.dirty)
	h.dirty = h.dirty[:0]
	h.mu.Unlock()

	var err error
	if len(kvs) > 0 {
		err = h.kv.Put(kvs)
	}

	h.mu.Lock()
	for _, f := range flight {
		b := f.ref.bucket()
		switch {
		case b.idx != f.idx && err == nil:
			// The slot moved on to a new bucket during the Put, before the old
			// one was marked stored: delete the key just written.
			h.deletes = append(h.deletes, bucketKey{f.ref.s.id, f.ref.res, f.idx})
		case b.idx != f.idx: // the write failed and the bucket is gone: nothing to undo
		case err == nil:
			b.stored = true
		case !b.dirty:
			b.dirty = true
			h.dirty = append(h.dirty, f.ref)
		}
	}
	if err != nil {
		h.deletes = append(h.deletes, deletes...)
	}
	h.mu.Unlock()
	clear(flight)
	h.flight = flight[:0]
	if err != nil {
		return fmt.Errorf("history: save %d buckets: %w", len(kvs), err)
	}
	return nil
}

// Start starts the goroutine that samples lag and flushes every FlushEvery.
func (h *History) Start() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.started || h.closed {
		return
	}
	h.started = true
	go h.loop()
}

// Close stops the flush goroutine, waits for it, and flushes what changed
// since. Recording after Close is kept in memory only.
func (h *History) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	started := h.started
	h.mu.Unlock()
	close(h.stop)
	if started {
		<-h.done
	}
	return h.Flush()
}

func (h *History) loop() {
	defer close(h.done)
	t := time.NewTicker(h.opts.FlushEvery)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		if h.opts.Lag != nil {
			for id, d := range h.opts.Lag() {
				h.Lag(id, d)
			}
		}
		err := h.Flush()
		switch {
		case err != nil && !failing:
			// Logged once per outage: the buckets stay in memory and are retried.
			h.logger.Warn("could not save the dashboard's history; retrying", "every", h.opts.FlushEvery, "err", err)
		case err == nil && failing:
			h.logger.Info("saving the dashboard's history again")
		}
		failing = err != nil
	}
}
