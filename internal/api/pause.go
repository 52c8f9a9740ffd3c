package api

import (
	"net/http"
	"time"
)

// pause and resume: POST /api/v1/integrations/{id}/pause|resume. Receiving
// never pauses; loading stops after the batch in flight and resumes where it
// stopped. Both answer the integration as GET shows it.
func (a *API) pause(w http.ResponseWriter, r *http.Request)  { a.setPaused(w, r, true) }
func (a *API) resume(w http.ResponseWriter, r *http.Request) { a.setPaused(w, r, false) }

func (a *API) setPaused(w http.ResponseWriter, r *http.Request, paused bool) {
	in, ok := a.integration(w, r)
	if !ok {
		return
	}
	out, err := a.Control.SetPaused(in.ID, paused, time.Now())
	if err != nil {
		a.controlError(w, err)
		return
	}
	a.Logger.Info("integration loading "+map[bool]string{true: "paused", false: "resumed"}[paused], "integration", in.ID)
	view := a.integrationView(*out)
	st := a.Stats(in.ID)
	st.Paused = paused
	view.Stats = &st
	writeJSON(w, http.StatusOK, view)
}
