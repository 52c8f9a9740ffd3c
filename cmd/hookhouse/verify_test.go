package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hookhouse/hookhouse/client"
)

// hhIn runs the CLI with stdin and returns its output and exit status.
func hhIn(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(t.Context(), args, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), code
}

// secretFile writes content to a new file and returns its path.
func secretFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// verifyOf is the "verify" object of the latest create request.
func verifyOf(t *testing.T, f *fakeAPI) map[string]any {
	t.Helper()
	v, ok := f.createBody(t)["verify"].(map[string]any)
	if !ok {
		t.Fatalf("create request has no verify object: %s", f.lastCreate)
	}
	return v
}

func TestAddVerifyGenerated(t *testing.T) {
	f, _ := setup(t)
	out := mustRun(t, "integrations", "add", "--name", "Svix Events", "--type", "webhooks", "--verify", "standard-webhooks")
	for _, want := range []string{
		"Created integration 1.\n",
		"Verify   standard-webhooks, enforce, tolerance 5m\n",
		"Secrets  ****IQ== (id 1, created 2026-11-02T10:00:00Z)\n",
		"\nNew signing secret ****IQ== (id 1, created 2026-11-02T10:00:00Z) of integration 1:\n\n  " + generated + "\n\n",
		"It is shown only this once: copy it now",
		"hookhouse integrations secrets add 1",
		"next: hookhouse urls generate 1\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("add --verify standard-webhooks lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, generated); n != 1 {
		t.Errorf("the generated secret is printed %d times, want once:\n%s", n, out)
	}
	if v := verifyOf(t, f); len(v) != 1 || v["scheme"] != "standard-webhooks" {
		t.Errorf("verify sent = %v, want only the scheme (no secret: generate one)", v)
	}
	if _, ok := f.createBody(t)["dedupe_window"]; ok {
		t.Errorf("dedupe_window sent without --dedupe-window: %s", f.lastCreate)
	}

	// --json carries the one-time secret for scripts.
	in := decodeJSON[client.Integration](t, mustRun(t, "integrations", "add", "--name", "GitHub", "--type", "webhooks", "--verify", "github", "--json"))
	if in.Secret != generated || in.Verify == nil || in.Verify.Scheme != "github" || len(in.Secrets) != 1 {
		t.Errorf("add --json = %+v", in)
	}
}

func TestAddVerifyGivenSecret(t *testing.T) {
	f, _ := setup(t)
	const secret = "whsec_stripe_secret_9f8e"

	// From a file, trimmed, with the other verify flags.
	out := mustRun(t, "integrations", "add", "--name", "Stripe", "--type", "webhooks", "--verify", "stripe",
		"--secret-file", secretFile(t, secret+"\n"), "--mode", "monitor", "--tolerance", "10m", "--dedupe-window", "72h")
	v := verifyOf(t, f)
	if v["scheme"] != "stripe" || v["secret"] != secret || v["mode"] != "monitor" || v["tolerance"] != "10m" {
		t.Errorf("verify sent = %v", v)
	}
	if w := f.createBody(t)["dedupe_window"]; w != "72h" {
		t.Errorf("dedupe_window sent = %v, want 72h (beside verify): %s", w, f.lastCreate)
	}
	if strings.Contains(out, secret) || strings.Contains(out, "shown only this once") {
		t.Errorf("add printed a secret it did not generate:\n%s", out)
	}
	for _, want := range []string{"Verify   stripe, monitor (bad signatures are counted, not refused), tolerance 10m\n", "Secrets  ****9f8e (id 1, "} {
		if !strings.Contains(out, want) {
			t.Errorf("add lacks %q:\n%s", want, out)
		}
	}

	// From stdin, with "--secret -" and with "--secret-file -".
	for i, args := range [][]string{{"--secret", "-"}, {"--secret-file", "-"}} {
		name := []string{"Shopify", "Slack"}[i]
		stdout, stderr, code := hhIn(t, "  shpss_from_stdin_77aa\n", append([]string{"integrations", "add", "--name", name, "--type", "webhooks",
			"--verify", strings.ToLower(name)}, args...)...)
		if code != 0 || verifyOf(t, f)["secret"] != "shpss_from_stdin_77aa" || strings.Contains(stdout+stderr, "shpss_from_stdin") {
			t.Errorf("%v: exit %d, sent %v\n%s%s", args, code, verifyOf(t, f), stdout, stderr)
		}
	}

	// On the command line (discouraged in the help, but it works).
	mustRun(t, "integrations", "add", "--name", "Zoom", "--type", "webhooks", "--verify", "zoom", "--secret", "zoom_secret_token")
	if verifyOf(t, f)["secret"] != "zoom_secret_token" {
		t.Errorf("--secret TEXT sent %v", verifyOf(t, f))
	}

	// Meta: the verify token goes along and is only ever shown as set.
	out = mustRun(t, "integrations", "add", "--name", "Meta", "--type", "webhooks", "--verify", "meta",
		"--secret-file", secretFile(t, "app_secret_1234"), "--verify-token", "my-verify-token")
	if v := verifyOf(t, f); v["verify_token"] != "my-verify-token" {
		t.Errorf("verify sent = %v", v)
	}
	if !strings.Contains(out, "Verify token  (set)\n") || strings.Contains(out, "my-verify-token") || strings.Contains(out, "app_secret") {
		t.Errorf("add --verify meta:\n%s", out)
	}
}

