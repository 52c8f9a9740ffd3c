package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/config"
)

const (
	chromiumPath = "/usr/bin/chromium"
)

// browser starts headless Chromium with a fresh profile and returns a chromedp
// context bound to it. It fails (never skips) when Chromium is missing.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s is missing: run `make deps` (as root it installs chromium) and test again", chromiumPath)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancelCtx := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	// The first Run starts the browser; it must not have a deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	return ctx
}

// consoleErrors collects the browser console's errors and exceptions (CSP
// violations are logged there) until the returned func is called.
func consoleErrors(ctx context.Context) func() []string {
	cctx, stop := context.WithCancel(ctx)
	msgs := chromedp.Console(cctx)
	var errs []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				errs = append(errs, m.String())
			}
		}
	}()
	return func() []string {
		stop()
		<-done
		return errs
	}
}

// run runs one action with a deadline and returns its value.
func run[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(sctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// do runs actions that return nothing, with a deadline.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	run(t, ctx, what, chromedp.Steps(steps...))
}

// navigate runs steps that load a new page (a click on a link or a submit
// button) and waits for that page; it fails on an HTTP error status.
func navigate(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := chromedp.RunResponse(sctx, steps...)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if resp.Status >= 400 {
		t.Fatalf("%s: HTTP %d %s", what, resp.Status, resp.URL)
	}
}

func click(sel string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS(sel)) }
func text(sel string) chromedp.Action[string]         { return chromedp.Text(chromedp.CSS(sel)) }
func source() chromedp.Action[string]                 { return chromedp.OuterHTML(chromedp.CSS("html")) }

