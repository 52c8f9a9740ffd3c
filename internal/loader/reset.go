package loader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/faults"
	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// A reset drops an integration's tables and reloads every record still in the
// log. The integration's own worker does it between two batches, so nothing of
// it is in flight and no Trim (which only the worker runs, after a commit) can
// remove records between reading the log's first position and the commit:
//
//  1. the request is recorded in the control state (Options.Resets);
//  2. ONE warehouse transaction drops the tables and sets the load position back
//     to the record before the log's first, fenced on the current position
//     (warehouse.Warehouse.Reset);
//  3. the record is marked committed, and the worker loads from the lower
//     position as it always does, so the reload is resumable by construction.
//
// A kill before 2 commits leaves the old tables and position, and the record of
// step 1 makes the next start redo the reset. A kill between 2 and 3 makes the
// next start redo it too, which drops tables that are still empty (nothing loads
// before 3) and sets the same position: the same outcome. Each record is loaded
// once after a reset, with the same __sdc_primary_key, _sdc_received_at and,
// because the sequence starts again from the same state, the same
// _sdc_sequence.

// Resets records resets so that they survive a restart (control.Store), and
// on a cluster carries a reset asked of any node to the one that loads the
// integration. UpdateReset records what fn returns given the recorded reset,
// calling fn again when another node changed it in between.
type Resets interface {
	UpdateReset(intID int64, fn func(cur *control.Reset) (*control.Reset, error)) (*control.Integration, error)
}

// On a cluster (cluster.go) a reset asked of a node that does not load the
// integration is recorded as a request: a Reset with only RequestedAt (and
// AcceptPartial) set. The loading node's worker sees it in its copy of the
// integration (the control watch keeps it current) between two batches, or
// when it takes the lease, and makes it as a reset left uncommitted by a
// stopped node: steps 2 and 3 above. Every write of the record is a
// compare-and-set on the record read just before, so a request is never
// overwritten by the loading node's progress of an older reset, and a reset
// already committed (by a node that lost the lease meanwhile) is adopted,
// never made twice; the warehouse's fenced Reset covers two nodes at once.

// ErrPartial is wrapped by Reset's refusal when retention has trimmed the log's
// first records of the integration and the caller did not accept a partial reload.
var ErrPartial = errors.New("retention trimmed the log's head")

// ErrResetBusy is returned by Reset while another reset of the same integration
// is being started.
var ErrResetBusy = errors.New("a reset of this integration is being started already")

// ResetProgress is how far an integration's last reset is.
type ResetProgress struct {
	RequestedAt time.Time
	CommittedAt time.Time // zero until the tables are dropped
	FinishedAt  time.Time // zero until the reload reached Target
	From        uint64    // first log position reloaded; >1 after a partial reset
	Target      uint64    // the log's head when the reset was made
	Reloaded    int64     // records reloaded of Total
	Total       int64
	// Rate is records reloaded per second since this server saw the reload
	// start (0 until measured); ETA is the rest at that rate (0 if unknown).
	Rate float64
	ETA  time.Duration
}

// Done reports whether the reload has reached its target.
func (p ResetProgress) Done() bool { return !p.FinishedAt.IsZero() }

type resetRequest struct {
	ctx    context.Context
	accept bool // AcceptPartial
	done   chan error
}

