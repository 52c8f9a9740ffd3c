// Package verify checks webhook signatures for integrations of type webhooks
// (issue 12): the eight schemes of Config, secret rotation (any current secret
// verifies), timestamp tolerance, the delivery id used to drop redeliveries,
// and the providers' endpoint handshakes (handshake.go).
//
// A Verifier is built once per integration and secret set (New) and is safe
// for concurrent use; build a new one when the config or secrets change.
//
// Which bytes are signed: every scheme signs the payload exactly as the
// sender serialized it, before any Content-Encoding. Pass the body after
// gzip decoding (the bytes that would be stored), never re-encoded JSON.
package verify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// ClientMessage is all a client is told when verification fails, whatever
// the reason: a 401 body that names no header, secret or clock, so a forger
// learns nothing from it. Result.Reason is for logs and stats only.
const ClientMessage = "webhook signature verification failed"

// Code classifies a failure, for metric labels and stats: a small fixed set.
type Code string

const (
	CodeNone      Code = ""                   // verified
	CodeMissing   Code = "missing_header"     // a header the scheme needs is absent
	CodeMalformed Code = "malformed_header"   // present but unreadable
	CodeStale     Code = "stale_timestamp"    // signed too long ago
	CodeFuture    Code = "future_timestamp"   // signed too far ahead of our clock
	CodeMismatch  Code = "signature_mismatch" // no signature matches any secret
	CodeHandshake Code = "bad_handshake"      // a handshake whose token or body is wrong
)

// Result is the outcome of verifying one delivery.
type Result struct {
	// Valid: a signature matched a current secret within the tolerance.
	Valid bool
	// Accept: store the delivery. True when Valid, and in monitor mode
	// also when not (count the failure, then carry on).
	Accept bool
	// Code and Reason say why it failed ("" when Valid). Reason is one line
	// for logs and the integration's last_signature_failure; it holds header
	// names and numbers, never a secret, a signature or a header value.
	// Never send it to the client: send ClientMessage.
	Code   Code
	Reason string
	// Secret is the index of the secret that matched, -1 if none: a rotation
	// can be finished once the old index stops matching.
	Secret int
	// DeliveryID identifies the delivery for redelivery dedupe; "" when the
	// scheme has none, the request lacks it, or the signature did not verify
	// (an unverified request must not claim an id a real delivery will use).
	// IDs longer than MaxDeliveryID are replaced by "sha256:" + hex digest.
	DeliveryID string
}

// MaxDeliveryID is the longest delivery id kept as it is.
const MaxDeliveryID = 200

// Verifier verifies deliveries for one integration.
type Verifier struct {
	cfg       Config
	rule      rule
	keys      [][]byte
	tolerance time.Duration
}

// New checks cfg and derives the HMAC keys from secrets, the integration's
// current secrets as the user pasted them (1 to MaxSecrets; see secretKey for
// how each scheme turns the text into key bytes). Errors name the problem
// and never contain a secret.
func New(cfg Config, secrets [][]byte) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if len(secrets) == 0 {
		return nil, fmt.Errorf("verify: scheme %s needs a signing secret: add one (POST /api/v1/integrations/{id}/secrets)", cfg.Scheme)
	}
	if len(secrets) > MaxSecrets {
		return nil, fmt.Errorf("verify: %d secrets, at most %d: remove the old one after a rotation", len(secrets), MaxSecrets)
	}
	v := &Verifier{cfg: cfg, tolerance: time.Duration(cfg.Tolerance)}
	for i, s := range secrets {
		k, err := secretKey(cfg.Scheme, s)
		if err != nil {
			return nil, fmt.Errorf("secret %d of %d: %w", i+1, len(secrets), err)
		}
		v.keys = append(v.keys, k)
	}
	if cfg.Scheme == HMAC {
		v.rule = hmacRule(cfg)
	} else {
		v.rule = rules[cfg.Scheme]
	}
	return v, nil
}

// Config returns the verifier's config, with defaults.
func (v *Verifier) Config() Config { return v.cfg }

// Verify checks one delivery: its headers and raw body (see the package doc
// for gzip), at time now. It does not block and never fails on its own: a
// problem with the request is a Result with Valid false.
func (v *Verifier) Verify(h http.Header, body []byte, now time.Time) Result {
	res := v.check(h, body, now)
	res.Accept = res.Valid || v.cfg.Mode == Monitor
	return res
}

