package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/verify"
)

// Signature verification in the dashboard: the add form's scheme, mode and
// secret, switching the mode (a rollout ends monitor → enforce) and the
// tolerance, and the signing secrets of an integration (add for a rotation,
// remove with a confirmation). A signing secret is in exactly one response,
// like a webhook token: the reveal that answers the POST which generated it.
// A pasted secret is never sent back, not even into the form it came from.

// verifyForm is the add form's verification part, as typed. It holds no
// secret: Secret and VerifyToken are read from the request when saving and
// never rendered (HadSecret only says one was pasted).
type verifyForm struct {
	Scheme          string
	Mode            string
	Algorithm       string
	Header          string
	Prefix          string
	Encoding        string
	Signed          string
	TimestampHeader string
	IDHeader        string
	Tolerance       string
	HadSecret       bool // a secret or verify token was pasted: say to paste it again

	secret, verifyToken string
}

// readVerifyForm reads the verification fields (named as in the API's
// "verify" object).
func readVerifyForm(f url.Values) verifyForm {
	v := verifyForm{
		Scheme: f.Get("scheme"), Mode: f.Get("mode"),
		Algorithm: f.Get("algorithm"), Header: strings.TrimSpace(f.Get("header")), Prefix: f.Get("prefix"),
		Encoding: f.Get("encoding"), Signed: strings.TrimSpace(f.Get("signed")),
		TimestampHeader: strings.TrimSpace(f.Get("timestamp_header")), IDHeader: strings.TrimSpace(f.Get("id_header")),
		Tolerance: strings.TrimSpace(f.Get("tolerance")),
		// Surrounding white space is a paste artefact (verify trims it too);
		// trimmed here so the hint shows the secret's real last characters.
		secret: strings.TrimSpace(f.Get("secret")), verifyToken: strings.TrimSpace(f.Get("verify_token")),
	}
	if !verify.Scheme(v.Scheme).Valid() {
		v.Scheme = ""
	}
	if v.Mode != string(verify.Monitor) {
		v.Mode = string(verify.Enforce)
	}
	v.HadSecret = v.Scheme != "" && (v.secret != "" || v.verifyToken != "")
	return v
}

// config is the verify settings and secret to create the integration with:
// nil for no verification, or a message for the person filling in the form.
func (v verifyForm) config() (*verify.Config, string, string) {
	if v.Scheme == "" {
		return nil, "", ""
	}
	sc := schemeOf(verify.Scheme(v.Scheme))
	// Without a secret a scheme hookhouse cannot generate for starts with
	// none: the provider shows its secret once the endpoint (our URL) exists,
	// and deliveries are refused until it is added under Signing secrets.
	cfg := &verify.Config{Scheme: sc.ID, Mode: verify.Mode(v.Mode)}
	if sc.ID == verify.Meta {
		cfg.VerifyToken = v.verifyToken
	}
	if sc.ID == verify.HMAC {
		cfg.Algorithm, cfg.Header, cfg.Prefix, cfg.Encoding = v.Algorithm, v.Header, v.Prefix, v.Encoding
		cfg.Signed, cfg.TimestampHeader, cfg.IDHeader = v.Signed, v.TimestampHeader, v.IDHeader
		if v.Tolerance != "" {
			d, err := parseTolerance(v.Tolerance)
			if err != nil {
				return nil, "", err.Error()
			}
			cfg.Tolerance = verify.Duration(d)
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, "", verifyMessage(err.Error())
	}
	return cfg, v.secret, ""
}

// parseTolerance reads "5m", "90s" or a number of seconds.
func parseTolerance(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("tolerance %q: write it like 5m or 300s", s)
	}
	return d, nil
}

// verifyMessage drops the package prefixes ("verify: ") from a message shown
// in a form.
func verifyMessage(msg string) string {
	for strings.HasPrefix(msg, "verify: ") {
		msg = strings.TrimPrefix(msg, "verify: ")
	}
	return msg
}

// hintOf is how a secret is listed later: its last 4 characters, as control
// stores them.
func hintOf(secret string) string {
	if len(secret) > 4 {
		return secret[len(secret)-4:]
	}
	return secret
}

// secretFlash is the message after a secret was added or removed (the ids in
// the redirect's query), or "".
func secretFlash(c Control, in *control.Integration, q url.Values) string {
	if q.Get("secret_removed") != "" {
		return "The signing secret was removed: deliveries signed with it now fail verification."
	}
	id, err := strconv.ParseInt(q.Get("secret_added"), 10, 64)
	if err != nil {
		return ""
	}
	list, _ := c.Secrets(in.ID)
	for _, s := range list {
		if s.ID == id {
			return fmt.Sprintf("Signing secret ****%s added: deliveries signed with any of the %d secrets verify. "+
				"Switch the provider to it, check that Signature failures stays flat, then remove the old one.", s.Hint, len(list))
		}
	}
	return ""
}

