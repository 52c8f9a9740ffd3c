package verify

import (
	"bytes"
	"compress/gzip"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testNow is the verifier's clock in these tests; signatures are made for
// it, so the vectors do not depend on when the tests run.
var testNow = time.Unix(1767225600, 0) // 2026-01-01T00:00:00Z

// signFunc signs body for a scheme as its sender would and returns the
// request headers.
type signFunc func(t testing.TB, secret, id string, ts time.Time, body []byte) http.Header

// testScheme is one row of the scheme matrix.
type testScheme struct {
	name   string
	cfg    Config
	a, b   string // two secrets: the current one and the next (rotation)
	body   []byte
	id     string // the delivery id the signer puts in a header
	wantID string // the DeliveryID Verify must find
	hasTS  bool
	// idOnly is a header that carries only the delivery id (not signed):
	// without it the delivery still verifies, with no DeliveryID.
	idOnly string
	sign   signFunc
}

func schemes() []testScheme {
	stdA := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	stdB := "whsec_" + base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))
	return []testScheme{
		{
			name: "standard-webhooks", cfg: Config{Scheme: StandardWebhooks}, a: stdA, b: stdB,
			body: []byte(`{"type":"invoice.paid","data":{"id":"in_1","note":"café ☕"}}`),
			id:   "msg_2b4zAqkXEnSM3ZS2zY5Ic6dOL3Y", wantID: "msg_2b4zAqkXEnSM3ZS2zY5Ic6dOL3Y", hasTS: true,
			sign: standardSigner("Webhook-"),
		},
		{
			// Svix-based senders (Clerk, Resend) use svix-* header names.
			name: "standard-webhooks/svix-headers", cfg: Config{Scheme: StandardWebhooks}, a: stdA, b: stdB,
			body: []byte(`{"type":"user.created","data":{"id":"user_29w83sxmDNGwOuEthce5gg56FcC","n":1}}`),
			id:   "msg_svix1", wantID: "msg_svix1", hasTS: true,
			sign: standardSigner("Svix-"),
		},
		{
			name: "stripe", cfg: Config{Scheme: Stripe}, a: "whsec_test_AAAAAAAAAAAAAAAAAAAAAAAA", b: "whsec_test_BBBBBBBBBBBBBBBBBBBBBBBB",
			body:   []byte(`{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"charge.succeeded","data":{"object":{"description":"café ☕"}}}`),
			wantID: "evt_1NG8Du2eZvKYlo2CUI79vXWy", hasTS: true,
			sign: func(t testing.TB, secret, _ string, ts time.Time, body []byte) http.Header {
				h := http.Header{}
				h.Set("Stripe-Signature", vendorSign(t, "stripe", secret, "", ts.Unix(), body))
				return h
			},
		},
		{
			name: "github", cfg: Config{Scheme: GitHub}, a: "gh-secret-A", b: "gh-secret-B",
			body: []byte(`{"action":"opened","number":1,"title":"naïve"}`),
			id:   "72d3162e-cc78-11e3-81ab-4c9367dc0958", wantID: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
			idOnly: "X-GitHub-Delivery",
			sign: func(t testing.TB, secret, id string, _ time.Time, body []byte) http.Header {
				h := http.Header{}
				h.Set("X-Hub-Signature-256", vendorSign(t, "octokit", secret, "", 0, body))
				h.Set("X-GitHub-Delivery", id)
				return h
			},
		},
		{
			// https://shopify.dev/docs/apps/build/webhooks/subscribe/https
			// ("Verify the webhook"): X-Shopify-Hmac-Sha256 is the base64
			// HMAC-SHA256 of the raw body, keyed with the app's client secret.
			name: "shopify", cfg: Config{Scheme: Shopify}, a: "shpss_aaaaaaaaaaaaaaaa", b: "shpss_bbbbbbbbbbbbbbbb",
			body: []byte(`{"id":820982911946154508,"email":"jon@example.com"}`),
			id:   "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", wantID: "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
			idOnly: "X-Shopify-Webhook-Id",
			sign: func(t testing.TB, secret, id string, _ time.Time, body []byte) http.Header {
				h := http.Header{}
				h.Set("X-Shopify-Hmac-Sha256", base64.StdEncoding.EncodeToString(mac(sha256.New, secret, string(body))))
				h.Set("X-Shopify-Webhook-Id", id)
				return h
			},
		},
		{
			// https://api.slack.com/authentication/verifying-requests-from-slack:
			// "v0=" + hex HMAC-SHA256 of "v0:" + timestamp + ":" + body.
			name: "slack", cfg: Config{Scheme: Slack}, a: "8f742231b10e8888abcd99yyyzzz85a5", b: "0000000000000000000000000000beef",
			body:   []byte(`{"type":"event_callback","event_id":"Ev0PV52K21","event":{"type":"app_mention","text":"héllo"}}`),
			wantID: "Ev0PV52K21", hasTS: true,
			sign: func(t testing.TB, secret, _ string, ts time.Time, body []byte) http.Header {
				s := strconv.FormatInt(ts.Unix(), 10)
				h := http.Header{}
				h.Set("X-Slack-Request-Timestamp", s)
				h.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac(sha256.New, secret, "v0:"+s+":"+string(body))))
				return h
			},
		},
		{
			// https://developers.zoom.us/docs/api/webhooks/#verify-webhook-events:
			// x-zm-signature is "v0=" + hex HMAC-SHA256 of
			// "v0:{x-zm-request-timestamp}:{body}" keyed with the secret token.
			name: "zoom", cfg: Config{Scheme: Zoom}, a: "zoomSecretTokenA", b: "zoomSecretTokenB",
			body:  []byte(`{"event":"meeting.started","event_ts":1626230691572,"payload":{"account_id":"AAAAAABBBB"}}`),
			hasTS: true,
			sign: func(t testing.TB, secret, _ string, ts time.Time, body []byte) http.Header {
				s := strconv.FormatInt(ts.Unix(), 10)
				h := http.Header{}
				h.Set("x-zm-request-timestamp", s)
				h.Set("x-zm-signature", "v0="+hex.EncodeToString(mac(sha256.New, secret, "v0:"+s+":"+string(body))))
				return h
			},
		},
		{
			// https://developers.facebook.com/docs/graph-api/webhooks/getting-started
			// ("Validate payloads"): X-Hub-Signature-256 is "sha256=" + hex
			// HMAC-SHA256 of the payload, keyed with the app secret.
			name: "meta", cfg: Config{Scheme: Meta, VerifyToken: "meatball"}, a: "app-secret-A", b: "app-secret-B",
			body: []byte(`{"object":"page","entry":[{"id":"1","time":1767225600,"changes":[]}]}`),
			sign: func(t testing.TB, secret, _ string, _ time.Time, body []byte) http.Header {
				h := http.Header{}
				h.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac(sha256.New, secret, string(body))))
				return h
			},
		},
		{
			name: "hmac/sha512-base64-template",
			cfg: Config{Scheme: HMAC, Algorithm: "sha512", Header: "X-Signature", Prefix: "t=", Encoding: "base64",
				Signed: "{timestamp}.{id}.{body}", TimestampHeader: "X-Timestamp", IDHeader: "X-Event-Id"},
			a: "generic-A", b: "generic-B", body: []byte(`{"hello":"wörld","n":1}`),
			id: "ev_42", wantID: "ev_42", hasTS: true,
			sign: func(t testing.TB, secret, id string, ts time.Time, body []byte) http.Header {
				s := strconv.FormatInt(ts.Unix(), 10)
				h := http.Header{}
				h.Set("X-Timestamp", s)
				h.Set("X-Event-Id", id)
				h.Set("X-Signature", "t="+base64.StdEncoding.EncodeToString(mac(sha512.New, secret, s+"."+id+"."+string(body))))
				return h
			},
		},
		{
			name: "hmac/sha1-hex-body",
			cfg:  Config{Scheme: HMAC, Algorithm: "sha1", Header: "X-Sig", IDHeader: "X-Request-Id"},
			a:    "generic-A", b: "generic-B", body: []byte(`[{"a":1},{"a":2}]`),
			id: "req-7", wantID: "req-7", idOnly: "X-Request-Id",
			sign: func(t testing.TB, secret, id string, _ time.Time, body []byte) http.Header {
				h := http.Header{}
				h.Set("X-Request-Id", id)
				h.Set("X-Sig", hex.EncodeToString(mac(sha1.New, secret, string(body))))
				return h
			},
		},
	}
}

