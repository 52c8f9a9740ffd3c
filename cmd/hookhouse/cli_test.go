package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/client"
)

// These tests run the CLI against a fake of the admin API; the end-to-end tests with
// the real server live elsewhere.

const testKey = "hh_test_key_5f0c1d2e3a4b"

var created = time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)

// fakeAPI keeps integrations and URLs in memory and answers like SPEC §6 says.
type fakeAPI struct {
	mu           sync.Mutex
	integrations []*client.Integration
	urls         map[int64][]*client.WebhookURL
	nextID       int64
	nextURLID    int64
	queries      map[string]string // SQL → raw JSON answer
	status       client.Status
	statusCode   int
	lastAuth     string
	lastCreate   []byte // the body of the latest POST /api/v1/integrations
	secrets      map[int64][]*client.Secret
	nextSecretID map[int64]int64
}

func newFakeAPI(t *testing.T) (*fakeAPI, *httptest.Server) {
	t.Helper()
	f := &fakeAPI{urls: map[int64][]*client.WebhookURL{}, queries: map[string]string{}, statusCode: 200,
		secrets: map[int64][]*client.Secret{}, nextSecretID: map[int64]int64{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/integrations", f.create)
	mux.HandleFunc("GET /api/v1/integrations", f.list)
	mux.HandleFunc("GET /api/v1/integrations/{id}", f.show)
	mux.HandleFunc("DELETE /api/v1/integrations/{id}", f.delete)
	mux.HandleFunc("PATCH /api/v1/integrations/{id}", f.update)
	mux.HandleFunc("POST /api/v1/integrations/{id}/webhook-urls", f.generate)
	mux.HandleFunc("GET /api/v1/integrations/{id}/webhook-urls", f.listURLs)
	mux.HandleFunc("DELETE /api/v1/integrations/{id}/webhook-urls/{url_id}", f.revoke)
	mux.HandleFunc("POST /api/v1/integrations/{id}/secrets", f.addSecret)
	mux.HandleFunc("GET /api/v1/integrations/{id}/secrets", f.listSecrets)
	mux.HandleFunc("DELETE /api/v1/integrations/{id}/secrets/{secret_id}", f.removeSecret)
	mux.HandleFunc("POST /api/v1/query", f.query)
	mux.HandleFunc("GET /status.json", f.statusJSON)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.lastAuth = r.Header.Get("Authorization")
		if strings.HasPrefix(r.URL.Path, "/api/") && f.lastAuth != "Bearer "+testKey {
			apiError(w, 401, "unauthorized", "missing or wrong admin key")
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return f, srv
}

// auth is the Authorization header of the latest request.
func (f *fakeAPI) auth() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastAuth
}

func (f *fakeAPI) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.integrations)
}

func apiError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (f *fakeAPI) find(w http.ResponseWriter, r *http.Request) *client.Integration {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	for _, in := range f.integrations {
		if in.ID == id {
			return in
		}
	}
	apiError(w, 404, "not_found", fmt.Sprintf("no integration %s", r.PathValue("id")))
	return nil
}

func (f *fakeAPI) create(w http.ResponseWriter, r *http.Request) {
	var in client.NewIntegration
	f.lastCreate, _ = io.ReadAll(r.Body)
	if err := json.Unmarshal(f.lastCreate, &in); err != nil || in.Name == "" {
		apiError(w, 400, "bad_request", "name is required")
		return
	}
	schema := in.Schema
	if schema == "" {
		schema = strings.ReplaceAll(strings.ToLower(in.Name), " ", "_")
	}
	for _, other := range f.integrations {
		if other.Schema == schema {
			apiError(w, 409, "conflict", fmt.Sprintf("integration %q already uses schema %s", other.Name, schema))
			return
		}
	}
	f.nextID++ // ids are never reused
	n := &client.Integration{ID: f.nextID, Name: in.Name, Type: in.Type, Schema: schema,
		PrimaryKey: in.PrimaryKey, CreatedAt: created}
	f.integrations = append(f.integrations, n)
	shown := *n
	if v := in.Verify; v != nil {
		stored := *v
		stored.Secret = ""
		if stored.Mode == "" {
			stored.Mode = "enforce"
		}
		if stored.Tolerance == "" {
			stored.Tolerance = "5m0s"
		}
		if stored.VerifyToken != "" {
			stored.VerifyToken = "(set)"
		}
		n.Verify = &stored
		s, revealed := f.newSecret(n, v.Secret)
		shown = *n
		shown.Secrets, shown.Secret = []client.Secret{*s}, revealed
	}
	reply(w, 201, shown)
}

// generated is the secret the fake generates: standard-webhooks' format.
const generated = "whsec_Z2VuZXJhdGVkIHNlY3JldCBvZiAzMiBieXRlcyEhIQ=="

// newSecret adds secret ("": a generated one, returned) as in's next secret; like
// the server, the fake keeps only its hint.
func (f *fakeAPI) newSecret(in *client.Integration, secret string) (*client.Secret, string) {
	revealed := ""
	if secret == "" {
		secret, revealed = generated, generated
	}
	f.nextSecretID[in.ID]++
	s := &client.Secret{ID: f.nextSecretID[in.ID], Hint: secret[len(secret)-4:], CreatedAt: created}
	f.secrets[in.ID] = append(f.secrets[in.ID], s)
	return s, revealed
}