func TestAddVerifyHMAC(t *testing.T) {
	f, _ := setup(t)
	out := mustRun(t, "integrations", "add", "--name", "Acme", "--type", "webhooks", "--verify", "hmac",
		"--hmac-header", "X-Acme-Signature", "--hmac-algorithm", "sha512", "--hmac-encoding", "base64", "--hmac-prefix", "sha512=",
		"--hmac-signed", "{timestamp}.{body}", "--hmac-timestamp-header", "X-Acme-Time", "--hmac-id-header", "X-Acme-Delivery")
	want := map[string]any{"scheme": "hmac", "header": "X-Acme-Signature", "algorithm": "sha512", "encoding": "base64", "prefix": "sha512=",
		"signed": "{timestamp}.{body}", "timestamp_header": "X-Acme-Time", "id_header": "X-Acme-Delivery"}
	v := verifyOf(t, f)
	for k, w := range want {
		if v[k] != w {
			t.Errorf("verify.%s = %v, want %v", k, v[k], w)
		}
	}
	if len(v) != len(want) {
		t.Errorf("verify sent = %v, want exactly %v", v, want)
	}
	for _, w := range []string{
		"Verify   hmac, enforce, tolerance 5m\n",
		`HMAC     sha512 base64, in X-Acme-Signature after "sha512=", signs {timestamp}.{body}, timestamp in X-Acme-Time, delivery id in X-Acme-Delivery` + "\n",
		"New signing secret ****",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("add --verify hmac lacks %q:\n%s", w, out)
		}
	}
}

func TestAddVerifyMistakes(t *testing.T) {
	f, _ := setup(t)
	add := []string{"integrations", "add", "--name", "X", "--type", "webhooks"}
	with := func(extra ...string) []string { return append(append([]string{}, add...), extra...) }
	const secret = "hidden_secret_0042"

	wantFailure(t, 2, []string{"--mode, --secret needs --verify SCHEME"}, with("--secret", secret, "--mode", "monitor")...)
	wantFailure(t, 2, []string{"--hmac-header needs --verify SCHEME"}, with("--hmac-header", "X-Sig")...)
	wantFailure(t, 2, []string{"--dedupe-window needs --verify SCHEME"}, with("--dedupe-window", "1h")...)
	wantFailure(t, 2, []string{"--secret or --secret-file, not both"}, with("--verify", "stripe", "--secret", secret, "--secret-file", "f")...)
	wantFailure(t, 2, []string{"--verify meta needs --verify-token"}, with("--verify", "meta", "--secret", secret)...)
	wantFailure(t, 2, []string{`--tolerance "5" is not a duration`}, with("--verify", "github", "--tolerance", "5")...)
	wantFailure(t, 2, []string{`--dedupe-window "7d" is not a duration`, "168h"}, with("--verify", "github", "--dedupe-window", "7d")...)
	wantFailure(t, 2, []string{"is empty"}, with("--verify", "stripe", "--secret-file", secretFile(t, " \n"))...)
	wantFailure(t, 2, []string{"the secret in stdin is empty"}, with("--verify", "stripe", "--secret", "-")...)
	errOut := wantFailure(t, 2, []string{"holds more than one line"}, with("--verify", "stripe", "--secret-file", secretFile(t, secret+"\nsecond line\n"))...)
	if strings.Contains(errOut, secret) {
		t.Errorf("an error shows the secret: %q", errOut)
	}
	wantFailure(t, 1, []string{"cannot read the secret", "no-such-file"}, with("--verify", "stripe", "--secret-file", filepath.Join(t.TempDir(), "no-such-file"))...)
	if f.count() != 0 {
		t.Errorf("%d integrations created by refused command lines", f.count())
	}

	// A webhooks integration without --verify says so in show.
	mustRun(t, add...)
	if out := mustRun(t, "integrations", "show", "1"); !strings.Contains(out, "Verify            none: the secret URL alone authenticates\n") {
		t.Errorf("show of an unverified webhooks integration:\n%s", out)
	}
}