// addSecret adds a signing secret (a rotation): pasted, or generated and
// revealed once.
func (w *Web) addSecret(rw http.ResponseWriter, r *http.Request) {
	in, ok := w.lookup(rw, r)
	if !ok {
		return
	}
	if in.Verify == nil {
		w.showIntegration(rw, r, http.StatusBadRequest, in, "", "This integration does not verify signatures, so it has no signing secrets.")
		return
	}
	secret := strings.TrimSpace(r.PostForm.Get("secret"))
	sc := schemeOf(in.Verify.Scheme)
	if secret == "" && !sc.CanGenerate {
		w.showIntegration(rw, r, http.StatusBadRequest, in, "",
			fmt.Sprintf("Paste the new signing secret: %s issues it, so hookhouse cannot generate it.", sc.Label))
		return
	}
	if !w.sessions.useOnce(sessionOf(r), r.PostForm.Get("once")) {
		w.showIntegration(rw, r, http.StatusConflict, in, "",
			"That form was already submitted. A generated secret is shown only once: if you missed it, remove it and add another.")
		return
	}
	s, revealed, err := w.opts.Control.AddSecret(in.ID, secret, w.opts.Now())
	if err != nil {
		status, msg := w.controlError(err)
		if errors.Is(err, control.ErrConflict) {
			msg = fmt.Sprintf("%s already has %d signing secrets, the most it can hold during a rotation: remove the old one before adding another.",
				in.Name, verify.MaxSecrets)
		}
		w.showIntegration(rw, r, status, in, "", verifyMessage(msg))
		return
	}
	w.opts.Logger.Info("signing secret added", "integration", in.ID, "secret_id", s.ID, "generated", revealed != "")
	if revealed == "" {
		// Pasted: nothing to reveal, so a plain redirect (with the id only).
		http.Redirect(rw, r, fmt.Sprintf("/integrations/%d?secret_added=%d", in.ID, s.ID), http.StatusSeeOther)
		return
	}
	w.reveal(rw, r, reveal{In: in, Secret: revealed, SecretHint: s.Hint})
}

func (w *Web) removeSecretConfirm(rw http.ResponseWriter, r *http.Request) {
	in, s, n, ok := w.lookupSecret(rw, r)
	if !ok {
		return
	}
	if n == 1 {
		w.showIntegration(rw, r, http.StatusConflict, in, "", onlySecret(in, s))
		return
	}
	msg := "Deliveries signed with it fail verification from the moment you remove it" +
		map[verify.Mode]string{verify.Enforce: " and get 401", verify.Monitor: " (monitor mode: they are still accepted, and counted)"}[in.Verify.Mode] +
		". Remove it once the provider signs with the newer secret: Signature failures should stay flat after the switch."
	w.render(rw, r, http.StatusOK, "confirm.html", confirmPage{
		base:    w.base(r, "Remove signing secret"),
		Heading: fmt.Sprintf("Remove signing secret ****%s of %s?", s.Hint, in.Name),
		Message: msg,
		Action:  fmt.Sprintf("/integrations/%d/secrets/%d/remove", in.ID, s.ID),
		Button:  "Remove secret", Cancel: fmt.Sprintf("/integrations/%d", in.ID),
	})
}

func (w *Web) removeSecret(rw http.ResponseWriter, r *http.Request) {
	in, s, _, ok := w.lookupSecret(rw, r)
	if !ok {
		return
	}
	if err := w.opts.Control.RemoveSecret(in.ID, s.ID, w.opts.Now()); err != nil {
		status, msg := w.controlError(err)
		if errors.Is(err, control.ErrConflict) {
			msg = onlySecret(in, s)
		}
		w.showIntegration(rw, r, status, in, "", msg)
		return
	}
	w.opts.Logger.Info("signing secret removed", "integration", in.ID, "secret_id", s.ID)
	http.Redirect(rw, r, fmt.Sprintf("/integrations/%d?secret_removed=%d", in.ID, s.ID), http.StatusSeeOther)
}

func onlySecret(in *control.Integration, s control.Secret) string {
	return fmt.Sprintf("Signing secret ****%s is the only one of %s, so it cannot be removed: every delivery would fail verification. "+
		"Add the new secret first, then remove this one.", s.Hint, in.Name)
}

