package state

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Following the control data of every node: each node keeps the control data
// in memory (control.Store) and a KV watch on the control bucket brings it the
// changes other nodes make, in the order the cluster stored them.
//
// A watch can fall behind or break (a lost connection, a consumer the server
// dropped) without saying so at once. So a second goroutine checks, every
// checkEvery, that the watch has applied every message the bucket's stream
// holds: it asks the stream for its last sequence, and if the watch has applied
// that one, every change stored before the question was asked is in the caches.
// Fresh reports whether such a check started less than freshFor ago; while it
// does not, callers must not trust their caches for decisions a change on
// another node could overturn (a revoked webhook URL): read the stored value,
// or refuse with 503.

const (
	watchCheckEvery = 200 * time.Millisecond
	watchFreshFor   = 700 * time.Millisecond
	watchRestart    = 500 * time.Millisecond
)

// ControlWatch follows the control keys of every node; see WatchControl.
type ControlWatch struct {
	j      *JetStream
	apply  func(key string, value []byte)
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	seen   atomic.Uint64 // stream sequence of the last change applied
	synced atomic.Bool   // the current watch has delivered every key's value
	// freshAt is when (UnixNano) the last check that found the watch caught up
	// began; 0: never.
	freshAt atomic.Int64

	mu      sync.Mutex
	lastErr error // why the watch is not fresh, for /status
}

// WatchControl starts following the control data: apply is called from one
// goroutine for every change made by any node (this one too), in the order the
// cluster stored them, with the key as Get takes it and the new value (nil:
// deleted). A watch starts, and starts again after it broke, with the current
// value of every key, so apply must accept a value it has seen before. The
// watch ends at Stop or Close.
func (j *JetStream) WatchControl(apply func(key string, value []byte)) *ControlWatch {
	w := &ControlWatch{j: j, apply: apply, stop: make(chan struct{})}
	w.setErr(errors.New("the watch has not caught up yet"))
	j.wg.Add(2)
	w.wg.Add(2)
	go func() {
		defer j.wg.Done()
		defer w.wg.Done()
		w.follow()
	}()
	go func() {
		defer j.wg.Done()
		defer w.wg.Done()
		w.check()
	}()
	return w
}

// Stop ends the watch; Fresh is false from then on.
func (w *ControlWatch) Stop() {
	w.once.Do(func() { close(w.stop) })
	w.wg.Wait()
}

// Fresh reports whether every change stored by any node until a moment ago
// (at most watchFreshFor) has been applied.
func (w *ControlWatch) Fresh() bool {
	select {
	case <-w.stop:
		return false
	default:
	}
	at := w.freshAt.Load()
	return at != 0 && time.Since(time.Unix(0, at)) < watchFreshFor
}

// Err says why the watch is not fresh (nil when it is).
func (w *ControlWatch) Err() error {
	if w.Fresh() {
		return nil
	}
	select {
	case <-w.stop:
		return errors.New("the watch is stopped")
	default:
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lastErr == nil {
		return errors.New("the watch is behind the cluster")
	}
	return w.lastErr
}

func (w *ControlWatch) setErr(err error) {
	w.mu.Lock()
	w.lastErr = err
	w.mu.Unlock()
}

func (w *ControlWatch) stopped() bool {
	select {
	case <-w.stop:
		return true
	case <-w.j.stop:
		return true
	default:
		return false
	}
}

// follow runs watches one after the other until Stop or Close.
func (w *ControlWatch) follow() {
	for !w.stopped() {
		err := w.watchOnce()
		if w.stopped() {
			return
		}
		w.synced.Store(false)
		w.setErr(fmt.Errorf("the watch broke: %w", err))
		w.j.logger.Warn("the watch of the control data broke; webhook URLs are checked against the cluster per request until it is back", "err", err)
		select {
		case <-w.stop:
			return
		case <-w.j.stop:
			return
		case <-time.After(watchRestart):
		}
	}
}

// watchOnce runs one KV watch until it ends.
func (w *ControlWatch) watchOnce() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kw, err := w.j.control.Watch(ctx, ">")
	if err != nil {
		return w.j.unavailable(err)
	}
	defer kw.Stop()
	for {
		select {
		case <-w.stop:
			return nil
		case <-w.j.stop:
			return nil
		case e, ok := <-kw.Updates():
			if !ok {
				return errors.New("the server ended it")
			}
			if e == nil {
				w.synced.Store(true) // every key's current value has come
				continue
			}
			key, err := decodeKey(e.Key())
			if err != nil {
				continue // not a key hookhouse wrote
			}
			var v []byte
			if e.Operation() == jetstream.KeyValuePut {
				v = e.Value()
				if v == nil {
					v = []byte{}
				}
			}
			w.apply(key, v)
			w.seen.Store(max(w.seen.Load(), e.Revision()))
		}
	}
}

// check keeps Fresh current: see the comment at the top.
func (w *ControlWatch) check() {
	t := time.NewTicker(watchCheckEvery)
	defer t.Stop()
	for {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		info, err := w.j.ctlLog.Info(ctx)
		cancel()
		switch {
		case err != nil:
			w.setErr(fmt.Errorf("cannot ask the cluster how far the control data is: %w", w.j.unavailable(err)))
		case !w.synced.Load():
			w.setErr(errors.New("the watch is (re)starting"))
		case w.seen.Load() >= info.State.LastSeq:
			w.freshAt.Store(start.UnixNano())
		default:
			w.setErr(fmt.Errorf("the watch is behind: it has applied up to %d of %d", w.seen.Load(), info.State.LastSeq))
		}
		select {
		case <-w.stop:
			return
		case <-w.j.stop:
			return
		case <-t.C:
		}
	}
}

// Replica is one server holding a copy of the stream, as its leader sees it.
type Replica struct {
	Name    string `json:"name"`
	Leader  bool   `json:"leader"`
	Current bool   `json:"current"`
	Offline bool   `json:"offline,omitempty"`
	Lag     uint64 `json:"lag"` // operations it is behind the leader
}

// StreamName is the records' stream's name.
func (j *JetStream) StreamName() string { return j.opts.Name }

// Replicas asks the stream's leader who holds copies of the stream and how far
// each is behind, within ctx.
func (j *JetStream) Replicas(ctx context.Context) ([]Replica, error) {
	if err := j.enter(); err != nil {
		return nil, err
	}
	defer j.leave()
	info, err := j.stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("state: stream %s: %w", j.opts.Name, j.unavailable(err))
	}
	ci := info.Cluster
	if ci == nil {
		return nil, nil // a single server, not a cluster
	}
	var out []Replica
	if ci.Leader != "" {
		out = append(out, Replica{Name: ci.Leader, Leader: true, Current: true})
	}
	for _, p := range ci.Replicas {
		if p == nil {
			continue
		}
		out = append(out, Replica{Name: p.Name, Current: p.Current && !p.Offline, Offline: p.Offline, Lag: p.Lag})
	}
	return out, nil
}

// GetWithin is Get waiting at most d for the cluster, for a read on a
// request's path that must leave the rest of the request its time.
func (j *JetStream) GetWithin(d time.Duration, key string) ([]byte, error) {
	if err := j.enter(); err != nil {
		return nil, err
	}
	defer j.leave()
	ctx, cancel := context.WithTimeout(context.Background(), min(d, j.opts.Timeout))
	defer cancel()
	e, err := j.control.Get(ctx, encodeKey(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("state: get %s: %w", key, j.unavailable(err))
	}
	return e.Value(), nil
}