func TestShowVerify(t *testing.T) {
	setup(t)
	mustRun(t, "integrations", "add", "--name", "Stripe", "--type", "webhooks", "--verify", "stripe", "--secret-file", secretFile(t, "whsec_one_aaaa"))
	mustRun(t, "integrations", "secrets", "add", "1", "--secret-file", secretFile(t, "whsec_two_bbbb"))
	out := mustRun(t, "integrations", "show", "1")
	want := `ID                    1
Name                  Stripe
Type                  webhooks
Schema                stripe
Created               2026-11-02T10:00:00Z
Verify                stripe, enforce, tolerance 5m
Secrets               ****aaaa (id 1, created 2026-11-02T10:00:00Z)
                      ****bbbb (id 2, created 2026-11-02T10:00:00Z)
Records received      14
Records loaded        12
Records rejected      1 (see stripe._sdc_rejected)
Last received         2026-11-02T11:00:00Z
Last loaded           -
Backlog               1
Lag                   250ms
Signature failures    3 (since the server started)
Last failure          2026-11-02T11:00:00Z: no Webhook-Signature header
Records deduplicated  2
`
	if out != want {
		t.Errorf("show:\n%s\nwant:\n%s", out, want)
	}
	if strings.Contains(out, "whsec_") {
		t.Errorf("show prints a secret:\n%s", out)
	}
	in := decodeJSON[client.Integration](t, mustRun(t, "integrations", "show", "1", "--json"))
	if len(in.Secrets) != 2 || in.Secret != "" || in.Stats == nil || in.Stats.SignatureFailures == nil || *in.Stats.SignatureFailures != 3 {
		t.Errorf("show --json = %+v", in)
	}
}