func (v *Verifier) check(h http.Header, body []byte, now time.Time) Result {
	r := &v.rule
	sigValue, sigName := header(h, r.sigHeaders)
	if sigValue == "" {
		return fail(CodeMissing, "no "+sigName+" header")
	}
	cands, ts := r.split(sigValue)
	if len(cands) == 0 {
		return fail(CodeMalformed, sigName+" header holds no signature in the "+string(v.cfg.Scheme)+" format")
	}
	var at time.Time
	if r.hasTS {
		name := sigName
		if r.tsHeaders != nil {
			ts, name = header(h, r.tsHeaders)
		}
		if ts == "" {
			return fail(CodeMissing, "no timestamp in "+name)
		}
		var ok bool
		if at, ok = parseTimestamp(ts); !ok {
			return fail(CodeMalformed, "timestamp in "+name+" is not a Unix time")
		}
	}
	id, idName := "", ""
	if r.idHeaders != nil {
		id, idName = header(h, r.idHeaders)
	}
	if id == "" && needsID(r.signed) {
		return fail(CodeMissing, "no "+idName+" header")
	}

	sigs := make([][]byte, 0, len(cands))
	size := r.hash().Size()
	for _, c := range cands {
		if b, err := r.decode(strings.TrimSpace(c)); err == nil && len(b) == size {
			sigs = append(sigs, b)
		}
	}
	if len(sigs) == 0 {
		return fail(CodeMalformed, sigName+" header holds no well-formed signature")
	}
	matched := -1
	for i, k := range v.keys {
		want := v.sum(k, id, ts, body)
		for _, s := range sigs {
			// hmac.Equal is constant-time in the content; only the MAC
			// length, which is public, can show.
			if hmac.Equal(want, s) {
				matched = i
			}
		}
	}
	if matched < 0 {
		return fail(CodeMismatch, fmt.Sprintf("no signature in %s matches the %d current secret(s)", sigName, len(v.keys)))
	}

	// The tolerance is checked after the MAC so the reason is precise: a
	// stale timestamp with a good signature is a replay or a wrong clock.
	if r.hasTS {
		if age := now.Sub(at); age > v.tolerance {
			return fail(CodeStale, fmt.Sprintf("signed %s ago, tolerance %s: a replay, or this server's clock is wrong", age.Truncate(time.Second), v.tolerance))
		} else if -age > v.tolerance {
			return fail(CodeFuture, fmt.Sprintf("signed %s in the future, tolerance %s: check this server's clock", (-age).Truncate(time.Second), v.tolerance))
		}
	}
	res := Result{Valid: true, Secret: matched}
	if r.idField != "" {
		id = bodyField(body, r.idField)
	}
	res.DeliveryID = normalizeID(id)
	return res
}

func fail(c Code, reason string) Result {
	return Result{Code: c, Reason: reason, Secret: -1}
}

// sum computes the MAC of the signed content under key, writing the parts
// straight into the MAC rather than building the content in memory.
func (v *Verifier) sum(key []byte, id, ts string, body []byte) []byte {
	m := hmac.New(v.rule.hash, key)
	for _, p := range v.rule.signed {
		switch p.kind {
		case partText:
			io.WriteString(m, p.text)
		case partBody:
			m.Write(body)
		case partTimestamp:
			io.WriteString(m, ts)
		case partID:
			io.WriteString(m, id)
		}
	}
	return m.Sum(nil)
}

func needsID(parts []part) bool {
	for _, p := range parts {
		if p.kind == partID {
			return true
		}
	}
	return false
}

// header returns the first of names present in h, and the name it came from
// (the first name when none is). Header names are case-insensitive: net/http
// stores them canonically, and a Header built by hand in any case is
// searched too.
func header(h http.Header, names []string) (string, string) {
	for _, n := range names {
		if vs := h[textproto.CanonicalMIMEHeaderKey(n)]; len(vs) > 0 && vs[0] != "" {
			return vs[0], n
		}
	}
	for _, n := range names {
		for k, vs := range h {
			if len(vs) > 0 && vs[0] != "" && strings.EqualFold(k, n) {
				return vs[0], n
			}
		}
	}
	return "", names[0]
}

// parseTimestamp reads Unix seconds, as every scheme here sends. A value
// past 1e11 is taken as milliseconds (1e11 seconds is the year 5138), and a
// generic sender may use RFC 3339. The signed content uses the header text
// as sent, so this only serves the tolerance check.
func parseTimestamp(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n >= 1e11 || n <= -1e11 {
			return time.UnixMilli(n), true
		}
		return time.Unix(n, 0), true
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// bodyField returns a top-level string field of a JSON object body, or ""
// (not JSON, not an object, or no such string field: no dedupe then).
func bodyField(body []byte, field string) string {
	var v map[string]json.RawMessage
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	var s string
	if json.Unmarshal(v[field], &s) != nil {
		return ""
	}
	return s
}

func normalizeID(id string) string {
	id = strings.TrimSpace(id)
	if len(id) <= MaxDeliveryID {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "sha256:" + hex.EncodeToString(sum[:])
}
