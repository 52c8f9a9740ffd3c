package web

import (
	"net/http"

	"github.com/hookhouse/hookhouse/internal/api"
)

type statusRow struct {
	IntegrationStatus
	Fresh Freshness
}

type statusPage struct {
	base
	Status  Status
	Details bool
	Rows    []statusRow
}

// statusPage shows each component's state to anyone, and per-integration
// freshness only with a session or the admin key (Authorization: Bearer).
func (w *Web) statusPage(rw http.ResponseWriter, r *http.Request) {
	details := sessionOf(r) != nil
	if key, ok := api.BearerKey(r); ok && w.opts.Control.CheckAdminKey(key) {
		details = true
	}
	st := w.opts.Status(r.Context(), details)
	p := statusPage{base: w.base(r, "Status"), Status: st, Details: details}
	loadErr := loadError(st)
	win := windowOf("") // the badge here goes by the last hour, like the list's default
	for _, in := range st.Integrations {
		rej := w.rejectionsOf(in.Stats, w.points(in.ID, win), win)
		p.Rows = append(p.Rows, statusRow{IntegrationStatus: in, Fresh: freshness(in.Stats, loadErr, rej)})
	}
	rw.Header().Set("Cache-Control", "no-store")
	code := http.StatusOK
	if st.Status == Down {
		code = http.StatusServiceUnavailable
	}
	w.render(rw, r, code, "status.html", p)
}
