package verify

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string // "" valid, else a piece of the error
	}{
		{Config{Scheme: StandardWebhooks}, ""},
		{Config{Scheme: Stripe, Mode: Monitor, Tolerance: Duration(10 * time.Minute)}, ""},
		{Config{Scheme: Meta, VerifyToken: "t"}, ""},
		{Config{Scheme: HMAC, Header: "X-Sig"}, ""},
		{Config{Scheme: HMAC, Header: "x-sig", Algorithm: "sha1", Encoding: "base64", Prefix: "sha1=",
			Signed: "{timestamp}:{id}:{body}", TimestampHeader: "X-Ts", IDHeader: "X-Id"}, ""},
		{Config{}, "unknown scheme"},
		{Config{Scheme: "Stripe"}, "unknown scheme"},
		{Config{Scheme: Stripe, Mode: "log"}, "unknown mode"},
		{Config{Scheme: Stripe, Tolerance: Duration(time.Millisecond)}, "out of range"},
		{Config{Scheme: Stripe, Tolerance: Duration(48 * time.Hour)}, "out of range"},
		{Config{Scheme: Meta}, "needs verify_token"},
		{Config{Scheme: Slack, VerifyToken: "t"}, "only for scheme meta"},
		{Config{Scheme: GitHub, Header: "X-Hub-Signature"}, "header is only for scheme hmac"},
		{Config{Scheme: Stripe, Signed: "{body}"}, "signed is only for scheme hmac"},
		{Config{Scheme: HMAC}, "needs header"},
		{Config{Scheme: HMAC, Header: "X Sig"}, "not a valid HTTP header name"},
		{Config{Scheme: HMAC, Header: "X-Sig", IDHeader: "X:Id"}, "id_header"},
		{Config{Scheme: HMAC, Header: "X-Sig", Algorithm: "md5"}, "unknown algorithm"},
		{Config{Scheme: HMAC, Header: "X-Sig", Encoding: "base32"}, "unknown encoding"},
		{Config{Scheme: HMAC, Header: "X-Sig", Signed: "{timestamp}"}, "no {body}"},
		{Config{Scheme: HMAC, Header: "X-Sig", Signed: "{timestamp}.{body}"}, "set timestamp_header"},
		{Config{Scheme: HMAC, Header: "X-Sig", TimestampHeader: "X-Ts"}, "unsigned timestamp"},
		{Config{Scheme: HMAC, Header: "X-Sig", Signed: "{id}.{body}"}, "set id_header"},
	} {
		err := c.cfg.Validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
}

func TestWithDefaults(t *testing.T) {
	got := Config{Scheme: HMAC, Header: "X-Sig"}.WithDefaults()
	want := Config{Scheme: HMAC, Header: "X-Sig", Mode: Enforce, Tolerance: Duration(DefaultTolerance),
		Algorithm: "sha256", Encoding: "hex", Signed: "{body}"}
	if got != want {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if g := (Config{Scheme: Stripe}).WithDefaults(); g.Algorithm != "" || g.Signed != "" {
		t.Fatalf("hmac defaults on stripe: %+v", g)
	}
}

func TestConfigJSON(t *testing.T) {
	var c Config
	in := `{"scheme":"hmac","mode":"monitor","tolerance":"90s","algorithm":"sha512","header":"X-Sig","prefix":"v1=",
		"encoding":"base64","signed":"{timestamp}.{body}","timestamp_header":"X-Ts","id_header":"X-Id"}`
	if err := json.Unmarshal([]byte(in), &c); err != nil {
		t.Fatal(err)
	}
	if c.Tolerance != Duration(90*time.Second) || c.Signed != "{timestamp}.{body}" || c.IDHeader != "X-Id" || c.Validate() != nil {
		t.Fatalf("%+v: %v", c, c.Validate())
	}
	out, _ := json.Marshal(Config{Scheme: Stripe}.WithDefaults())
	if string(out) != `{"scheme":"stripe","mode":"enforce","tolerance":"5m0s"}` {
		t.Fatalf("%s", out)
	}
	for in, want := range map[string]time.Duration{`300`: 5 * time.Minute, `"10m"`: 10 * time.Minute, `1.5`: 1500 * time.Millisecond} {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err != nil || time.Duration(d) != want {
			t.Errorf("%s: %v %v", in, time.Duration(d), err)
		}
	}
	for _, in := range []string{`"soon"`, `-1`, `true`, `1e12`} {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err == nil {
			t.Errorf("%s accepted", in)
		}
	}
}

func TestParseTemplate(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []part
	}{
		{"{body}", []part{{kind: partBody}}},
		{"v0:{timestamp}:{body}", []part{{text: "v0:"}, {kind: partTimestamp}, {text: ":"}, {kind: partBody}}},
		{"{id}.{timestamp}.{body}", []part{{kind: partID}, {text: "."}, {kind: partTimestamp}, {text: "."}, {kind: partBody}}},
		{"{x}{body}{", []part{{text: "{x}"}, {kind: partBody}, {text: "{"}}},
		{"", nil},
	} {
		got := parseTemplate(c.in)
		if len(got) != len(c.want) {
			t.Fatalf("%q: %+v", c.in, got)
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Fatalf("%q: %+v, want %+v", c.in, got, c.want)
			}
		}
	}
}
