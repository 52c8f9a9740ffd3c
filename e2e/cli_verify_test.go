package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// runCLIInput is runCLI with stdin.
func runCLIInput(t *testing.T, server string, env []string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binPath, append(args, "--server", server)...)
	cmd.Env = append(append(os.Environ(), "HOOKHOUSE_ADMIN_KEY="), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// TestCLIVerifiedSource drives a Standard Webhooks integration through the
// built binary against a real server: the generated secret is printed once,
// a rotation with secrets add (from stdin), list and remove verifies with
// either secret and then refuses the removed one, a third secret and removing
// the last are refused in CLI terms, 'integrations verify' switches to monitor
// and back to enforce, and show names secrets by hint with the signature stats,
// never a secret.
func TestCLIVerifiedSource(t *testing.T) {
	ctx := context.Background()
	in := startServer(t, nil)
	env := []string{"HOOKHOUSE_ADMIN_KEY=" + in.Key}
	cli := func(args ...string) (string, string, int) {
		t.Helper()
		return runCLI(t, in.URL, env, args...)
	}

	out, errs, code := cli("integrations", "add", "--name", "Svix Events", "--type", "webhooks",
		"--verify", "standard-webhooks", "--dedupe-window", "48h")
	m := regexp.MustCompile(`\nNew signing secret \*\*\*\*(\S{4}) \(id 1, created [^)]+\) of integration 1:\n\n  (whsec_[A-Za-z0-9+/=]+)\n\n`).FindStringSubmatch(out)
	if code != 0 || m == nil || !strings.Contains(out, "It is shown only this once") {
		t.Fatalf("integrations add --verify standard-webhooks: exit %d\n%s%s", code, out, errs)
	}
	first := m[2]
	if n := strings.Count(out, first); n != 1 || !strings.HasSuffix(first, m[1]) {
		t.Fatalf("the generated secret is printed %d times (want once), hint %q:\n%s", n, m[1], out)
	}
	// The window went beside "verify" (the API answer shows it; the client does not read it).
	if raw := getRaw(t, in, "/api/v1/integrations/1"); !strings.Contains(raw, `"dedupe_window":"48h0m0s"`) || strings.Contains(raw, first) {
		t.Fatalf("GET integration 1: want dedupe_window 48h and no secret:\n%s", raw)
	}

	u, err := in.Client.GenerateURL(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	hook := in.hookURL(u.URL)
	body := []byte(`{"type":"invoice.paid"}`)
	deliver := func(secret, id string) (int, string) {
		t.Helper()
		return send(t, hook, standardSign(t, secret, id, time.Now(), body), body, false)
	}
	if status, b := deliver(first, "msg_1"); status != 200 || !strings.Contains(b, `"records":1`) {
		t.Fatalf("delivery signed with the generated secret: %d %s", status, b)
	}
	if status, b := deliver(first, "msg_1"); status != 200 || !strings.Contains(b, `"duplicates":1`) {
		t.Fatalf("redelivery: %d %s", status, b)
	}

	// Rotation: the second secret comes from stdin, so it is in no process listing.
	second := "whsec_" + base64.StdEncoding.EncodeToString([]byte("the second secret, 32 bytes long"))
	out, errs, code = runCLIInput(t, in.URL, env, second+"\n", "integrations", "secrets", "add", "1", "--secret", "-")
	if code != 0 || !strings.HasPrefix(out, "Added signing secret ****"+second[len(second)-4:]+" (id 2, created ") ||
		!strings.Contains(out, "hookhouse integrations secrets remove 1 1\n") || strings.Contains(out, second) {
		t.Fatalf("secrets add --secret -: exit %d\n%s%s", code, out, errs)
	}
	out, _, code = cli("integrations", "secrets", "list", "1")
	if code != 0 || !regexp.MustCompile(`(?m)^\*\*\*\*`+regexp.QuoteMeta(m[1])+` +1 `).MatchString(out) ||
		!strings.Contains(out, "****"+second[len(second)-4:]) || strings.Contains(out, first) || strings.Contains(out, second) {
		t.Fatalf("secrets list: exit %d\n%s", code, out)
	}
	for _, s := range []string{first, second} {
		if status, b := deliver(s, "msg_"+s[len(s)-6:]); status != 200 {
			t.Fatalf("during the rotation, a delivery signed with either secret verifies: %d %s", status, b)
		}
	}

	// A third secret: refused, saying what to run.
	out, errs, code = cli("integrations", "secrets", "add", "1")
	if code != 1 || out != "" || !strings.Contains(errs, "409 conflict: integration 1 already has 2 signing secrets") ||
		!strings.Contains(errs, "hookhouse integrations secrets remove 1 <secret id>") {
		t.Fatalf("third secret: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	out, errs, code = cli("integrations", "secrets", "remove", "1", "1")
	if code != 0 || !strings.HasPrefix(out, "Removed signing secret ****"+m[1]+" (id 1, created ") {
		t.Fatalf("secrets remove: exit %d\n%s%s", code, out, errs)
	}
	if status, b := deliver(first, "msg_after"); status != 401 || !strings.Contains(b, signatureRefusal) {
		t.Fatalf("a delivery signed with the removed secret: %d %s", status, b)
	}
	if status, b := deliver(second, "msg_after"); status != 200 {
		t.Fatalf("a delivery signed with the remaining secret: %d %s", status, b)
	}
	// The last secret stays.
	out, errs, code = cli("integrations", "secrets", "remove", "1", "2")
	if code != 1 || out != "" || !strings.Contains(errs, "409 conflict") || !strings.Contains(errs, "only secret") ||
		!strings.Contains(errs, "hookhouse integrations secrets add 1") {
		t.Fatalf("removing the last secret: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	// A rollout's switch, both ways: monitor, then back to enforce.
	out, errs, code = cli("integrations", "verify", "1", "--mode", "monitor")
	if code != 0 || !strings.Contains(out, "Verify         standard-webhooks, monitor (bad signatures are counted, not refused), tolerance 5m\n") ||
		!strings.Contains(out, "Dedupe window  48h\n") || !strings.Contains(out, "hookhouse integrations verify 1 --mode enforce") {
		t.Fatalf("integrations verify --mode monitor: exit %d\n%s%s", code, out, errs)
	}
	out, errs, code = cli("integrations", "show", "1")
	if code != 0 || !strings.Contains(out, "Verify                standard-webhooks, monitor (bad signatures are counted, not refused), tolerance 5m\n") {
		t.Fatalf("show after switching to monitor: exit %d\n%s%s", code, out, errs)
	}
	out, errs, code = cli("integrations", "verify", "1", "--mode", "enforce")
	if code != 0 || !strings.Contains(out, "standard-webhooks, enforce, tolerance 5m\n") || !strings.Contains(out, "now get 401") {
		t.Fatalf("integrations verify --mode enforce: exit %d\n%s%s", code, out, errs)
	}

	out, errs, code = cli("integrations", "show", "1")
	for _, want := range []string{
		"Verify                standard-webhooks, enforce, tolerance 5m\n",
		"Secrets               ****" + second[len(second)-4:] + " (id 2, created ",
		"Signature failures    1 (since the server started)\n",
		"Last failure          ",
		"Records deduplicated  1\n",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("show lacks %q: exit %d\n%s%s", want, code, out, errs)
		}
	}
	if strings.Contains(out, first) || strings.Contains(out, second) || strings.Contains(out, "****"+m[1]) {
		t.Errorf("show prints a secret or the removed one:\n%s", out)
	}
	// Nothing the CLI talked to logged a secret either.
	if logs := in.Logs.String(); strings.Contains(logs, first) || strings.Contains(logs, second) {
		t.Error("the server log holds a signing secret")
	}
}

// getRaw GETs an admin API path and returns the body as text.
func getRaw(t *testing.T, in *instance, path string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, in.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+in.Key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}
