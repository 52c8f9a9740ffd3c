package web

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/api"
	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/secretbox"
	"github.com/hookhouse/hookhouse/internal/state"
	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// memKV is an in-memory control.KV.
type memKV struct {
	mu sync.Mutex
	m  map[string][]byte
}

var errMissing = errors.New("missing")

func (k *memKV) Get(key string) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[key]
	if !ok {
		return nil, errMissing
	}
	return v, nil
}

func (k *memKV) Put(kvs map[string][]byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for key, v := range kvs {
		k.m[key] = v
	}
	return nil
}

// PutIf is Put if every key of expect holds its value (nil: absent).
func (k *memKV) PutIf(expect, kvs map[string][]byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for key, want := range expect {
		cur, ok := k.m[key]
		if ok != (want != nil) || string(cur) != string(want) {
			return state.ErrConflict
		}
	}
	for key, v := range kvs {
		if v == nil {
			delete(k.m, key)
		} else {
			k.m[key] = v
		}
	}
	return nil
}

func (k *memKV) Scan(prefix string, fn func(string, []byte) error) error {
	k.mu.Lock()
	keys := []string{}
	for key := range k.m {
		if strings.HasPrefix(key, prefix) {
			keys = append(keys, key)
		}
	}
	sort.Strings(keys)
	k.mu.Unlock()
	for _, key := range keys {
		if err := fn(key, k.m[key]); err != nil {
			return err
		}
	}
	return nil
}

// fakeWarehouse has a data table with one row and a rejected table with one row.
type fakeWarehouse struct{ tables bool }

func (f fakeWarehouse) Columns(ctx context.Context, schema, table string) ([]warehouse.Column, error) {
	if !f.tables {
		return nil, nil
	}
	return []warehouse.Column{{Name: "x", Type: warehouse.Text}}, nil
}

func (f fakeWarehouse) Recent(ctx context.Context, schema, table, orderBy string, limit int) (*warehouse.Result, error) {
	if table == warehouse.RejectedTable {
		return &warehouse.Result{Columns: []string{"_sdc_rejected_at", "table_name", "reason", "record"},
			Rows: [][]any{{"2026-01-01T00:00:00Z", "data", "a field collision <b>", `{"a":1}`}}}, nil
	}
	return &warehouse.Result{Columns: []string{"_sdc_sequence", "type", "_sdc_received_at"},
		Rows: [][]any{{int64(17), "opened", "2026-01-01T00:00:00Z"}}}, nil
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	srv   *httptest.Server
	ctl   *control.Store
	key   string
	clock *clock
	web   *Web
}