// screenshot saves the whole page as <dir>/<name>.png. The README's pictures are
// refreshed with `make screenshots` (HOOKHOUSE_SCREENSHOTS_DIR=docs/img); a plain
// test run writes them to a temporary directory so the checkout stays clean.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png := run(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	if len(png) < 1000 {
		t.Fatalf("screenshot %s is empty", name)
	}
	screenshotDir := os.Getenv("HOOKHOUSE_SCREENSHOTS_DIR")
	if screenshotDir == "" {
		screenshotDir = filepath.Join(os.TempDir(), "hookhouse-screenshots")
	}
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(screenshotDir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDashboardInBrowser drives the dashboard in headless Chromium against the
// real server: log in, add Vero, use the one-time URL, rotate it, watch loading
// with charts and live numbers, see rejections, the status page, and a restart
// that keeps the login. It saves screenshots of the main pages into docs/img.
func TestDashboardInBrowser(t *testing.T) {
	dataDir := t.TempDir()
	in := startServer(t, func(c *config.Config) { c.Data = dataDir })
	ctx := browser(t)
	consoleErrs := consoleErrors(ctx)

	// 1. Log in.
	navigate(t, ctx, "open /", chromedp.Navigate(in.URL+"/"))
	if title := run(t, ctx, "title", chromedp.Title()); !strings.HasPrefix(title, "Log in") {
		t.Fatalf("/ without a session shows %q, want the login page", title)
	}
	screenshot(t, ctx, "login")
	do(t, ctx, "type the admin key", chromedp.SendKeys(chromedp.CSS("#key"), in.Key))
	navigate(t, ctx, "log in", click("main form button[type=submit]"))
	do(t, ctx, "integrations list", chromedp.WaitVisible(chromedp.CSS("#add")))

	// 2. Add "Stitch Vero" and see the stitch_vero preview: live (app.js), then
	// from the server (the Preview button, which works without JavaScript).
	navigate(t, ctx, "open the add form", click("#add"))
	do(t, ctx, "fill in the add form",
		click(`input[name=type][value=vero]`),
		chromedp.SendKeys(chromedp.CSS("#name"), "Stitch Vero"))
	if live := run(t, ctx, "live preview", text("#schema-preview")); live != "stitch_vero" {
		t.Fatalf("live schema preview = %q, want stitch_vero", live)
	}
	navigate(t, ctx, "preview", click("#preview"))
	if got := run(t, ctx, "server preview", text("#schema-preview")); got != "stitch_vero" {
		t.Fatalf("schema preview after Preview = %q, want stitch_vero", got)
	}
	if name := run(t, ctx, "name kept", chromedp.Value(chromedp.CSS("#name"))); name != "Stitch Vero" {
		t.Fatalf("the name after Preview = %q", name)
	}
	screenshot(t, ctx, "add-integration")

	// 3. Save: the URL is revealed once, with a working Copy button; POST the
	// Vero samples to it.
	navigate(t, ctx, "save", click("#save"))
	url1 := run(t, ctx, "revealed URL", chromedp.Value(chromedp.CSS("#webhook-url")))
	m := tokenRe.FindStringSubmatch(url1)
	if m == nil {
		t.Fatalf("revealed %q, want a webhook URL with a 64-hex token", url1)
	}
	token1 := m[1]
	do(t, ctx, "copy",
		chromedp.WaitVisible(chromedp.CSS("#copy")), // app.js shows it
		click("#copy"))
	run(t, ctx, "copied", chromedp.Poll[bool](`document.querySelector("#copy").textContent === "Copied"`,
		chromedp.WithPollingTimeout(5*time.Second)))
	files := veroFiles(t)
	for _, f := range files {
		if status, body := post(t, in.hookURL(url1), "application/json", mustRead(t, f)); status != 200 {
			t.Fatalf("POST %s to the revealed URL = %d %s", filepath.Base(f), status, body)
		}
	}
	// The screenshot must not hold a live token: blank it out first.
	do(t, ctx, "hide the token for the screenshot", chromedp.SetValue(chromedp.CSS("#webhook-url"),
		strings.Replace(url1, token1, strings.Repeat("•", 20)+" (hidden in this screenshot)", 1)))
	run(t, ctx, "reset the Copy label", chromedp.Evaluate[string](`document.querySelector("#copy").textContent = "Copy"`))
	screenshot(t, ctx, "reveal")

	// 4. Continue: the token is gone from the page source, and stays gone on reload.
	navigate(t, ctx, "continue", click("#continue"))
	html := run(t, ctx, "page source", source())
	if strings.Contains(html, token1) {
		t.Fatal("the integration page after Continue holds the token")
	}
	if !strings.Contains(html, "****"+token1[60:]) {
		t.Fatalf("the integration page does not list the URL's hint ****%s", token1[60:])
	}
	navigate(t, ctx, "reload", chromedp.Reload())
	if html := run(t, ctx, "page source", source()); strings.Contains(html, token1) {
		t.Fatal("the integration page holds the token after a reload")
	}
	// The back button does not bring the reveal back either: it was the answer
	// to a POST sent with no-store, so Chromium has nothing to show.
	integrationPage := run(t, ctx, "location", chromedp.Location())
	if err := chromedp.Do(ctx, chromedp.NavigateBack()); err != nil && !errors.Is(err, chromedp.ErrPageLoad) {
		t.Fatalf("back: %v", err)
	}
	if html := run(t, ctx, "page source after back", source()); strings.Contains(html, token1) {
		t.Fatal("the back button shows the revealed URL again")
	}
	navigate(t, ctx, "return to the integration", chromedp.Navigate(integrationPage))

	// 5. Generate a second URL; Generate is then disabled.
	navigate(t, ctx, "generate", click("#generate"))
	url2 := run(t, ctx, "second URL", chromedp.Value(chromedp.CSS("#webhook-url")))
	m = tokenRe.FindStringSubmatch(url2)
	if m == nil || m[1] == token1 {
		t.Fatalf("second URL %q: want a new token", url2)
	}
	token2 := m[1]
	navigate(t, ctx, "continue", click("#continue"))
	if !run(t, ctx, "generate disabled", chromedp.AttributeValue(chromedp.CSS("#generate"), "disabled")).Exists {
		t.Fatal("Generate is enabled with 2 active URLs")
	}
	if html := run(t, ctx, "page source", source()); strings.Contains(html, token1) || strings.Contains(html, token2) {
		t.Fatal("the integration page holds a token after the second reveal")
	}

	// 6. Revoke the first URL (through the confirmation); it then gets 401.
	if row := run(t, ctx, "first URL", text("#urls tbody tr:nth-child(1)")); !strings.Contains(row, "****"+token1[60:]) {
		t.Fatalf("first URL row %q is not ****%s", row, token1[60:])
	}
	navigate(t, ctx, "revoke", click("#urls tbody tr:nth-child(1) a.revoke"))
	navigate(t, ctx, "confirm revoke", click("#confirm"))
	do(t, ctx, "revoked", chromedp.WaitVisible(chromedp.CSS("#urls tbody tr.revoked")))
	if run(t, ctx, "generate enabled", chromedp.AttributeValue(chromedp.CSS("#generate"), "disabled")).Exists {
		t.Fatal("Generate is still disabled with 1 active URL")
	}
	if status, _ := post(t, in.hookURL(url1), "application/json", mustRead(t, files[0])); status != 401 {
		t.Fatalf("POST to the revoked URL = %d, want 401", status)
	}
	if status, _ := post(t, in.hookURL(url2), "application/json", []byte(`{"type":"sent","user":{"id":1}}`)); status != 200 {
		t.Fatalf("POST to the second URL = %d, want 200", status)
	}
	// Two records the loader rejects into _sdc_rejected: userId and userid
	// collide after naming, and a NUL character no warehouse text can hold.
	for _, rec := range []string{`{"type":"sent","userId":1,"userid":2}`, `{"a":"x\u0000"}`} {
		if status, body := post(t, in.hookURL(url2), "application/json", []byte(rec)); status != 200 {
			t.Fatalf("POST %s to the second URL = %d %s, want 200", rec, status, body)
		}
	}
	want := fmt.Sprint(len(files) + 1)

	// 7. The records are counted and the recent rows shown (reload until loaded).
	var received, loaded, rejected string
	for deadline := time.Now().Add(30 * time.Second); ; {
		navigate(t, ctx, "reload", chromedp.Reload())
		received, loaded = run(t, ctx, "received", text("#stat-received")), run(t, ctx, "loaded", text("#stat-loaded"))
		rejected = run(t, ctx, "rejected", text("#stat-rejected"))
		if loaded == want && rejected == "2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("loaded %s of %s records and rejected %s of 2 after 30s (received %s)", loaded, want, rejected, received)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if received != fmt.Sprint(len(files)+3) {
		t.Fatalf("received = %s, want %d", received, len(files)+3)
	}
	reasons := run(t, ctx, "rejected rows", text("#rejected tbody"))
	if !strings.Contains(reasons, "userid") || !strings.Contains(reasons, "NUL character") {
		t.Fatalf("rejected records show %q, want the userId/userid collision and the NUL character", reasons)
	}
	rows := run(t, ctx, "recent rows", chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("#recent tbody tr")).map(r => r.textContent)`))
	cols := run(t, ctx, "recent rows header", chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("#recent thead th")).map(th => th.textContent)`))
	if fmt.Sprint(len(rows)) != want || !slices.Contains(cols, "user__email") {
		t.Fatalf("recent rows: %d rows with columns %q; want %s rows with user__email", len(rows), cols, want)
	}
	// When and where in the log come first, not behind 40 columns of scrolling.
	if len(cols) < 2 || cols[0] != "_sdc_received_at" || cols[1] != "_sdc_sequence" {
		t.Fatalf("recent rows start with columns %q, want _sdc_received_at, _sdc_sequence", cols)
	}
	if !strings.Contains(rows[len(rows)-1], "ana@example.com") || !strings.Contains(rows[0], "sent") {
		t.Fatalf("recent rows are not newest first: first %q, last %q", rows[0], rows[len(rows)-1])
	}
	// Rejections make the badge amber, not green "fresh".
	if badge := run(t, ctx, "badge", text("#badge")); badge != "records rejected" {
		t.Fatalf("the integration's badge is %q after 2 rejections, want \"records rejected\"", badge)
	}
	if class := run(t, ctx, "badge class", chromedp.Evaluate[string](`document.querySelector("#badge").className`)); !strings.Contains(class, "amber") {
		t.Fatalf("the badge's class is %q, want amber", class)
	}

	// Charts: records, lag and refused answers, drawn as SVG with the data.
	waitCharts(t, ctx, "integration page", []string{"#records", "#lag", "#refused"}, "#records")
	if summary := run(t, ctx, "records chart summary", text("#records .summary")); !strings.Contains(summary, "received") ||
		!strings.Contains(summary, "2 rejected in the last hour") {
		t.Fatalf("records chart summary = %q, want the 2 rejected in the last hour", summary)
	}
	navigate(t, ctx, "day window", click(`nav.windows a[href="?window=day"]`))
	if current := run(t, ctx, "current window", text(`nav.windows a[aria-current=page]`)); current != "Last day" {
		t.Fatalf("the switcher marks %q after choosing the day", current)
	}
	waitCharts(t, ctx, "integration page, last day", []string{"#records", "#lag", "#refused"}, "#records")
	if summary := run(t, ctx, "day summary", text("#records .summary")); !strings.Contains(summary, "in the last 24 hours") {
		t.Fatalf("day window summary = %q", summary)
	}
	navigate(t, ctx, "hour window", click(`nav.windows a[href="?window=hour"]`))

	// Live numbers: a record posted while the page is open shows up without a
	// reload (the marker set on this document survives only if it is not reloaded).
	run(t, ctx, "mark the document", chromedp.Evaluate[int](`window.__notReloaded = 1`))
	before := run(t, ctx, "received", text("#stat-received"))
	if status, _ := post(t, in.hookURL(url2), "application/json", []byte(`{"type":"opened","user":{"id":2}}`)); status != 200 {
		t.Fatalf("POST = %d", status)
	}
	wantReceived := fmt.Sprint(len(files) + 4)
	run(t, ctx, "received updates in place", chromedp.Poll[bool](
		fmt.Sprintf(`document.querySelector("#stat-received").textContent === %q && window.__notReloaded === 1`, wantReceived),
		chromedp.WithPollingTimeout(20*time.Second)))
	if before == wantReceived {
		t.Fatalf("received was already %s before the POST", before)
	}
	if note := run(t, ctx, "live note", text("#live-note")); !strings.HasPrefix(note, "Live:") {
		t.Fatalf("the live note says %q", note)
	}
	run(t, ctx, "loaded updates in place", chromedp.Poll[bool](
		fmt.Sprintf(`document.querySelector("#stat-loaded").textContent === %q && window.__notReloaded === 1`, fmt.Sprint(len(files)+2)),
		chromedp.WithPollingTimeout(20*time.Second)))
	screenshot(t, ctx, "integration")

	navigate(t, ctx, "list", click("header.top a.brand"))
	badge, listed := run(t, ctx, "badge", text("#integrations tbody tr .badge")), run(t, ctx, "listed", text("#integrations tbody tr .loaded"))
	listRejected := run(t, ctx, "listed rejected", text("#integrations tbody tr .rejected"))
	if badge != "records rejected" || listed != fmt.Sprint(len(files)+2) || listRejected != "2" {
		t.Fatalf("list shows badge %q, loaded %s and rejected %s; want records rejected, %d and 2", badge, listed, listRejected, len(files)+2)
	}
	if class := run(t, ctx, "list badge class", chromedp.Evaluate[string](`document.querySelector("#integrations tbody tr .badge").className`)); !strings.Contains(class, "amber") {
		t.Fatalf("the list's badge class is %q, want amber", class)
	}
	// The list charts all integrations, and every refused request: the 401 of
	// the revoked URL is there.
	waitCharts(t, ctx, "list", []string{"#all-records", "#all-lag", "#all-refused"}, "#all-records", "#all-refused")
	if summary := run(t, ctx, "refused chart summary", text("#all-refused .summary")); !strings.Contains(summary, "× 401") {
		t.Fatalf("refused chart summary = %q, want the 401 of the revoked URL", summary)
	}
	if n := run(t, ctx, "sparkline bars", chromedp.Evaluate[int](`document.querySelectorAll("#integrations svg.spark .bar.received").length`)); n == 0 {
		t.Fatal("the list's sparkline has no bars")
	}
	// The list updates in place too.
	run(t, ctx, "mark the document", chromedp.Evaluate[int](`window.__notReloaded = 1`))
	if status, _ := post(t, in.hookURL(url2), "application/json", []byte(`{"type":"clicked","user":{"id":3}}`)); status != 200 {
		t.Fatalf("POST = %d", status)
	}
	run(t, ctx, "list received updates in place", chromedp.Poll[bool](
		fmt.Sprintf(`document.querySelector("#integrations tbody tr .received").textContent === %q && window.__notReloaded === 1`, fmt.Sprint(len(files)+5)),
		chromedp.WithPollingTimeout(20*time.Second)))
	screenshot(t, ctx, "integrations")

	// 8. /status: every component operational, with details for the session.
	navigate(t, ctx, "status", chromedp.Navigate(in.URL+"/status"))
	states := run(t, ctx, "component states", chromedp.Evaluate[map[string]string](
		`Object.fromEntries(Array.from(document.querySelectorAll("#components tr[data-component]")).map(r => [r.dataset.component, r.querySelector(".state").textContent]))`))
	for _, c := range []string{"receiver", "log", "loader", "warehouse"} {
		if states[c] != "operational" {
			t.Fatalf("status of %s = %q, want operational (all: %v)", c, states[c], states)
		}
	}
	do(t, ctx, "freshness table", chromedp.WaitVisible(chromedp.CSS("#freshness")))
	screenshot(t, ctx, "status")

	// 9. Restart the server on the same data dir and port: the login survives
	// (sessions are kept hashed in the state), and so do the charts' history.
	addr, firstLogs := in.Srv.Addr(), in.Logs
	in.Stop(t)
	in = startServer(t, func(c *config.Config) { c.Data = dataDir; c.Listen = addr })
	navigate(t, ctx, "list after the restart", chromedp.Navigate(in.URL+"/"))
	if title := run(t, ctx, "title", chromedp.Title()); !strings.HasPrefix(title, "Integrations") {
		t.Fatalf("after a restart / shows %q, want the integrations list (still logged in)", title)
	}
	waitCharts(t, ctx, "list after the restart", []string{"#all-records"}, "#all-records")
	navigate(t, ctx, "log out", click("header.top button.link"))
	navigate(t, ctx, "list after logging out", chromedp.Navigate(in.URL+"/"))
	if title := run(t, ctx, "title", chromedp.Title()); !strings.HasPrefix(title, "Log in") {
		t.Fatalf("after logging out / shows %q, want the login page", title)
	}

	for _, e := range consoleErrs() {
		t.Errorf("browser console: %s", e)
	}
	for _, tok := range []string{token1, token2, in.Key} {
		if strings.Contains(firstLogs.String(), tok) || strings.Contains(in.Logs.String(), tok) {
			t.Fatal("a secret reached the server log")
		}
	}
}

