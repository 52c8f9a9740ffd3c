package api_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/api"
	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/state"
)

// newAPI serves the admin API of a real control store on a real Pebble log, with
// one integration (id 1) and one webhook URL (id 1), so that a route reached
// without the key would have something to show or change.
func newAPI(t *testing.T) (*api.API, *httptest.Server, string) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := state.OpenPebble(t.TempDir(), logger, state.Options{MinFreeBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctl, err := control.Open(st, state.ErrNotFound, logger)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ctl.EnsureAdminKey()
	if err != nil {
		t.Fatal(err)
	}
	in, err := ctl.Create(control.NewIntegration{Name: "Secret Shop", Type: control.TypeWebhooks}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	u, _, err := ctl.GenerateURL(in.ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if in.ID != 1 || u.ID != 1 {
		t.Fatalf("ids %d, %d: the placeholders below assume 1 and 1", in.ID, u.ID)
	}
	a := &api.API{
		Control:   ctl,
		Stats:     func(int64) api.Stats { return api.Stats{} },
		PublicURL: "http://hooks.example",
		Logger:    logger,
	}
	mux := http.NewServeMux()
	a.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return a, srv, key
}

// fill turns a route pattern into a method and a concrete path.
func fill(t *testing.T, pattern string) (string, string) {
	t.Helper()
	method, path, ok := strings.Cut(pattern, " ")
	if !ok || method == "" || !strings.HasPrefix(path, "/api/") {
		t.Fatalf("route %q must be \"METHOD /api/...\"", pattern)
	}
	values := map[string]string{"{id}": "1", "{url_id}": "1", "{secret_id}": "1"}
	for ph, v := range values {
		path = strings.ReplaceAll(path, ph, v)
	}
	if strings.ContainsAny(path, "{}") {
		t.Fatalf("route %q has a placeholder this test does not know: add it to fill", pattern)
	}
	return method, path
}

type answer struct {
	status int
	body   string
	hdr    http.Header
}

func call(t *testing.T, srv *httptest.Server, method, path string, auth []string) answer {
	t.Helper()
	body := `{"name":"Evil","type":"webhooks","sql":"select 1"}`
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for _, a := range auth {
		req.Header.Add("Authorization", a)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b), resp.Header}
}

func badAuths(key string) map[string][]string {
	return map[string][]string{
		"no header":          nil,
		"wrong key":          {"Bearer hhk_" + strings.Repeat("0", 64)},
		"empty bearer":       {"Bearer "},
		"bearer spaces":      {"Bearer    "},
		"bare Bearer":        {"Bearer"},
		"key without scheme": {key},
		"basic scheme":       {"Basic " + key},
		"key prefix":         {"Bearer " + key[:len(key)-1]},
		"key extended":       {"Bearer " + key + "0"},
		"key upper case":     {"Bearer " + strings.ToUpper(key)},
		"second header":      {"Bearer wrong", "Bearer " + key},
	}
}

func want401(t *testing.T, what string, a answer) {
	t.Helper()
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if a.status != http.StatusUnauthorized || json.Unmarshal([]byte(a.body), &e) != nil || e.Error.Code != "unauthorized" {
		t.Errorf("%s = %d %s, want 401 unauthorized", what, a.status, strings.TrimSpace(a.body))
		return
	}
	if !strings.HasPrefix(a.hdr.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("%s: 401 without WWW-Authenticate: Bearer", what)
	}
	if strings.Contains(a.body, "Secret Shop") {
		t.Errorf("%s: the 401 shows data", what)
	}
}

// TestEveryRouteRequiresKey enumerates the route table, so a route added later
// is checked without anyone editing this test.
func TestEveryRouteRequiresKey(t *testing.T) {
	a, srv, key := newAPI(t)
	routes := a.Routes()
	if len(routes) < 8 {
		t.Fatalf("only %d routes", len(routes))
	}
	for _, r := range routes {
		method, path := fill(t, r.Pattern)
		for name, auth := range badAuths(key) {
			want401(t, r.Pattern+" with "+name, call(t, srv, method, path, auth))
		}
		// The same path with other methods reaches the catch-all, which also
		// wants the key (never a 405 that tells which methods exist).
		for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
			if m != method {
				want401(t, m+" "+path+" without a key", call(t, srv, m, path, nil))
			}
		}
	}
	// Nothing was changed by the refused requests.
	ins := a.Control.Integrations()
	if len(ins) != 1 || ins[0].Name != "Secret Shop" {
		t.Fatalf("integrations after refused requests: %+v", ins)
	}
	if urls, _ := a.Control.URLs(1); len(urls) != 1 || urls[0].RevokedAt != nil {
		t.Fatalf("webhook URLs after refused requests: %+v", urls)
	}

	// With the key each route is reached (so the paths above were the real
	// routes, not the catch-all). Reads first, deletes last.
	for _, r := range routes {
		if strings.HasPrefix(r.Pattern, "DELETE ") {
			continue
		}
		method, path := fill(t, r.Pattern)
		got := call(t, srv, method, path, []string{"Bearer " + key})
		if got.status == http.StatusUnauthorized || strings.Contains(got.body, "no such API route") {
			t.Errorf("%s with the key = %d %s: the route was not reached", r.Pattern, got.status, got.body)
		}
	}
	for _, r := range routes {
		if !strings.HasPrefix(r.Pattern, "DELETE ") {
			continue
		}
		method, path := fill(t, r.Pattern)
		got := call(t, srv, method, path, []string{"bearer " + key})
		if got.status == http.StatusUnauthorized || strings.Contains(got.body, "no such API route") {
			t.Errorf("%s with the key = %d %s: the route was not reached", r.Pattern, got.status, got.body)
		}
	}
}

// TestUnknownAPIPathsRequireKey: paths that are no route answer 401 without the
// key (so the route table cannot be probed) and 404 with it.
func TestUnknownAPIPathsRequireKey(t *testing.T) {
	_, srv, key := newAPI(t)
	paths := []string{
		"/api/", "/api/v1", "/api/v1/", "/api/v2/integrations", "/api/v1/users",
		"/api/v1/integrations/1/secrets", "/api/v1/integrations/1/webhook-urls/2/token",
		"/api/v1/admin-key", "/api/v1/integrations/x", "/api/v1/query/explain",
		"/api/v1/integrations/1/webhook-urls/2/", "/api/v1/integrations/%2e%2e",
	}
	for _, p := range paths {
		for _, m := range []string{"GET", "POST", "PUT", "DELETE", "OPTIONS"} {
			want401(t, m+" "+p+" without a key", call(t, srv, m, p, nil))
			want401(t, m+" "+p+" with an empty bearer", call(t, srv, m, p, []string{"Bearer "}))
		}
		got := call(t, srv, "GET", p, []string{"Bearer " + key})
		if got.status == http.StatusUnauthorized {
			t.Errorf("GET %s with the key = 401", p)
		}
	}
}
