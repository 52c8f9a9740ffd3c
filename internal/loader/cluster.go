package loader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/state"
	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// Loading on a cluster (Options.Leases set): every node runs a worker for
// every integration, but a worker loads only while its node holds the
// integration's lease (lease.go). Otherwise it tries to take the lease every
// 1–1.5 s (and when the holder's lease would expire) and meanwhile keeps the integration's Stats and Sync current from the
// warehouse's stored position, which the loading node advances. Trimming the
// log (retention) and resets are done by the loading node only.

// ErrNotLoader is wrapped by Reset's refusal when this node lost the
// integration's lease while it was making the reset, or, with no control data
// to record a request in (Options.Resets nil), on a node that does not load it.
var ErrNotLoader = errors.New("this node does not load the integration")

// work runs w: always (single node), or while this node holds w's lease.
func (l *Loader) work(w *worker) {
	if l.opts.Leases == nil {
		w.soft, w.hard = l.ctx, l.hard
		l.run(w)
		return
	}
	var holdOff time.Duration
	for {
		ls := l.contend(w, holdOff)
		holdOff = 0
		if ls == nil {
			return // stopping, or a deleted integration whose records are all loaded
		}
		soft, cancelSoft := context.WithCancel(l.ctx)
		hard, cancelHard := context.WithCancel(l.hard)
		stopSoft := context.AfterFunc(ls.ctx, cancelSoft)
		stopHard := context.AfterFunc(ls.ctx, cancelHard)
		w.soft, w.hard = soft, hard
		l.takeOver(w, ls)
		l.run(w)
		stopSoft()
		stopHard()
		cancelSoft()
		cancelHard()
		lost := ls.ctx.Err() != nil
		w.mu.Lock()
		w.holding = nil
		req := w.resetReq
		w.resetReq = nil
		if lost {
			w.failing, w.lastErr = 0, nil // the cancelled load was no failure
		}
		w.changed()
		w.mu.Unlock()
		if req != nil {
			req.done <- fmt.Errorf("loader: reset integration %d: nothing was reset: %w (it lost the loader lease)", w.id, ErrNotLoader)
		}
		ls.release()
		if w.gaveUp {
			// Let the other nodes try first: they look every 1–1.5 s.
			w.gaveUp, holdOff = false, 3*time.Second
			continue
		}
		if !lost {
			return // Close, or a deleted integration done: the lease is released
		}
	}
}

// handOver reports, on a cluster, that w's loads have failed for
// handOverAfter, and makes run return so that the lease goes to another node,
// which may reach the warehouse (a partition between this node and the
// warehouse). If every node fails, the lease passes around and each retries.
func (l *Loader) handOver(w *worker, logger *slog.Logger) bool {
	if l.opts.Leases == nil || l.ctx.Err() != nil {
		return false
	}
	w.mu.Lock()
	failing, since := w.failing, w.since
	w.mu.Unlock()
	if w.heldSince.After(since) {
		since = w.heldSince // failing on this node since it took the lease
	}
	if failing == 0 || time.Since(since) < l.handOverAfter {
		return false
	}
	logger.Warn("loading has failed for too long on this node; giving the loader lease up so that another node tries",
		"failing_for", time.Since(since).Round(time.Second), "failures_in_a_row", failing)
	w.gaveUp = true
	return true
}

