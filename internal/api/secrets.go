package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/verify"
)

// createRequest is POST /api/v1/integrations: the integration, and for type
// webhooks optionally "verify": {"scheme": …, "secret": …, …}.
type createRequest struct {
	control.NewIntegration
	Verify *verifyRequest `json:"verify,omitempty"`
}

type verifyRequest struct {
	verify.Config
	Secret string `json:"secret,omitempty"`
}

// SecretJSON is a signing secret as the API shows it: never the secret, except
// Secret once, in the answer that generated it.
type SecretJSON struct {
	ID        int64     `json:"id"`
	Hint      string    `json:"hint"`
	CreatedAt time.Time `json:"created_at"`
	Secret    string    `json:"secret,omitempty"`
}

func secretJSON(s control.Secret) SecretJSON {
	return SecretJSON{ID: s.ID, Hint: s.Hint, CreatedAt: s.CreatedAt}
}

// shownVerify is in's verify config as answers show it: Meta's verify token is
// set by the user and stays out of answers like the secrets.
func shownVerify(in control.Integration) *verify.Config {
	if in.Verify == nil {
		return nil
	}
	c := *in.Verify
	if c.VerifyToken != "" {
		c.VerifyToken = "(set)"
	}
	return &c
}

func (a *API) addSecret(w http.ResponseWriter, r *http.Request) {
	in, ok := a.integration(w, r)
	if !ok {
		return
	}
	var req struct {
		Secret string `json:"secret"`
	}
	if !decode(w, r, &req) {
		return
	}
	s, revealed, err := a.Control.AddSecret(in.ID, req.Secret, time.Now())
	if err != nil {
		a.controlError(w, err)
		return
	}
	a.Logger.Info("signing secret added", "integration", in.ID, "secret_id", s.ID)
	out := secretJSON(*s)
	out.Secret = revealed
	writeJSON(w, http.StatusCreated, out)
}

func (a *API) listSecrets(w http.ResponseWriter, r *http.Request) {
	in, ok := a.integration(w, r)
	if !ok {
		return
	}
	list, err := a.Control.Secrets(in.ID)
	if err != nil {
		a.controlError(w, err)
		return
	}
	out := make([]SecretJSON, len(list))
	for i, s := range list {
		out[i] = secretJSON(s)
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) removeSecret(w http.ResponseWriter, r *http.Request) {
	in, ok := a.integration(w, r)
	if !ok {
		return
	}
	sid, err := strconv.ParseInt(r.PathValue("secret_id"), 10, 64)
	if err != nil || sid <= 0 {
		writeError(w, http.StatusNotFound, "not_found", "secret id must be a positive integer")
		return
	}
	if err := a.Control.RemoveSecret(in.ID, sid, time.Now()); err != nil {
		a.controlError(w, err)
		return
	}
	a.Logger.Info("signing secret removed", "integration", in.ID, "secret_id", sid)
	w.WriteHeader(http.StatusNoContent)
}

// updateIntegration is PATCH /api/v1/integrations/{id}: a verifying
// integration's mode, tolerance and dedupe window (e.g. ending a rollout with
// {"verify": {"mode": "enforce"}}). Fields left out stay.
func (a *API) updateIntegration(w http.ResponseWriter, r *http.Request) {
	in, ok := a.integration(w, r)
	if !ok {
		return
	}
	var req struct {
		Verify *struct {
			Mode      *verify.Mode     `json:"mode"`
			Tolerance *verify.Duration `json:"tolerance"`
		} `json:"verify"`
		DedupeWindow *verify.Duration `json:"dedupe_window"`
	}
	if !decode(w, r, &req) {
		return
	}
	ch := control.VerifyChange{DedupeWindow: req.DedupeWindow}
	if req.Verify != nil {
		ch.Mode, ch.Tolerance = req.Verify.Mode, req.Verify.Tolerance
	}
	out, err := a.Control.UpdateVerify(in.ID, ch)
	if err != nil {
		a.controlError(w, err)
		return
	}
	a.Logger.Info("integration verification changed", "integration", in.ID, "mode", string(out.Verify.Mode),
		"tolerance", time.Duration(out.Verify.Tolerance).String())
	writeJSON(w, http.StatusOK, a.integrationView(*out))
}