func TestSecretsCommands(t *testing.T) {
	setup(t)
	mustRun(t, "integrations", "add", "--name", "GitHub", "--type", "webhooks", "--verify", "github", "--secret-file", secretFile(t, "first-secret-1111"))

	out := mustRun(t, "integrations", "secrets", "list", "1")
	if want := "HINT      SECRET_ID  CREATED\n****1111  1          2026-11-02T10:00:00Z\n"; out != want {
		t.Errorf("secrets list:\n%s\nwant:\n%s", out, want)
	}

	// A generated second secret: shown once, and the old one named for removal.
	out = mustRun(t, "integrations", "secrets", "add", "1")
	for _, want := range []string{
		"New signing secret ****IQ== (id 2, created 2026-11-02T10:00:00Z) of integration 1:\n\n  " + generated + "\n\n",
		"It is shown only this once",
		"Deliveries signed with either secret verify.",
		"hookhouse integrations secrets remove 1 1\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("secrets add lacks %q:\n%s", want, out)
		}
	}

	// A third is refused in CLI terms, and nothing is printed but the reason.
	stdout, stderr, code := hhIn(t, "third-secret-3333\n", "integrations", "secrets", "add", "1", "--secret", "-")
	if code != 1 || stdout != "" || stderr != "hookhouse: 409 conflict: integration 1 already has 2 signing secrets, the most it holds: "+
		"remove the old one first (hookhouse integrations secrets remove 1 <secret id>; 'hookhouse integrations secrets list 1' shows them)\n" {
		t.Errorf("third secret: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	out = mustRun(t, "integrations", "secrets", "remove", "1", "1")
	if out != "Removed signing secret ****1111 (id 1, created 2026-11-02T10:00:00Z) of integration 1: deliveries signed only with it now fail verification.\n" {
		t.Errorf("secrets remove = %q", out)
	}
	// The last one stays.
	wantFailure(t, 1, []string{"409 conflict: secret 2 is integration 1's only secret", "(to add one: hookhouse integrations secrets add 1 --secret-file FILE)"},
		"integrations", "secrets", "remove", "1", "2")
	wantFailure(t, 1, []string{"404 not_found: integration 1 has no secret 7"}, "integrations", "secrets", "remove", "1", "7")

	// A given secret: added, never printed.
	out = mustRun(t, "integrations", "secrets", "add", "1", "--secret-file", secretFile(t, "given-secret-4444\n"))
	if !strings.HasPrefix(out, "Added signing secret ****4444 (id 3, created 2026-11-02T10:00:00Z) to integration 1.\n") ||
		!strings.Contains(out, "hookhouse integrations secrets remove 1 2\n") || strings.Contains(out, "given-secret") {
		t.Errorf("secrets add --secret-file:\n%s", out)
	}

	list := decodeJSON[[]client.Secret](t, mustRun(t, "integrations", "secrets", "list", "1", "--json"))
	if len(list) != 2 || list[0].ID != 2 || list[1].Hint != "4444" || list[0].Secret != "" {
		t.Errorf("secrets list --json = %+v", list)
	}
	res := decodeJSON[map[string]any](t, mustRun(t, "integrations", "secrets", "remove", "--json", "1", "2"))
	if res["removed"] != true || res["id"] != float64(2) || res["integration_id"] != float64(1) || res["hint"] != "IQ==" {
		t.Errorf("secrets remove --json = %v", res)
	}

	// An integration that does not verify has none.
	mustRun(t, "integrations", "add", "--name", "Plain", "--type", "webhooks")
	if out := mustRun(t, "integrations", "secrets", "list", "2"); !strings.Contains(out, "Integration 2 has no signing secrets: it does not verify signatures") {
		t.Errorf("secrets list of a plain integration: %q", out)
	}
	wantFailure(t, 1, []string{"400 invalid: integration 2 does not verify signatures"}, "integrations", "secrets", "add", "2", "--secret", "x")
	wantFailure(t, 2, []string{"missing secret id"}, "integrations", "secrets", "remove", "1")
	mustRun(t, "integrations", "add", "--name", "Shopify", "--type", "webhooks", "--verify", "shopify", "--secret", "shpss_1")
	wantFailure(t, 2, []string{"integration 3 verifies shopify signatures, whose secret the provider issues", "--secret-file FILE"},
		"integrations", "secrets", "add", "3")
	wantFailure(t, 2, []string{"secret id must be a positive integer"}, "integrations", "secrets", "remove", "1", "x")
}

func TestSecretsHelp(t *testing.T) {
	setup(t)
	_, errOut, code := hh(t, "integrations", "secrets")
	if code != 2 || !strings.Contains(errOut, "integrations secrets remove <integration id> <secret id>") || strings.Contains(errOut, "integrations add") ||
		!strings.HasSuffix(errOut, "hookhouse: integrations secrets needs a command\n") {
		t.Errorf("integrations secrets: exit %d, stderr:\n%s", code, errOut)
	}
	wantFailure(t, 2, []string{`integrations secrets: unknown command "bogus"`, "hookhouse integrations secrets -h"}, "integrations", "secrets", "bogus")
	out, _, code := hh(t, "integrations", "-h")
	if code != 0 || !strings.Contains(out, "integrations secrets add <integration id>") || !strings.Contains(out, "integrations show <id>") {
		t.Errorf("integrations -h: exit %d:\n%s", code, out)
	}

	// Each command's help lists its own flags only.
	for _, args := range [][]string{{"integrations", "secrets", "add", "-h"}, {"help", "integrations", "secrets", "add"}} {
		out, _, code := hh(t, args...)
		words := strings.Join(strings.Fields(out), " ")
		if code != 0 || !strings.Contains(words, "Usage: hookhouse integrations secrets add <integration id>") ||
			!strings.Contains(words, "--secret-file FILE read the new signing secret from FILE") ||
			!strings.Contains(words, "process listings") || strings.Contains(out, "--verify") || strings.Contains(out, "--name") {
			t.Errorf("%v: exit %d:\n%s", args, code, out)
		}
	}
	out, _, _ = hh(t, "integrations", "secrets", "remove", "-h")
	if strings.Contains(out, "--secret") {
		t.Errorf("secrets remove -h lists --secret:\n%s", out)
	}
	out, _, _ = hh(t, "integrations", "add", "-h")
	words := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{
		"Signature verification (type webhooks; per provider: docs/sources.md): --verify SCHEME",
		"--secret SECRET the signing SECRET; \"-\" reads it from stdin. Given here it shows in process listings and shell history",
		"--mode MODE", "--tolerance TIME", "--dedupe-window TIME", "--verify-token TOKEN",
		"Generic HMAC (--verify hmac): --hmac-header HEADER",
		"--hmac-algorithm NAME", "--hmac-encoding ENCODING", "--hmac-prefix TEXT", "--hmac-signed TEMPLATE",
		"--hmac-timestamp-header HEADER", "--hmac-id-header HEADER",
	} {
		if !strings.Contains(words, want) {
			t.Errorf("integrations add -h lacks %q:\n%s", want, out)
		}
	}
}

func TestIntegrationsVerify(t *testing.T) {
	f, _ := setup(t)
	mustRun(t, "integrations", "add", "--name", "Svix", "--type", "webhooks", "--verify", "standard-webhooks", "--mode", "monitor")

	out := mustRun(t, "integrations", "verify", "1", "--mode", "enforce", "--tolerance", "2m")
	want := `Updated signature verification of integration 1.

Verify         standard-webhooks, enforce, tolerance 2m
Dedupe window  168h (the default)

Deliveries whose signature fails now get 401 and are not stored.
`
	if out != want {
		t.Errorf("verify --mode enforce:\n%s\nwant:\n%s", out, want)
	}
	if show := mustRun(t, "integrations", "show", "1"); !regexp.MustCompile(`(?m)^Verify +standard-webhooks, enforce, tolerance 2m$`).MatchString(show) {
		t.Errorf("show after verify:\n%s", show)
	}

	// Back to monitor, flags after the id or before it; the next step is named.
	out = mustRun(t, "integrations", "verify", "--mode", "monitor", "1", "--dedupe-window", "48h")
	for _, want := range []string{
		"Verify         standard-webhooks, monitor (bad signatures are counted, not refused), tolerance 2m\n",
		"Dedupe window  48h\n",
		"hookhouse integrations verify 1 --mode enforce\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("verify --mode monitor lacks %q:\n%s", want, out)
		}
	}
	f.mu.Lock()
	mode, window := f.integrations[0].Verify.Mode, f.integrations[0].DedupeWindow
	f.mu.Unlock()
	if mode != "monitor" || window != "48h0m0s" {
		t.Errorf("the server has mode %q, window %q", mode, window)
	}

	in := decodeJSON[client.Integration](t, mustRun(t, "integrations", "verify", "1", "--mode", "enforce", "--json"))
	if in.ID != 1 || in.Verify == nil || in.Verify.Mode != "enforce" || in.Verify.Tolerance != "2m0s" || in.Secret != "" {
		t.Errorf("verify --json = %+v", in)
	}

	// Mistakes: caught before asking the server, or the server's reason.
	wantFailure(t, 2, []string{"integrations verify: say what to change: --mode enforce|monitor, --tolerance TIME or --dedupe-window TIME",
		"see 'hookhouse integrations verify -h'"}, "integrations", "verify", "1")
	wantFailure(t, 2, []string{`--mode "strict": use enforce or monitor`}, "integrations", "verify", "1", "--mode", "strict")
	wantFailure(t, 2, []string{`--tolerance "5 minutes" is not a duration`}, "integrations", "verify", "1", "--tolerance", "5 minutes")
	wantFailure(t, 2, []string{"missing integration id"}, "integrations", "verify", "--mode", "enforce")
	wantFailure(t, 1, []string{"400 invalid: verify: tolerance 48h is out of range"}, "integrations", "verify", "1", "--tolerance", "48h")
	mustRun(t, "integrations", "add", "--name", "Plain", "--type", "webhooks")
	wantFailure(t, 1, []string{"400 invalid: integration 2 does not verify signatures"}, "integrations", "verify", "2", "--mode", "enforce")
	wantFailure(t, 1, []string{"404 not_found"}, "integrations", "verify", "9", "--mode", "enforce")

	// Its help lists its own flags only.
	out, _, code := hh(t, "integrations", "verify", "-h")
	words := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{"Usage: hookhouse integrations verify <id> [--mode enforce|monitor]", "--mode MODE", "--tolerance TIME",
		"--dedupe-window TIME", "--json", "A rollout: create the integration with --mode monitor"} {
		if code != 0 || !strings.Contains(words, want) {
			t.Errorf("integrations verify -h lacks %q: exit %d\n%s", want, code, out)
		}
	}
	for _, not := range []string{"  --verify ", "  --secret", "  --name", "  --hmac"} {
		if strings.Contains(out, not) {
			t.Errorf("integrations verify -h lists %s:\n%s", not, out)
		}
	}
}
