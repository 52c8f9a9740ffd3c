package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/client"
)

// The generic message every failed verification gets (verify.ClientMessage).
const signatureRefusal = "webhook signature verification failed"

// standardSign signs body as a Standard Webhooks sender does
// (https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md):
// HMAC-SHA256 over "{id}.{timestamp}.{body}" keyed with the base64 secret after
// "whsec_", sent as "v1,<base64>". The vendor library's own vectors are checked
// in internal/verify; here the HTTP path is under test.
func standardSign(t testing.TB, secret, id string, ts time.Time, body []byte) http.Header {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatalf("secret %q is not whsec_ base64: %v", secret[:6]+"…", err)
	}
	stamp := strconv.FormatInt(ts.Unix(), 10)
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s.%s.%s", id, stamp, body)
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", stamp)
	h.Set("webhook-signature", "v1,"+base64.StdEncoding.EncodeToString(m.Sum(nil)))
	h.Set("Content-Type", "application/json")
	return h
}

// send posts body with headers h (gzip-compressed on the wire when zip).
func send(t testing.TB, url string, h http.Header, body []byte, zip bool) (int, string) {
	t.Helper()
	wire := body
	if zip {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(body)
		zw.Close()
		wire = b.Bytes()
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(wire))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h.Clone()
	if zip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// TestSignedDeliveries runs a Standard Webhooks integration through the real
// server: the generated secret is shown once, valid deliveries load, tampered,
// stale, future, unsigned and wrongly keyed ones get one generic 401, 8
// concurrent redeliveries make one row, a rotation accepts either secret and
// then refuses the removed one, and a gzip body verifies on its decoded bytes.
func TestSignedDeliveries(t *testing.T) {
	ctx := context.Background()
	in := startServer(t, nil)
	integ, err := in.Client.CreateIntegration(ctx, client.NewIntegration{Name: "Svix Events", Type: "webhooks",
		Verify: &client.Verify{Scheme: "standard-webhooks"}})
	if err != nil {
		t.Fatal(err)
	}
	secret := integ.Secret
	if !strings.HasPrefix(secret, "whsec_") || len(integ.Secrets) != 1 || !strings.HasSuffix(secret, integ.Secrets[0].Hint) {
		t.Fatalf("created: secret %q… secrets %+v: want a generated whsec_ secret shown once, listed by hint", secret[:min(6, len(secret))], integ.Secrets)
	}
	got, err := in.Client.Integration(ctx, integ.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Secret != "" || got.Verify == nil || got.Verify.Scheme != "standard-webhooks" || got.Verify.Mode != "enforce" {
		t.Fatalf("GET integration: secret shown again or verify missing: %+v", got)
	}
	u, err := in.Client.GenerateURL(ctx, integ.ID)
	if err != nil {
		t.Fatal(err)
	}
	hook := in.hookURL(u.URL)
	now := time.Now()
	body := func(n int) []byte { return []byte(fmt.Sprintf(`{"type":"invoice.paid","n":%d}`, n)) }

	if status, b := send(t, hook, standardSign(t, secret, "msg_1", now, body(1)), body(1), false); status != 200 || !strings.Contains(b, `"records":1`) {
		t.Fatalf("valid delivery: %d %s", status, b)
	}
	wrong := "whsec_" + base64.StdEncoding.EncodeToString([]byte("not the secret, 32 bytes long!!!"))
	refused := map[string]struct {
		h    http.Header
		body []byte
	}{
		"tampered body": {standardSign(t, secret, "msg_2", now, body(2)), body(3)},
		"wrong secret":  {standardSign(t, wrong, "msg_2", now, body(2)), body(2)},
		"stale":         {standardSign(t, secret, "msg_2", now.Add(-10*time.Minute), body(2)), body(2)},
		"future":        {standardSign(t, secret, "msg_2", now.Add(10*time.Minute), body(2)), body(2)},
		"unsigned":      {http.Header{"Content-Type": {"application/json"}}, body(2)},
	}
	for name, r := range refused {
		status, b := send(t, hook, r.h, r.body, false)
		if status != 401 || !strings.Contains(b, signatureRefusal) || strings.Contains(strings.ToLower(b), "webhook-") {
			t.Errorf("%s: %d %s; want 401 with only the generic message", name, status, b)
		}
	}

	// 8 concurrent redeliveries of one delivery: one row.
	var wg sync.WaitGroup
	answers := make([]string, 8)
	for i := range answers {
		wg.Go(func() {
			status, b := send(t, hook, standardSign(t, secret, "msg_dup", now, body(4)), body(4), false)
			answers[i] = fmt.Sprintf("%d %s", status, strings.TrimSpace(b))
		})
	}
	wg.Wait()
	firsts, dups := 0, 0
	for _, a := range answers {
		switch a {
		case `200 {"status":"ok","records":1}`:
			firsts++
		case `200 {"status":"ok","records":0,"duplicates":1}`:
			dups++
		default:
			t.Errorf("redelivery answered %s", a)
		}
	}
	if firsts != 1 || dups != 7 {
		t.Fatalf("8 redeliveries: %d stored, %d duplicates; want 1 and 7", firsts, dups)
	}

	// A gzip body is verified on its decoded bytes, the ones the sender signed.
	if status, b := send(t, hook, standardSign(t, secret, "msg_gz", now, body(5)), body(5), true); status != 200 {
		t.Fatalf("gzip delivery: %d %s", status, b)
	}

	// Rotation: a second secret, either verifies; a third is refused; the old
	// one removed stops verifying.
	second, err := in.Client.AddSecret(ctx, integ.ID, "")
	if err != nil || !strings.HasPrefix(second.Secret, "whsec_") {
		t.Fatalf("AddSecret: %+v, %v", second, err)
	}
	for i, s := range []string{secret, second.Secret} {
		id := fmt.Sprintf("msg_rot_%d", i)
		if status, b := send(t, hook, standardSign(t, s, id, now, body(10+i)), body(10+i), false); status != 200 {
			t.Fatalf("during the rotation, secret %d: %d %s", i+1, status, b)
		}
	}
	if _, err := in.Client.AddSecret(ctx, integ.ID, ""); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("a third secret: %v, want 409", err)
	}
	if err := in.Client.RemoveSecret(ctx, integ.ID, integ.Secrets[0].ID); err != nil {
		t.Fatal(err)
	}
	if status, _ := send(t, hook, standardSign(t, secret, "msg_old", now, body(20)), body(20), false); status != 401 {
		t.Fatalf("the removed secret still verifies: %d", status)
	}
	if status, _ := send(t, hook, standardSign(t, second.Secret, "msg_new", now, body(21)), body(21), false); status != 200 {
		t.Fatalf("the remaining secret: %d", status)
	}

	// msg_1, msg_dup, msg_gz, msg_rot_0, msg_rot_1, msg_new: 6 records, each once.
	waitLoaded(t, in.Client, integ.ID, 6)
	if n := rows(t, in.Client, "svix_events.data"); n != 6 {
		t.Fatalf("svix_events.data has %d rows, want 6", n)
	}
	st, err := in.Client.Integration(ctx, integ.ID)
	if err != nil {
		t.Fatal(err)
	}
	s := st.Stats
	if s.SignatureFailures == nil || *s.SignatureFailures != int64(len(refused)+1) || s.LastSignatureFailure == nil ||
		s.RecordsDeduplicated == nil || *s.RecordsDeduplicated != 7 {
		t.Fatalf("stats %+v: want %d signature failures with the last reason, 7 deduplicated", s, len(refused)+1)
	}
	for _, sec := range []string{secret, second.Secret, strings.TrimPrefix(secret, "whsec_")} {
		if strings.Contains(in.Logs.String(), sec) {
			t.Fatal("a signing secret is in the server log")
		}
		js, _ := json.Marshal(st)
		if strings.Contains(string(js), sec) {
			t.Fatal("a signing secret is in the API answer")
		}
	}
}

// TestSlackHandshake: Slack's url_verification is answered on the secret URL
// once its signature verifies, and is never stored; an unsigned one is refused.
func TestSlackHandshake(t *testing.T) {
	ctx := context.Background()
	in := startServer(t, nil)
	const secret = "8f742231b10e8888abcd99yyyzzz85a5"
	integ, err := in.Client.CreateIntegration(ctx, client.NewIntegration{Name: "Slack Events", Type: "webhooks",
		Verify: &client.Verify{Scheme: "slack", Secret: secret}})
	if err != nil {
		t.Fatal(err)
	}
	u, err := in.Client.GenerateURL(ctx, integ.ID)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`)
	// https://api.slack.com/authentication/verifying-requests-from-slack:
	// v0= hex HMAC-SHA256 of "v0:{timestamp}:{body}" with the signing secret.
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(m, "v0:%s:%s", ts, body)
	h := http.Header{"Content-Type": {"application/json"}, "X-Slack-Request-Timestamp": {ts},
		"X-Slack-Signature": {"v0=" + hex.EncodeToString(m.Sum(nil))}}
	status, b := send(t, in.hookURL(u.URL), h, body, false)
	if status != 200 || !strings.Contains(b, `"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"`) {
		t.Fatalf("handshake: %d %s", status, b)
	}
	h.Set("X-Slack-Signature", "v0=00")
	if status, b := send(t, in.hookURL(u.URL), h, body, false); status != 401 || strings.Contains(b, "challenge") {
		t.Fatalf("unsigned handshake: %d %s", status, b)
	}
	st, err := in.Client.Integration(ctx, integ.ID)
	if err != nil || st.Stats.RecordsReceived != 0 {
		t.Fatalf("a handshake was stored: %+v, %v", st, err)
	}
}

// TestDedupeSurvivesKill: a delivery acknowledged just before a SIGKILL is
// still known after the restart, so its redelivery adds no row.
func TestDedupeSurvivesKill(t *testing.T) {
	dir := t.TempDir()
	addr := freePort(t)
	c := startChild(t, dir, addr)
	cl := client.New(c.URL, adminKey(t, dir))
	ctx := context.Background()
	integ, err := cl.CreateIntegration(ctx, client.NewIntegration{Name: "Resend", Type: "webhooks",
		Verify: &client.Verify{Scheme: "standard-webhooks"}})
	if err != nil {
		t.Fatal(err)
	}
	u, err := cl.GenerateURL(ctx, integ.ID)
	if err != nil {
		t.Fatal(err)
	}
	hook := c.URL + u.URL[strings.Index(u.URL, "/v1/clients/"):]
	body := []byte(`{"type":"email.sent","id":"e1"}`)
	h := standardSign(t, integ.Secret, "msg_kill", time.Now(), body)
	if status, b := send(t, hook, h, body, false); status != 200 || !strings.Contains(b, `"records":1`) {
		t.Fatalf("first delivery: %d %s", status, b)
	}
	c.Kill()
	c = startChild(t, dir, addr)
	defer c.Term(t)
	for range 3 {
		if status, b := send(t, hook, h, body, false); status != 200 || !strings.Contains(b, `"duplicates":1`) {
			t.Fatalf("redelivery after SIGKILL: %d %s, want a duplicate", status, b)
		}
	}
	waitLoaded(t, cl, integ.ID, 1)
	if n := rows(t, cl, "resend.data"); n != 1 {
		t.Fatalf("resend.data has %d rows, want 1", n)
	}
}

// schemeCase signs deliveries for one scheme the way its sender does (the
// sources are cited in internal/verify/rules.go); the HTTP path is under test.
type schemeCase struct {
	verify client.Verify
	// sign returns the headers of a delivery with id (where the scheme has
	// one) and the body to send.
	sign func(secret, id string, at time.Time) (http.Header, []byte)
	// dedupes: the scheme carries a delivery id (Zoom and Meta do not).
	dedupes bool
}

func hexMAC(key []byte, parts ...string) string {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write([]byte(p))
	}
	return hex.EncodeToString(m.Sum(nil))
}

var schemeCases = map[string]schemeCase{
	"stripe": {verify: client.Verify{Scheme: "stripe", Secret: "whsec_stripe_test_secret_0123456789"}, dedupes: true,
		sign: func(secret, id string, at time.Time) (http.Header, []byte) {
			body := []byte(`{"id":"` + id + `","type":"invoice.paid"}`)
			ts := strconv.FormatInt(at.Unix(), 10)
			return http.Header{"Stripe-Signature": {"t=" + ts + ",v1=" + hexMAC([]byte(secret), ts, ".", string(body))}}, body
		}},
	"github": {verify: client.Verify{Scheme: "github", Secret: "It's a Secret to Everybody"}, dedupes: true,
		sign: func(secret, id string, at time.Time) (http.Header, []byte) {
			body := []byte(`{"action":"opened","n":1}`)
			return http.Header{"X-Hub-Signature-256": {"sha256=" + hexMAC([]byte(secret), string(body))}, "X-Github-Delivery": {id}}, body
		}},
	"shopify": {verify: client.Verify{Scheme: "shopify", Secret: "shpss_test_secret"}, dedupes: true,
		sign: func(secret, id string, at time.Time) (http.Header, []byte) {
			body := []byte(`{"id":820982911946154508,"email":"jon@example.com"}`)
			m := hmac.New(sha256.New, []byte(secret))
			m.Write(body)
			return http.Header{"X-Shopify-Hmac-Sha256": {base64.StdEncoding.EncodeToString(m.Sum(nil))}, "X-Shopify-Webhook-Id": {id}}, body
		}},
	"slack": {verify: client.Verify{Scheme: "slack", Secret: "8f742231b10e8888abcd99yyyzzz85a5"}, dedupes: true,
		sign: func(secret, id string, at time.Time) (http.Header, []byte) {
			body := []byte(`{"type":"event_callback","event_id":"` + id + `","event":{"type":"message"}}`)
			ts := strconv.FormatInt(at.Unix(), 10)
			return http.Header{"X-Slack-Request-Timestamp": {ts}, "X-Slack-Signature": {"v0=" + hexMAC([]byte(secret), "v0:", ts, ":", string(body))}}, body
		}},
	"hmac": {verify: client.Verify{Scheme: "hmac", Secret: "generic-shared-secret", Header: "X-Acme-Signature", Prefix: "sha256=",
		Signed: "{timestamp}.{body}", TimestampHeader: "X-Acme-Time", IDHeader: "X-Acme-Delivery"}, dedupes: true,
		sign: func(secret, id string, at time.Time) (http.Header, []byte) {
			body := []byte(`{"event":"thing.created"}`)
			ts := strconv.FormatInt(at.Unix(), 10)
			return http.Header{"X-Acme-Time": {ts}, "X-Acme-Delivery": {id},
				"X-Acme-Signature": {"sha256=" + hexMAC([]byte(secret), ts, ".", string(body))}}, body
		}},
	"zoom": {verify: client.Verify{Scheme: "zoom", Secret: "zoom_secret_token"},
		sign: func(secret, id string, at time.Time) (http.Header, []byte) {
			body := []byte(`{"event":"meeting.started","event_ts":` + strconv.FormatInt(at.UnixMilli(), 10) + `}`)
			ts := strconv.FormatInt(at.Unix(), 10)
			return http.Header{"X-Zm-Request-Timestamp": {ts}, "X-Zm-Signature": {"v0=" + hexMAC([]byte(secret), "v0:", ts, ":", string(body))}}, body
		}},
	"meta": {verify: client.Verify{Scheme: "meta", Secret: "meta_app_secret", VerifyToken: "my-verify-token"},
		sign: func(secret, id string, at time.Time) (http.Header, []byte) {
			body := []byte(`{"object":"page","entry":[{"id":"1","time":1}]}`)
			return http.Header{"X-Hub-Signature-256": {"sha256=" + hexMAC([]byte(secret), string(body))}}, body
		}},
}

// TestEverySchemeOverHTTP runs each provider scheme (Standard Webhooks is
// TestSignedDeliveries) through the real server: a valid delivery is stored,
// a tampered body and a wrong secret get the generic 401, a gzip body
// verifies on its decoded bytes, and 8 concurrent redeliveries of one
// delivery make one row where the scheme has a delivery id.
func TestEverySchemeOverHTTP(t *testing.T) {
	ctx := context.Background()
	in := startServer(t, nil)
	for name, sc := range schemeCases {
		t.Run(name, func(t *testing.T) {
			v := sc.verify
			integ, err := in.Client.CreateIntegration(ctx, client.NewIntegration{Name: "Scheme " + name, Type: "webhooks", Verify: &v})
			if err != nil {
				t.Fatal(err)
			}
			u, err := in.Client.GenerateURL(ctx, integ.ID)
			if err != nil {
				t.Fatal(err)
			}
			hook := in.hookURL(u.URL)
			now := time.Now()
			withCT := func(h http.Header) http.Header { h.Set("Content-Type", "application/json"); return h }

			h, body := sc.sign(v.Secret, "d1", now)
			if status, b := send(t, hook, withCT(h), body, false); status != 200 || !strings.Contains(b, `"records":1`) {
				t.Fatalf("valid delivery: %d %s", status, b)
			}
			tampered := append(bytes.Clone(body[:len(body)-1]), []byte(`,"x":1}`)...)
			if status, b := send(t, hook, withCT(h), tampered, false); status != 401 || !strings.Contains(b, signatureRefusal) {
				t.Fatalf("tampered body: %d %s", status, b)
			}
			wh, wbody := sc.sign("a wrong secret of some length", "d2", now)
			if status, b := send(t, hook, withCT(wh), wbody, false); status != 401 || !strings.Contains(b, signatureRefusal) {
				t.Fatalf("wrong secret: %d %s", status, b)
			}
			gh, gbody := sc.sign(v.Secret, "d3", now.Add(time.Second))
			if status, b := send(t, hook, withCT(gh), gbody, true); status != 200 {
				t.Fatalf("gzip delivery: %d %s", status, b)
			}
			want := int64(2)
			if sc.dedupes {
				var wg sync.WaitGroup
				var mu sync.Mutex
				stored, dups := 0, 0
				for range 8 {
					wg.Go(func() {
						h, body := sc.sign(v.Secret, "d4", now.Add(2*time.Second))
						status, b := send(t, hook, withCT(h), body, false)
						mu.Lock()
						defer mu.Unlock()
						switch {
						case status == 200 && strings.Contains(b, `"records":1`):
							stored++
						case status == 200 && strings.Contains(b, `"duplicates":1`):
							dups++
						default:
							t.Errorf("redelivery: %d %s", status, b)
						}
					})
				}
				wg.Wait()
				if stored != 1 || dups != 7 {
					t.Fatalf("8 redeliveries: %d stored, %d duplicates; want 1 and 7", stored, dups)
				}
				want++
			}
			waitLoaded(t, in.Client, integ.ID, want)
			if n := rows(t, in.Client, integ.Schema+".data"); n != want {
				t.Fatalf("%s.data has %d rows, want %d", integ.Schema, n, want)
			}
		})
	}
}

// TestMonitorRollout: in monitor mode a delivery that fails verification is
// stored and counted; switching the integration to enforce (PATCH) refuses it
// from then on, with the same integration and table.
func TestMonitorRollout(t *testing.T) {
	ctx := context.Background()
	in := startServer(t, nil)
	integ, err := in.Client.CreateIntegration(ctx, client.NewIntegration{Name: "Rollout", Type: "webhooks",
		Verify: &client.Verify{Scheme: "github", Secret: "the right secret", Mode: "monitor"}})
	if err != nil {
		t.Fatal(err)
	}
	u, err := in.Client.GenerateURL(ctx, integ.ID)
	if err != nil {
		t.Fatal(err)
	}
	hook := in.hookURL(u.URL)
	sc := schemeCases["github"]
	h, body := sc.sign("a wrong secret", "r1", time.Now())
	h.Set("Content-Type", "application/json")
	if status, b := send(t, hook, h, body, false); status != 200 {
		t.Fatalf("monitor mode, bad signature: %d %s; want it stored", status, b)
	}
	changed, err := in.Client.UpdateVerify(ctx, integ.ID, client.VerifyChange{Mode: "enforce", Tolerance: "2m"})
	if err != nil || changed.Verify.Mode != "enforce" || changed.Verify.Tolerance != "2m0s" {
		t.Fatalf("UpdateVerify = %+v, %v", changed, err)
	}
	h, body = sc.sign("a wrong secret", "r2", time.Now())
	h.Set("Content-Type", "application/json")
	if status, _ := send(t, hook, h, body, false); status != 401 {
		t.Fatalf("enforce mode, bad signature: %d, want 401", status)
	}
	h, body = sc.sign("the right secret", "r3", time.Now())
	h.Set("Content-Type", "application/json")
	if status, _ := send(t, hook, h, body, false); status != 200 {
		t.Fatalf("enforce mode, good signature: %d", status)
	}
	waitLoaded(t, in.Client, integ.ID, 2)
	st, err := in.Client.Integration(ctx, integ.ID)
	if err != nil || st.Stats.SignatureFailures == nil || *st.Stats.SignatureFailures != 2 {
		t.Fatalf("stats %+v, %v: want 2 signature failures (one in monitor, one refused)", st.Stats, err)
	}
	if _, err := in.Client.UpdateVerify(ctx, integ.ID, client.VerifyChange{Mode: "loud"}); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("an unknown mode: %v, want 400", err)
	}
}