// standardSigner signs with npm standardwebhooks, under the header names
// that start with prefix ("Webhook-" or "Svix-").
func standardSigner(prefix string) signFunc {
	return func(t testing.TB, secret, id string, ts time.Time, body []byte) http.Header {
		h := http.Header{}
		h.Set(prefix+"Id", id)
		h.Set(prefix+"Timestamp", strconv.FormatInt(ts.Unix(), 10))
		h.Set(prefix+"Signature", vendorSign(t, "standardwebhooks", secret, id, ts.Unix(), body))
		return h
	}
}

func mac(h func() hash.Hash, key, content string) []byte {
	m := hmac.New(h, []byte(key))
	io.WriteString(m, content)
	return m.Sum(nil)
}

func newVerifier(t testing.TB, cfg Config, secrets ...string) *Verifier {
	t.Helper()
	bs := make([][]byte, len(secrets))
	for i, s := range secrets {
		bs[i] = []byte(s)
	}
	v, err := New(cfg, bs)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v
}

func wantFail(t *testing.T, res Result, code Code) {
	t.Helper()
	if res.Valid || res.Accept || res.Code != code || res.Reason == "" || res.Secret != -1 || res.DeliveryID != "" {
		t.Fatalf("got %+v, want a refusal with code %q", res, code)
	}
}