// Reset resets integration (see above) and returns once the tables are dropped
// and the position set back, with the progress of the reload that follows. With
// acceptPartial false it refuses, wrapping ErrPartial, when the log no longer
// holds the integration's first record. It waits for the batch in flight to
// commit; if ctx ends before the worker takes the request, nothing is done.
// On a cluster a node that does not load the integration records the request
// for the node that does and waits in the same way (requestReset).
func (l *Loader) Reset(ctx context.Context, integration int64, acceptPartial bool) (ResetProgress, error) {
	var w *worker
	for _, in := range l.ctl.AllIntegrations() {
		if in.ID == integration && in.DeletedAt == nil {
			w = l.startWorker(in)
		}
	}
	if w == nil {
		return ResetProgress{}, fmt.Errorf("loader: reset integration %d: no such integration, or the loader is stopped", integration)
	}
	req := &resetRequest{ctx: ctx, accept: acceptPartial, done: make(chan error, 1)}
	w.mu.Lock()
	if l.opts.Leases != nil && w.holding == nil {
		w.mu.Unlock()
		return l.requestReset(ctx, w, acceptPartial)
	}
	if w.resetReq != nil {
		w.mu.Unlock()
		return ResetProgress{}, fmt.Errorf("loader: reset integration %d: %w", integration, ErrResetBusy)
	}
	w.resetReq = req
	w.mu.Unlock()
	w.poke()
	outcome := func(err error) (ResetProgress, error) {
		if err != nil {
			return ResetProgress{}, err
		}
		return l.resetProgress(w), nil
	}
	// stopped is the answer when the worker returned: its outcome if it made
	// the reset just before.
	stopped := func(what string) (ResetProgress, error) {
		w.mu.Lock()
		if w.resetReq == req {
			w.resetReq = nil
		}
		w.mu.Unlock()
		select {
		case err := <-req.done:
			return outcome(err)
		default:
			return ResetProgress{}, fmt.Errorf("loader: reset integration %d: the loader stopped %s", integration, what)
		}
	}
	select {
	case err := <-req.done:
		return outcome(err)
	case <-w.done:
		return stopped("before the reset was made; nothing was reset")
	case <-ctx.Done():
	}
	w.mu.Lock()
	untaken := w.resetReq == req
	if untaken {
		w.resetReq = nil
	}
	lastErr := w.lastErr
	w.mu.Unlock()
	if untaken {
		why := "the batch in flight did not finish in time"
		if lastErr != nil {
			why = "loading is failing: " + lastErr.Error()
		}
		return ResetProgress{}, fmt.Errorf("loader: reset integration %d: nothing was reset, %s: %w", integration, why, ctx.Err())
	}
	// The worker has begun: its outcome comes soon (its own deadline is bounded).
	select {
	case err := <-req.done:
		return outcome(err)
	case <-w.done:
		return stopped("during the reset; see integrations show")
	}
}

// handleReset runs a reset asked for (Reset) or left uncommitted by the last
// run (redo), in the worker between batches, from the committed state st. It
// reports whether it tried one: the worker then re-reads state and tables.
func (l *Loader) handleReset(w *worker, st warehouse.State, logger *slog.Logger) bool {
	w.mu.Lock()
	remote := false
	if w.resetReq == nil && !w.redo && w.holding != nil {
		if r := w.requestedLocked(); r != nil {
			// Asked of another node: made as one left uncommitted.
			w.adoptReset(r)
			w.redo, remote = true, true
		}
	}
	req, redo := w.resetReq, w.redo
	w.resetReq, w.redo = nil, false
	prev := w.reset
	busy := req != nil || redo
	w.resetting = busy
	w.mu.Unlock()
	if !busy {
		return false
	}
	defer func() {
		w.mu.Lock()
		w.resetting = false
		w.changed()
		w.mu.Unlock()
	}()
	switch {
	case req != nil:
		if req.ctx.Err() != nil {
			req.done <- req.ctx.Err()
			return false
		}
		req.done <- l.doReset(w, st, req.accept, time.Now().UTC(), prev, false, logger)
		return true
	case redo && prev != nil:
		switch {
		case remote:
			logger.Info("making the reset asked of another node", "requested_at", prev.RequestedAt, "accept_partial", prev.AcceptPartial)
		case prev.From == 0:
			logger.Info("making the reset requested through the control data (asked of another node)", "requested_at", prev.RequestedAt)
		default:
			logger.Info("redoing the reset that was not committed when the server stopped", "requested_at", prev.RequestedAt)
		}
		// On failure the request stays recorded (prev) and is tried again.
		err := l.doReset(w, st, prev.AcceptPartial, prev.RequestedAt, prev, true, logger)
		switch {
		case err == nil:
		case errors.Is(err, errResetMade), errors.Is(err, errResetGone):
			logger.Info("not making the reset: " + err.Error())
		case errors.Is(err, ErrPartial):
			// Cannot happen unless the log was trimmed by something else.
			logger.Error("the reset requested before the restart is refused now; the tables are unchanged", "err", err)
			if rerr := l.recordReset(w.id, nil, prev.RequestedAt); rerr != nil {
				logger.Warn("cannot clear the refused reset", "err", rerr)
			}
			w.mu.Lock()
			w.reset = nil
			w.mu.Unlock()
		case w.soft.Err() != nil:
			// Stopping: the request stays recorded for the next start.
		default:
			logger.Error("redoing the reset failed; retrying", "err", err)
			w.mu.Lock()
			w.redo = true
			w.mu.Unlock()
			sleep(w.soft, time.Second)
		}
		return true
	}
	return false
}

