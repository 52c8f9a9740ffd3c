package verify

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strconv"
	"testing"
)

// BenchmarkVerify measures one verification of a 1 KiB body per scheme,
// signed with the second of two secrets (a rotation: the worst case, two
// MACs), including the delivery id lookup (a JSON parse for Stripe and
// Slack). For docs/performance.md.
func BenchmarkVerify(b *testing.B) {
	body := append([]byte(`{"id":"evt_1","event_id":"Ev1","data":"`), bytes.Repeat([]byte("x"), 1000)...)
	body = append(body, `"}`...)
	ts := strconv.FormatInt(testNow.Unix(), 10)
	hexMAC := func(key, content string) string { return hex.EncodeToString(mac(sha256.New, key, content)) }
	stdKey := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	for _, c := range []struct {
		name string
		cfg  Config
		h    map[string]string
	}{
		{"standard-webhooks", Config{Scheme: StandardWebhooks}, map[string]string{"Webhook-Id": "msg_1", "Webhook-Timestamp": ts,
			"Webhook-Signature": "v1," + base64.StdEncoding.EncodeToString(mac(sha256.New, "0123456789abcdef0123456789abcdef", "msg_1."+ts+"."+string(body)))}},
		{"stripe", Config{Scheme: Stripe}, map[string]string{"Stripe-Signature": "t=" + ts + ",v1=" + hexMAC("s2", ts+"."+string(body))}},
		{"github", Config{Scheme: GitHub}, map[string]string{"X-Hub-Signature-256": "sha256=" + hexMAC("s2", string(body)), "X-GitHub-Delivery": "d1"}},
		{"slack", Config{Scheme: Slack}, map[string]string{"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": "v0=" + hexMAC("s2", "v0:"+ts+":"+string(body))}},
	} {
		secrets := [][]byte{[]byte("s1"), []byte("s2")}
		if c.cfg.Scheme == StandardWebhooks {
			secrets = [][]byte{[]byte("whsec_" + base64.StdEncoding.EncodeToString([]byte("old"))), []byte(stdKey)}
		}
		v, err := New(c.cfg, secrets)
		if err != nil {
			b.Fatal(err)
		}
		h := http.Header{}
		for k, val := range c.h {
			h.Set(k, val)
		}
		if res := v.Verify(h, body, testNow); !res.Valid || res.Secret != 1 {
			b.Fatalf("%s: %+v", c.name, res)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				v.Verify(h, body, testNow)
			}
		})
	}
}