// TestDashboardInBrowserVerified drives a verified source through the
// dashboard: add a Standard Webhooks integration with a generated secret (read
// once from the reveal), post a correctly signed and a badly signed delivery,
// see the failure counted on the page and in its chart, then rotate the secret
// through the UI: add a second, remove the first. `make screenshots` runs it
// too (its name matches) and saves the add form and the integration page.
func TestDashboardInBrowserVerified(t *testing.T) {
	in := startServer(t, nil)
	ctx := browser(t)
	consoleErrs := consoleErrors(ctx)

	navigate(t, ctx, "open /login", chromedp.Navigate(in.URL+"/login"))
	do(t, ctx, "type the admin key", chromedp.SendKeys(chromedp.CSS("#key"), in.Key))
	navigate(t, ctx, "log in", click("main form button[type=submit]"))

	// 1. The add form: type webhooks, scheme Standard Webhooks. app.js shows
	// that scheme's steps and the secret field, and hides the others.
	navigate(t, ctx, "open the add form", click("#add"))
	do(t, ctx, "fill in the add form",
		click(`input[name=type][value=webhooks]`),
		chromedp.SendKeys(chromedp.CSS("#name"), "Svix Events"),
		click(`input[name=scheme][value=standard-webhooks]`),
		chromedp.WaitVisible(chromedp.CSS("#steps-standard-webhooks")),
		chromedp.WaitVisible(chromedp.CSS("#secret")))
	if hidden := run(t, ctx, "other schemes hidden", chromedp.Evaluate[bool](
		`document.querySelector("#steps-stripe").hidden && document.querySelector("#steps-none").hidden && !document.querySelector("#verification").hidden`)); !hidden {
		t.Fatal("choosing Standard Webhooks does not show only its steps")
	}
	if steps := run(t, ctx, "steps", text("#steps-standard-webhooks")); !strings.Contains(steps, "Endpoint URL") {
		t.Fatalf("Standard Webhooks steps = %q", steps)
	}
	screenshot(t, ctx, "add-verified")

	// 2. Save with the secret left empty: the URL and a generated secret are
	// revealed once.
	navigate(t, ctx, "save", click("#save"))
	hookURL := run(t, ctx, "revealed URL", chromedp.Value(chromedp.CSS("#webhook-url")))
	secret1 := run(t, ctx, "revealed secret", chromedp.Value(chromedp.CSS("#signing-secret")))
	m := tokenRe.FindStringSubmatch(hookURL)
	if m == nil || !strings.HasPrefix(secret1, "whsec_") {
		t.Fatalf("revealed URL %q and secret %q; want a webhook URL and a whsec_ secret", hookURL, secret1[:min(len(secret1), 6)])
	}
	token := m[1]
	do(t, ctx, "copy buttons shown", chromedp.WaitVisible(chromedp.CSS("#copy")), chromedp.WaitVisible(chromedp.CSS("#copy-secret")))
	navigate(t, ctx, "continue", click("#continue"))
	page := run(t, ctx, "page source", source())
	if strings.Contains(page, secret1) || strings.Contains(page, token) {
		t.Fatal("the integration page after the reveal holds the secret or the token")
	}
	if !strings.Contains(page, "****"+secret1[len(secret1)-4:]) {
		t.Fatal("the integration page does not list the secret by its hint")
	}
	if summary := run(t, ctx, "verify summary", text("#verify-summary")); summary != "verifies Standard Webhooks signatures (enforce)" {
		t.Fatalf("verify summary = %q", summary)
	}

	// 3. A correctly signed delivery is stored; a badly signed one gets 401 and
	// is counted on the page, live, with its reason and in the chart.
	target := in.hookURL(hookURL)
	body := []byte(`{"type":"invoice.paid","data":{"id":"inv_1","amount":4200}}`)
	if status, resp := send(t, target, standardSign(t, secret1, "msg_1", time.Now(), body), body, false); status != 200 {
		t.Fatalf("signed delivery = %d %s", status, resp)
	}
	forged := standardSign(t, "whsec_"+base64.StdEncoding.EncodeToString([]byte("not-the-secret-not-the-secret-00")), "msg_2", time.Now(), body)
	if status, resp := send(t, target, forged, body, false); status != 401 || strings.Contains(resp, "webhook-") {
		t.Fatalf("badly signed delivery = %d %s, want 401 with the generic message", status, resp)
	}
	run(t, ctx, "failure counted in place", chromedp.Poll[bool](
		`document.querySelector("#stat-sigfail").textContent === "1" && document.querySelector("#stat-loaded").textContent === "1"`,
		chromedp.WithPollingTimeout(20*time.Second)))
	if last := run(t, ctx, "last failure", text("#last-sigfail dd")); !strings.Contains(last, "UTC") || len(last) < len("2006-01-02 15:04:05 UTC")+5 {
		t.Fatalf("last failure shows %q, want its time and reason", last)
	}
	waitCharts(t, ctx, "integration page", []string{"#sigfails"}, "#sigfails")
	if summary := run(t, ctx, "signature chart summary", text("#sigfails .summary")); !strings.Contains(summary, "1 signature failure in the last hour") {
		t.Fatalf("signature chart summary = %q", summary)
	}
	screenshot(t, ctx, "verify")

	// 4. Rotate: add a second (generated) secret, revealed once.
	navigate(t, ctx, "add a secret", click("#add-secret"))
	secret2 := run(t, ctx, "second secret", chromedp.Value(chromedp.CSS("#signing-secret")))
	if !strings.HasPrefix(secret2, "whsec_") || secret2 == secret1 {
		t.Fatal("Add secret did not reveal a new whsec_ secret")
	}
	if n := run(t, ctx, "no URL in a secret reveal", chromedp.Evaluate[int](`document.querySelectorAll("#webhook-url").length`)); n != 0 {
		t.Fatal("the secret's reveal shows a webhook URL")
	}
	navigate(t, ctx, "continue", click("#continue"))
	if n := run(t, ctx, "two secrets", chromedp.Evaluate[int](`document.querySelectorAll("#secrets tbody tr").length`)); n != 2 {
		t.Fatalf("%d secrets listed after adding one, want 2", n)
	}
	if !run(t, ctx, "add disabled", chromedp.AttributeValue(chromedp.CSS("#add-secret"), "disabled")).Exists {
		t.Fatal("Add secret is enabled with 2 secrets")
	}
	// While both exist, either verifies.
	for i, s := range []string{secret1, secret2} {
		b := []byte(fmt.Sprintf(`{"type":"rotation","n":%d}`, i))
		if status, resp := send(t, target, standardSign(t, s, fmt.Sprintf("msg_r%d", i), time.Now(), b), b, false); status != 200 {
			t.Fatalf("delivery signed with secret %d during the rotation = %d %s", i+1, status, resp)
		}
	}

	// 5. Remove the first through its confirmation; it then fails.
	if row := run(t, ctx, "first secret", text("#secrets tbody tr:nth-child(1)")); !strings.Contains(row, "****"+secret1[len(secret1)-4:]) {
		t.Fatalf("first secret row %q", row)
	}
	navigate(t, ctx, "remove", click("#secrets tbody tr:nth-child(1) a.remove-secret"))
	if heading := run(t, ctx, "confirmation", text("h1")); !strings.Contains(heading, "Remove signing secret ****"+secret1[len(secret1)-4:]) {
		t.Fatalf("confirmation heading %q", heading)
	}
	navigate(t, ctx, "confirm remove", click("#confirm"))
	if flash := run(t, ctx, "flash", text(".flash")); !strings.Contains(flash, "removed") {
		t.Fatalf("flash after removing = %q", flash)
	}
	rows := run(t, ctx, "secrets left", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#secrets tbody tr")).map(r => r.textContent)`))
	if len(rows) != 1 || !strings.Contains(rows[0], "****"+secret2[len(secret2)-4:]) || !strings.Contains(rows[0], "the only secret") {
		t.Fatalf("secrets after removing the first: %q", rows)
	}
	if status, _ := send(t, target, standardSign(t, secret1, "msg_old", time.Now(), body), body, false); status != 401 {
		t.Fatalf("delivery signed with the removed secret = %d, want 401", status)
	}
	if status, resp := send(t, target, standardSign(t, secret2, "msg_new", time.Now(), body), body, false); status != 200 {
		t.Fatalf("delivery signed with the new secret = %d %s", status, resp)
	}
	run(t, ctx, "second failure counted", chromedp.Poll[bool](`document.querySelector("#stat-sigfail").textContent === "2"`,
		chromedp.WithPollingTimeout(20*time.Second)))

	// The list names the scheme and charts the failures.
	navigate(t, ctx, "list", click("header.top a.brand"))
	if typ := run(t, ctx, "type column", text("#integrations tbody tr .verifies")); !strings.Contains(typ, "Standard Webhooks") {
		t.Fatalf("the list's type column says %q", typ)
	}
	waitCharts(t, ctx, "list", []string{"#all-sigfails"}, "#all-sigfails")

	for _, e := range consoleErrs() {
		t.Errorf("browser console: %s", e)
	}
	for _, s := range []string{secret1, secret2, token, in.Key} {
		if strings.Contains(in.Logs.String(), s) {
			t.Fatal("a secret reached the server log")
		}
	}
}

// waitCharts checks that each chart (a figure id) is an SVG with a title, and
// waits until the ones in withData have bars: the history has the records.
// (Lag is sampled every few seconds and is usually 0 here, so it may be empty.)
func waitCharts(t *testing.T, ctx context.Context, what string, ids []string, withData ...string) {
	t.Helper()
	for _, id := range ids {
		label := run(t, ctx, what+": chart "+id+" title", chromedp.Evaluate[string](
			fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, "figure"+id+" svg > title")))
		if label == "" {
			t.Fatalf("%s: no chart %s with a title", what, id)
		}
	}
	for _, id := range withData {
		run(t, ctx, what+": chart "+id+" has bars", chromedp.Poll[bool](
			fmt.Sprintf(`document.querySelectorAll(%q).length > 0`, "figure"+id+" svg .bar"),
			chromedp.WithPollingTimeout(20*time.Second)))
	}
}

