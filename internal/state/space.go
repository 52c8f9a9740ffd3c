package state

import (
	"fmt"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Free space and the write probe: the log refuses what it could not keep, and
// says whether it can take writes.

// A write that fails in Pebble's WAL is fatal (Pebble ends the process), so no
// write may reach Pebble when the disk cannot take it.
const (
	// freeMargin: a cached free-space figure is trusted only while it is this
	// far above the reserve; closer to it, every check asks the filesystem
	// (Statfs costs about 1.5 µs), so that another program filling the disk
	// within the cache's 250 ms is seen before the next write.
	freeMargin = 1 << 30
	// minFreeControl is what control writes and trims, which are tiny, need
	// free; they may use the appends' reserve, which is kept for them and for
	// flushes and the warehouse.
	minFreeControl = 1 << 20
)

// checkSpace refuses appends when the disk is nearly full. Far from the reserve
// Statfs is cached for 250 ms so the check costs nothing per request.
func (p *Pebble) checkSpace(need int64) error { return p.reserve(need, p.minFree.Load()) }

// reserve returns ErrNoSpace unless need bytes fit on the disk leaving keep free.
func (p *Pebble) reserve(need, keep int64) error {
	p.freeMu.Lock()
	defer p.freeMu.Unlock()
	if time.Since(p.freeChecked) > 250*time.Millisecond || p.freeBytes-need < keep+freeMargin {
		var st syscall.Statfs_t
		if err := syscall.Statfs(p.dir, &st); err == nil {
			p.freeBytes = int64(st.Bavail) * int64(st.Bsize)
		}
		p.freeChecked = time.Now()
	}
	if p.freeBytes < keep+need {
		return ErrNoSpace
	}
	p.freeBytes -= need
	return nil
}

const (
	// probeEvery: a probe result is reused this long, so however often
	// /readyz and /status.json are asked (without authentication), the log
	// takes at most one probe write a second.
	probeEvery = time.Second
	// probeWait bounds how long Writable waits for a fresh probe. A free-space
	// check and an unsynced write take microseconds; one slower than this
	// means the log is stalled, which is itself not writable.
	probeWait = time.Second
)

var errProbeSlow = fmt.Errorf("state: the log's write probe has not finished in %s", probeWait)

// Writable reports whether the log can take writes, for /readyz and /status:
// enough free disk for appends and a small unsynced write that succeeds. The
// answer is at most probeEvery old: a call that finds it older asks probeLoop
// for a new one and waits for it (up to probeWait), so concurrent calls share
// one probe and a call after a quiet spell does not get a stale answer.
func (p *Pebble) Writable() error {
	if err := p.enter(); err != nil {
		return err
	}
	p.leave() // the probe runs in probeLoop, which Close waits for
	p.probeMu.Lock()
	err, fresh, probed := p.probeErr, time.Since(p.probeAt) < probeEvery, p.probed
	p.probeMu.Unlock()
	if fresh {
		return err
	}
	select {
	case p.probeWake <- struct{}{}:
	default: // a wake is already pending
	}
	t := time.NewTimer(probeWait)
	defer t.Stop()
	select {
	case <-probed:
		p.probeMu.Lock()
		defer p.probeMu.Unlock()
		return p.probeErr
	case <-p.stop:
		return ErrClosed
	case <-t.C:
		return errProbeSlow
	}
}

// probeLoop makes the probes Writable asks for, one at a time, and none while
// nobody asks.
func (p *Pebble) probeLoop() {
	defer close(p.probeDone)
	for {
		select {
		case <-p.stop:
			return
		case <-p.probeWake:
		}
		p.probeMu.Lock()
		fresh := time.Since(p.probeAt) < probeEvery
		p.probeMu.Unlock()
		if fresh {
			continue // woken during the probe that just finished
		}
		err := p.checkSpace(0)
		if err == nil {
			p.probes.Add(1)
			err = p.db.Set(controlKey("probe"), []byte(time.Now().UTC().Format(time.RFC3339)), pebble.NoSync)
		}
		p.probeMu.Lock()
		p.probeErr, p.probeAt = err, time.Now()
		close(p.probed)
		p.probed = make(chan struct{})
		p.probeMu.Unlock()
	}
}