func TestSchemes(t *testing.T) {
	for _, s := range schemes() {
		t.Run(s.name, func(t *testing.T) {
			v := newVerifier(t, s.cfg, s.a)
			h := s.sign(t, s.a, s.id, testNow, s.body)

			t.Run("valid", func(t *testing.T) {
				res := v.Verify(h, s.body, testNow)
				if !res.Valid || !res.Accept || res.Code != CodeNone || res.Reason != "" || res.Secret != 0 {
					t.Fatalf("got %+v, want valid with secret 0", res)
				}
				if res.DeliveryID != s.wantID {
					t.Fatalf("DeliveryID %q, want %q", res.DeliveryID, s.wantID)
				}
			})
			t.Run("tampered body", func(t *testing.T) {
				bad := bytes.Replace(s.body, []byte("1"), []byte("2"), 1)
				if bytes.Equal(bad, s.body) {
					t.Fatal("test body has no 1 to change")
				}
				wantFail(t, v.Verify(h, bad, testNow), CodeMismatch)
				wantFail(t, v.Verify(h, append(bytes.Clone(s.body), '\n'), testNow), CodeMismatch)
			})
			t.Run("wrong secret", func(t *testing.T) {
				wantFail(t, newVerifier(t, s.cfg, s.b).Verify(h, s.body, testNow), CodeMismatch)
			})
			t.Run("timestamps", func(t *testing.T) {
				if !s.hasTS {
					// No timestamp: an old signature stays valid. Say so.
					old := s.sign(t, s.a, s.id, testNow.Add(-24*time.Hour), s.body)
					if !v.Verify(old, s.body, testNow).Valid {
						t.Fatal("a scheme without timestamps refused an old delivery")
					}
					return
				}
				for _, c := range []struct {
					skew time.Duration
					code Code
				}{
					{-DefaultTolerance - time.Minute, CodeStale},
					{DefaultTolerance + time.Minute, CodeFuture},
					{-DefaultTolerance + time.Minute, CodeNone},
					{DefaultTolerance - time.Minute, CodeNone},
				} {
					hh := s.sign(t, s.a, s.id, testNow.Add(c.skew), s.body)
					res := v.Verify(hh, s.body, testNow)
					if c.code == CodeNone {
						if !res.Valid {
							t.Fatalf("skew %s: %+v, want valid inside the tolerance", c.skew, res)
						}
						continue
					}
					wantFail(t, res, c.code)
				}
				// A per-integration tolerance replaces the default.
				cfg := s.cfg
				cfg.Tolerance = Duration(time.Hour)
				hh := s.sign(t, s.a, s.id, testNow.Add(-30*time.Minute), s.body)
				if res := newVerifier(t, cfg, s.a).Verify(hh, s.body, testNow); !res.Valid {
					t.Fatalf("30 min old with a 1 h tolerance: %+v", res)
				}
			})
			t.Run("missing headers", func(t *testing.T) {
				for name := range h {
					hh := h.Clone()
					hh.Del(name)
					res := v.Verify(hh, s.body, testNow)
					if strings.EqualFold(name, s.idOnly) {
						if !res.Valid || res.DeliveryID != "" {
							t.Fatalf("without %s: %+v, want valid without a delivery id", name, res)
						}
						continue
					}
					wantFail(t, res, CodeMissing)
				}
				wantFail(t, v.Verify(http.Header{}, s.body, testNow), CodeMissing)
			})
			t.Run("rotation", func(t *testing.T) {
				both := newVerifier(t, s.cfg, s.a, s.b)
				hb := s.sign(t, s.b, s.id, testNow, s.body)
				if res := both.Verify(h, s.body, testNow); !res.Valid || res.Secret != 0 {
					t.Fatalf("old secret during rotation: %+v", res)
				}
				if res := both.Verify(hb, s.body, testNow); !res.Valid || res.Secret != 1 {
					t.Fatalf("new secret during rotation: %+v", res)
				}
				// The old secret removed: its signatures are refused.
				onlyB := newVerifier(t, s.cfg, s.b)
				wantFail(t, onlyB.Verify(h, s.body, testNow), CodeMismatch)
				if res := onlyB.Verify(hb, s.body, testNow); !res.Valid || res.Secret != 0 {
					t.Fatalf("new secret after rotation: %+v", res)
				}
			})
			t.Run("monitor", func(t *testing.T) {
				cfg := s.cfg
				cfg.Mode = Monitor
				m := newVerifier(t, cfg, s.a)
				res := m.Verify(h, append(bytes.Clone(s.body), ' '), testNow)
				if res.Valid || !res.Accept || res.Code != CodeMismatch || res.DeliveryID != "" {
					t.Fatalf("monitor mode, bad signature: %+v, want accepted, counted, no delivery id", res)
				}
				if res := m.Verify(h, s.body, testNow); !res.Valid || !res.Accept || res.DeliveryID != s.wantID {
					t.Fatalf("monitor mode, good signature: %+v", res)
				}
			})
			t.Run("gzip", func(t *testing.T) {
				// Senders sign the payload, not its Content-Encoding: the
				// gzip bytes fail, the decoded bytes verify.
				var z bytes.Buffer
				zw := gzip.NewWriter(&z)
				zw.Write(s.body)
				zw.Close()
				wantFail(t, v.Verify(h, z.Bytes(), testNow), CodeMismatch)
				zr, err := gzip.NewReader(&z)
				if err != nil {
					t.Fatal(err)
				}
				decoded, _ := io.ReadAll(zr)
				if !v.Verify(h, decoded, testNow).Valid {
					t.Fatal("the decoded body did not verify")
				}
			})
			t.Run("header case", func(t *testing.T) {
				// Headers are case-insensitive, also in a Header built by hand.
				for _, f := range []func(string) string{strings.ToLower, strings.ToUpper} {
					hh := http.Header{}
					for k, vs := range h {
						hh[f(k)] = vs
					}
					if res := v.Verify(hh, s.body, testNow); !res.Valid || res.DeliveryID != s.wantID {
						t.Fatalf("headers %s: %+v", f("Case"), res)
					}
				}
			})
			t.Run("concurrent", func(t *testing.T) {
				var wg sync.WaitGroup
				for i := 0; i < 8; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for j := 0; j < 50; j++ {
							if !v.Verify(h, s.body, testNow).Valid || v.Verify(h, s.body[1:], testNow).Valid {
								t.Error("concurrent verification gave a wrong answer")
								return
							}
						}
					}()
				}
				wg.Wait()
			})
		})
	}
}

