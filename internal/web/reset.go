package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hookhouse/hookhouse/internal/api"
	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/loader"
)

// resetPage is the confirmation of a reset: it names the schema and asks for
// it to be typed.
type resetPage struct {
	base
	In            control.Integration
	Held          int64 // records the log holds (received), for the message
	AcceptPartial bool
	Error         string
}

func (w *Web) resetConfirm(rw http.ResponseWriter, r *http.Request) {
	in, ok := w.lookup(rw, r)
	if !ok {
		return
	}
	w.renderReset(rw, r, http.StatusOK, in, false, "")
}

func (w *Web) renderReset(rw http.ResponseWriter, r *http.Request, status int, in *control.Integration, accept bool, msg string) {
	w.render(rw, r, status, "reset.html", resetPage{
		base: w.base(r, "Reset "+in.Name), In: *in, Held: w.opts.Stats(in.ID).RecordsReceived, AcceptPartial: accept, Error: msg,
	})
}

// reset drops the integration's tables and reloads its log once the schema
// name was typed. A reset repeated by a replayed form only reloads again, so
// it needs no nonce beyond the CSRF token and the typed name.
func (w *Web) reset(rw http.ResponseWriter, r *http.Request) {
	in, ok := w.lookup(rw, r)
	if !ok {
		return
	}
	accept := r.PostForm.Get("accept_partial") == "1"
	if strings.TrimSpace(r.PostForm.Get("schema")) != in.Schema {
		w.renderReset(rw, r, http.StatusBadRequest, in, accept, fmt.Sprintf("Type the schema name, %s, to confirm the reset; nothing was reset.", in.Schema))
		return
	}
	if w.opts.Reset == nil {
		w.renderReset(rw, r, http.StatusServiceUnavailable, in, accept, "The loader is not running yet; try again in a moment.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 45*time.Second)
	defer cancel()
	if err := w.opts.Reset(ctx, in.ID, accept); err != nil {
		status := http.StatusServiceUnavailable
		if errors.Is(err, loader.ErrPartial) || errors.Is(err, loader.ErrResetBusy) {
			status = http.StatusConflict
		}
		w.renderReset(rw, r, status, in, accept, capitalize(strings.TrimPrefix(err.Error(), "loader: ")))
		return
	}
	w.opts.Logger.Info("integration reset from the dashboard", "integration", in.ID, "accept_partial", accept)
	http.Redirect(rw, r, fmt.Sprintf("/integrations/%d?reset=1", in.ID), http.StatusSeeOther)
}

// resetView is the last reset as the integration page shows it.
type resetView struct {
	api.ResetStats
	Percent int64
	Rate    string // "1,234 records/s", "" while unknown
	ETA     string // "" while unknown
}

// ResetProgress is the last reset's progress for the page, nil if none.
func (p integrationPage) ResetProgress() *resetView {
	r := p.Stats.Reset
	if r == nil {
		return nil
	}
	v := &resetView{ResetStats: *r}
	if r.RecordsTotal > 0 {
		v.Percent = r.RecordsReloaded * 100 / r.RecordsTotal
	} else if r.Done {
		v.Percent = 100
	}
	if r.RecordsPerSecond > 0 && !r.Done {
		v.Rate = groupDigits(int64(r.RecordsPerSecond)) + " records/s"
	}
	if r.ETASeconds != nil {
		v.ETA = seconds(*r.ETASeconds)
	}
	return v
}