func newEnv(t *testing.T, mod func(*Options)) *env {
	t.Helper()
	ctl, err := control.Open(&memKV{m: map[string][]byte{}}, errMissing, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ctl.EnsureAdminKey()
	if err != nil {
		t.Fatal(err)
	}
	sealKey := make([]byte, secretbox.KeySize)
	rand.Read(sealKey)
	box, err := secretbox.New(sealKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := ctl.SetSealer(box); err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	opts := Options{
		Control: ctl,
		Stats: func(id int64) api.Stats {
			return api.Stats{RecordsReceived: 3, RecordsLoaded: 3}
		},
		Warehouse: fakeWarehouse{tables: true},
		Status: func(ctx context.Context, details bool) Status {
			st := Status{Status: Operational, Version: "test", Components: []Component{
				{"receiver", Operational, ""}, {"log", Operational, ""}, {"loader", Operational, ""}, {"warehouse", Operational, ""}}}
			if details {
				for _, in := range ctl.Integrations() {
					st.Integrations = append(st.Integrations, IntegrationStatus{ID: in.ID, Name: in.Name, Schema: in.Schema})
				}
			}
			return st
		},
		PublicURL: "http://hooks.example.com",
		Now:       c.Now,
	}
	if mod != nil {
		mod(&opts)
	}
	w, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	w.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &env{srv: srv, ctl: ctl, key: key, clock: c, web: w}
}

type browserish struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func (e *env) client(t *testing.T) *browserish {
	jar, _ := cookiejar.New(nil)
	return &browserish{t: t, base: e.srv.URL, hc: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browserish) do(method, path string, form url.Values, hdr ...string) (*http.Response, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, b.base+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, string(out)
}

func (b *browserish) login(key string) *http.Response {
	b.t.Helper()
	_, page := b.do("GET", "/login", nil)
	resp, _ := b.do("POST", "/login", url.Values{"csrf": {hidden(page, "csrf")}, "key": {key}})
	return resp
}

func hidden(page, name string) string {
	m := regexp.MustCompile(`name="` + name + `" value="([^"]*)"`).FindStringSubmatch(page)
	if m == nil {
		return ""
	}
	return m[1]
}

var tokenRe = regexp.MustCompile(`/token/([0-9a-f]{64})`)

// TestPagesRender walks every page once, for both integration types.
func TestPagesRender(t *testing.T) {
	e := newEnv(t, nil)
	b := e.client(t)
	if resp := b.login(e.key); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login = %d", resp.StatusCode)
	}
	_, page := b.do("GET", "/", nil)
	if !strings.Contains(page, "No integrations yet") {
		t.Fatalf("empty list:\n%s", page)
	}
	csrf := hidden(page, "csrf")
	for _, typ := range []string{"vero", "webhooks"} {
		_, form := b.do("GET", "/integrations/new", nil)
		name := "My " + typ + " 1"
		resp, reveal := b.do("POST", "/integrations/new", url.Values{"csrf": {csrf}, "once": {hidden(form, "once")},
			"type": {typ}, "name": {name}, "action": {"save"}, "primary_key": {"id"}})
		if typ == "vero" {
			// A primary key is for generic webhooks only; the Vero form ignores it.
			if resp.StatusCode != 200 {
				t.Fatalf("save vero = %d\n%s", resp.StatusCode, reveal)
			}
		}
		m := tokenRe.FindStringSubmatch(reveal)
		if resp.StatusCode != 200 || m == nil || !strings.Contains(reveal, "http://hooks.example.com/v1/clients/") {
			t.Fatalf("save %s = %d, no URL revealed:\n%s", typ, resp.StatusCode, reveal)
		}
		ins := e.ctl.Integrations()
		in := ins[len(ins)-1]
		ipath := "/integrations/" + itoa(in.ID)
		resp, page := b.do("GET", ipath, nil)
		if resp.StatusCode != 200 || strings.Contains(page, m[1]) {
			t.Fatalf("integration page = %d, holds token %v", resp.StatusCode, strings.Contains(page, m[1]))
		}
		for _, want := range []string{"opened", "a field collision &lt;b&gt;", "Webhook URLs", "****" + m[1][60:]} {
			if !strings.Contains(page, want) {
				t.Errorf("%s page lacks %q", typ, want)
			}
		}
		if typ == "vero" && !strings.Contains(page, veroPath) {
			t.Error("vero page lacks the Vero setup steps with the menu path")
		}
		if typ == "webhooks" {
			if !strings.Contains(page, "/token/&lt;TOKEN&gt;") || !strings.Contains(page, "curl -X POST") {
				t.Error("webhooks page lacks the curl example with a placeholder")
			}
			if !strings.Contains(page, "primary key <code>id</code>") {
				t.Error("webhooks page does not show its primary key")
			}
		}
		// Columns of data: when and where in the log first, then the record's fields.
		i, j, k := strings.Index(page, "<th>_sdc_received_at</th>"), strings.Index(page, "<th>_sdc_sequence</th>"), strings.Index(page, "<th>type</th>")
		if i < 0 || j < i || k < j {
			t.Errorf("recent rows columns are not _sdc_received_at, _sdc_sequence, then the fields")
		}
		urls, err := e.ctl.URLs(in.ID)
		if err != nil || len(urls) != 1 {
			t.Fatalf("URLs of %d: %v, %v", in.ID, urls, err)
		}
		for _, p := range []string{ipath + "/delete", ipath + "/urls/" + itoa(urls[0].ID) + "/revoke", "/", "/status", "/integrations/new"} {
			if resp, body := b.do("GET", p, nil); resp.StatusCode != 200 || strings.Contains(body, m[1]) {
				t.Errorf("GET %s = %d (token shown: %v)", p, resp.StatusCode, strings.Contains(body, m[1]))
			}
		}
	}
	// Unknown integrations and URLs are 404 pages, not crashes.
	for _, p := range []string{"/integrations/99", "/integrations/x", "/integrations/1/urls/99/revoke"} {
		if resp, _ := b.do("GET", p, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, resp.StatusCode)
		}
	}
	// Static files are served with the security headers.
	for _, p := range []string{"/static/style.css", "/static/app.js", "/static/favicon.svg"} {
		resp, _ := b.do("GET", p, nil)
		if resp.StatusCode != 200 || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s = %d", p, resp.StatusCode)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestMissingTablesShowNoRowsYet(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Warehouse = fakeWarehouse{tables: false} })
	in, err := e.ctl.Create(control.NewIntegration{Name: "Stitch Vero", Type: "vero"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b := e.client(t)
	b.login(e.key)
	_, page := b.do("GET", "/integrations/"+itoa(in.ID), nil)
	if !strings.Contains(page, "No rows yet.") || !strings.Contains(page, "None: every record loaded.") {
		t.Fatalf("missing tables:\n%s", page)
	}
	if !strings.Contains(page, "No webhook URLs yet") {
		t.Fatal("no URLs message missing")
	}
}

func TestSecureCookiesWithHTTPSPublicURL(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.PublicURL = "https://hooks.example.com" })
	b := e.client(t)
	resp, _ := b.do("GET", "/login", nil)
	if c := resp.Header.Get("Set-Cookie"); !strings.Contains(c, "Secure") || !strings.Contains(c, "SameSite=Strict") {
		t.Fatalf("login cookie %q: want Secure and SameSite=Strict", c)
	}
	// The test server is plain http, so the jar would not send Secure cookies
	// back; post the form with the cookie by hand.
	_, page := b.do("GET", "/login", nil)
	req, _ := http.NewRequest("POST", e.srv.URL+"/login", strings.NewReader(url.Values{"csrf": {hidden(page, "csrf")}, "key": {e.key}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: loginCookie, Value: hidden(page, "csrf")})
	resp, err := b.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var session string
	for _, c := range resp.Header.Values("Set-Cookie") {
		if strings.HasPrefix(c, sessionCookie+"=") {
			session = c
		}
	}
	for _, flag := range []string{"Secure", "HttpOnly", "SameSite=Strict", "Max-Age=43200"} {
		if !strings.Contains(session, flag) {
			t.Errorf("session cookie %q lacks %s", session, flag)
		}
	}
}

func TestSessionExpires(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.SessionTTL = time.Hour })
	b := e.client(t)
	if resp := b.login(e.key); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login = %d", resp.StatusCode)
	}
	if resp, _ := b.do("GET", "/", nil); resp.StatusCode != 200 {
		t.Fatalf("/ with a session = %d", resp.StatusCode)
	}
	e.clock.Add(time.Hour)
	resp, _ := b.do("GET", "/", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Fatalf("/ after expiry = %d %s, want 303 to /login", resp.StatusCode, resp.Header.Get("Location"))
	}
	if n := len(e.web.sessions.m); n != 0 {
		t.Fatalf("%d sessions kept after expiry", n)
	}
}

