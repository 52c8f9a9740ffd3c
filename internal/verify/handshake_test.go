package verify

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"
)

// slackSign and zoomSign sign as the providers document (see schemes()).
func slackSign(secret string, ts time.Time, body []byte) http.Header {
	s := strconv.FormatInt(ts.Unix(), 10)
	h := http.Header{}
	h.Set("X-Slack-Request-Timestamp", s)
	h.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac(sha256.New, secret, "v0:"+s+":"+string(body))))
	return h
}

func zoomSign(secret string, ts time.Time, body []byte) http.Header {
	s := strconv.FormatInt(ts.Unix(), 10)
	h := http.Header{}
	h.Set("X-Zm-Request-Timestamp", s)
	h.Set("X-Zm-Signature", "v0="+hex.EncodeToString(mac(sha256.New, secret, "v0:"+s+":"+string(body))))
	return h
}

func wantRefused(t *testing.T, p replyOK, code Code) {
	t.Helper()
	r, ok := p.r, p.ok
	if !ok || r.Status != http.StatusUnauthorized || string(r.Body) != ClientMessage || r.Result.Accept || r.Result.Code != code {
		t.Fatalf("got ok=%v %d %q %+v, want a 401 with code %q", ok, r.Status, r.Body, r.Result, code)
	}
}