func (f *fakeAPI) addSecret(w http.ResponseWriter, r *http.Request) {
	in := f.find(w, r)
	if in == nil {
		return
	}
	var req struct{ Secret string }
	json.NewDecoder(r.Body).Decode(&req)
	if in.Verify == nil {
		apiError(w, 400, "invalid", fmt.Sprintf("integration %d does not verify signatures", in.ID))
		return
	}
	if len(f.secrets[in.ID]) >= 2 {
		apiError(w, 409, "conflict", fmt.Sprintf("integration %d already has 2 secrets: remove the old one (DELETE …/secrets/{id}) before adding another", in.ID))
		return
	}
	s, revealed := f.newSecret(in, req.Secret)
	shown := *s
	shown.Secret = revealed
	reply(w, 201, shown)
}

// update is PATCH /api/v1/integrations/{id}: a verifying integration's mode,
// tolerance and dedupe window.
func (f *fakeAPI) update(w http.ResponseWriter, r *http.Request) {
	in := f.find(w, r)
	if in == nil {
		return
	}
	var req struct {
		Verify *struct {
			Mode      *string `json:"mode"`
			Tolerance *string `json:"tolerance"`
		} `json:"verify"`
		DedupeWindow *string `json:"dedupe_window"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		apiError(w, 400, "bad_request", "the body is not JSON")
		return
	}
	if in.Verify == nil {
		apiError(w, 400, "invalid", fmt.Sprintf("integration %d does not verify signatures; only integrations created with \"verify\" can change it", in.ID))
		return
	}
	next := *in.Verify
	if v := req.Verify; v != nil {
		if v.Mode != nil {
			if *v.Mode != "enforce" && *v.Mode != "monitor" {
				apiError(w, 400, "invalid", fmt.Sprintf("verify: unknown mode %q: use enforce or monitor", *v.Mode))
				return
			}
			next.Mode = *v.Mode
		}
		if v.Tolerance != nil {
			d, err := time.ParseDuration(*v.Tolerance)
			if err != nil || d < time.Second || d > 24*time.Hour {
				apiError(w, 400, "invalid", fmt.Sprintf("verify: tolerance %s is out of range: use 1s to 24h0m0s (default 5m0s)", *v.Tolerance))
				return
			}
			next.Tolerance = d.String()
		}
	}
	if req.DedupeWindow != nil {
		d, _ := time.ParseDuration(*req.DedupeWindow)
		in.DedupeWindow = d.String()
	}
	in.Verify = &next
	shown := *in
	for _, s := range f.secrets[in.ID] {
		shown.Secrets = append(shown.Secrets, *s)
	}
	reply(w, 200, shown)
}

func (f *fakeAPI) listSecrets(w http.ResponseWriter, r *http.Request) {
	in := f.find(w, r)
	if in == nil {
		return
	}
	out := []client.Secret{}
	for _, s := range f.secrets[in.ID] {
		out = append(out, *s)
	}
	reply(w, 200, out)
}

func (f *fakeAPI) removeSecret(w http.ResponseWriter, r *http.Request) {
	in := f.find(w, r)
	if in == nil {
		return
	}
	list := f.secrets[in.ID]
	for i, s := range list {
		if strconv.FormatInt(s.ID, 10) != r.PathValue("secret_id") {
			continue
		}
		if len(list) == 1 {
			apiError(w, 409, "conflict", fmt.Sprintf("secret %d is integration %d's only secret: add the new one first, then remove this one", s.ID, in.ID))
			return
		}
		f.secrets[in.ID] = append(list[:i:i], list[i+1:]...)
		w.WriteHeader(204)
		return
	}
	apiError(w, 404, "not_found", fmt.Sprintf("integration %d has no secret %s", in.ID, r.PathValue("secret_id")))
}

// createBody is the latest POST /api/v1/integrations, decoded.
func (f *fakeAPI) createBody(t *testing.T) map[string]any {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var m map[string]any
	if err := json.Unmarshal(f.lastCreate, &m); err != nil {
		t.Fatalf("create body %q: %v", f.lastCreate, err)
	}
	return m
}

func (f *fakeAPI) list(w http.ResponseWriter, r *http.Request) {
	out := []client.Integration{}
	for _, in := range f.integrations {
		out = append(out, *in)
	}
	reply(w, 200, out)
}

func (f *fakeAPI) show(w http.ResponseWriter, r *http.Request) {
	in := f.find(w, r)
	if in == nil {
		return
	}
	withStats := *in
	last := created.Add(time.Hour)
	withStats.Stats = &client.Stats{RecordsReceived: 14, RecordsLoaded: 12, RecordsRejected: 1,
		LastReceivedAt: &last, Backlog: 1, LagSeconds: 0.25}
	if in.Verify != nil {
		failures, dropped := int64(3), int64(2)
		withStats.Stats.SignatureFailures, withStats.Stats.RecordsDeduplicated = &failures, &dropped
		withStats.Stats.LastSignatureFailure = &client.Failure{At: last, Reason: "no Webhook-Signature header"}
		for _, s := range f.secrets[in.ID] {
			withStats.Secrets = append(withStats.Secrets, *s)
		}
	}
	reply(w, 200, withStats)
}

func (f *fakeAPI) delete(w http.ResponseWriter, r *http.Request) {
	in := f.find(w, r)
	if in == nil {
		return
	}
	for i, other := range f.integrations {
		if other == in {
			f.integrations = append(f.integrations[:i], f.integrations[i+1:]...)
		}
	}
	w.WriteHeader(204)
}

func (f *fakeAPI) generate(w http.ResponseWriter, r *http.Request) {
	in := f.find(w, r)
	if in == nil {
		return
	}
	active := 0
	for _, u := range f.urls[in.ID] {
		if u.RevokedAt == nil {
			active++
		}
	}
	if active >= 2 {
		apiError(w, 409, "conflict", "integration already has 2 active webhook URLs; revoke one first")
		return
	}
	f.nextURLID++
	token := strings.Repeat("0", 60) + fmt.Sprintf("%04x", 0xab00+f.nextURLID)
	u := &client.WebhookURL{ID: f.nextURLID, Hint: token[60:], CreatedAt: created}
	f.urls[in.ID] = append(f.urls[in.ID], u)
	shown := *u
	shown.URL = fmt.Sprintf("http://localhost:8080/v1/clients/%d/token/%s", in.ID, token)
	reply(w, 201, shown)
}

func (f *fakeAPI) listURLs(w http.ResponseWriter, r *http.Request) {
	in := f.find(w, r)
	if in == nil {
		return
	}
	out := []client.WebhookURL{}
	for _, u := range f.urls[in.ID] {
		out = append(out, *u)
	}
	reply(w, 200, out)
}

func (f *fakeAPI) revoke(w http.ResponseWriter, r *http.Request) {
	in := f.find(w, r)
	if in == nil {
		return
	}
	for _, u := range f.urls[in.ID] {
		if strconv.FormatInt(u.ID, 10) == r.PathValue("url_id") {
			if u.RevokedAt != nil {
				apiError(w, 409, client.CodeAlreadyRevoked, fmt.Sprintf("webhook URL ****%s (id %d) of integration %d was already revoked at %s; nothing changed",
					u.Hint, u.ID, in.ID, u.RevokedAt.Format(time.RFC3339)))
				return
			}
			at := created.Add(2 * time.Hour)
			u.RevokedAt = &at
			w.WriteHeader(204)
			return
		}
	}
	apiError(w, 404, "not_found", "no such webhook URL")
}

func (f *fakeAPI) query(w http.ResponseWriter, r *http.Request) {
	var in struct{ SQL string }
	json.NewDecoder(r.Body).Decode(&in)
	answer, ok := f.queries[in.SQL]
	if answer == "-" {
		apiError(w, 400, "query_failed", "Catalog Error: Table with name data does not exist!\nDid you mean \"stitch_vero.data\"?")
		return
	}
	if !ok {
		apiError(w, 400, "bad_request", fmt.Sprintf("Parser Error: syntax error in %q", in.SQL))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, answer)
}

func (f *fakeAPI) statusJSON(w http.ResponseWriter, r *http.Request) {
	st := f.status
	if f.lastAuth != "Bearer "+testKey {
		st.Integrations = nil
	}
	reply(w, f.statusCode, st)
}

// setup starts a fake API and points the CLI at it through the environment, with the
// test key and an empty data dir.
func setup(t *testing.T) (*fakeAPI, *httptest.Server) {
	t.Helper()
	f, srv := newFakeAPI(t)
	t.Setenv("HOOKHOUSE_SERVER", srv.URL)
	t.Setenv("HOOKHOUSE_ADMIN_KEY", testKey)
	t.Setenv("HOOKHOUSE_DATA", t.TempDir())
	return f, srv
}

// hh runs the CLI with args and returns its output and exit status.
func hh(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(t.Context(), args, strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), code
}

// mustRun runs the CLI and fails the test unless it succeeds.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := hh(t, args...)
	if code != 0 {
		t.Fatalf("hookhouse %s: exit %d, stderr:\n%s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// wantFailure runs the CLI, wants exit status code and stderr being exactly one line
// "hookhouse: <reason>" with reason containing every one of want.
func wantFailure(t *testing.T, code int, want []string, args ...string) string {
	t.Helper()
	_, errOut, got := hh(t, args...)
	if got != code {
		t.Fatalf("hookhouse %s: exit %d, want %d; stderr:\n%s", strings.Join(args, " "), got, code, errOut)
	}
	if !strings.HasPrefix(errOut, "hookhouse: ") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("hookhouse %s: stderr = %q, want one line starting with \"hookhouse: \"", strings.Join(args, " "), errOut)
	}
	for _, w := range want {
		if !strings.Contains(errOut, w) {
			t.Errorf("hookhouse %s: stderr = %q, want it to contain %q", strings.Join(args, " "), errOut, w)
		}
	}
	return errOut
}

func decodeJSON[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, s)
	}
	return v
}

func TestUsage(t *testing.T) {
	setup(t)

	out, errOut, code := hh(t)
	if code != 2 || out != "" || !strings.Contains(errOut, "Usage: hookhouse <command>") {
		t.Errorf("no args: exit %d, stdout %q, stderr %q; want usage on stderr and exit 2", code, out, errOut)
	}
	for _, help := range []string{"help", "-h", "--help"} {
		out, _, code := hh(t, help)
		if code != 0 || !strings.Contains(out, "integrations add") || !strings.Contains(out, "HOOKHOUSE_ADMIN_KEY") {
			t.Errorf("%s: exit %d, stdout %q; want usage on stdout and exit 0", help, code, out)
		}
	}

	out, errOut, code = hh(t, "bogus")
	if code != 2 || !strings.Contains(errOut, "Usage: hookhouse") || !strings.HasSuffix(errOut, "hookhouse: unknown command \"bogus\"\n") {
		t.Errorf("unknown command: exit %d, stderr %q; want usage, the reason and exit 2", code, errOut)
	}

	_, errOut, code = hh(t, "integrations")
	if code != 2 || !strings.Contains(errOut, "integrations show <id>") || strings.Contains(errOut, "urls generate") {
		t.Errorf("integrations: exit %d, stderr %q; want its commands and exit 2", code, errOut)
	}
	out, _, code = hh(t, "urls", "-h")
	if code != 0 || !strings.Contains(out, "urls revoke <integration id> <url id>") {
		t.Errorf("urls -h: exit %d, stdout %q", code, out)
	}
	wantFailure(t, 2, []string{`urls: unknown command "bogus"`, "hookhouse urls -h"}, "urls", "bogus")

	for _, args := range [][]string{{"urls", "generate", "-h"}, {"help", "urls", "generate"}, {"urls", "generate", "--help"}} {
		out, _, code := hh(t, args...)
		words := strings.Join(strings.Fields(out), " ") // wrapping aside
		for _, want := range []string{
			"Usage: hookhouse urls generate <integration id> Create a webhook URL; it is shown only once.",
			"Reaching the server: --server URL the server's base URL (default http://localhost:8080; env HOOKHOUSE_SERVER)",
			"--key KEY the admin KEY (default: the one in <data>/admin.key; env HOOKHOUSE_ADMIN_KEY)",
			"--data DIR the server's data DIR, to read admin.key from (default ./hookhouse-data; env HOOKHOUSE_DATA)",
			"Output: --json print JSON, for scripts",
		} {
			if code != 0 || !strings.Contains(words, want) {
				t.Errorf("%v: exit %d; want the command's usage and flags with %q, got:\n%s", args, code, want, out)
			}
		}
		if strings.Contains(out, "\n  -server") || strings.Contains(out, "default false") {
			t.Errorf("%v: Go's raw flag output:\n%s", args, out)
		}
	}
	// A command's own flags come first; only the flags that apply are listed.
	out, _, _ = hh(t, "integrations", "add", "--help")
	if i, j := strings.Index(out, "--name TEXT"), strings.Index(out, "--server URL"); i < 0 || j < i {
		t.Errorf("integrations add --help: its own flags do not come first:\n%s", out)
	}
	out, _, _ = hh(t, "sql", "--help")
	if !strings.Contains(out, "--csv ") || !strings.Contains(out, client.ListTablesSQL) || !strings.Contains(out, `"show tables"`) {
		t.Errorf("sql --help does not show --csv and how to list the tables:\n%s", out)
	}
	out, _, code = hh(t, "version", "-h")
	if code != 0 || !strings.Contains(out, "--json") || strings.Contains(out, "--server") || strings.Contains(out, "--key") || strings.Contains(out, "--data") {
		t.Errorf("version -h: exit %d, lists flags that do not apply:\n%s", code, out)
	}
	wantFailure(t, 2, []string{"flag provided but not defined: -server"}, "version", "--server", "http://x")

	// serve's help: grouped, double-dash flags, human sizes and durations, env names.
	for _, args := range [][]string{{"serve", "--help"}, {"serve", "-h"}, {"help", "serve"}} {
		out, errOut, code := hh(t, args...)
		words := strings.Join(strings.Fields(out), " ")
		for _, want := range []string{
			"Usage: hookhouse serve [flags]",
			"Listening: --listen ADDR listen on ADDR, host:port or :port (default :8080; env HOOKHOUSE_LISTEN)",
			"Receiving and loading: --max-body SIZE", "(default 20MiB; env HOOKHOUSE_MAX_BODY)",
			"--retention TIME keep loaded records in the log for TIME (default 168h; env HOOKHOUSE_RETENTION)",
			"Storage:", "Logging:", "--public-url URL",
		} {
			if code != 0 || errOut != "" || !strings.Contains(words, want) {
				t.Errorf("%v: exit %d, stderr %q; want %q in:\n%s", args, code, errOut, want, out)
			}
		}
		for _, bad := range []string{"20971520", "168h0m0s", "\n  -max-body", "\n  -listen"} {
			if strings.Contains(out, bad) {
				t.Errorf("%v: help holds %q:\n%s", args, bad, out)
			}
		}
	}
	_, errOut, code = hh(t, "serve", "--bogus")
	if code != 2 || errOut != "hookhouse: config: flag provided but not defined: -bogus (see 'hookhouse serve --help')\n" {
		t.Errorf("serve --bogus: exit %d, stderr %q", code, errOut)
	}

	wantFailure(t, 2, []string{"integrations list", "flag provided but not defined: -bogus"}, "integrations", "list", "--bogus")
	wantFailure(t, 2, []string{`unexpected argument "extra"`}, "integrations", "list", "extra")
}

func TestVersion(t *testing.T) {
	// No server at all: version must not need one.
	t.Setenv("HOOKHOUSE_SERVER", "http://127.0.0.1:1")
	t.Setenv("HOOKHOUSE_ADMIN_KEY", "")
	t.Setenv("HOOKHOUSE_DATA", t.TempDir())

	out := mustRun(t, "version")
	if !strings.HasPrefix(out, "hookhouse dev") || strings.Count(out, "\n") != 1 {
		t.Errorf("version = %q, want one line starting with \"hookhouse dev\"", out)
	}
	if out2 := mustRun(t, "--version"); out2 != out {
		t.Errorf("--version = %q, want %q", out2, out)
	}
	v := decodeJSON[map[string]string](t, mustRun(t, "version", "--json"))
	if "hookhouse "+v["version"]+"\n" != out {
		t.Errorf("version --json = %v, want the same version as %q", v, out)
	}

	defer func(old string) { version = old }(version)
	version = "v1.2.3"
	if out := mustRun(t, "version"); out != "hookhouse v1.2.3\n" {
		t.Errorf("version with -X main.version=v1.2.3 = %q", out)
	}
}

func TestIntegrationsAdd(t *testing.T) {
	f, _ := setup(t)

	out := mustRun(t, "integrations", "add", "--name", "Stitch Vero", "--type", "vero")
	want := `Created integration 1.

ID       1
Name     Stitch Vero
Type     vero
Schema   stitch_vero
Created  2026-11-02T10:00:00Z

next: hookhouse urls generate 1
`
	if out != want {
		t.Errorf("integrations add:\n%s\nwant:\n%s", out, want)
	}

	out = mustRun(t, "integrations", "add", "--json", "--name", "Orders", "--type", "webhooks", "--schema", "shop", "--primary-key", "order_id")
	in := decodeJSON[client.Integration](t, out)
	if in.ID != 2 || in.Schema != "shop" || in.PrimaryKey != "order_id" || in.Type != "webhooks" || !in.CreatedAt.Equal(created) {
		t.Errorf("integrations add --json = %+v", in)
	}
	if f.count() != 2 {
		t.Errorf("server holds %d integrations, want 2", f.count())
	}

	// The server's reason, one line, exit 1.
	errOut := wantFailure(t, 1, nil, "integrations", "add", "--name", "Stitch Vero", "--type", "vero")
	if errOut != "hookhouse: 409 conflict: integration \"Stitch Vero\" already uses schema stitch_vero\n" {
		t.Errorf("conflict: stderr = %q", errOut)
	}

	wantFailure(t, 2, []string{"integrations add", "--name is required"}, "integrations", "add", "--type", "vero")
	wantFailure(t, 2, []string{"--type is required: vero or webhooks"}, "integrations", "add", "--name", "x")
}

func TestIntegrationsListAndShow(t *testing.T) {
	setup(t)

	if out := mustRun(t, "integrations", "list"); !strings.HasPrefix(out, "No integrations yet.") {
		t.Errorf("empty list = %q", out)
	}
	if out := mustRun(t, "integrations", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("empty list --json = %q, want []", out)
	}

	mustRun(t, "integrations", "add", "--name", "Stitch Vero", "--type", "vero")
	mustRun(t, "integrations", "add", "--name", "Orders", "--type", "webhooks", "--schema", "shop")

	out := mustRun(t, "integrations", "list")
	want := `ID  NAME         TYPE      SCHEMA       CREATED
1   Stitch Vero  vero      stitch_vero  2026-11-02T10:00:00Z
2   Orders       webhooks  shop         2026-11-02T10:00:00Z
`
	if out != want {
		t.Errorf("integrations list:\n%s\nwant:\n%s", out, want)
	}
	list := decodeJSON[[]client.Integration](t, mustRun(t, "integrations", "list", "--json"))
	if len(list) != 2 || list[1].Name != "Orders" {
		t.Errorf("integrations list --json = %+v", list)
	}

	out = mustRun(t, "integrations", "show", "1")
	want = `ID                1
Name              Stitch Vero
Type              vero
Schema            stitch_vero
Created           2026-11-02T10:00:00Z
Records received  14
Records loaded    12
Records rejected  1 (see stitch_vero._sdc_rejected)
Last received     2026-11-02T11:00:00Z
Last loaded       -
Backlog           1
Lag               250ms
`
	if out != want {
		t.Errorf("integrations show:\n%s\nwant:\n%s", out, want)
	}
	in := decodeJSON[client.Integration](t, mustRun(t, "integrations", "show", "1", "--json"))
	if in.Stats == nil || in.Stats.RecordsLoaded != 12 || in.Stats.LastLoadedAt != nil {
		t.Errorf("integrations show --json stats = %+v", in.Stats)
	}

	errOut := wantFailure(t, 1, nil, "integrations", "show", "9")
	if errOut != "hookhouse: 404 not_found: no integration 9\n" {
		t.Errorf("show unknown: stderr = %q", errOut)
	}
	wantFailure(t, 2, []string{"integration id must be a positive integer", `"abc"`}, "integrations", "show", "abc")
	wantFailure(t, 2, []string{"missing integration id"}, "integrations", "show")
}

func TestIntegrationsDelete(t *testing.T) {
	f, _ := setup(t)
	mustRun(t, "integrations", "add", "--name", "Stitch Vero", "--type", "vero")

	wantFailure(t, 1, []string{`not deleting integration 1 "Stitch Vero" without --yes`, "stitch_vero"}, "integrations", "delete", "1")
	if f.count() != 1 {
		t.Fatal("integration deleted without --yes")
	}

	out := mustRun(t, "integrations", "delete", "1", "--yes")
	if !strings.HasPrefix(out, "Deleted integration 1") {
		t.Errorf("delete = %q", out)
	}
	if f.count() != 0 {
		t.Error("integration still there after delete --yes")
	}

	mustRun(t, "integrations", "add", "--name", "Other", "--type", "vero")
	res := decodeJSON[map[string]any](t, mustRun(t, "integrations", "delete", "-y", "--json", "2"))
	if res["deleted"] != true || res["id"] != float64(2) {
		t.Errorf("delete --json = %v", res)
	}
	wantFailure(t, 1, []string{"404 not_found"}, "integrations", "delete", "2", "--yes")
}

func TestURLs(t *testing.T) {
	setup(t)
	mustRun(t, "integrations", "add", "--name", "Stitch Vero", "--type", "vero")

	out := mustRun(t, "urls", "generate", "1")
	token := strings.Repeat("0", 60) + "ab01"
	for _, want := range []string{
		"New webhook URL ****ab01 (id 1, created 2026-11-02T10:00:00Z) of integration 1:\n",
		"http://localhost:8080/v1/clients/1/token/" + token,
		"shown only this once",
		"hookhouse urls revoke 1 1",
		`In Vero: Settings (the gear icon) → Integrations → View next to "Custom Integration (Webhooks)" → Add Webhooks Integration → paste the URL into "Notification URL" → Save → tick the events to track → Save.`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("urls generate: output lacks %q:\n%s", want, out)
		}
	}

	// Flags after the positional argument.
	u := decodeJSON[client.WebhookURL](t, mustRun(t, "urls", "generate", "1", "--json"))
	if u.ID != 2 || !strings.HasSuffix(u.URL, "ab02") || u.Hint != "ab02" {
		t.Errorf("urls generate --json = %+v", u)
	}

	errOut := wantFailure(t, 1, nil, "urls", "generate", "1")
	if errOut != "hookhouse: 409 conflict: integration already has 2 active webhook URLs; revoke one first\n" {
		t.Errorf("third URL: stderr = %q", errOut)
	}

	out = mustRun(t, "urls", "revoke", "1", "2")
	if out != "Revoked webhook URL ****ab02 (id 2, created 2026-11-02T10:00:00Z) of integration 1: requests to it now get 401.\n" {
		t.Errorf("urls revoke = %q", out)
	}
	// The generated URL is named by its hint, never "URL 2 of integration 1".
	out = mustRun(t, "urls", "generate", "1")
	if !strings.Contains(out, "New webhook URL ****ab03 (id 3, created 2026-11-02T10:00:00Z) of integration 1:") {
		t.Errorf("urls generate:\n%s", out)
	}
	if m := regexp.MustCompile(`URL \d+ of`).FindString(out); m != "" {
		t.Errorf("urls generate says %q, which reads like a count:\n%s", m, out)
	}

	// Revoking again says so and when, and is no failure: the URL is revoked.
	out = mustRun(t, "urls", "revoke", "1", "2")
	if out != "Webhook URL ****ab02 (id 2, created 2026-11-02T10:00:00Z) of integration 1 was already revoked at 2026-11-02T12:00:00Z; nothing changed.\n" {
		t.Errorf("urls revoke of a revoked URL = %q", out)
	}
	res := decodeJSON[map[string]any](t, mustRun(t, "urls", "revoke", "--json", "1", "1"))
	if res["revoked"] != true || res["already_revoked"] != false || res["id"] != float64(1) || res["integration_id"] != float64(1) ||
		res["hint"] != "ab01" || res["revoked_at"] != "2026-11-02T12:00:00Z" {
		t.Errorf("urls revoke --json = %v", res)
	}
	res = decodeJSON[map[string]any](t, mustRun(t, "urls", "revoke", "--json", "1", "1"))
	if res["revoked"] != true || res["already_revoked"] != true || res["revoked_at"] != "2026-11-02T12:00:00Z" {
		t.Errorf("urls revoke --json of a revoked URL = %v", res)
	}
	wantFailure(t, 1, []string{"404 not_found: no such webhook URL"}, "urls", "revoke", "1", "7")
	wantFailure(t, 2, []string{"missing url id"}, "urls", "revoke", "1")
	wantFailure(t, 2, []string{"url id must be a positive integer"}, "urls", "revoke", "1", "0")

	out = mustRun(t, "urls", "list", "1")
	want := `HINT      URL_ID  CREATED               LAST_USED  REVOKED
****ab01  1       2026-11-02T10:00:00Z  -          2026-11-02T12:00:00Z
****ab02  2       2026-11-02T10:00:00Z  -          2026-11-02T12:00:00Z
****ab03  3       2026-11-02T10:00:00Z  -          -
`
	if out != want {
		t.Errorf("urls list:\n%s\nwant:\n%s", out, want)
	}
	if strings.Contains(out, token) {
		t.Error("urls list shows a token")
	}
	list := decodeJSON[[]client.WebhookURL](t, mustRun(t, "urls", "list", "1", "--json"))
	if len(list) != 3 || list[0].URL != "" || list[0].RevokedAt == nil {
		t.Errorf("urls list --json = %+v", list)
	}

	// A generic integration gets generic instructions.
	mustRun(t, "integrations", "add", "--name", "Orders", "--type", "webhooks")
	if out := mustRun(t, "urls", "generate", "2"); !strings.Contains(out, "Send events to it with POST") || strings.Contains(out, "Vero") {
		t.Errorf("urls generate for webhooks type:\n%s", out)
	}
	wantFailure(t, 1, []string{"404 not_found: no integration 9"}, "urls", "list", "9")
}

func TestSQL(t *testing.T) {
	f, _ := setup(t)
	const q = "select type, count(*) as n, max(_sdc_sequence) as seq from stitch_vero.data group by 1"
	f.queries[q] = `{"columns":["type","n","seq"],"rows":[["sent",3,1762077600000000001],["opened",12,1762077600000000042],[null,1,null]]}`
	f.queries["select email from s.data"] = `{"columns":["email"],"rows":[["a@example.com"],["tab\there, \"quoted\""]],"truncated":true}`

	out := mustRun(t, "sql", q)
	want := `type    n   seq
sent    3   1762077600000000001
opened  12  1762077600000000042
NULL    1   NULL
(3 rows)
`
	if out != want {
		t.Errorf("sql:\n%s\nwant:\n%s", out, want)
	}

	// Unquoted words make up one query; flags may follow.
	out = mustRun(t, append(append([]string{"sql"}, strings.Fields(q)...), "--csv")...)
	want = "type,n,seq\nsent,3,1762077600000000001\nopened,12,1762077600000000042\n,1,\n"
	if out != want {
		t.Errorf("sql --csv:\n%s\nwant:\n%s", out, want)
	}

	out = mustRun(t, "sql", "--json", q)
	if !strings.Contains(out, "1762077600000000001") {
		t.Errorf("sql --json lost digits of a bigint:\n%s", out)
	}
	res := decodeJSON[map[string]any](t, out)
	if cols, ok := res["columns"].([]any); !ok || len(cols) != 3 {
		t.Errorf("sql --json = %v", res)
	}

	out = mustRun(t, "sql", "select email from s.data")
	if !strings.HasSuffix(out, "(2 rows, truncated)\n") || !strings.Contains(out, `tab here, "quoted"`) {
		t.Errorf("truncated sql:\n%s", out)
	}
	stdout, stderr, code := hh(t, "sql", "--csv", "select email from s.data")
	if code != 0 || stdout != "email\na@example.com\n\"tab\there, \"\"quoted\"\"\"\n" || !strings.Contains(stderr, "truncated") {
		t.Errorf("truncated sql --csv: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	// "--" ends the flags, so a query may start with a dash.
	f.queries["-- count\nselect 1"] = `{"columns":["1"],"rows":[[1]]}`
	if out := mustRun(t, "sql", "--json", "--", "-- count\nselect 1"); !strings.Contains(out, `"rows"`) {
		t.Errorf("sql -- : %q", out)
	}

	wantFailure(t, 1, []string{"400 bad_request: Parser Error: syntax error"}, "sql", "selec 1")

	// "show tables" lists the integration tables, on either warehouse.
	f.queries[client.ListTablesSQL] = `{"columns":["table_schema","table_name"],"rows":[["stitch_vero","_sdc_rejected"],["stitch_vero","data"]]}`
	for _, q := range []string{"show tables", "SHOW TABLES;", " Show  Tables "} {
		stdout, stderr, code := hh(t, "sql", q)
		if code != 0 || stdout != "table_schema  table_name\nstitch_vero   _sdc_rejected\nstitch_vero   data\n(2 rows)\n" ||
			!strings.Contains(stderr, "listing the tables of the integration schemas") {
			t.Errorf("sql %q: exit %d, stdout:\n%s\nstderr: %s", q, code, stdout, stderr)
		}
	}
	// A missing table points at it.
	f.queries["select * from nope.data"] = "-"
	wantFailure(t, 1, []string{`hookhouse sql "show tables" lists the integration tables`}, "sql", "select * from nope.data")
	wantFailure(t, 2, []string{"missing query"}, "sql")
	wantFailure(t, 2, []string{"--csv and --json"}, "sql", "--csv", "--json", q)
}

func TestStatus(t *testing.T) {
	f, _ := setup(t)
	last := created.Add(time.Hour)
	f.status = client.Status{Status: "degraded", Version: "1.0.0",
		Components: []client.Component{
			{Name: "receiver", Status: "operational"},
			{Name: "log", Status: "operational"},
			{Name: "loader", Status: "degraded", Message: "warehouse slow"},
			{Name: "warehouse", Status: "operational"},
		},
		Integrations: []client.IntegrationStatus{{ID: 1, Name: "Stitch Vero", Schema: "stitch_vero",
			Stats: client.Stats{RecordsReceived: 10, RecordsLoaded: 9, LastReceivedAt: &last, LastLoadedAt: &last, Backlog: 1, LagSeconds: 4.24}}},
	}

	out := mustRun(t, "status")
	for _, want := range []string{
		"Status   degraded\n",
		"Version  1.0.0\n",
		"COMPONENT  STATUS       MESSAGE\n",
		"loader     degraded     warehouse slow\n",
		"ID  INTEGRATION  SCHEMA       LAST_RECEIVED         LAST_LOADED           BACKLOG  LAG   REJECTED\n",
		"1   Stitch Vero  stitch_vero  2026-11-02T11:00:00Z  2026-11-02T11:00:00Z  1        4.2s  0\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	st := decodeJSON[client.Status](t, mustRun(t, "status", "--json"))
	if len(st.Integrations) != 1 || st.Integrations[0].RecordsLoaded != 9 || len(st.Components) != 4 {
		t.Errorf("status --json = %+v", st)
	}

	// Without a key: component states only, and a note saying why.
	t.Setenv("HOOKHOUSE_ADMIN_KEY", "")
	stdout, stderr, code := hh(t, "status")
	if code != 0 || strings.Contains(stdout, "INTEGRATION") || !strings.Contains(stdout, "loader") || !strings.Contains(stderr, "no admin key") {
		t.Errorf("status without key: exit %d, stdout:\n%s\nstderr: %s", code, stdout, stderr)
	}
	if got := f.auth(); got != "" {
		t.Errorf("status without key sent Authorization %q", got)
	}

	// A wrong key is an error: nothing printed but the reason, which names where
	// the key came from and never the key.
	for _, args := range [][]string{{"status", "--key", "wrong-key-0123"}, {"status", "--json", "--key", "wrong-key-0123"}} {
		stdout, stderr, code = hh(t, args...)
		if code != 1 || stdout != "" || stderr != "hookhouse: the admin key from --key is not this server's (401 unauthorized): "+
			"pass the key in <data>/admin.key of the server's data dir, or no key to see the component states only\n" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
	t.Setenv("HOOKHOUSE_ADMIN_KEY", "wrong-key-0123")
	wantFailure(t, 1, []string{"the admin key from HOOKHOUSE_ADMIN_KEY is not this server's"}, "status")

	// A server that is down answers 503 with the report: print it and fail.
	t.Setenv("HOOKHOUSE_ADMIN_KEY", testKey)
	f.status.Status = "down"
	f.status.Components[1] = client.Component{Name: "log", Status: "down", Message: "disk full"}
	f.statusCode = 503
	stdout, stderr, code = hh(t, "status")
	if code != 1 || !strings.Contains(stdout, "log        down         disk full") || stderr != "hookhouse: the server is down: log: disk full\n" {
		t.Errorf("status when down: exit %d, stdout:\n%s\nstderr: %q", code, stdout, stderr)
	}
}

func TestAdminKeySources(t *testing.T) {
	f, _ := setup(t)
	data := t.TempDir()
	writeKey := func(dir, key string) {
		if err := os.WriteFile(filepath.Join(dir, "admin.key"), []byte(key), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	list := []string{"integrations", "list"}

	// --key wins over a wrong env key.
	t.Setenv("HOOKHOUSE_ADMIN_KEY", "wrong-key-from-env")
	mustRun(t, append(list, "--key", testKey)...)

	// The env key.
	t.Setenv("HOOKHOUSE_ADMIN_KEY", testKey)
	mustRun(t, list...)

	// The key file in --data, trimmed, when neither is set.
	t.Setenv("HOOKHOUSE_ADMIN_KEY", "")
	writeKey(data, testKey+"\n")
	mustRun(t, append(list, "--data", data)...)

	// ... and in HOOKHOUSE_DATA.
	t.Setenv("HOOKHOUSE_DATA", data)
	mustRun(t, list...)
	if f.auth() != "Bearer "+testKey {
		t.Errorf("Authorization = %q, want the key from the file", f.auth())
	}

	// The env key wins over the file.
	writeKey(data, "stale-key-in-file")
	t.Setenv("HOOKHOUSE_ADMIN_KEY", testKey)
	mustRun(t, list...)

	// A wrong key: 401, the key's source named, the key itself never shown.
	t.Setenv("HOOKHOUSE_ADMIN_KEY", "")
	errOut := wantFailure(t, 1, []string{"401 unauthorized", filepath.Join(data, "admin.key")}, list...)
	if strings.Contains(errOut, "stale-key-in-file") {
		t.Errorf("stderr shows the key: %q", errOut)
	}
	wantFailure(t, 1, []string{"401 unauthorized", "from --key"}, append(list, "--key", "another-wrong-key")...)

	// No key anywhere: the three ways to give one.
	t.Setenv("HOOKHOUSE_DATA", t.TempDir())
	for _, args := range [][]string{list, {"urls", "generate", "1"}, {"sql", "select 1"}} {
		wantFailure(t, 1, []string{"no admin key", "--key", "HOOKHOUSE_ADMIN_KEY", "admin.key", "--data"}, args...)
	}
	writeKey(os.Getenv("HOOKHOUSE_DATA"), "\n")
	wantFailure(t, 1, []string{"no admin key", "is empty"}, list...)
}

func TestServerFlagAndEnv(t *testing.T) {
	_, srv := setup(t)

	// --server, after the positional argument, beats the env.
	t.Setenv("HOOKHOUSE_SERVER", "http://127.0.0.1:1")
	mustRun(t, "integrations", "list", "--server", srv.URL)
	mustRun(t, "integrations", "list", "--server="+strings.TrimPrefix(srv.URL, "http://"))

	// Nothing listens there: one line that says what to check.
	wantFailure(t, 1, []string{"cannot reach the server at http://127.0.0.1:1", "hookhouse serve", "--server"}, "integrations", "list")
}
