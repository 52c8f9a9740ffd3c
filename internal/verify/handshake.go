package verify

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Reply is the answer to a handshake. Write it as it is: a handshake is
// never stored and never counts as a record.
type Reply struct {
	// Status is 200 with the provider's expected body, or 401 with
	// ClientMessage (text/plain) when the handshake did not verify.
	Status      int
	ContentType string
	Body        []byte
	// Result says why a 401 (count it like a failed Verify); for a 200 it
	// is the verified Result.
	Result Result
}

// maxChallenge bounds what is echoed back: providers send tens of bytes.
const maxChallenge = 1024

// Handshake answers a provider's endpoint check when the request is one;
// ok is false when it is not (carry on with the delivery: a GET that is not
// Meta's handshake is a 405, a POST goes to Verify).
//
//   - meta: GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…
//     answers the challenge as text/plain when the token matches.
//     https://developers.facebook.com/docs/graph-api/webhooks/getting-started
//     ("Verification Requests")
//   - slack: POST {"type":"url_verification","challenge":…}, signed like
//     every Slack request, answers {"challenge":…}.
//     https://api.slack.com/events/url_verification
//   - zoom: POST {"event":"endpoint.url_validation","payload":{"plainToken":…}},
//     signed, answers {"plainToken":…,"encryptedToken":…} where
//     encryptedToken is the hex HMAC-SHA256 of plainToken keyed with the
//     secret token.
//     https://developers.zoom.us/docs/api/webhooks/#validate-your-webhook-endpoint
//
// A handshake must verify in monitor mode too: answering it proves we hold
// the secret, and Zoom's answer is an HMAC of a string the request chooses,
// so answering an unsigned one would hand out signatures for any content.
func (v *Verifier) Handshake(method string, query url.Values, h http.Header, body []byte, now time.Time) (Reply, bool) {
	switch {
	case v.cfg.Scheme == Meta && method == http.MethodGet && query.Get("hub.mode") == "subscribe":
		return v.metaHandshake(query), true
	case v.cfg.Scheme == Slack && method == http.MethodPost && bytes.Contains(body, []byte(`"url_verification"`)):
		var m struct {
			Type      string `json:"type"`
			Challenge string `json:"challenge"`
		}
		if json.Unmarshal(body, &m) != nil || m.Type != "url_verification" {
			return Reply{}, false
		}
		res := v.check(h, body, now)
		if !res.Valid {
			return refuse(res), true
		}
		if !printable(m.Challenge) {
			return refuse(fail(CodeHandshake, "url_verification challenge is empty, too long or not printable")), true
		}
		return jsonReply(res, map[string]string{"challenge": m.Challenge}), true
	case v.cfg.Scheme == Zoom && method == http.MethodPost && bytes.Contains(body, []byte(`"endpoint.url_validation"`)):
		var m struct {
			Event   string `json:"event"`
			Payload struct {
				PlainToken string `json:"plainToken"`
			} `json:"payload"`
		}
		if json.Unmarshal(body, &m) != nil || m.Event != "endpoint.url_validation" {
			return Reply{}, false
		}
		res := v.check(h, body, now)
		if !res.Valid {
			return refuse(res), true
		}
		// Zoom's plainToken is a short base64url-like string. Refusing a
		// ':' keeps the answer from ever being a valid "v0:{ts}:{body}"
		// signature, even if the signature check above were bypassed.
		if !printable(m.Payload.PlainToken) || len(m.Payload.PlainToken) > 256 || strings.ContainsRune(m.Payload.PlainToken, ':') {
			return refuse(fail(CodeHandshake, "endpoint.url_validation plainToken is empty, too long or malformed")), true
		}
		// Answer with the secret that signed the request: during a
		// rotation that is the one Zoom holds.
		mac := hmac.New(sha256.New, v.keys[res.Secret])
		mac.Write([]byte(m.Payload.PlainToken))
		return jsonReply(res, map[string]string{
			"plainToken":     m.Payload.PlainToken,
			"encryptedToken": hex.EncodeToString(mac.Sum(nil)),
		}), true
	}
	return Reply{}, false
}

func (v *Verifier) metaHandshake(q url.Values) Reply {
	// Comparing digests keeps the compare constant-time in the length too.
	got := sha256.Sum256([]byte(q.Get("hub.verify_token")))
	want := sha256.Sum256([]byte(v.cfg.VerifyToken))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return refuse(fail(CodeHandshake, "hub.verify_token does not match the integration's verify_token"))
	}
	ch := q.Get("hub.challenge")
	if !printable(ch) {
		return refuse(fail(CodeHandshake, "hub.challenge is empty, too long or not printable"))
	}
	return Reply{Status: http.StatusOK, ContentType: "text/plain; charset=utf-8", Body: []byte(ch), Result: Result{Valid: true, Accept: true, Secret: -1}}
}

func refuse(res Result) Reply {
	res.Accept = false
	return Reply{Status: http.StatusUnauthorized, ContentType: "text/plain; charset=utf-8", Body: []byte(ClientMessage), Result: res}
}

func jsonReply(res Result, body map[string]string) Reply {
	b, _ := json.Marshal(body) // a map of strings always marshals
	res.Accept = true
	res.DeliveryID = "" // a handshake is never stored, so claims no id
	return Reply{Status: http.StatusOK, ContentType: "application/json", Body: b, Result: res}
}

// printable reports whether s is 1 to maxChallenge printable ASCII
// characters: what providers send, and safe to echo.
func printable(s string) bool {
	if s == "" || len(s) > maxChallenge {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