// lookupSecret finds the {secret} of the {id} integration and how many it has,
// or answers 404.
func (w *Web) lookupSecret(rw http.ResponseWriter, r *http.Request) (*control.Integration, control.Secret, int, bool) {
	in, ok := w.lookup(rw, r)
	if !ok {
		return nil, control.Secret{}, 0, false
	}
	if sid, err := strconv.ParseInt(r.PathValue("secret"), 10, 64); err == nil && in.Verify != nil {
		if list, err := w.opts.Control.Secrets(in.ID); err == nil {
			for _, s := range list {
				if s.ID == sid {
					return in, s, len(list), true
				}
			}
		}
	}
	w.fail(rw, r, http.StatusNotFound, fmt.Sprintf("Integration %s has no such signing secret.", in.Name))
	return nil, control.Secret{}, 0, false
}

// verifyFlash is the message after the mode or tolerance changed (the
// redirect's verify_updated), or "".
func verifyFlash(in *control.Integration, q url.Values) string {
	if q.Get("verify_updated") == "" || in.Verify == nil {
		return ""
	}
	if in.Verify.Mode == verify.Monitor {
		return "Signature verification is in monitor mode: a delivery that fails verification is stored anyway and counted under " +
			"Signature failures. Switch to enforce once they stay flat."
	}
	return "Signature verification is enforced: a delivery that fails verification gets 401 and is not stored."
}

// updateVerify switches an integration's mode (the button sends the other
// one) and sets its timestamp tolerance. The scheme and secrets stay.
func (w *Web) updateVerify(rw http.ResponseWriter, r *http.Request) {
	in, ok := w.lookup(rw, r)
	if !ok {
		return
	}
	if in.Verify == nil {
		w.showIntegration(rw, r, http.StatusBadRequest, in, "", "This integration does not verify signatures, so it has no mode to switch.")
		return
	}
	var ch control.VerifyChange
	switch m := verify.Mode(r.PostForm.Get("mode")); m {
	case "":
	case verify.Enforce, verify.Monitor:
		ch.Mode = &m
	default:
		w.showIntegration(rw, r, http.StatusBadRequest, in, "", fmt.Sprintf("Unknown mode %q: choose enforce or monitor.", m))
		return
	}
	if t := strings.TrimSpace(r.PostForm.Get("tolerance")); t != "" {
		d, err := parseTolerance(t)
		if err != nil {
			w.showIntegration(rw, r, http.StatusBadRequest, in, "", err.Error())
			return
		}
		tol := verify.Duration(d)
		ch.Tolerance = &tol
	}
	if ch.Mode == nil && ch.Tolerance == nil {
		w.showIntegration(rw, r, http.StatusBadRequest, in, "", "Nothing to change: switch the mode or enter a tolerance.")
		return
	}
	if !w.sessions.useOnce(sessionOf(r), r.PostForm.Get("once")) {
		w.showIntegration(rw, r, http.StatusConflict, in, "", "That form was already submitted: the page shows the current settings.")
		return
	}
	out, err := w.opts.Control.UpdateVerify(in.ID, ch)
	if err != nil {
		status, msg := w.controlError(err)
		w.showIntegration(rw, r, status, in, "", verifyMessage(msg))
		return
	}
	w.opts.Logger.Info("integration verification changed", "integration", in.ID, "mode", string(out.Verify.Mode),
		"tolerance", time.Duration(out.Verify.Tolerance).String())
	http.Redirect(rw, r, fmt.Sprintf("/integrations/%d?verify_updated=1", in.ID), http.StatusSeeOther)
}

// TimestampSigned says whether the integration's signatures cover a timestamp,
// so that its tolerance matters (not github, shopify, meta, nor hmac without a
// timestamp header).
func (p integrationPage) TimestampSigned() bool {
	v := p.In.Verify
	if v == nil {
		return false
	}
	switch v.Scheme {
	case verify.GitHub, verify.Shopify, verify.Meta:
		return false
	case verify.HMAC:
		return v.TimestampHeader != ""
	}
	return true
}

// setPaused pauses (paused=1) or resumes (paused=0) loading. It is idempotent,
// so a replayed form needs no nonce: it asks for the same state again.
func (w *Web) setPaused(rw http.ResponseWriter, r *http.Request) {
	in, ok := w.lookup(rw, r)
	if !ok {
		return
	}
	paused := r.PostForm.Get("paused") == "1"
	if _, err := w.opts.Control.SetPaused(in.ID, paused, w.opts.Now()); err != nil {
		status, msg := w.controlError(err)
		w.showIntegration(rw, r, status, in, "", msg)
		return
	}
	w.opts.Logger.Info("integration loading "+map[bool]string{true: "paused", false: "resumed"}[paused]+" from the dashboard", "integration", in.ID)
	http.Redirect(rw, r, fmt.Sprintf("/integrations/%d", in.ID), http.StatusSeeOther)
}