// doReset makes one reset from st. prev is the reset to record again if this
// one fails (the last one, for its progress), nil to clear the record;
// recorded says the reset was requested through the control data (redone).
func (l *Loader) doReset(w *worker, st warehouse.State, accept bool, requestedAt time.Time, prev *control.Reset, recorded bool, logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(w.hard, 2*time.Minute)
	defer cancel()
	in := w.integration()
	head := l.log.Head(in.ID)
	from, firstAt := head.Position+1, time.Time{}
	recs, err := l.log.Read(ctx, in.ID, 0, 1, 1)
	if err != nil {
		return fmt.Errorf("loader: reset integration %d: read the log: %w", in.ID, err)
	}
	if len(recs) == 1 {
		from, firstAt = recs[0].Position, recs[0].ReceivedAt
	}
	if from > 1 && !accept {
		return l.partialError(in, from, firstAt, head.LastReceivedAt)
	}
	if from-1 > st.Position {
		// Trim removes only loaded records; this is a bug or a damaged log.
		return fmt.Errorf("loader: reset integration %d: the log starts at position %d but only %d are loaded: records are missing from the log", in.ID, from, st.Position)
	}
	r := &control.Reset{RequestedAt: requestedAt, AcceptPartial: accept, From: from, Target: head.Position}
	if err := l.startReset(w, r, recorded); err != nil {
		return err
	}
	next := warehouse.State{Installation: l.opts.Installation, Position: from - 1}
	if err := l.wh.Reset(ctx, in.ID, in.Schema, st, next); err != nil {
		if rerr := l.recordReset(in.ID, prev, r.RequestedAt); rerr != nil {
			logger.Warn("cannot clear the record of the failed reset; the next start redoes it", "err", rerr)
		}
		return fmt.Errorf("loader: reset integration %d: %w", in.ID, err)
	}
	faults.Point(faults.LoaderResetAfterCommit)
	now := time.Now().UTC()
	r.CommittedAt = &now
	if from > r.Target {
		r.FinishedAt = &now // nothing to reload
	}
	if err := l.recordReset(in.ID, r, r.RequestedAt); err != nil {
		// Committed anyway; a restart before this is recorded redoes the reset.
		logger.Warn("the reset is committed but recording that failed; a restart would redo it", "err", err)
	}
	w.mu.Lock()
	w.position, w.known = next.Position, true
	w.counted = false // loaded and rejected are counted again from the new tables
	w.reset = r
	w.resetSeenAt, w.resetSeenPos = time.Now(), next.Position
	w.changed()
	w.mu.Unlock()
	logger.Info("integration reset: tables dropped, reloading the log", "from_position", from, "to_position", r.Target,
		"records", int64(r.Target)-int64(from)+1, "partial", from > 1)
	return nil
}

// partialError says how much of the integration the log no longer holds.
func (l *Loader) partialError(in control.Integration, from uint64, firstAt, lastAt time.Time) error {
	gone := from - 1
	var what string
	if firstAt.IsZero() {
		what = fmt.Sprintf("none of its %d records (positions 1–%d, received from %s to %s)", gone, gone,
			in.CreatedAt.UTC().Format(time.RFC3339), lastAt.UTC().Format(time.RFC3339))
	} else {
		what = fmt.Sprintf("its first %d records (positions 1–%d, received from %s until before %s, when the oldest record it still holds arrived)", gone, gone,
			in.CreatedAt.UTC().Format(time.RFC3339), firstAt.UTC().Format(time.RFC3339))
	}
	retention := "the retention"
	if l.opts.Retention > 0 {
		retention = "the retention of " + l.opts.Retention.String()
	}
	return fmt.Errorf("loader: reset integration %d (schema %s) refused, %w: the log no longer holds %s; %s removed them after they were loaded. "+
		"A reset would drop them from the warehouse for good; to reload only what the log still holds from position %d on, reset with --accept-partial (API: \"accept_partial\": true)",
		in.ID, in.Schema, ErrPartial, what, retention, from)
}

// errResetMade is startReset's refusal to make a reset that another node
// committed already; errResetReplaced recordReset's to overwrite a newer
// request.
var (
	errResetMade     = errors.New("another node committed this reset already; its reload goes on here")
	errResetGone     = errors.New("the reset requested is no longer recorded: its asker withdrew it")
	errResetReplaced = errors.New("a newer reset was requested through another node")
)