// Known answers from the providers' own documentation: they pin the
// algorithms without Node.js.
func TestKnownAnswers(t *testing.T) {
	t.Run("standard-webhooks spec example", func(t *testing.T) {
		// https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
		h := http.Header{}
		h.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
		h.Set("webhook-timestamp", "1614265330")
		h.Set("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
		v := newVerifier(t, Config{Scheme: StandardWebhooks}, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
		if res := v.Verify(h, []byte(`{"test": 2432232314}`), time.Unix(1614265330, 0)); !res.Valid || res.DeliveryID != "msg_p5jXN8AQM9LWM0D4loKWxJek" {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("slack docs example", func(t *testing.T) {
		// https://api.slack.com/authentication/verifying-requests-from-slack (the worked example)
		body := "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
		h := http.Header{}
		h.Set("X-Slack-Request-Timestamp", "1531420618")
		h.Set("X-Slack-Signature", "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503")
		v := newVerifier(t, Config{Scheme: Slack}, "8f742231b10e8888abcd99yyyzzz85a5")
		if res := v.Verify(h, []byte(body), time.Unix(1531420618, 0)); !res.Valid || res.DeliveryID != "" {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("github docs example", func(t *testing.T) {
		// https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
		h := http.Header{}
		h.Set("X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
		v := newVerifier(t, Config{Scheme: GitHub}, "It's a Secret to Everybody")
		if res := v.Verify(h, []byte("Hello, World!"), testNow); !res.Valid {
			t.Fatalf("%+v", res)
		}
	})
}

// The vendors' libraries agree with each other's formats where it matters.
func TestVendorFormats(t *testing.T) {
	t.Run("stripe signs with both secrets while one is rolled", func(t *testing.T) {
		body := []byte(`{"id":"evt_roll","object":"event"}`)
		ha := vendorSign(t, "stripe", "whsec_old", "", testNow.Unix(), body)
		hb := vendorSign(t, "stripe", "whsec_new", "", testNow.Unix(), body)
		_, sigB, _ := strings.Cut(hb, ",")
		h := http.Header{}
		h.Set("Stripe-Signature", ha+","+sigB+",v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39")
		if res := newVerifier(t, Config{Scheme: Stripe}, "whsec_new").Verify(h, body, testNow); !res.Valid || res.DeliveryID != "evt_roll" {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("standard-webhooks header with several signatures", func(t *testing.T) {
		body := []byte(`{"a":1}`)
		sa := vendorSign(t, "standardwebhooks", "whsec_"+base64.StdEncoding.EncodeToString([]byte("secret-one-secret-one-secret-one")), "m1", testNow.Unix(), body)
		b := "whsec_" + base64.StdEncoding.EncodeToString([]byte("secret-two-secret-two-secret-two"))
		sb := vendorSign(t, "standardwebhooks", b, "m1", testNow.Unix(), body)
		h := http.Header{}
		h.Set("Webhook-Id", "m1")
		h.Set("Webhook-Timestamp", strconv.FormatInt(testNow.Unix(), 10))
		h.Set("Webhook-Signature", "v1a,AAAA "+sa+" "+sb)
		if res := newVerifier(t, Config{Scheme: StandardWebhooks}, b).Verify(h, body, testNow); !res.Valid {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("a generated standard-webhooks secret works with the official library", func(t *testing.T) {
		secret, err := GenerateSecret(StandardWebhooks)
		if err != nil {
			t.Fatal(err)
		}
		key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
		if !strings.HasPrefix(secret, "whsec_") || len(key) != 32 {
			t.Fatalf("generated %d key bytes", len(key))
		}
		body := []byte(`{"ok":true}`)
		h := http.Header{}
		h.Set("Webhook-Id", "m2")
		h.Set("Webhook-Timestamp", strconv.FormatInt(testNow.Unix(), 10))
		h.Set("Webhook-Signature", vendorSign(t, "standardwebhooks", secret, "m2", testNow.Unix(), body))
		if res := newVerifier(t, Config{Scheme: StandardWebhooks}, secret).Verify(h, body, testNow); !res.Valid {
			t.Fatalf("%+v", res)
		}
	})
}

func TestMalformedHeaders(t *testing.T) {
	body := []byte(`{}`)
	ts := strconv.FormatInt(testNow.Unix(), 10)
	for _, c := range []struct {
		name string
		cfg  Config
		h    map[string]string
		code Code
	}{
		{"stripe without v1", Config{Scheme: Stripe}, map[string]string{"Stripe-Signature": "t=" + ts + ",v0=abcd"}, CodeMalformed},
		{"stripe without t", Config{Scheme: Stripe}, map[string]string{"Stripe-Signature": "v1=" + strings.Repeat("a", 64)}, CodeMissing},
		{"stripe with a bad t", Config{Scheme: Stripe}, map[string]string{"Stripe-Signature": "t=soon,v1=" + strings.Repeat("a", 64)}, CodeMalformed},
		{"stripe with a short v1", Config{Scheme: Stripe}, map[string]string{"Stripe-Signature": "t=" + ts + ",v1=abcd"}, CodeMalformed},
		{"github without prefix", Config{Scheme: GitHub}, map[string]string{"X-Hub-Signature-256": strings.Repeat("a", 64)}, CodeMalformed},
		{"github sha1 prefix", Config{Scheme: GitHub}, map[string]string{"X-Hub-Signature-256": "sha1=" + strings.Repeat("a", 40)}, CodeMalformed},
		{"github not hex", Config{Scheme: GitHub}, map[string]string{"X-Hub-Signature-256": "sha256=" + strings.Repeat("z", 64)}, CodeMalformed},
		{"standard v2 only", Config{Scheme: StandardWebhooks}, map[string]string{"Webhook-Id": "m", "Webhook-Timestamp": ts, "Webhook-Signature": "v2,abc"}, CodeMalformed},
		{"standard bad timestamp", Config{Scheme: StandardWebhooks}, map[string]string{"Webhook-Id": "m", "Webhook-Timestamp": "yesterday",
			"Webhook-Signature": "v1," + base64.StdEncoding.EncodeToString(make([]byte, 32))}, CodeMalformed},
		{"slack right length, wrong mac", Config{Scheme: Slack}, map[string]string{"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": "v0=" + strings.Repeat("0", 64)}, CodeMismatch},
		{"shopify not base64", Config{Scheme: Shopify}, map[string]string{"X-Shopify-Hmac-Sha256": "%%%"}, CodeMalformed},
		{"empty header", Config{Scheme: Meta, VerifyToken: "x"}, map[string]string{"X-Hub-Signature-256": ""}, CodeMissing},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range c.h {
				h.Set(k, v)
			}
			wantFail(t, newVerifier(t, c.cfg, "secret").Verify(h, body, testNow), c.code)
		})
	}
}

func TestReasonsHoldNoValues(t *testing.T) {
	// A reason goes to logs and stats: it names headers, never their values
	// or the secret.
	v := newVerifier(t, Config{Scheme: Slack}, "topsecret")
	h := http.Header{}
	h.Set("X-Slack-Request-Timestamp", "1767225600")
	h.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac(sha256.New, "other", "v0:1767225600:{}")))
	res := v.Verify(h, []byte(`{}`), testNow)
	for _, leak := range []string{"topsecret", h.Get("X-Slack-Signature")[3:], "1767225600"} {
		if strings.Contains(res.Reason, leak) {
			t.Fatalf("reason %q contains %q", res.Reason, leak)
		}
	}
	if strings.Contains(ClientMessage, "X-") || strings.Contains(ClientMessage, "timestamp") {
		t.Fatalf("ClientMessage %q says which part failed", ClientMessage)
	}
}

func TestDeliveryIDs(t *testing.T) {
	sign := func(secret string, body []byte) http.Header {
		h := http.Header{}
		h.Set("X-Slack-Request-Timestamp", strconv.FormatInt(testNow.Unix(), 10))
		h.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac(sha256.New, secret, "v0:"+strconv.FormatInt(testNow.Unix(), 10)+":"+string(body))))
		return h
	}
	v := newVerifier(t, Config{Scheme: Slack}, "s")
	long := strings.Repeat("x", MaxDeliveryID+1)
	sum := sha256.Sum256([]byte(long))
	for _, c := range []struct {
		body, want string
	}{
		{`{"event_id":"Ev1"}`, "Ev1"},
		{`{"event_id":"  Ev1 "}`, "Ev1"},
		{`{"event_id":42}`, ""},
		{`{"event":{"event_id":"nested"}}`, ""},
		{`token=x&command=%2Fhi`, ""}, // a slash command: form-encoded, no id
		{`[{"event_id":"Ev1"}]`, ""},
		{`{"event_id":"` + long + `"}`, "sha256:" + hex.EncodeToString(sum[:])},
	} {
		res := v.Verify(sign("s", []byte(c.body)), []byte(c.body), testNow)
		if !res.Valid || res.DeliveryID != c.want {
			t.Errorf("body %.40s: %+v, want id %q", c.body, res, c.want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	for _, c := range []struct {
		name    string
		cfg     Config
		secrets [][]byte
		want    string
	}{
		{"no secret", Config{Scheme: GitHub}, nil, "needs a signing secret"},
		{"three secrets", Config{Scheme: GitHub}, [][]byte{[]byte("a"), []byte("b"), []byte("c")}, "at most 2"},
		{"blank secret", Config{Scheme: GitHub}, [][]byte{[]byte(" \n")}, "empty"},
		{"bad whsec", Config{Scheme: StandardWebhooks}, [][]byte{[]byte("whsec_not base64!")}, "does not decode"},
		{"bad config", Config{Scheme: "gitlab"}, [][]byte{[]byte("a")}, "unknown scheme"},
	} {
		_, err := New(c.cfg, c.secrets)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "not base64!") {
			t.Errorf("%s: the error shows the secret: %v", c.name, err)
		}
	}
}

func TestSecretKeys(t *testing.T) {
	// Stripe's secret is the text itself; a standard-webhooks secret is
	// decoded; both may arrive with a pasted newline.
	k, _ := secretKey(Stripe, []byte("whsec_abc\n"))
	if string(k) != "whsec_abc" {
		t.Fatalf("stripe key %q", k)
	}
	k, _ = secretKey(StandardWebhooks, []byte("whsec_"+base64.StdEncoding.EncodeToString([]byte("raw key"))+"\n"))
	if string(k) != "raw key" {
		t.Fatalf("standard-webhooks key %q", k)
	}
	k, _ = secretKey(StandardWebhooks, []byte(base64.RawStdEncoding.EncodeToString([]byte("no prefix"))))
	if string(k) != "no prefix" {
		t.Fatalf("standard-webhooks key without prefix %q", k)
	}
	for _, s := range Schemes {
		g, err := GenerateSecret(s)
		switch s {
		case StandardWebhooks, GitHub, HMAC:
			if err != nil || ValidateSecret(s, []byte(g)) != nil {
				t.Errorf("%s: generated %v", s, err)
			}
		default:
			if err == nil || !strings.Contains(err.Error(), "issues its own") {
				t.Errorf("%s: GenerateSecret %v, want a hint to paste the provider's", s, err)
			}
		}
	}
	a, _ := GenerateSecret(GitHub)
	b, _ := GenerateSecret(GitHub)
	if a == b || len(a) != 64 {
		t.Fatalf("generated %q and %q", a, b)
	}
}
