package verify

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"strings"
)

// rule is one scheme, reduced to data: where the signature, timestamp and
// delivery id are, how the signature header splits into candidates, and what
// is signed. Every scheme, the generic hmac one included, is a rule, so one
// Verify handles them all.
type rule struct {
	hash func() hash.Hash
	// Header names are tried in order; the first present is used.
	sigHeaders []string
	// split turns the signature header into candidate signatures (still
	// encoded) and, for schemes that put it there (Stripe), the timestamp.
	split  func(value string) (candidates []string, ts string)
	decode func(string) ([]byte, error)
	// tsHeaders is where the timestamp is; nil when the scheme has none or
	// split finds it.
	tsHeaders []string
	hasTS     bool
	// idHeaders carry the delivery id; idField is a top-level JSON body
	// field that does (Stripe, Slack). Both empty: the scheme has none.
	idHeaders []string
	idField   string
	signed    []part
}

// Header names are written canonically (as net/http stores them), so
// header.Get finds them without canonicalizing each time.
var rules = map[Scheme]rule{
	// https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
	// ("Verifying webhook authenticity"): signed
	// content "{id}.{timestamp}.{body}", HMAC-SHA256, base64, entries
	// "v1,<sig>" separated by spaces. Svix-based senders (Clerk, Resend) send
	// the same values under svix-* names, which Svix's libraries accept too.
	StandardWebhooks: {
		hash:       sha256.New,
		sigHeaders: []string{"Webhook-Signature", "Svix-Signature"},
		split:      splitStandard,
		decode:     decodeBase64,
		tsHeaders:  []string{"Webhook-Timestamp", "Svix-Timestamp"},
		hasTS:      true,
		idHeaders:  []string{"Webhook-Id", "Svix-Id"},
		signed:     parseTemplate("{id}.{timestamp}.{body}"),
	},
	// https://docs.stripe.com/webhooks/signature ("Verify manually"): "t=<ts>,v1=<hex>",
	// possibly several v1 entries (Stripe signs with both secrets while one
	// is rolled); signed content "{t}.{body}". The event id is the body's "id".
	Stripe: {
		hash:       sha256.New,
		sigHeaders: []string{"Stripe-Signature"},
		split:      splitStripe,
		decode:     hex.DecodeString,
		hasTS:      true,
		idField:    "id",
		signed:     parseTemplate("{timestamp}.{body}"),
	},
	// https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
	// GitHub has no timestamp: a captured delivery can be replayed, and
	// X-GitHub-Delivery (unsigned) only dedupes honest redeliveries.
	GitHub: {
		hash:       sha256.New,
		sigHeaders: []string{"X-Hub-Signature-256"},
		split:      prefixed("sha256="),
		decode:     hex.DecodeString,
		idHeaders:  []string{"X-Github-Delivery"},
		signed:     parseTemplate("{body}"),
	},
	// https://shopify.dev/docs/apps/build/webhooks/subscribe/https ("Verify the webhook"):
	// base64 of HMAC-SHA256(body) with the app's client secret; no timestamp.
	// The dedupe id is X-Shopify-Webhook-Id, the same on each retry of one
	// delivery (issue 12's contract).
	Shopify: {
		hash:       sha256.New,
		sigHeaders: []string{"X-Shopify-Hmac-Sha256"},
		split:      prefixed(""),
		decode:     decodeBase64,
		idHeaders:  []string{"X-Shopify-Webhook-Id"},
		signed:     parseTemplate("{body}"),
	},
	// https://api.slack.com/authentication/verifying-requests-from-slack:
	// "v0=" + hex HMAC-SHA256 of "v0:{timestamp}:{body}". Events API
	// retries keep the body's event_id.
	Slack: {
		hash:       sha256.New,
		sigHeaders: []string{"X-Slack-Signature"},
		split:      prefixed("v0="),
		decode:     hex.DecodeString,
		tsHeaders:  []string{"X-Slack-Request-Timestamp"},
		hasTS:      true,
		idField:    "event_id",
		signed:     parseTemplate("v0:{timestamp}:{body}"),
	},
	// https://developers.zoom.us/docs/api/webhooks/#verify-webhook-events:
	// "v0=" + hex HMAC-SHA256 of "v0:{x-zm-request-timestamp}:{body}".
	// No delivery id: Zoom's payload has only event and event_ts (ms), and
	// two different events of one type can share a millisecond, so deduping
	// on them could drop real rows; x-zm-trackingid is not documented as
	// stable across retries. Zoom deliveries are therefore not deduplicated.
	Zoom: {
		hash:       sha256.New,
		sigHeaders: []string{"X-Zm-Signature"},
		split:      prefixed("v0="),
		decode:     hex.DecodeString,
		tsHeaders:  []string{"X-Zm-Request-Timestamp"},
		hasTS:      true,
		signed:     parseTemplate("v0:{timestamp}:{body}"),
	},
	// https://developers.facebook.com/docs/graph-api/webhooks/getting-started ("Validate payloads"):
	// "sha256=" + hex HMAC-SHA256(body) with the app secret. No timestamp
	// and no delivery id: one POST batches several entries ("entry": [...])
	// and a retry may batch them differently, so there is nothing to dedupe on.
	Meta: {
		hash:       sha256.New,
		sigHeaders: []string{"X-Hub-Signature-256"},
		split:      prefixed("sha256="),
		decode:     hex.DecodeString,
		signed:     parseTemplate("{body}"),
	},
}