// startReset records r, the reset about to be made, unless the recorded one
// is the same reset committed already (errResetMade; adopted: w loads on from
// its position), or, for a recorded request, one no longer recorded
// (errResetGone: withdrawn by its asker, whose wait ended). When another reset
// waits to be made (asked of another node), r is made as that one: it takes
// its RequestedAt, so that its asker sees it made.
func (l *Loader) startReset(w *worker, r *control.Reset, recorded bool) error {
	if l.opts.Resets == nil {
		return nil
	}
	var made *control.Reset
	mine := r.RequestedAt
	_, err := l.opts.Resets.UpdateReset(w.id, func(cur *control.Reset) (*control.Reset, error) {
		made, r.RequestedAt = nil, mine
		switch {
		case cur == nil:
			if recorded {
				made = nil
				return nil, errResetGone
			}
		case cur.RequestedAt.Equal(mine):
			if cur.CommittedAt != nil {
				made = cur
				return nil, errResetMade
			}
		case cur.CommittedAt == nil:
			r.RequestedAt = cur.RequestedAt
		case recorded:
			made = cur
			return nil, errResetGone
		}
		return r, nil
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errResetMade):
		w.mu.Lock()
		w.adoptReset(made)
		w.mu.Unlock()
		return fmt.Errorf("loader: reset integration %d: %w", w.id, err)
	case errors.Is(err, errResetGone):
		w.mu.Lock()
		if made == nil {
			w.reset = nil
		} else {
			w.adoptReset(made)
		}
		w.mu.Unlock()
		return fmt.Errorf("loader: reset integration %d: %w", w.id, err)
	}
	return fmt.Errorf("loader: reset integration %d: record the request: %w; nothing was reset", w.id, err)
}

// recordReset stores r as integration's reset, if the loader has somewhere
// to, unless the recorded one is another reset still waiting to be made
// (requested through another node after the one of mine, its RequestedAt).
func (l *Loader) recordReset(integration int64, r *control.Reset, mine time.Time) error {
	if l.opts.Resets == nil {
		return nil
	}
	_, err := l.opts.Resets.UpdateReset(integration, func(cur *control.Reset) (*control.Reset, error) {
		if cur != nil && cur.CommittedAt == nil && !cur.RequestedAt.Equal(mine) {
			return nil, errResetReplaced
		}
		return r, nil
	})
	if errors.Is(err, errResetReplaced) {
		return nil // that one is made next; it says what happened
	}
	return err
}

// resetLoaded notes, after a commit up to pos, that a reset's reload is done.
func (l *Loader) resetLoaded(w *worker, pos uint64, logger *slog.Logger) {
	w.mu.Lock()
	r := w.reset
	if r == nil || r.CommittedAt == nil || r.FinishedAt != nil || pos < r.Target {
		w.mu.Unlock()
		return
	}
	done := *r
	now := time.Now().UTC()
	done.FinishedAt = &now
	w.reset = &done
	w.mu.Unlock()
	logger.Info("reset finished: the log is reloaded", "records", int64(done.Target)-int64(done.From)+1, "took", now.Sub(*done.CommittedAt).Round(time.Millisecond))
	if err := l.recordReset(w.id, &done, done.RequestedAt); err != nil {
		logger.Warn("cannot record that the reset finished", "err", err)
	}
}

// resetProgress is w's reset progress; the zero value if it never had one.
func (l *Loader) resetProgress(w *worker) ResetProgress {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.resetProgressLocked(time.Now())
}

func (w *worker) resetProgressLocked(now time.Time) ResetProgress {
	r := w.reset
	if r == nil {
		return ResetProgress{}
	}
	p := ResetProgress{RequestedAt: r.RequestedAt, From: r.From, Target: r.Target}
	if r.Target >= r.From {
		p.Total = int64(r.Target - r.From + 1)
	}
	if r.CommittedAt != nil {
		p.CommittedAt = *r.CommittedAt
	}
	if r.FinishedAt != nil {
		p.FinishedAt = *r.FinishedAt
		p.Reloaded = p.Total
		return p
	}
	if r.CommittedAt == nil || !w.known {
		return p
	}
	pos := min(w.position, r.Target)
	if pos >= r.From {
		p.Reloaded = int64(pos - r.From + 1)
	}
	if w.resetSeenAt.IsZero() {
		// Restarted during the reload: measure from here.
		w.resetSeenAt, w.resetSeenPos = now, w.position
	}
	if el := now.Sub(w.resetSeenAt).Seconds(); el > 0.5 && w.position > w.resetSeenPos {
		p.Rate = float64(w.position-w.resetSeenPos) / el
		p.ETA = time.Duration(float64(p.Total-p.Reloaded) / p.Rate * float64(time.Second))
	}
	return p
}

// resetAsked reports whether a reset waits for the worker.
func (w *worker) resetAsked() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.resetReq != nil || (w.holding != nil && w.requestedLocked() != nil)
}

// requestedLocked is the reset recorded in w's copy of the integration when
// it waits to be made and is newer than w's own (asked of another node), nil
// otherwise. w.mu must be held.
func (w *worker) requestedLocked() *control.Reset {
	r := w.in.Reset
	if r == nil || r.CommittedAt != nil {
		return nil
	}
	if w.reset != nil && !r.RequestedAt.After(w.reset.RequestedAt) {
		return nil // w's own, or one it has made since (the copy lags)
	}
	return r
}