// TestDashboardSecurity checks the dashboard's defences over plain HTTP: login,
// sessions, CSRF, headers, and that no page but the one-time reveal holds a token.
func TestDashboardSecurity(t *testing.T) {
	in := startServer(t, nil)
	anon := newWebClient(t, in.URL)

	// Pages without a session redirect to /login.
	for _, p := range []string{"/", "/integrations/new", "/integrations/1", "/integrations/1/delete", "/integrations/1/urls/2/revoke"} {
		resp, _ := anon.get(p)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
			t.Errorf("GET %s without a session = %d to %q, want 303 to /login", p, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	resp, _ := anon.postForm("/integrations/new", url.Values{"name": {"x"}, "type": {"vero"}, "action": {"save"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("POST without a session = %d, want 303 to /login", resp.StatusCode)
	}

	// Security headers on every kind of page.
	for _, p := range []string{"/login", "/status", "/static/style.css", "/"} {
		resp, _ := anon.get(p)
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe-inline") ||
			h.Get("X-Frame-Options") != "DENY" || h.Get("Referrer-Policy") != "no-referrer" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s headers: CSP %q, XFO %q, Referrer-Policy %q, nosniff %q", p, csp,
				h.Get("X-Frame-Options"), h.Get("Referrer-Policy"), h.Get("X-Content-Type-Options"))
		}
	}

	// Login: without the form's token 403; a wrong key shows an error and sets no session.
	_, page := anon.get("/login")
	resp, _ = anon.postForm("/login", url.Values{"key": {in.Key}})
	if resp.StatusCode != http.StatusForbidden || hasCookie(resp, "hookhouse_session") {
		t.Fatalf("login without CSRF token = %d, want 403 and no session", resp.StatusCode)
	}
	_, page = anon.get("/login")
	resp, body := anon.postForm("/login", url.Values{"csrf": {formValue(page, "csrf")}, "key": {in.Key + "x"}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "not the admin key") || hasCookie(resp, "hookhouse_session") {
		t.Fatalf("wrong key = %d, session cookie %v; want 401 with an error and no session\n%s", resp.StatusCode, hasCookie(resp, "hookhouse_session"), body)
	}
	if resp, _ := anon.get("/"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after a wrong key / = %d, want 303 to /login", resp.StatusCode)
	}

	// A good login: session cookie HttpOnly, SameSite=Strict, with an expiry.
	_, page = anon.get("/login")
	resp, _ = anon.postForm("/login", url.Values{"csrf": {formValue(page, "csrf")}, "key": {in.Key}})
	var set string
	for _, c := range resp.Header.Values("Set-Cookie") {
		if strings.HasPrefix(c, "hookhouse_session=") {
			set = c
		}
	}
	for _, flag := range []string{"HttpOnly", "SameSite=Strict", "Max-Age=43200", "Expires=", "Path=/"} {
		if !strings.Contains(set, flag) {
			t.Errorf("session cookie %q lacks %s", set, flag)
		}
	}
	if strings.Contains(set, "Secure") {
		t.Errorf("session cookie %q is Secure with an http public URL", set)
	}
	web := anon // now logged in
	csrf := web.csrf()

	// Every form POST without (or with a wrong) CSRF token gets 403 and does nothing.
	for _, p := range []string{"/integrations/new", "/logout"} {
		for _, tok := range []string{"", strings.Repeat("0", 64)} {
			resp, _ := web.postForm(p, url.Values{"csrf": {tok}, "name": {"Stitch Vero"}, "type": {"vero"}, "action": {"save"}, "once": {"n1"}})
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("POST %s with CSRF token %q = %d, want 403", p, tok, resp.StatusCode)
			}
		}
	}
	// A cross-site POST is refused even with the right token.
	resp, _ = web.postForm("/integrations/new", url.Values{"csrf": {csrf}, "name": {"Stitch Vero"}, "type": {"vero"}, "action": {"save"}, "once": {"n2"}},
		"Sec-Fetch-Site", "cross-site")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST = %d, want 403", resp.StatusCode)
	}
	ctx := context.Background()
	if list, err := in.Client.Integrations(ctx); err != nil || len(list) != 0 {
		t.Fatalf("refused POSTs created integrations: %v %v", list, err)
	}

	// Preview, then save: the reveal is the answer to the POST and is not cached.
	resp, body = web.postForm("/integrations/new", url.Values{"csrf": {csrf}, "name": {"Stitch Vero"}, "type": {"vero"}, "action": {"preview"}})
	if resp.StatusCode != 200 || !strings.Contains(body, `id="schema-preview">stitch_vero<`) {
		t.Fatalf("preview = %d, no stitch_vero preview:\n%s", resp.StatusCode, body)
	}
	save := url.Values{"csrf": {csrf}, "name": {"Stitch Vero"}, "type": {"vero"}, "action": {"save"}, "once": {formValue(body, "once")}}
	resp, body = web.postForm("/integrations/new", save)
	m := tokenRe.FindStringSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("save = %d without a revealed URL:\n%s", resp.StatusCode, body)
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("reveal Cache-Control = %q, want no-store", cc)
	}
	if strings.Contains(resp.Header.Get("Location"), m[1]) || strings.Contains(strings.Join(resp.Header.Values("Set-Cookie"), ";"), m[1]) {
		t.Error("the token is in a header of the reveal")
	}
	tokens := []string{m[1]}
	reveals := []string{body}
	// Resubmitting the same form (reload of the reveal) shows no token and creates nothing.
	resp, body = web.postForm("/integrations/new", save)
	if tokenRe.MatchString(body) || resp.StatusCode != http.StatusConflict {
		t.Fatalf("resubmitted save = %d; it must not reveal a URL:\n%s", resp.StatusCode, body)
	}
	// A duplicate schema is shown in the form.
	resp, body = web.postForm("/integrations/new", url.Values{"csrf": {csrf}, "name": {"stitch-vero"}, "type": {"vero"}, "action": {"save"}, "once": {"dup"}})
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "already used") || !strings.Contains(body, `id="new-integration"`) {
		t.Fatalf("duplicate schema = %d, want 409 with the message in the form:\n%s", resp.StatusCode, body)
	}
	list, err := in.Client.Integrations(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("integrations = %v, %v; want exactly 1", list, err)
	}
	id := list[0].ID
	ipath := fmt.Sprintf("/integrations/%d", id)

	// Generate a second URL; replaying that form does not mint a third.
	_, page = web.get(ipath)
	gen := url.Values{"csrf": {csrf}, "once": {formValue(page, "once")}}
	resp, body = web.postForm(ipath+"/urls", gen)
	m = tokenRe.FindStringSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("generate = %d without a revealed URL", resp.StatusCode)
	}
	tokens, reveals = append(tokens, m[1]), append(reveals, body)
	resp, body = web.postForm(ipath+"/urls", gen)
	if resp.StatusCode != http.StatusSeeOther || tokenRe.MatchString(body) {
		t.Fatalf("replayed generate = %d, want 303 without a URL", resp.StatusCode)
	}
	urls, err := in.Client.URLs(ctx, id)
	if err != nil || len(urls) != 2 {
		t.Fatalf("URLs = %v, %v; want 2", urls, err)
	}
	// At 2 active URLs, Generate answers 409 in the page.
	_, page = web.get(ipath)
	resp, body = web.postForm(ipath+"/urls", url.Values{"csrf": {csrf}, "once": {formValue(page, "once")}})
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "revoke one") || tokenRe.MatchString(body) {
		t.Fatalf("third URL = %d, want 409 saying to revoke one", resp.StatusCode)
	}
	for _, f := range veroFiles(t)[:3] {
		if status, _ := post(t, in.URL+fmt.Sprintf("/v1/clients/%d/token/%s", id, tokens[1]), "application/json", mustRead(t, f)); status != 200 {
			t.Fatalf("POST = %d", status)
		}
	}
	// Revoke the first URL through its confirmation page.
	revoke := fmt.Sprintf("%s/urls/%d/revoke", ipath, urls[0].ID)
	if resp, body := web.get(revoke); resp.StatusCode != 200 || !strings.Contains(body, "****"+urls[0].Hint) {
		t.Fatalf("revoke confirmation = %d", resp.StatusCode)
	}
	if resp, _ := web.postForm(revoke, url.Values{}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("revoke without CSRF = %d, want 403", resp.StatusCode)
	}
	if resp, _ := web.postForm(revoke, url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke = %d, want 303", resp.StatusCode)
	}
	if status, _ := post(t, in.URL+fmt.Sprintf("/v1/clients/%d/token/%s", id, tokens[0]), "application/json", []byte(`{}`)); status != 401 {
		t.Fatalf("revoked URL = %d, want 401", status)
	}
	waitFor(t, 20*time.Second, "3 records loaded", func() (bool, string) {
		got, err := in.Client.Integration(ctx, id)
		if err != nil || got.Stats == nil {
			return false, fmt.Sprint(err)
		}
		return got.Stats.RecordsLoaded == 3, fmt.Sprintf("%+v", *got.Stats)
	})

	// /status.json shows details for a session (and the key), not anonymously.
	var st client.Status
	_, body = web.get("/status.json")
	if err := json.Unmarshal([]byte(body), &st); err != nil || len(st.Integrations) != 1 {
		t.Fatalf("status.json with a session: %v, %d integrations; want details", err, len(st.Integrations))
	}
	_, body = newWebClient(t, in.URL).get("/status.json")
	if strings.Contains(body, "stitch_vero") {
		t.Fatal("status.json without a session shows integration details")
	}
	_, body = newWebClient(t, in.URL).get("/status")
	if strings.Contains(body, "stitch_vero") {
		t.Fatal("/status without a session shows integration details")
	}
	_, body = newWebClient(t, in.URL).get("/status", "Authorization", "Bearer "+in.Key)
	if !strings.Contains(body, "stitch_vero") {
		t.Fatal("/status with the admin key does not show integration details")
	}

	// No page but the reveal holds a token.
	for i, r := range reveals {
		if !strings.Contains(r, tokens[i]) {
			t.Fatalf("reveal %d does not hold its token", i)
		}
	}
	pages := []string{"/", "/?deleted=1", "/integrations/new", ipath, ipath + "?revoked=1", ipath + "?resubmitted=1",
		ipath + "/delete", fmt.Sprintf("%s/urls/%d/revoke", ipath, urls[1].ID), "/status", "/status.json", "/login",
		"/static/app.js", "/static/style.css", "/metrics", "/api/v1/integrations", ipath + "/webhook-urls"}
	for _, p := range pages {
		hdr := []string{}
		if strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, ipath+"/webhook") {
			p = strings.Replace(p, "/integrations/", "/api/v1/integrations/", 1)
			hdr = []string{"Authorization", "Bearer " + in.Key}
		}
		resp, body := web.get(p, hdr...)
		if resp.StatusCode >= 400 {
			t.Errorf("GET %s = %d", p, resp.StatusCode)
		}
		for _, tok := range tokens {
			if strings.Contains(body, tok) || strings.Contains(fmt.Sprint(resp.Header), tok) {
				t.Errorf("GET %s holds a webhook token", p)
			}
		}
	}

	// Delete through the confirmation; then log out, and the session is gone.
	if resp, _ := web.postForm(ipath+"/delete", url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete = %d, want 303", resp.StatusCode)
	}
	if _, body := web.get("/"); strings.Contains(body, "Stitch Vero") {
		t.Fatal("the list still shows the deleted integration")
	}
	if status, _ := post(t, in.URL+fmt.Sprintf("/v1/clients/%d/token/%s", id, tokens[1]), "application/json", []byte(`{}`)); status != 401 {
		t.Fatalf("URL of a deleted integration = %d, want 401", status)
	}
	if resp, _ := web.postForm("/logout", url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout = %d, want 303", resp.StatusCode)
	}
	if resp, _ := web.get("/"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("/ after logout = %d, want 303 to /login", resp.StatusCode)
	}
	for _, tok := range append(tokens, in.Key) {
		if strings.Contains(in.Logs.String(), tok) {
			t.Fatal("a secret reached the server log")
		}
	}
}

func hasCookie(resp *http.Response, name string) bool {
	for _, c := range resp.Cookies() {
		if c.Name == name && c.Value != "" {
			return true
		}
	}
	return false
}
