package ingest

import (
	"net/http"
	"strconv"
	"time"

	"github.com/hookhouse/hookhouse/internal/verify"
)

// verify checks a delivery of an integration that verifies signatures, on the
// body as it would be stored (after gzip decoding: what every scheme signs). It
// answers a provider's handshake itself and refuses a delivery that does not
// verify with one generic 401 (the reason goes to stats and logs only). It
// returns the delivery id for dedupe and status 0 when the delivery goes on to
// be stored, or the status it answered with.
func (h *Handler) verify(w http.ResponseWriter, r *http.Request, o *Outcome, v *verify.Verifier, id int64, body []byte, now time.Time) (string, int) {
	if v == nil { // verifying, but without a usable secret
		h.signatureFailed(id, verify.CodeMismatch, "the integration has no usable signing secret")
		return "", o.fail(w, http.StatusUnauthorized, verify.ClientMessage)
	}
	if reply, ok := v.Handshake(r.Method, r.URL.Query(), r.Header, body, now); ok {
		return "", h.reply(w, o, id, reply)
	}
	res := v.Verify(r.Header, body, now)
	if !res.Valid {
		h.signatureFailed(id, res.Code, res.Reason)
	}
	if !res.Accept {
		o.fail(w, http.StatusUnauthorized, verify.ClientMessage)
		o.Reason += " (" + res.Reason + ")" // for the server's log only: names no secret
		return "", http.StatusUnauthorized
	}
	return res.DeliveryID, 0
}

// getHandshake answers a GET on a webhook URL that is a provider's handshake
// (Meta's hub.challenge); ok false: not one, answer 405 as for any GET.
func (h *Handler) getHandshake(w http.ResponseWriter, r *http.Request, o *Outcome) (int, bool) {
	if h.Verify == nil || r.URL.Query().Get("hub.mode") == "" {
		return 0, false
	}
	now := time.Now()
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, false
	}
	if ok, err := h.Auth.Authorize(id, r.PathValue("token"), now); err != nil || !ok {
		return 0, false // not one: a URL that cannot be checked now gets no challenge answered
	}
	v, verifying := h.Verify.Verifier(id)
	if !verifying || v == nil {
		return 0, false
	}
	reply, ok := v.Handshake(r.Method, r.URL.Query(), r.Header, nil, now)
	if !ok {
		return 0, false
	}
	o.Integration = id
	return h.reply(w, o, id, reply), true
}

// reply writes a handshake's answer; it is never stored.
func (h *Handler) reply(w http.ResponseWriter, o *Outcome, id int64, reply verify.Reply) int {
	if reply.Status != http.StatusOK {
		h.signatureFailed(id, reply.Result.Code, reply.Result.Reason)
		return o.fail(w, reply.Status, verify.ClientMessage)
	}
	w.Header().Set("Content-Type", reply.ContentType)
	w.Header().Set("X-Content-Type-Options", "nosniff") // the challenge is the sender's text
	w.WriteHeader(http.StatusOK)
	w.Write(reply.Body)
	return http.StatusOK
}

func (h *Handler) signatureFailed(id int64, code verify.Code, reason string) {
	if h.Observe != nil {
		h.Observe.SignatureFailed(id, code, reason)
	}
}
