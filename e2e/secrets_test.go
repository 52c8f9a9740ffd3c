package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/hookhouse/hookhouse/client"
)

// TestSecretsStayOutOfLogs runs a full session against the binary with debug
// logs and checks that neither a token nor the admin key reaches the log output.
// The admin key appears exactly once, in the first start's one-time reveal on
// stdout, and never on a later start.
func TestSecretsStayOutOfLogs(t *testing.T) {
	dir := t.TempDir()
	addr := freePort(t)
	srv := startChild(t, dir, addr, "--log-format", "json")
	key := adminKey(t, dir)
	ctx := context.Background()
	c := client.New(srv.URL, key)

	integ, err := c.CreateIntegration(ctx, client.NewIntegration{Name: "Stitch Vero", Type: "vero"})
	if err != nil {
		t.Fatal(err)
	}
	var tokens []string
	var urls []*client.WebhookURL
	for i := 0; i < 2; i++ {
		u, err := c.GenerateURL(ctx, integ.ID)
		if err != nil {
			t.Fatal(err)
		}
		urls = append(urls, u)
		tokens = append(tokens, u.URL[len(u.URL)-64:])
	}
	hook := func(tok string) string { return srv.URL + "/v1/clients/1/token/" + tok }
	for _, f := range veroFiles(t) {
		body := mustRead(t, f)
		if status, _ := post(t, hook(tokens[0]), "application/json", body); status != 200 {
			t.Fatalf("POST %s = %d", f, status)
		}
	}
	post(t, hook(tokens[1]), "text/plain", []byte("x"))                 // 415
	post(t, hook(tokens[1]), "application/json", []byte("{"))           // 400
	post(t, hook(tokens[1][:63]+"x"), "application/json", []byte("{}")) // 401, near-miss token
	post(t, hook(strings.ToUpper(tokens[1])), "application/json", []byte("{}"))
	req, _ := http.NewRequest("GET", hook(tokens[1]), nil) // 405
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	if err := c.RevokeURL(ctx, integ.ID, urls[0].ID); err != nil {
		t.Fatal(err)
	}
	post(t, hook(tokens[0]), "application/json", []byte("{}")) // 401 after revoke
	client.New(srv.URL, key+"nope").Integrations(ctx)          // wrong admin key
	if _, err := c.Query(ctx, "select count(*) from stitch_vero.data"); err != nil && !strings.Contains(err.Error(), "stitch_vero") {
		t.Logf("query: %v", err)
	}
	c.Status(ctx)
	srv.Term(t)

	srv2 := startChild(t, dir, addr, "--log-format", "json")
	srv2.Term(t)

	logs := srv.Stderr.String() + srv2.Stderr.String()
	if !strings.Contains(logs, "/v1/clients/1/token/****") {
		t.Fatalf("request logs do not show masked webhook paths; the test would prove nothing:\n%s", logs)
	}
	for _, secret := range append(tokens, key, strings.ToUpper(tokens[1]), tokens[1][:63]+"x") {
		if strings.Contains(logs, secret) || strings.Contains(logs, secret[4:40]) {
			t.Fatalf("a secret reached the log output")
		}
	}
	if n := strings.Count(srv.Stdout.String(), key); n != 1 {
		t.Fatalf("first start printed the admin key %d times, want exactly once", n)
	}
	if strings.Contains(srv2.Stdout.String(), key) || strings.Contains(srv2.Stdout.String(), "Admin key") {
		t.Fatal("a later start revealed the admin key again")
	}
	for _, tok := range tokens {
		if strings.Contains(srv.Stdout.String(), tok) {
			t.Fatal("stdout holds a token")
		}
	}
}