func TestStatusDetails(t *testing.T) {
	e := newEnv(t, nil)
	if _, err := e.ctl.Create(control.NewIntegration{Name: "Stitch Vero", Type: "vero"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	anon := e.client(t)
	if _, page := anon.do("GET", "/status", nil); strings.Contains(page, "stitch_vero") || !strings.Contains(page, "operational") {
		t.Fatalf("anonymous /status:\n%s", page)
	}
	if _, page := anon.do("GET", "/status", nil, "Authorization", "Bearer wrong"); strings.Contains(page, "stitch_vero") {
		t.Fatal("/status with a wrong key shows details")
	}
	if _, page := anon.do("GET", "/status", nil, "Authorization", "Bearer "+e.key); !strings.Contains(page, "stitch_vero") {
		t.Fatal("/status with the admin key shows no details")
	}
	b := e.client(t)
	b.login(e.key)
	if _, page := b.do("GET", "/status", nil); !strings.Contains(page, "stitch_vero") {
		t.Fatal("/status with a session shows no details")
	}
}

func TestFreshness(t *testing.T) {
	none := rejections{Span: "in the last hour"}
	for _, c := range []struct {
		name    string
		st      api.Stats
		loadErr string
		rej     rejections
		color   string
	}{
		{"nothing yet", api.Stats{}, "", none, "green"},
		{"caught up", api.Stats{RecordsReceived: 10, RecordsLoaded: 10}, "", none, "green"},
		{"loading, young", api.Stats{RecordsReceived: 10, Backlog: 4, LagSeconds: 59.4}, "", none, "green"},
		{"behind", api.Stats{RecordsReceived: 10, Backlog: 4, LagSeconds: 60}, "", none, "red"},
		{"load errors", api.Stats{RecordsReceived: 10, RecordsLoaded: 10}, "warehouse unreachable", none, "red"},
		// Rejected earlier but not in the window: green, counts still shown.
		{"rejected before the window", api.Stats{RecordsReceived: 6, RecordsLoaded: 3, RecordsRejected: 3}, "", none, "green"},
		{"rejected in the window", api.Stats{RecordsReceived: 6, RecordsLoaded: 3, RecordsRejected: 3}, "", rejections{3, "in the last hour"}, "amber"},
		{"rejected and behind", api.Stats{RecordsReceived: 6, Backlog: 3, LagSeconds: 90}, "", rejections{3, "in the last hour"}, "red"},
	} {
		if got := freshness(c.st, c.loadErr, c.rej); got.Color != c.color || got.Why == "" {
			t.Errorf("%s: %+v, want %s", c.name, got, c.color)
		}
	}
	if got := freshness(api.Stats{RecordsReceived: 6}, "", rejections{1, "in the last hour"}); got.Label != "records rejected" ||
		!strings.Contains(got.Why, "1 record was rejected in the last hour") {
		t.Errorf("amber badge: %+v", got)
	}
	st := Status{Components: []Component{{"loader", Degraded, "loading has been failing"}}}
	if loadError(st) != "loading has been failing" {
		t.Errorf("loadError = %q", loadError(st))
	}
}

func TestOnceIsBounded(t *testing.T) {
	s := newSessions(time.Hour, time.Now, nil, slog.New(slog.DiscardHandler))
	_, sess := s.create()
	if s.useOnce(sess, "") {
		t.Fatal("an empty nonce was accepted")
	}
	if !s.useOnce(sess, "a") || s.useOnce(sess, "a") {
		t.Fatal("a nonce was accepted twice")
	}
	for i := 0; i < 3*maxOnce; i++ {
		s.useOnce(sess, itoa(int64(i)))
	}
	if len(sess.once) > maxOnce || len(sess.order) > maxOnce {
		t.Fatalf("once holds %d nonces", len(sess.once))
	}
}

func TestSeconds(t *testing.T) {
	for in, want := range map[float64]string{0: "0 s", 59.4: "59 s", 65: "1 min 5 s", 7300: "2 h 1 min", 3 * 86400: "3 days"} {
		if got := seconds(in); got != want {
			t.Errorf("seconds(%v) = %q, want %q", in, got, want)
		}
	}
	if groupDigits(1234567) != "1,234,567" || groupDigits(-1000) != "-1,000" || groupDigits(12) != "12" {
		t.Error("groupDigits")
	}
}

func TestCrossOriginFormsRefused(t *testing.T) {
	e := newEnv(t, nil)
	b := e.client(t)
	b.login(e.key)
	_, page := b.do("GET", "/", nil)
	csrf := hidden(page, "csrf")
	for _, c := range []struct {
		hdr  []string
		want int
	}{
		{[]string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{[]string{"Origin", "http://evil.example"}, http.StatusForbidden},
		{[]string{"Origin", "http://hooks.example.com"}, http.StatusSeeOther}, // the public URL, behind a proxy
		{[]string{"Sec-Fetch-Site", "same-origin"}, http.StatusSeeOther},
	} {
		// Logging out is the POST under test; when allowed, log in again.
		resp, _ := b.do("POST", "/logout", url.Values{"csrf": {csrf}}, c.hdr...)
		if resp.StatusCode != c.want {
			t.Errorf("POST with %v = %d, want %d", c.hdr, resp.StatusCode, c.want)
		}
		if c.want == http.StatusSeeOther {
			b.login(e.key)
			_, page = b.do("GET", "/", nil)
			csrf = hidden(page, "csrf")
		}
	}
}