// takeOver starts a hold of w's lease: the reset recorded in the control data
// is the truth, and one requested but not committed (by a node that stopped)
// is redone before anything is loaded.
func (l *Loader) takeOver(w *worker, ls *lease) {
	var cur *control.Reset
	for _, in := range l.ctl.AllIntegrations() {
		if in.ID == w.id {
			cur = in.Reset
			w.mu.Lock()
			w.in = in
			w.mu.Unlock()
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.holding = ls
	w.heldSince = time.Now()
	w.adoptReset(cur)
	w.redo = w.reset != nil && w.reset.CommittedAt == nil
	w.changed()
}

// adoptReset makes the recorded reset r w's, unless w has the same one
// (keeping where this node saw its reload start). w.mu must be held.
func (w *worker) adoptReset(r *control.Reset) {
	if r == nil {
		return
	}
	if p := w.reset; p != nil && p.RequestedAt.Equal(r.RequestedAt) && (p.CommittedAt == nil) == (r.CommittedAt == nil) && (p.FinishedAt == nil) == (r.FinishedAt == nil) {
		return
	}
	c := *r
	w.reset = &c
	w.resetSeenAt, w.resetSeenPos = time.Time{}, 0
	if c.CommittedAt != nil && c.FinishedAt == nil {
		// Newly seen committed: the warehouse is back at From-1 (or past
		// it, which the next read of its position shows).
		w.resetAdopted = time.Now()
		if w.known && w.position+1 > c.From {
			w.position = c.From - 1
		}
	}
}

// contend waits until this node holds w's lease and returns it, or nil when
// the loader stops or w's integration is deleted and loaded; it makes no
// try before holdOff. Meanwhile it keeps w's picture current from the
// warehouse (for Stats and Sync).
func (l *Loader) contend(w *worker, holdOff time.Duration) *lease {
	var (
		nextTry     = time.Now().Add(holdOff)
		lastRefresh time.Time
		lastWarn    time.Time
	)
	for {
		if l.ctx.Err() != nil {
			return nil
		}
		if !time.Now().Before(nextTry) {
			nextTry = time.Now().Add(time.Second + rand.N(time.Second/2))
			ls, err := l.opts.Leases.acquire(w.id)
			switch {
			case err != nil:
				if time.Since(lastWarn) > 30*time.Second {
					l.logger.Warn("cannot read the loader lease; retrying", "integration", w.id, "err", err)
					lastWarn = time.Now()
				}
			case ls != nil:
				return ls
			}
			if d, ok := l.opts.Leases.expiresIn(w.id); ok && time.Now().Add(d).Before(nextTry) {
				nextTry = time.Now().Add(d + 10*time.Millisecond) // look again the moment it would expire
			}
		}
		if time.Since(lastRefresh) >= 250*time.Millisecond {
			lastRefresh = time.Now()
			if l.refresh(w) {
				return nil
			}
		}
		t := time.NewTimer(time.Until(nextTry))
		select {
		case <-t.C:
		case <-w.wake: // Sync: look at the warehouse now
		case <-l.ctx.Done():
		}
		t.Stop()
	}
}

// refresh sets w's position and counts from the warehouse's stored state,
// while another node loads the integration. It reports whether w's
// integration is deleted and everything accepted is loaded.
func (l *Loader) refresh(w *worker) (finished bool) {
	states, readAt, err := l.storedStates()
	if err != nil {
		return false // keep the last picture; the warehouse may be back soon
	}
	in := w.integration()
	st := states[w.id]
	w.mu.Lock()
	if readAt.Before(w.resetAdopted) {
		// Read before a reset this node has seen committed since: the
		// position it holds is the one before the reset.
		st.Position = w.position
	}
	moved := !w.known || w.position != st.Position
	w.position, w.known = st.Position, true
	if st.LoadedAt.After(w.lastLoad) {
		w.lastLoad = st.LoadedAt
	}
	w.failing, w.lastErr = 0, nil // this node does not load it, so cannot fail to
	w.adoptReset(in.Reset)
	w.redo = false // a reset left uncommitted is redone by the node that takes the lease
	count := !w.counted || time.Since(w.countedAt) > 10*time.Second
	rejected := w.rejected
	w.mu.Unlock()
	if count {
		ctx, cancel := context.WithTimeout(l.ctx, 5*time.Second)
		n, err := l.wh.CountRows(ctx, in.Schema, warehouse.RejectedTable)
		cancel()
		if err == nil {
			rejected = n
			w.mu.Lock()
			w.counted, w.countedAt = true, time.Now()
			w.mu.Unlock()
		}
	}
	w.mu.Lock()
	if w.counted {
		moved = moved || w.rejected != rejected
		w.rejected = rejected
		w.loaded = int64(w.position) - rejected
	}
	if moved {
		w.changed()
	}
	w.mu.Unlock()
	return in.DeletedAt != nil && l.log.Head(w.id).Position <= st.Position
}

// storedStates is the warehouse's LoadState, read at most every 500 ms for
// all the workers that wait for a lease.
// readAt is when the read began.
func (l *Loader) storedStates() (_ map[int64]warehouse.State, readAt time.Time, _ error) {
	l.statesMu.Lock()
	defer l.statesMu.Unlock()
	if time.Since(l.statesAt) < 500*time.Millisecond {
		return l.states, l.statesAt, l.statesErr
	}
	ctx, cancel := context.WithTimeout(l.ctx, 10*time.Second)
	defer cancel()
	at := time.Now()
	l.states, l.statesErr = l.wh.LoadState(ctx)
	l.statesAt = at
	return l.states, l.statesAt, l.statesErr
}

// waitHead waits (up to 5 s or ctx) until this node's log head of integration
// reaches pos.
func (l *Loader) waitHead(ctx context.Context, integration int64, pos uint64) {
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	l.refreshHead(ctx, integration)
	for {
		changed := l.log.Changed()
		if l.log.Head(integration).Position >= pos {
			return
		}
		select {
		case <-changed:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// LeaseHolder reports which node loads integration now, as this node knows
// it: itself while it holds the lease, another node while that node's lease is
// fresh as far as this node has seen. ok is false when no node is known to
// load it (none yet, or a holder that stopped renewing), and always on a
// single node (Options.Leases nil), where this process loads everything.
func (l *Loader) LeaseHolder(integration int64) (node string, ok bool) {
	if l.opts.Leases == nil {
		return "", false
	}
	return l.opts.Leases.holder(integration)
}

// leaseWho says which node loads integration, as this node knows it.
func (l *Loader) leaseWho(integration int64) string {
	if node, ok := l.LeaseHolder(integration); ok {
		return "node " + node + " loads it"
	}
	return "no node holds its loader lease at the moment (a node is taking over)"
}

// requestReset is Reset on a node that does not load the integration: it
// records the request in the control data (a Reset with only RequestedAt and
// AcceptPartial; reset.go) for the node that loads it, or the next one to take
// its lease, and waits as Reset does until that node has committed it. If ctx
// ends before a node took the request, the request is withdrawn and nothing
// is done.
func (l *Loader) requestReset(ctx context.Context, w *worker, accept bool) (ResetProgress, error) {
	id := w.id
	if l.opts.Resets == nil {
		return ResetProgress{}, fmt.Errorf("loader: reset integration %d: nothing was reset: %w (this is node %s; %s), and this node cannot record a request for it",
			id, ErrNotLoader, l.opts.Leases.Node(), l.leaseWho(id))
	}
	// Refuse a partial reload here, as the loading node would (the log is the
	// cluster's): a request it would refuse is not recorded.
	if !accept {
		recs, err := l.log.Read(ctx, id, 0, 1, 1)
		if err != nil {
			return ResetProgress{}, fmt.Errorf("loader: reset integration %d: read the log: %w; nothing was reset", id, err)
		}
		if len(recs) == 1 && recs[0].Position > 1 {
			return ResetProgress{}, l.partialError(w.integration(), recs[0].Position, recs[0].ReceivedAt, l.log.Head(id).LastReceivedAt)
		}
	}
	var (
		prev *control.Reset
		at   time.Time
	)
	_, err := l.opts.Resets.UpdateReset(id, func(cur *control.Reset) (*control.Reset, error) {
		if cur != nil && cur.CommittedAt == nil {
			return nil, ErrResetBusy
		}
		prev, at = cur, time.Now().UTC()
		if cur != nil && !at.After(cur.RequestedAt) {
			at = cur.RequestedAt.Add(time.Microsecond) // newer than the last, whatever the clocks say
		}
		return &control.Reset{RequestedAt: at, AcceptPartial: accept}, nil
	})
	if errors.Is(err, ErrResetBusy) {
		return ResetProgress{}, fmt.Errorf("loader: reset integration %d: %w (requested through a node and not yet committed)", id, ErrResetBusy)
	}
	if err != nil {
		return ResetProgress{}, fmt.Errorf("loader: reset integration %d: record the request: %w; nothing was reset", id, err)
	}
	l.logger.Info("reset requested; the node that loads the integration makes it", "integration", id, "requested_at", at, "loader", l.leaseWho(id))
	w.poke() // this node may take the lease meanwhile: its worker then makes it

	// recorded is the request's record in this node's control cache (the
	// watch brings the loading node's writes): ok false once it is gone.
	recorded := func() (r control.Reset, ok bool) {
		for _, in := range l.ctl.AllIntegrations() {
			if in.ID == id && in.Reset != nil && in.Reset.RequestedAt.Equal(at) {
				return *in.Reset, true
			}
		}
		return control.Reset{}, false
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var taken time.Time // when this node saw a node take it (From set)
	for {
		r, ok := recorded()
		switch {
		case !ok:
			return ResetProgress{}, fmt.Errorf("loader: reset integration %d: the loading node did not make the reset asked at %s and withdrew it "+
				"(see that node's log: retention may have trimmed the log's head meanwhile, or a newer reset replaced it)", id, at.Format(time.RFC3339Nano))
		case r.CommittedAt != nil:
			w.mu.Lock()
			w.adoptReset(&r)
			w.changed()
			w.mu.Unlock()
			return l.resetProgress(w), nil
		case r.From != 0 && taken.IsZero():
			taken = time.Now()
		}
		select {
		case <-t.C:
			continue
		case <-w.done:
			return ResetProgress{}, fmt.Errorf("loader: reset integration %d: this node's loader stopped; the reset asked stays recorded and the node that loads the integration makes it: see integrations show", id)
		case <-ctx.Done():
		}
		if !taken.IsZero() && time.Since(taken) < 3*time.Minute {
			// Being made (bounded by the maker's own 2-minute deadline):
			// wait for its outcome without ctx, polling the record.
			<-t.C
			continue
		}
		// Withdraw it unless a node has taken it since.
		_, err := l.opts.Resets.UpdateReset(id, func(cur *control.Reset) (*control.Reset, error) {
			if cur == nil || !cur.RequestedAt.Equal(at) || cur.From != 0 || cur.CommittedAt != nil {
				return nil, errResetMade
			}
			return prev, nil
		})
		switch {
		case err == nil:
			return ResetProgress{}, fmt.Errorf("loader: reset integration %d: nothing was reset, no node made the reset in time (this is node %s; %s): %w",
				id, l.opts.Leases.Node(), l.leaseWho(id), ctx.Err())
		case errors.Is(err, errResetMade):
			if taken.IsZero() {
				taken = time.Now() // taken in between: wait for it as above
			}
		default:
			return ResetProgress{}, fmt.Errorf("loader: reset integration %d: no node made the reset in time and withdrawing the request failed (%w); it may still be made: see integrations show", id, err)
		}
	}
}

// headRefresher is a log whose Head learns of other nodes' appends through a
// follower that may fall behind for a while (state.JetStream): RefreshHead
// asks the log itself.
type headRefresher interface {
	RefreshHead(ctx context.Context, integration int64) (state.Head, error)
}

// refreshEvery is how often a worker with nothing to load asks the log for
// its head on a cluster, in case this node's follower of the log lags.
const refreshEvery = 2 * time.Second

// refreshTick returns a channel that fires after refreshEvery on a cluster
// whose log can be asked (nil, never firing, otherwise).
func (l *Loader) refreshTick() <-chan time.Time {
	if _, ok := l.log.(headRefresher); !ok || l.opts.Leases == nil {
		return nil
	}
	return time.After(refreshEvery)
}

// refreshHead asks a cluster's log for integration's head (see headRefresher);
// a failure only means the next look comes later.
func (l *Loader) refreshHead(ctx context.Context, integration int64) {
	r, ok := l.log.(headRefresher)
	if !ok || l.opts.Leases == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := r.RefreshHead(ctx, integration); err != nil {
		l.logger.Debug("could not ask the log for its head", "integration", integration, "err", err)
	}
}
