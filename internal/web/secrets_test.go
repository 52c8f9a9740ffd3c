package web

import (
	"bytes"
	"html"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/api"
	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/history"
	"github.com/hookhouse/hookhouse/internal/verify"
)

// veroPath is Vero's menu path as the README and the CLI give it.
const veroPath = `Settings (the gear icon) → Integrations → View next to "Custom Integration (Webhooks)" → ` +
	`Add Webhooks Integration → paste the URL into "Notification URL" → Save → tick the events to track → Save`

// revealedSecret finds the signing secret on a reveal page ("" if none).
var revealedSecretRe = regexp.MustCompile(`id="signing-secret" class="secret" readonly value="([^"]*)"`)

func revealedSecret(page string) string {
	m := revealedSecretRe.FindStringSubmatch(page)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSchemesCoverVerify(t *testing.T) {
	if schemes[0].ID != "" {
		t.Fatalf("the first choice is %q, want none", schemes[0].ID)
	}
	if len(schemes) != len(verify.Schemes)+1 {
		t.Fatalf("%d schemes offered, want none and the %d of verify", len(schemes), len(verify.Schemes))
	}
	for i, s := range verify.Schemes {
		sc := schemes[i+1]
		if sc.ID != s || sc.Label == "" || len(sc.Steps) == 0 || sc.Where == "" || sc.Checks == "" || sc.SecretFrom == "" {
			t.Errorf("scheme %s: %+v", s, sc)
		}
		_, err := verify.GenerateSecret(s)
		if sc.CanGenerate != (err == nil) {
			t.Errorf("scheme %s: CanGenerate %v, but GenerateSecret says %v", s, sc.CanGenerate, err)
		}
	}
	for _, s := range []verify.Scheme{verify.StandardWebhooks, verify.GitHub, verify.HMAC} {
		if !schemeOf(s).CanGenerate {
			t.Errorf("%s cannot generate", s)
		}
	}
}

// TestAddVerifiedIntegration: the add form offers every scheme with its steps;
// a generated secret is revealed once with the URL; a pasted secret or verify
// token is never sent back; mistakes are shown in the form.
func TestAddVerifiedIntegration(t *testing.T) {
	logs := &syncBuffer{}
	e := newEnv(t, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
	b := e.client(t)
	b.login(e.key)
	_, form := b.do("GET", "/integrations/new", nil)
	for _, want := range []string{
		`id="verification" data-types="webhooks"`, `name="scheme" value="" checked`,
		`name="scheme" value="standard-webhooks"`, `name="scheme" value="stripe"`, `name="scheme" value="github"`,
		`name="scheme" value="shopify"`, `name="scheme" value="slack"`, `name="scheme" value="zoom"`,
		`name="scheme" value="meta"`, `name="scheme" value="hmac"`,
		`id="steps-none" data-schemes="">`, `id="steps-stripe" data-schemes="stripe" hidden>`,
		"Developers → Webhooks → Add endpoint", "Payload URL", "Request URL", "Event notification endpoint URL", "Callback URL",
		`name="mode" value="enforce" checked`, `name="mode" value="monitor"`, `id="secret" name="secret" type="password"`,
	} {
		if !strings.Contains(form, want) {
			t.Errorf("add form lacks %q", want)
		}
	}
	csrf := hidden(form, "csrf")
	save := func(vals url.Values) (*http.Response, string) {
		t.Helper()
		_, form := b.do("GET", "/integrations/new", nil)
		vals.Set("csrf", csrf)
		vals.Set("once", hidden(form, "once"))
		vals.Set("type", "webhooks")
		vals.Set("action", "save")
		return b.do("POST", "/integrations/new", vals)
	}

	// Standard Webhooks, secret left empty: generated, revealed once with the URL.
	resp, reveal := save(url.Values{"name": {"Svix Events"}, "scheme": {"standard-webhooks"}, "mode": {"monitor"}})
	secret := revealedSecret(reveal)
	token := tokenRe.FindStringSubmatch(reveal)
	if resp.StatusCode != 200 || !strings.HasPrefix(secret, "whsec_") || token == nil {
		t.Fatalf("save = %d, secret %q, URL %v:\n%s", resp.StatusCode, secret, token, reveal)
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("reveal Cache-Control = %q", cc)
	}
	if !strings.Contains(reveal, "Copy the URL and the signing secret now") || !strings.Contains(reveal, `data-copy="signing-secret"`) {
		t.Error("the reveal does not say to copy both")
	}
	ins := e.ctl.Integrations()
	in := ins[len(ins)-1]
	if in.Verify == nil || in.Verify.Scheme != verify.StandardWebhooks || in.Verify.Mode != verify.Monitor {
		t.Fatalf("created %+v", in)
	}
	list, _ := e.ctl.Secrets(in.ID)
	if len(list) != 1 || !strings.HasSuffix(secret, list[0].Hint) || !strings.Contains(html.UnescapeString(reveal), "****"+list[0].Hint) {
		t.Fatalf("secrets %+v for revealed …%s", list, secret[len(secret)-4:])
	}
	ipath := "/integrations/" + itoa(in.ID)
	_, page := b.do("GET", ipath, nil)
	page = html.UnescapeString(page) // a hint may hold a + (&#43; in the page)
	for _, want := range []string{
		`id="signatures"`, "verifies Standard Webhooks signatures (monitor)", "<strong>monitor</strong>", "****" + list[0].Hint,
		`id="add-secret"`, "the only secret", `id="stat-sigfail"`, "paste the new secret, or leave empty to generate one",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("integration page lacks %q", want)
		}
	}
	if strings.Contains(page, "remove-secret") {
		t.Error("the only secret has a Remove link")
	}
	// Replaying the save reveals nothing and creates nothing.
	_, form = b.do("GET", "/integrations/new", nil)
	replay := url.Values{"csrf": {csrf}, "once": {hidden(form, "once")}, "type": {"webhooks"}, "action": {"save"},
		"name": {"Svix Two"}, "scheme": {"github"}}
	b.do("POST", "/integrations/new", replay)
	resp, body := b.do("POST", "/integrations/new", replay)
	if resp.StatusCode != http.StatusConflict || revealedSecret(body) != "" || tokenRe.MatchString(body) {
		t.Fatalf("replayed save = %d", resp.StatusCode)
	}

	// Stripe issues its secret once the endpoint exists: without one the
	// integration is created, verifying, with no secret yet (deliveries are
	// refused until it is added).
	n := len(e.ctl.Integrations())
	resp, body = save(url.Values{"name": {"Stripe Pending"}, "scheme": {"stripe"}})
	if resp.StatusCode != http.StatusOK || revealedSecret(body) != "" || len(e.ctl.Integrations()) != n+1 {
		t.Fatalf("stripe without a secret = %d:\n%s", resp.StatusCode, body)
	}
	pending := e.ctl.Integrations()[n]
	if v, verifying := e.ctl.Verifier(pending.ID); !verifying || v != nil {
		t.Fatalf("stripe without a secret: verifier %v, verifying %v; want every delivery refused", v, verifying)
	}
	n++
	// A preview with a pasted secret shows the chosen scheme, not the secret.
	const pasted = "whsec_PastedStripeSecret0123456789"
	_, form = b.do("GET", "/integrations/new", nil)
	resp, body = b.do("POST", "/integrations/new", url.Values{"csrf": {csrf}, "once": {hidden(form, "once")}, "type": {"webhooks"},
		"action": {"preview"}, "name": {"Stripe"}, "scheme": {"stripe"}, "secret": {pasted}})
	if resp.StatusCode != 200 || strings.Contains(body, pasted) || !strings.Contains(body, `id="paste-again"`) ||
		!strings.Contains(body, `name="scheme" value="stripe" checked`) {
		t.Fatalf("preview with a pasted secret = %d (secret echoed: %v):\n%s", resp.StatusCode, strings.Contains(body, pasted), body)
	}
	// An hmac mistake is explained, the fields kept.
	resp, body = save(url.Values{"name": {"Custom"}, "scheme": {"hmac"}, "header": {"X-Sig"}, "signed": {"{timestamp}.{body}"}, "secret": {"s3cr3t-hmac-value"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "set timestamp_header") ||
		!strings.Contains(body, `value="X-Sig"`) || strings.Contains(body, "s3cr3t-hmac-value") || strings.Contains(body, "verify: ") {
		t.Fatalf("hmac without a timestamp header = %d:\n%s", resp.StatusCode, body)
	}
	if len(e.ctl.Integrations()) != n {
		t.Fatal("a refused form created an integration")
	}

	// Stripe with its pasted secret: the reveal has the URL only.
	resp, reveal = save(url.Values{"name": {"Stripe"}, "scheme": {"stripe"}, "secret": {" " + pasted + "\n"}})
	if resp.StatusCode != 200 || !tokenRe.MatchString(reveal) || revealedSecret(reveal) != "" || strings.Contains(reveal, pasted) {
		t.Fatalf("stripe save = %d:\n%s", resp.StatusCode, reveal)
	}
	if !strings.Contains(reveal, "Developers → Webhooks") {
		t.Error("the stripe reveal does not say where the URL goes")
	}
	ins = e.ctl.Integrations()
	stripe := ins[len(ins)-1]
	if list, _ := e.ctl.Secrets(stripe.ID); len(list) != 1 || list[0].Hint != "6789" {
		t.Fatalf("stripe secrets %+v: want the pasted one, trimmed", list)
	}
	// Meta: the verify token is kept but never shown.
	const verifyToken = "my-meta-verify-token-xyz"
	resp, reveal = save(url.Values{"name": {"Meta"}, "scheme": {"meta"}, "secret": {"meta-app-secret-1234"}, "verify_token": {verifyToken}})
	if resp.StatusCode != 200 || strings.Contains(reveal, verifyToken) || strings.Contains(reveal, "meta-app-secret-1234") {
		t.Fatalf("meta save = %d:\n%s", resp.StatusCode, reveal)
	}
	ins = e.ctl.Integrations()
	meta := ins[len(ins)-1]
	_, page = b.do("GET", "/integrations/"+itoa(meta.ID), nil)
	if meta.Verify.VerifyToken != verifyToken || strings.Contains(page, verifyToken) || !strings.Contains(page, "Verify token") {
		t.Errorf("meta page: token stored %v, shown %v", meta.Verify.VerifyToken == verifyToken, strings.Contains(page, verifyToken))
	}

	// No page but the reveal holds a secret, and no log line does.
	for _, p := range []string{"/", "/status", "/integrations/new", ipath, ipath + "?fragment=1", "/integrations/" + itoa(stripe.ID)} {
		_, body := b.do("GET", p, nil)
		for _, s := range []string{secret, pasted, token[1]} {
			if strings.Contains(body, s) {
				t.Errorf("GET %s holds a secret", p)
			}
		}
	}
	for _, s := range []string{secret, pasted, verifyToken, "meta-app-secret-1234", token[1]} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("the log holds a secret:\n%s", logs.String())
		}
	}
}

// TestRotateSecrets: add a generated secret (revealed once), refuse a third,
// remove one through its confirmation, refuse removing the last, add a pasted
// one; each error shown in the page.
func TestRotateSecrets(t *testing.T) {
	e := newEnv(t, nil)
	b := e.client(t)
	b.login(e.key)
	in, _, err := e.ctl.CreateRevealing(control.NewIntegration{Name: "GitHub", Type: "webhooks",
		Verify: &verify.Config{Scheme: verify.GitHub}, Secret: "first-github-secret-aaaa"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ipath := "/integrations/" + itoa(in.ID)
	_, page := b.do("GET", ipath, nil)
	csrf := hidden(page, "csrf")
	secretOnce := func() string {
		t.Helper()
		_, page := b.do("GET", ipath, nil)
		// The add-secret form's nonce: the second in the page, after Generate URL's.
		all := regexp.MustCompile(`name="once" value="([^"]*)"`).FindAllStringSubmatch(page, -1)
		if len(all) < 2 {
			t.Fatalf("no add-secret form:\n%s", page)
		}
		return all[1][1]
	}

	// Without the CSRF token: 403, nothing added.
	if resp, _ := b.do("POST", ipath+"/secrets", url.Values{"once": {secretOnce()}}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("add without CSRF = %d", resp.StatusCode)
	}
	add := url.Values{"csrf": {csrf}, "once": {secretOnce()}}
	resp, reveal := b.do("POST", ipath+"/secrets", add)
	generated := revealedSecret(reveal)
	if resp.StatusCode != 200 || len(generated) != 64 || tokenRe.MatchString(reveal) || !strings.Contains(reveal, "New signing secret for GitHub") {
		t.Fatalf("add generated = %d, secret %q:\n%s", resp.StatusCode, generated, reveal)
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("secret reveal Cache-Control = %q", cc)
	}
	// The same form again: no second secret, nothing revealed.
	resp, body := b.do("POST", ipath+"/secrets", add)
	if resp.StatusCode != http.StatusConflict || revealedSecret(body) != "" || !strings.Contains(body, "already submitted") {
		t.Fatalf("replayed add = %d", resp.StatusCode)
	}
	list, _ := e.ctl.Secrets(in.ID)
	if len(list) != 2 {
		t.Fatalf("secrets %+v, want 2", list)
	}
	_, page = b.do("GET", ipath, nil)
	page = html.UnescapeString(page) // a secret or hint may hold a + (&#43; in the page)
	if strings.Contains(page, generated) || strings.Contains(page, "first-github-secret-aaaa") {
		t.Fatal("the integration page holds a secret")
	}
	if !strings.Contains(page, "****aaaa") || !strings.Contains(page, "****"+generated[60:]) ||
		strings.Count(page, `class="remove-secret"`) != 2 || !regexp.MustCompile(`id="add-secret" class="primary" disabled`).MatchString(page) ||
		!strings.Contains(page, "2 of 2 secrets") {
		t.Fatalf("page with 2 secrets:\n%s", page)
	}
	// A third: the API refuses it, and the page says what to do.
	resp, body = b.do("POST", ipath+"/secrets", url.Values{"csrf": {csrf}, "once": {secretOnce()}, "secret": {"third-secret-cccc"}})
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, `role="alert">GitHub already has 2 signing secrets`) ||
		!strings.Contains(body, "remove the old one before adding another") || strings.Contains(body, "third-secret-cccc") {
		t.Fatalf("third secret = %d:\n%s", resp.StatusCode, body)
	}

	// Remove the first through its confirmation.
	first := ipath + "/secrets/" + itoa(list[0].ID) + "/remove"
	resp, body = b.do("GET", first, nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "Remove signing secret ****aaaa of GitHub?") || !strings.Contains(body, "get 401") {
		t.Fatalf("remove confirmation = %d:\n%s", resp.StatusCode, body)
	}
	if resp, _ := b.do("POST", first, url.Values{}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("remove without CSRF = %d", resp.StatusCode)
	}
	if resp, _ := b.do("POST", first, url.Values{"csrf": {csrf}}, "Sec-Fetch-Site", "cross-site"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site remove = %d", resp.StatusCode)
	}
	resp, _ = b.do("POST", first, url.Values{"csrf": {csrf}})
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "secret_removed=") {
		t.Fatalf("remove = %d to %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, page = b.do("GET", resp.Header.Get("Location"), nil)
	if !strings.Contains(page, "The signing secret was removed") || strings.Contains(page, "****aaaa") {
		t.Fatal("after removing, the page does not say so or still lists the secret")
	}
	// The last cannot be removed: the confirmation and the POST both say why.
	last := ipath + "/secrets/" + itoa(list[1].ID) + "/remove"
	for _, method := range []string{"GET", "POST"} {
		resp, body = b.do(method, last, url.Values{"csrf": {csrf}})
		if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "is the only one of GitHub, so it cannot be removed") ||
			!strings.Contains(body, `role="alert"`) {
			t.Fatalf("%s remove of the last = %d:\n%s", method, resp.StatusCode, body)
		}
	}
	if list, _ := e.ctl.Secrets(in.ID); len(list) != 1 {
		t.Fatalf("secrets %+v after refusing to remove the last", list)
	}
	// Paste one: no reveal, a redirect that names it by hint.
	resp, _ = b.do("POST", ipath+"/secrets", url.Values{"csrf": {csrf}, "once": {secretOnce()}, "secret": {"pasted-github-secret-bbbb"}})
	if resp.StatusCode != http.StatusSeeOther || strings.Contains(resp.Header.Get("Location"), "bbbb") {
		t.Fatalf("add pasted = %d to %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, page = b.do("GET", resp.Header.Get("Location"), nil)
	if !strings.Contains(page, "Signing secret ****bbbb added") || strings.Contains(page, "pasted-github-secret-bbbb") {
		t.Fatalf("after adding a pasted secret:\n%s", page)
	}

	// Stripe issues its secrets: Add secret needs one pasted.
	stripe, _, err := e.ctl.CreateRevealing(control.NewIntegration{Name: "Stripe", Type: "webhooks",
		Verify: &verify.Config{Scheme: verify.Stripe}, Secret: "whsec_stripe1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	spath := "/integrations/" + itoa(stripe.ID)
	_, page = b.do("GET", spath, nil)
	if !strings.Contains(page, "paste the new secret from Stripe") {
		t.Error("the stripe page does not ask for a pasted secret")
	}
	all := regexp.MustCompile(`name="once" value="([^"]*)"`).FindAllStringSubmatch(page, -1)
	resp, body = b.do("POST", spath+"/secrets", url.Values{"csrf": {csrf}, "once": {all[1][1]}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "Paste the new signing secret: Stripe issues it") {
		t.Fatalf("stripe generate = %d:\n%s", resp.StatusCode, body)
	}
	// A Vero integration has no secrets; unknown secrets are 404.
	vero, err := e.ctl.Create(control.NewIntegration{Name: "Vero", Type: "vero"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	vpath := "/integrations/" + itoa(vero.ID)
	_, page = b.do("GET", vpath, nil)
	if strings.Contains(page, `id="signatures"`) || strings.Contains(page, "stat-sigfail") {
		t.Error("a Vero integration shows signature verification")
	}
	if resp, body := b.do("POST", vpath+"/secrets", url.Values{"csrf": {csrf}, "once": {"x1"}}); resp.StatusCode != http.StatusBadRequest ||
		!strings.Contains(body, "does not verify signatures") {
		t.Errorf("add a secret to Vero = %d", resp.StatusCode)
	}
	for _, p := range []string{vpath + "/secrets/1/remove", ipath + "/secrets/99/remove", ipath + "/secrets/x/remove"} {
		if resp, _ := b.do("GET", p, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, resp.StatusCode)
		}
	}
}

// sigHistory has signature failures in the newest bucket.
func sigHistory(id int64, w history.Window) []history.Point {
	n := map[history.Window]int{history.Hour: 60, history.Day: 144, history.Week: 168}[w]
	pts := make([]history.Point, n)
	start := time.Date(2026, 1, 1, 11, 0, 0, 0, time.UTC)
	for i := range pts {
		pts[i].At = start.Add(time.Duration(i) * time.Minute)
	}
	pts[n-1].Received, pts[n-1].SignatureFailures = 2, 5
	return pts
}

// TestSignatureFailuresShown: the integration page and its live fragment show
// the failure count, the last failure and redeliveries, with a chart; the list
// charts signature failures once an integration verifies.
func TestSignatureFailuresShown(t *testing.T) {
	failures, dedup := int64(7), int64(2)
	at := time.Date(2026, 1, 1, 11, 58, 0, 0, time.UTC)
	e := newEnv(t, func(o *Options) {
		o.History = sigHistory
		o.Stats = func(int64) api.Stats {
			return api.Stats{RecordsReceived: 3, RecordsLoaded: 3, SignatureFailures: &failures, RecordsDeduplicated: &dedup,
				LastSignatureFailure: &api.Failure{At: at, Reason: "webhook-timestamp is 400 s <old>"}}
		}
	})
	vero, err := e.ctl.Create(control.NewIntegration{Name: "Vero", Type: "vero"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b := e.client(t)
	b.login(e.key)
	_, page := b.do("GET", "/", nil)
	if strings.Contains(page, `id="all-sigfails"`) {
		t.Error("the list charts signature failures though nothing verifies")
	}
	_, page = b.do("GET", "/integrations/"+itoa(vero.ID), nil)
	if strings.Contains(page, `id="signatures"`) {
		t.Error("a Vero page charts signature failures")
	}

	in, _, err := e.ctl.CreateRevealing(control.NewIntegration{Name: "Svix", Type: "webhooks",
		Verify: &verify.Config{Scheme: verify.StandardWebhooks}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ipath := "/integrations/" + itoa(in.ID)
	for _, p := range []string{ipath, ipath + "?fragment=1"} {
		_, page := b.do("GET", p, nil)
		for _, want := range []string{
			`id="sig-live" data-live`, `<dd id="stat-sigfail">7</dd>`, `<dd id="stat-dedup">2</dd>`,
			"2026-01-01 11:58:00 UTC", "webhook-timestamp is 400 s &lt;old&gt;", `<figure class="chart" id="sigfails">`,
			"5 signature failures in the last hour", `class="bar sigfail"`, "also under Refused requests",
		} {
			if !strings.Contains(page, want) {
				t.Errorf("GET %s lacks %q", p, want)
			}
		}
	}
	_, page = b.do("GET", "/", nil)
	if !strings.Contains(page, `id="all-sigfails"`) || !strings.Contains(page, "· Standard Webhooks") {
		t.Error("the list does not chart signature failures, or name the scheme, once an integration verifies")
	}
	// Before any failure: zeros and "none".
	failures, dedup = 0, 0
	e2 := newEnv(t, func(o *Options) {
		o.Stats = func(int64) api.Stats { return api.Stats{SignatureFailures: &failures, RecordsDeduplicated: &dedup} }
	})
	in2, _, err := e2.ctl.CreateRevealing(control.NewIntegration{Name: "GH", Type: "webhooks",
		Verify: &verify.Config{Scheme: verify.GitHub, Mode: verify.Monitor}, Secret: "x-secret"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b2 := e2.client(t)
	b2.login(e2.key)
	_, page = b2.do("GET", "/integrations/"+itoa(in2.ID), nil)
	if !strings.Contains(page, `<dd id="stat-sigfail">0</dd>`) || !strings.Contains(page, "<dt>Last failure</dt><dd>none</dd>") ||
		strings.Contains(page, "also under Refused requests") || !strings.Contains(page, "<strong>monitor</strong>") {
		t.Errorf("page before any failure:\n%s", page)
	}
}

// TestVeroMenuPath: the integration page and the reveal give Vero's menu path
// in the same words as the README.
func TestVeroMenuPath(t *testing.T) {
	e := newEnv(t, nil)
	b := e.client(t)
	b.login(e.key)
	_, form := b.do("GET", "/integrations/new", nil)
	_, reveal := b.do("POST", "/integrations/new", url.Values{"csrf": {hidden(form, "csrf")}, "once": {hidden(form, "once")},
		"type": {"vero"}, "name": {"Stitch Vero"}, "action": {"save"}})
	if !strings.Contains(reveal, "In Vero: <strong>"+veroPath+"</strong>") {
		t.Errorf("the reveal lacks Vero's menu path:\n%s", reveal)
	}
	in := e.ctl.Integrations()[0]
	_, page := b.do("GET", "/integrations/"+itoa(in.ID), nil)
	if !strings.Contains(page, "In Vero: <strong>"+veroPath+"</strong>") {
		t.Errorf("the integration page lacks Vero's menu path")
	}
	for _, old := range []string{"Webhooks</strong> section", "endpoint URL"} {
		if strings.Contains(page+reveal, old) {
			t.Errorf("the old wording %q is still there", old)
		}
	}
}

// TestSwitchVerifyMode: the Signature verification section switches the mode
// both ways (one button, showing the other mode) and sets the tolerance, with
// the CSRF token and a one-time nonce; mistakes are shown, nothing changed.
func TestSwitchVerifyMode(t *testing.T) {
	e := newEnv(t, nil)
	b := e.client(t)
	b.login(e.key)
	in, _, err := e.ctl.CreateRevealing(control.NewIntegration{Name: "Svix", Type: "webhooks",
		Verify: &verify.Config{Scheme: verify.StandardWebhooks, Mode: verify.Monitor}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ipath := "/integrations/" + itoa(in.ID)
	// verifyForm is the mode form of a fresh page, and its nonce.
	verifyForm := func() (string, string) {
		t.Helper()
		_, page := b.do("GET", ipath, nil)
		i := strings.Index(page, `id="verify-form"`)
		if i < 0 {
			t.Fatalf("no mode form:\n%s", page)
		}
		form := page[i:]
		form = form[:strings.Index(form, "</form>")]
		return form, hidden(form, "once")
	}
	current := func() verify.Config {
		t.Helper()
		got, err := e.ctl.Integration(in.ID)
		if err != nil {
			t.Fatal(err)
		}
		return *got.Verify
	}
	form, once := verifyForm()
	csrf := hidden(form, "csrf")
	if !strings.Contains(form, `name="mode" value="enforce" id="switch-mode" class="primary">Switch to enforce</button>`) ||
		!strings.Contains(form, `name="tolerance" value="5m0s"`) || once == "" || csrf == "" {
		t.Fatalf("mode form in monitor mode:\n%s", form)
	}

	// Without the CSRF token: 403, nothing changed.
	if resp, _ := b.do("POST", ipath+"/verify", url.Values{"once": {once}, "mode": {"enforce"}}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("switch without CSRF = %d", resp.StatusCode)
	}
	if c := current(); c.Mode != verify.Monitor {
		t.Fatalf("mode %s after a refused switch", c.Mode)
	}

	// To enforce, and the same form again is refused.
	enforce := url.Values{"csrf": {csrf}, "once": {once}, "mode": {"enforce"}, "tolerance": {"5m0s"}}
	resp, _ := b.do("POST", ipath+"/verify", enforce)
	if resp.StatusCode != http.StatusSeeOther || current().Mode != verify.Enforce {
		t.Fatalf("switch to enforce = %d, mode %s", resp.StatusCode, current().Mode)
	}
	_, page := b.do("GET", resp.Header.Get("Location"), nil)
	if !strings.Contains(page, "Signature verification is enforced") || !strings.Contains(page, "<strong>enforce</strong>") ||
		!strings.Contains(page, `value="monitor" id="switch-mode">Switch to monitor</button>`) {
		t.Fatalf("after switching to enforce:\n%s", page)
	}
	if resp, body := b.do("POST", ipath+"/verify", enforce); resp.StatusCode != http.StatusConflict || !strings.Contains(body, "already submitted") {
		t.Fatalf("replayed switch = %d", resp.StatusCode)
	}

	// Back to monitor.
	_, once = verifyForm()
	resp, _ = b.do("POST", ipath+"/verify", url.Values{"csrf": {csrf}, "once": {once}, "mode": {"monitor"}})
	if resp.StatusCode != http.StatusSeeOther || current().Mode != verify.Monitor {
		t.Fatalf("switch to monitor = %d, mode %s", resp.StatusCode, current().Mode)
	}
	_, page = b.do("GET", resp.Header.Get("Location"), nil)
	if !strings.Contains(page, "in monitor mode") || !strings.Contains(page, "Switch to enforce</button>") {
		t.Fatalf("after switching to monitor:\n%s", page)
	}

	// A tolerance that is not a duration, or out of range: shown, nothing changed.
	for tol, want := range map[string]string{
		"soon": `role="alert">Tolerance &#34;soon&#34;: write it like 5m or 300s`,
		"48h":  `role="alert">Tolerance 48h0m0s is out of range`,
	} {
		_, once = verifyForm()
		resp, body := b.do("POST", ipath+"/verify", url.Values{"csrf": {csrf}, "once": {once}, "tolerance": {tol}})
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, want) {
			t.Errorf("tolerance %q = %d, want 400 with %q:\n%s", tol, resp.StatusCode, want, body)
		}
	}
	if c := current(); time.Duration(c.Tolerance) != 5*time.Minute || c.Mode != verify.Monitor {
		t.Fatalf("after refused tolerances: %+v", c)
	}
	_, once = verifyForm()
	resp, _ = b.do("POST", ipath+"/verify", url.Values{"csrf": {csrf}, "once": {once}, "tolerance": {"2m"}})
	if c := current(); resp.StatusCode != http.StatusSeeOther || time.Duration(c.Tolerance) != 2*time.Minute || c.Mode != verify.Monitor {
		t.Fatalf("tolerance 2m = %d: %+v", resp.StatusCode, c)
	}
	if form, _ := verifyForm(); !strings.Contains(form, `name="tolerance" value="2m0s"`) {
		t.Errorf("the form does not show the new tolerance:\n%s", form)
	}

	// GitHub signs no timestamp: the mode only. An integration that does not verify has no mode.
	gh, _, err := e.ctl.CreateRevealing(control.NewIntegration{Name: "GitHub", Type: "webhooks",
		Verify: &verify.Config{Scheme: verify.GitHub}, Secret: "github-secret-aaaa"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, page = b.do("GET", "/integrations/"+itoa(gh.ID), nil)
	if !strings.Contains(page, `id="verify-form"`) || strings.Contains(page, `name="tolerance"`) {
		t.Errorf("GitHub's mode form:\n%s", page)
	}
	vero, err := e.ctl.Create(control.NewIntegration{Name: "Vero", Type: "vero"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	vpath := "/integrations/" + itoa(vero.ID)
	if _, page := b.do("GET", vpath, nil); strings.Contains(page, `id="verify-form"`) {
		t.Error("a Vero integration has a mode form")
	}
	if resp, body := b.do("POST", vpath+"/verify", url.Values{"csrf": {csrf}, "once": {"v1"}, "mode": {"enforce"}}); resp.StatusCode != http.StatusBadRequest ||
		!strings.Contains(body, "does not verify signatures") {
		t.Errorf("switching a Vero integration = %d", resp.StatusCode)
	}
}

// TestPauseLoading: the integration page pauses and resumes loading with a
// CSRF-protected form, says so, and shows the paused badge on the list.
func TestPauseLoading(t *testing.T) {
	e := newEnv(t, nil)
	b := e.client(t)
	b.login(e.key)
	in, err := e.ctl.Create(control.NewIntegration{Name: "Stitch Vero", Type: "vero"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ipath := "/integrations/" + itoa(in.ID)
	_, page := b.do("GET", ipath, nil)
	i := strings.Index(page, `id="pause-form"`)
	if i < 0 || !strings.Contains(page[i:], `id="pause">Pause loading</button>`) {
		t.Fatalf("no pause form:\n%s", page)
	}
	csrf := hidden(page[i:], "csrf")
	if resp, _ := b.do("POST", ipath+"/pause", url.Values{"paused": {"1"}}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("pause without CSRF = %d", resp.StatusCode)
	}
	if got, _ := e.ctl.Integration(in.ID); got.PausedAt != nil {
		t.Fatal("paused without the CSRF token")
	}
	b.do("POST", ipath+"/pause", url.Values{"csrf": {csrf}, "paused": {"1"}})
	if got, _ := e.ctl.Integration(in.ID); got.PausedAt == nil {
		t.Fatal("the form did not pause loading")
	}
	if _, page = b.do("GET", ipath, nil); !strings.Contains(page, `id="resume" class="primary">Resume loading</button>`) ||
		!strings.Contains(page, "Loading is paused since") {
		t.Fatalf("paused page:\n%s", page)
	}
	b.do("POST", ipath+"/pause", url.Values{"csrf": {csrf}, "paused": {"0"}})
	if got, _ := e.ctl.Integration(in.ID); got.PausedAt != nil {
		t.Fatal("the form did not resume loading")
	}
}

func TestPausedBadge(t *testing.T) {
	// A paused integration falls behind on purpose: amber "paused", not red.
	got := freshness(api.Stats{RecordsReceived: 9, Backlog: 4, LagSeconds: 3600, Paused: true}, "", rejections{})
	if got.Color != "amber" || got.Label != "paused" || !strings.Contains(got.Why, "4 records wait") {
		t.Fatalf("freshness of a paused integration = %+v", got)
	}
}
