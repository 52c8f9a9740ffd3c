package verify

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Scheme names a provider's signing scheme (the API's "verify.scheme").
type Scheme string

// The schemes an integration of type webhooks can use.
const (
	StandardWebhooks Scheme = "standard-webhooks"
	Stripe           Scheme = "stripe"
	GitHub           Scheme = "github"
	Shopify          Scheme = "shopify"
	Slack            Scheme = "slack"
	Zoom             Scheme = "zoom"
	Meta             Scheme = "meta"
	HMAC             Scheme = "hmac"
)

// Schemes lists every scheme, in the order the dashboard offers them.
var Schemes = []Scheme{StandardWebhooks, Stripe, GitHub, Shopify, Slack, Zoom, Meta, HMAC}

// Mode says what a failed verification does.
type Mode string

const (
	// Enforce refuses a delivery whose signature fails (401).
	Enforce Mode = "enforce"
	// Monitor accepts it anyway and only counts the failure: for rollouts,
	// to see whether the secret is right before turning enforcement on.
	Monitor Mode = "monitor"
)

// DefaultTolerance is how far a signed timestamp may be from our clock, in
// either direction, unless the integration sets its own. Five minutes is what
// Stripe, Slack and the Standard Webhooks libraries use.
const DefaultTolerance = 5 * time.Minute

// MaxTolerance bounds a configured tolerance: past a day the timestamp no
// longer stops replays in any useful way.
const MaxTolerance = 24 * time.Hour

// MaxSecrets is how many secrets an integration holds at once: the current
// one and, during a rotation, the next one. Control answers 409 past it.
const MaxSecrets = 2

// Config is an integration's verification settings, the API's "verify"
// object without its "secret" (secrets are stored apart, encrypted; an API
// request type can embed Config and add Secret). The zero Mode means Enforce
// and the zero Tolerance DefaultTolerance; WithDefaults fills them in.
type Config struct {
	Scheme    Scheme   `json:"scheme"`
	Mode      Mode     `json:"mode,omitempty"`
	Tolerance Duration `json:"tolerance,omitempty"`

	// Scheme hmac only: how a generic sender signs.
	Algorithm string `json:"algorithm,omitempty"` // sha256 (default), sha1 or sha512
	Header    string `json:"header,omitempty"`    // the header holding the signature (required)
	Prefix    string `json:"prefix,omitempty"`    // text before the signature in that header, e.g. "sha256="
	Encoding  string `json:"encoding,omitempty"`  // hex (default) or base64
	// Signed is the signed content as a template over {body}, {timestamp}
	// and {id}; default "{body}".
	Signed          string `json:"signed,omitempty"`
	TimestampHeader string `json:"timestamp_header,omitempty"` // needed when Signed has {timestamp}
	IDHeader        string `json:"id_header,omitempty"`        // the delivery id, for {id} and for dedupe

	// Scheme meta only: the string Meta sends back as hub.verify_token in
	// its GET handshake. It is chosen by the user and pasted into Meta; it
	// proves nothing about deliveries (the app secret does), so it is kept
	// here, not with the secrets. API answers should still not echo it.
	VerifyToken string `json:"verify_token,omitempty"`
}

// WithDefaults returns c with the defaults filled in (mode, tolerance and,
// for hmac, algorithm, encoding and signed), as it should be stored and shown.
func (c Config) WithDefaults() Config {
	if c.Mode == "" {
		c.Mode = Enforce
	}
	if c.Tolerance == 0 {
		c.Tolerance = Duration(DefaultTolerance)
	}
	if c.Scheme == HMAC {
		if c.Algorithm == "" {
			c.Algorithm = "sha256"
		}
		if c.Encoding == "" {
			c.Encoding = "hex"
		}
		if c.Signed == "" {
			c.Signed = "{body}"
		}
	}
	return c
}

