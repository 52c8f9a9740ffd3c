package verify

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzVerify feeds arbitrary signature, timestamp and id header values,
// bodies, query strings and generic-hmac templates to every scheme. Verify
// and Handshake must not panic, and their results must keep their promises.
func FuzzVerify(f *testing.F) {
	f.Add("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", "1614265330", "msg_p5jXN8AQM9LWM0D4loKWxJek", []byte(`{"test": 2432232314}`), "", "{id}.{timestamp}.{body}")
	f.Add("t=1767225600,v1=be8cb8325f2202445260a855532f967e30ad2a9394ce28da66ee02880ddcb661,v0=00", "", "", []byte(`{"id":"evt_1"}`), "", "{body}")
	f.Add("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", "", "72d3162e", []byte("Hello, World!"), "", "{body}")
	f.Add("v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503", "1531420618", "", []byte(`{"type":"url_verification","challenge":"c"}`), "", "v0:{timestamp}:{body}")
	f.Add("v0=00", "1767225600000", "", []byte(`{"event":"endpoint.url_validation","payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"}}`), "", "{timestamp}{body}")
	f.Add("", "2026-01-01T00:00:00Z", "", []byte{}, "hub.mode=subscribe&hub.verify_token=tok&hub.challenge=123", "{{body}}{id")
	f.Add("v1, v1,,, t==,=v1 ", "-99999999999999", strings.Repeat("i", 300), []byte(`[`), "hub.mode=subscribe&hub.challenge=%00", "{timestamp}.{body}")
	f.Fuzz(func(t *testing.T, sig, ts, id string, body []byte, query, signed string) {
		const secret = "fuzz-secret-value"
		q, _ := url.ParseQuery(query)
		configs := []Config{
			{Scheme: StandardWebhooks}, {Scheme: Stripe}, {Scheme: GitHub}, {Scheme: Shopify},
			{Scheme: Slack}, {Scheme: Zoom, Mode: Monitor}, {Scheme: Meta, VerifyToken: "tok"},
			{Scheme: HMAC, Header: "X-Sig", Prefix: "sha256=", Encoding: "base64", Signed: signed,
				TimestampHeader: "X-Ts", IDHeader: "X-Id"},
		}
		for _, cfg := range configs {
			secrets := [][]byte{[]byte(secret), []byte("whsec_c2Vjb25kIHNlY3JldCBrZXk=")}
			if cfg.Scheme == StandardWebhooks {
				secrets[0] = []byte("whsec_ZnV6ei1zZWNyZXQtdmFsdWU=") // base64 of the same text
			}
			v, err := New(cfg, secrets)
			if err != nil {
				if cfg.Scheme == HMAC {
					continue // the fuzzed template may not validate
				}
				t.Fatalf("%s: %v", cfg.Scheme, err)
			}
			r := rules[cfg.Scheme]
			if cfg.Scheme == HMAC {
				r = v.rule
			}
			h := http.Header{}
			for _, n := range r.sigHeaders {
				h.Set(n, sig)
			}
			for _, n := range r.tsHeaders {
				h.Set(n, ts)
			}
			for _, n := range r.idHeaders {
				h.Set(n, id)
			}
			res := v.Verify(h, body, testNow)
			checkResult(t, cfg, res)
			for _, m := range []string{http.MethodGet, http.MethodPost} {
				if reply, ok := v.Handshake(m, q, h, body, testNow); ok {
					if reply.Status != http.StatusOK && reply.Status != http.StatusUnauthorized {
						t.Fatalf("handshake status %d", reply.Status)
					}
					if reply.Status == http.StatusUnauthorized && (string(reply.Body) != ClientMessage || reply.Result.Accept) {
						t.Fatalf("refused handshake %+v", reply)
					}
				}
			}
		}
	})
}

func checkResult(t *testing.T, cfg Config, res Result) {
	t.Helper()
	if res.Valid != (res.Code == CodeNone) || res.Valid != (res.Secret >= 0) || res.Valid != (res.Reason == "") {
		t.Fatalf("%s: inconsistent %+v", cfg.Scheme, res)
	}
	if res.Accept != (res.Valid || cfg.Mode == Monitor) {
		t.Fatalf("%s: Accept %+v in mode %q", cfg.Scheme, res, cfg.Mode)
	}
	if !res.Valid && res.DeliveryID != "" {
		t.Fatalf("%s: an unverified delivery claimed id %q", cfg.Scheme, res.DeliveryID)
	}
	if len(res.DeliveryID) > MaxDeliveryID+len("sha256:")+64 || strings.Contains(res.Reason, "fuzz-secret") {
		t.Fatalf("%s: %+v", cfg.Scheme, res)
	}
}
