package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/hookhouse/hookhouse/internal/loader"
)

// ResetStats is the progress of an integration's last reset (in Stats).
type ResetStats struct {
	RequestedAt time.Time  `json:"requested_at"`
	CommittedAt *time.Time `json:"committed_at,omitempty"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
	// FromPosition is the first log position reloaded (above 1 after a
	// partial reset); TargetPosition the log's head when the reset was made.
	FromPosition    uint64 `json:"from_position"`
	TargetPosition  uint64 `json:"target_position"`
	RecordsReloaded int64  `json:"records_reloaded"`
	RecordsTotal    int64  `json:"records_total"`
	// RecordsPerSecond since this server saw the reload start; ETASeconds is
	// the rest at that rate (absent while unknown or done).
	RecordsPerSecond float64  `json:"records_per_second"`
	ETASeconds       *float64 `json:"eta_seconds,omitempty"`
	Done             bool     `json:"done"`
}

// NewResetStats converts the loader's reset progress (nil stays nil).
func NewResetStats(p *loader.ResetProgress) *ResetStats {
	if p == nil {
		return nil
	}
	out := &ResetStats{RequestedAt: p.RequestedAt.UTC(), FromPosition: p.From, TargetPosition: p.Target,
		RecordsReloaded: p.Reloaded, RecordsTotal: p.Total, RecordsPerSecond: p.Rate, Done: p.Done()}
	if !p.CommittedAt.IsZero() {
		t := p.CommittedAt.UTC()
		out.CommittedAt = &t
	}
	if !p.FinishedAt.IsZero() {
		t := p.FinishedAt.UTC()
		out.FinishedAt = &t
	}
	if p.ETA > 0 && !out.Done {
		s := p.ETA.Seconds()
		out.ETASeconds = &s
	}
	return out
}

// resetTimeout bounds how long a reset request waits for the batch in flight.
const resetTimeout = 45 * time.Second // under the client's 60 s

// reset: POST /api/v1/integrations/{id}/reset {"accept_partial"?: bool}. It
// answers once the tables are dropped and the position set back (the reload
// then runs in the background; its progress is stats.reset), 409 partial_log
// when retention trimmed the log's head and accept_partial is not true.
func (a *API) reset(w http.ResponseWriter, r *http.Request) {
	in, ok := a.integration(w, r)
	if !ok {
		return
	}
	var req struct {
		AcceptPartial bool `json:"accept_partial"`
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", "cannot read the request body: "+err.Error())
		return
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		if !decode(w, r, &req) {
			return
		}
	}
	if a.Reset == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the loader is not running; retry when the server is ready")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), resetTimeout)
	defer cancel()
	if err := a.Reset(ctx, in.ID, req.AcceptPartial); err != nil {
		msg := strings.TrimPrefix(err.Error(), "loader: ")
		switch {
		case errors.Is(err, loader.ErrPartial):
			writeError(w, http.StatusConflict, "partial_log", msg)
		case errors.Is(err, loader.ErrResetBusy):
			writeError(w, http.StatusConflict, "reset_in_progress", msg)
		default:
			a.Logger.Error("integration reset failed", "integration", in.ID, "err", err)
			writeError(w, http.StatusServiceUnavailable, "unavailable", msg)
		}
		return
	}
	a.Logger.Info("integration reset: its tables were dropped and the log is reloading", "integration", in.ID, "accept_partial", req.AcceptPartial)
	view := a.integrationView(*in)
	st := a.Stats(in.ID)
	view.Stats = &st
	writeJSON(w, http.StatusOK, view)
}