func decodeReply(t *testing.T, p replyOK) map[string]string {
	t.Helper()
	r, ok := p.r, p.ok
	if !ok || r.Status != http.StatusOK || r.ContentType != "application/json" {
		t.Fatalf("got ok=%v %d %s %q %+v, want a 200 JSON answer", ok, r.Status, r.ContentType, r.Body, r.Result)
	}
	var m map[string]string
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSlackHandshake(t *testing.T) {
	// https://api.slack.com/events/url_verification
	body := []byte(`{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`)
	v := newVerifier(t, Config{Scheme: Slack}, "slack-A")
	r, ok := v.Handshake(http.MethodPost, nil, slackSign("slack-A", testNow, body), body, testNow)
	if m := decodeReply(t, pair(r, ok)); m["challenge"] != "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" || len(m) != 1 {
		t.Fatalf("answer %v", m)
	}
	if r.Result.DeliveryID != "" {
		t.Fatal("a handshake claimed a delivery id")
	}

	wantRefused(t, pair(v.Handshake(http.MethodPost, nil, slackSign("slack-B", testNow, body), body, testNow)), CodeMismatch)
	wantRefused(t, pair(v.Handshake(http.MethodPost, nil, http.Header{}, body, testNow)), CodeMissing)
	wantRefused(t, pair(v.Handshake(http.MethodPost, nil, slackSign("slack-A", testNow.Add(-time.Hour), body), body, testNow)), CodeStale)
	// Monitor mode does not loosen a handshake.
	mon := newVerifier(t, Config{Scheme: Slack, Mode: Monitor}, "slack-A")
	wantRefused(t, pair(mon.Handshake(http.MethodPost, nil, slackSign("slack-B", testNow, body), body, testNow)), CodeMismatch)
	// Rotation: either secret answers.
	both := newVerifier(t, Config{Scheme: Slack}, "slack-A", "slack-B")
	decodeReply(t, pair(both.Handshake(http.MethodPost, nil, slackSign("slack-B", testNow, body), body, testNow)))

	bad := []byte(`{"type":"url_verification","challenge":"a\u0000b"}`)
	wantRefused(t, pair(v.Handshake(http.MethodPost, nil, slackSign("slack-A", testNow, bad), bad, testNow)), CodeHandshake)

	// Not handshakes: carry on as deliveries.
	for _, b := range []string{
		`{"type":"event_callback","event_id":"Ev1","event":{"text":"\"url_verification\""}}`,
		`not json "url_verification"`,
		`{"type":"block_actions"}`,
	} {
		if _, ok := v.Handshake(http.MethodPost, nil, slackSign("slack-A", testNow, []byte(b)), []byte(b), testNow); ok {
			t.Errorf("%s taken for a handshake", b)
		}
	}
	if _, ok := v.Handshake(http.MethodGet, url.Values{"hub.mode": {"subscribe"}}, nil, nil, testNow); ok {
		t.Error("a GET on a slack integration taken for a handshake")
	}
	gh := newVerifier(t, Config{Scheme: GitHub}, "x")
	if _, ok := gh.Handshake(http.MethodPost, nil, slackSign("x", testNow, body), body, testNow); ok {
		t.Error("a github integration answered a slack handshake")
	}
}

func TestZoomHandshake(t *testing.T) {
	// https://developers.zoom.us/docs/api/webhooks/#validate-your-webhook-endpoint:
	// encryptedToken = hex(HMAC-SHA256(key = secret token, message = plainToken)).
	body := []byte(`{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}`)
	want := func(secret string) string {
		return hex.EncodeToString(mac(sha256.New, secret, "qgg8vlvZRS6UYooatFL8Aw"))
	}

	v := newVerifier(t, Config{Scheme: Zoom}, "zoom-A")
	m := decodeReply(t, pair(v.Handshake(http.MethodPost, nil, zoomSign("zoom-A", testNow, body), body, testNow)))
	if m["plainToken"] != "qgg8vlvZRS6UYooatFL8Aw" || m["encryptedToken"] != want("zoom-A") || len(m) != 2 {
		t.Fatalf("answer %v", m)
	}
	// During a rotation the answer uses the secret that signed the request.
	both := newVerifier(t, Config{Scheme: Zoom}, "zoom-A", "zoom-B")
	m = decodeReply(t, pair(both.Handshake(http.MethodPost, nil, zoomSign("zoom-B", testNow, body), body, testNow)))
	if m["encryptedToken"] != want("zoom-B") {
		t.Fatalf("rotation answer %v", m)
	}

	wantRefused(t, pair(v.Handshake(http.MethodPost, nil, zoomSign("zoom-B", testNow, body), body, testNow)), CodeMismatch)
	wantRefused(t, pair(v.Handshake(http.MethodPost, nil, http.Header{}, body, testNow)), CodeMissing)
	wantRefused(t, pair(v.Handshake(http.MethodPost, nil, zoomSign("zoom-A", testNow.Add(time.Hour), body), body, testNow)), CodeFuture)
	mon := newVerifier(t, Config{Scheme: Zoom, Mode: Monitor}, "zoom-A")
	wantRefused(t, pair(mon.Handshake(http.MethodPost, nil, http.Header{}, body, testNow)), CodeMissing)

	// A plainToken shaped like signed content is never answered.
	oracle := []byte(`{"payload":{"plainToken":"v0:1767225600:{\"event\":\"x\"}"},"event":"endpoint.url_validation"}`)
	wantRefused(t, pair(v.Handshake(http.MethodPost, nil, zoomSign("zoom-A", testNow, oracle), oracle, testNow)), CodeHandshake)
	empty := []byte(`{"payload":{},"event":"endpoint.url_validation"}`)
	wantRefused(t, pair(v.Handshake(http.MethodPost, nil, zoomSign("zoom-A", testNow, empty), empty, testNow)), CodeHandshake)

	ev := []byte(`{"event":"meeting.started","payload":{"object":{"topic":"endpoint.url_validation"}}}`)
	if _, ok := v.Handshake(http.MethodPost, nil, zoomSign("zoom-A", testNow, ev), ev, testNow); ok {
		t.Error("an event mentioning endpoint.url_validation taken for a handshake")
	}
}

func TestMetaHandshake(t *testing.T) {
	// https://developers.facebook.com/docs/graph-api/webhooks/getting-started
	// ("Verification Requests"): answer hub.challenge when hub.verify_token matches.
	v := newVerifier(t, Config{Scheme: Meta, VerifyToken: "meatball"}, "app-secret")
	q := url.Values{"hub.mode": {"subscribe"}, "hub.verify_token": {"meatball"}, "hub.challenge": {"1158201444"}}
	r, ok := v.Handshake(http.MethodGet, q, nil, nil, testNow)
	if !ok || r.Status != http.StatusOK || string(r.Body) != "1158201444" || r.ContentType != "text/plain; charset=utf-8" {
		t.Fatalf("got ok=%v %+v", ok, r)
	}
	for _, token := range []string{"meatbal", "meatball!", "", "MEATBALL"} {
		q := url.Values{"hub.mode": {"subscribe"}, "hub.verify_token": {token}, "hub.challenge": {"1"}}
		wantRefused(t, pair(v.Handshake(http.MethodGet, q, nil, nil, testNow)), CodeHandshake)
	}
	for _, ch := range []string{"", "a\nb", string(make([]byte, maxChallenge+1))} {
		q := url.Values{"hub.mode": {"subscribe"}, "hub.verify_token": {"meatball"}, "hub.challenge": {ch}}
		wantRefused(t, pair(v.Handshake(http.MethodGet, q, nil, nil, testNow)), CodeHandshake)
	}
	// Any other GET is not a handshake (the endpoint answers 405), nor is a POST.
	for _, c := range []struct {
		method string
		q      url.Values
	}{
		{http.MethodGet, nil},
		{http.MethodGet, url.Values{"hub.mode": {"unsubscribe"}, "hub.verify_token": {"meatball"}}},
		{http.MethodPost, q},
		{http.MethodHead, q},
	} {
		if _, ok := v.Handshake(c.method, c.q, nil, nil, testNow); ok {
			t.Errorf("%s %v taken for a handshake", c.method, c.q)
		}
	}
}

// pair lets Handshake's two results be passed to a helper in one line.
type replyOK struct {
	r  Reply
	ok bool
}

func pair(r Reply, ok bool) replyOK { return replyOK{r, ok} }