// Validate reports the first problem with c, phrased for the person who
// filled it in. It accepts c with or without defaults.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if !c.Scheme.Valid() {
		return fmt.Errorf("verify: unknown scheme %q: use one of %s", c.Scheme, schemeList())
	}
	if c.Mode != Enforce && c.Mode != Monitor {
		return fmt.Errorf("verify: unknown mode %q: use enforce or monitor", c.Mode)
	}
	if t := time.Duration(c.Tolerance); t < time.Second || t > MaxTolerance {
		return fmt.Errorf("verify: tolerance %s is out of range: use 1s to %s (default %s)", t, MaxTolerance, DefaultTolerance)
	}
	if c.Scheme == Meta {
		if c.VerifyToken == "" {
			return errors.New("verify: scheme meta needs verify_token: make up a string and paste it into Meta's \"Verify token\" field as well")
		}
	} else if c.VerifyToken != "" {
		return fmt.Errorf("verify: verify_token is only for scheme meta, not %s", c.Scheme)
	}
	if c.Scheme != HMAC {
		for _, f := range []struct{ name, v string }{{"algorithm", c.Algorithm}, {"header", c.Header}, {"prefix", c.Prefix},
			{"encoding", c.Encoding}, {"signed", c.Signed}, {"timestamp_header", c.TimestampHeader}, {"id_header", c.IDHeader}} {
			if f.v != "" {
				return fmt.Errorf("verify: %s is only for scheme hmac; scheme %s has fixed headers", f.name, c.Scheme)
			}
		}
		return nil
	}
	return c.validateHMAC()
}

func (c Config) validateHMAC() error {
	if _, ok := hashes[c.Algorithm]; !ok {
		return fmt.Errorf("verify: unknown algorithm %q: use sha256, sha1 or sha512", c.Algorithm)
	}
	if c.Encoding != "hex" && c.Encoding != "base64" {
		return fmt.Errorf("verify: unknown encoding %q: use hex or base64", c.Encoding)
	}
	if c.Header == "" {
		return errors.New("verify: scheme hmac needs header: the name of the header that carries the signature")
	}
	for _, f := range []struct{ name, v string }{{"header", c.Header}, {"timestamp_header", c.TimestampHeader}, {"id_header", c.IDHeader}} {
		if f.v != "" && !validHeaderName(f.v) {
			return fmt.Errorf("verify: %s %q is not a valid HTTP header name", f.name, f.v)
		}
	}
	if len(c.Prefix) > 64 {
		return errors.New("verify: prefix is longer than 64 characters")
	}
	if len(c.Signed) > 256 {
		return errors.New("verify: signed is longer than 256 characters")
	}
	parts := parseTemplate(c.Signed)
	has := map[partKind]bool{}
	for _, p := range parts {
		has[p.kind] = true
	}
	if !has[partBody] {
		return fmt.Errorf("verify: signed %q has no {body}: a signature that does not cover the body proves nothing about it", c.Signed)
	}
	if has[partTimestamp] && c.TimestampHeader == "" {
		return errors.New("verify: signed uses {timestamp}: set timestamp_header to the header that carries it")
	}
	if !has[partTimestamp] && c.TimestampHeader != "" {
		return errors.New("verify: timestamp_header is set but signed has no {timestamp}: an unsigned timestamp does not stop replays; add {timestamp} where the sender puts it")
	}
	if has[partID] && c.IDHeader == "" {
		return errors.New("verify: signed uses {id}: set id_header to the header that carries it")
	}
	return nil
}

// Valid reports whether s is a known scheme.
func (s Scheme) Valid() bool {
	for _, k := range Schemes {
		if s == k {
			return true
		}
	}
	return false
}

func schemeList() string {
	names := make([]string, len(Schemes))
	for i, s := range Schemes {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// validHeaderName reports whether s is an RFC 9110 token, the syntax of a
// header field name.
func validHeaderName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// Duration is a time.Duration that reads from JSON as a Go duration string
// ("5m", "90s") or a number of seconds (300), and is written as a string.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("verify: duration %q: write it like \"5m\" or \"300s\"", s)
		}
		*d = Duration(v)
		return nil
	}
	secs, err := strconv.ParseFloat(string(b), 64)
	if err != nil || secs < 0 || secs > float64(MaxTolerance/time.Second) {
		return fmt.Errorf("verify: duration %s: write it like \"5m\" or as seconds up to %d", b, int(MaxTolerance/time.Second))
	}
	*d = Duration(time.Duration(secs * float64(time.Second)))
	return nil
}