var hashes = map[string]func() hash.Hash{"sha256": sha256.New, "sha1": sha1.New, "sha512": sha512.New}

// hmacRule builds the rule of a generic hmac Config (already validated and
// with defaults).
func hmacRule(c Config) rule {
	r := rule{
		hash:       hashes[c.Algorithm],
		sigHeaders: []string{c.Header},
		split:      prefixed(c.Prefix),
		decode:     hex.DecodeString,
		signed:     parseTemplate(c.Signed),
	}
	if c.Encoding == "base64" {
		r.decode = decodeBase64
	}
	if c.TimestampHeader != "" {
		r.tsHeaders, r.hasTS = []string{c.TimestampHeader}, true
	}
	if c.IDHeader != "" {
		r.idHeaders = []string{c.IDHeader}
	}
	return r
}

// maxCandidates bounds the work one header can ask for; senders put at most
// a few signatures in it (one per secret they sign with).
const maxCandidates = 8

// splitStandard reads "v1,<b64> v1,<b64> v1a,<ed25519>": only v1 (HMAC)
// entries count; v1a (asymmetric) ones are skipped.
func splitStandard(v string) ([]string, string) {
	var out []string
	for _, f := range strings.Fields(v) {
		if sig, ok := strings.CutPrefix(f, "v1,"); ok && len(out) < maxCandidates {
			out = append(out, sig)
		}
	}
	return out, ""
}

// splitStripe reads "t=<ts>,v1=<hex>,v1=<hex>,v0=<hex>": v0 entries are
// Stripe's test-mode legacy scheme and are skipped, as stripe-node does.
func splitStripe(v string) ([]string, string) {
	var out []string
	ts := ""
	for _, item := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		switch {
		case !ok:
		case k == "t" && ts == "":
			ts = val
		case k == "v1" && len(out) < maxCandidates:
			out = append(out, val)
		}
	}
	return out, ts
}

// prefixed reads a single signature after a fixed prefix ("sha256=");
// the prefix is matched without regard to case, as senders differ.
func prefixed(prefix string) func(string) ([]string, string) {
	return func(v string) ([]string, string) {
		v = strings.TrimSpace(v)
		if len(v) < len(prefix) || !strings.EqualFold(v[:len(prefix)], prefix) {
			return nil, ""
		}
		return []string{v[len(prefix):]}, ""
	}
}

// decodeBase64 accepts standard and URL-safe base64, padded or not: the
// MAC's length is checked after decoding, so leniency here costs nothing.
func decodeBase64(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, base64.CorruptInputError(0)
}

// part is one piece of a signed-content template.
type part struct {
	kind partKind
	text string // for partText
}

type partKind int

const (
	partText partKind = iota
	partBody
	partTimestamp
	partID
)

var placeholders = map[string]partKind{"{body}": partBody, "{timestamp}": partTimestamp, "{id}": partID}

// parseTemplate splits "v0:{timestamp}:{body}" into its parts. Braces that
// are not one of the three placeholders are literal text.
func parseTemplate(t string) []part {
	var parts []part
	lit := 0
	for i := 0; i < len(t); i++ {
		if t[i] != '{' {
			continue
		}
		for name, kind := range placeholders {
			if strings.HasPrefix(t[i:], name) {
				if lit < i {
					parts = append(parts, part{kind: partText, text: t[lit:i]})
				}
				parts = append(parts, part{kind: kind})
				i += len(name) - 1
				lit = i + 1
				break
			}
		}
	}
	if lit < len(t) {
		parts = append(parts, part{kind: partText, text: t[lit:]})
	}
	return parts
}
