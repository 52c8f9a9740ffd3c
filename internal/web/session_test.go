package web

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/state"
)

// pebbleDashboard is a dashboard whose control data and sessions live in a real
// Pebble in dir, as in the server. stop closes it like a shutdown does.
type pebbleDashboard struct {
	srv  *httptest.Server
	st   *state.Pebble
	web  *Web
	stop func()
}

func openPebbleDashboard(t *testing.T, dir string, c *clock) *pebbleDashboard {
	t.Helper()
	st, err := state.OpenPebble(dir, slog.New(slog.DiscardHandler), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := control.Open(st, state.ErrNotFound, slog.New(slog.DiscardHandler))
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	base := newEnv(t, nil) // for its Options: status, stats, warehouse
	opts := base.web.opts
	opts.Control, opts.Sessions, opts.Now, opts.SessionTTL = ctl, st, c.Now, time.Hour
	w, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	w.Register(mux)
	srv := httptest.NewServer(mux)
	d := &pebbleDashboard{srv: srv, st: st, web: w}
	stopped := false
	d.stop = func() {
		if !stopped {
			stopped = true
			srv.Close()
			st.Close()
		}
	}
	t.Cleanup(d.stop)
	return d
}

// storedSessions returns the session keys and values in the state.
func storedSessions(t *testing.T, st *state.Pebble) map[string]string {
	t.Helper()
	out := map[string]string{}
	if err := st.Scan(keySession, func(k string, v []byte) error { out[k] = string(v); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func sessionCookieOf(t *testing.T, b *browserish) string {
	t.Helper()
	u, _ := url.Parse(b.base)
	for _, c := range b.hc.Jar.Cookies(u) {
		if c.Name == sessionCookie {
			return c.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

// TestSessionsSurviveRestart: a login outlives a restart on the same state;
// the state holds only the SHA-256 of the session id; logout and expiry delete it.
func TestSessionsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	d := openPebbleDashboard(t, dir, c)
	key, err := d.web.opts.Control.(*control.Store).EnsureAdminKey()
	if err != nil || key == "" {
		t.Fatalf("admin key: %q %v", key, err)
	}
	b := d.client(t)
	if resp := b.login(key); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login = %d", resp.StatusCode)
	}
	cookie := sessionCookieOf(t, b)
	stored := storedSessions(t, d.st)
	if len(stored) != 1 {
		t.Fatalf("%d sessions stored, want 1", len(stored))
	}
	for k, v := range stored {
		if k != keyOf(cookie) || strings.Contains(k, cookie) || strings.Contains(v, cookie) {
			t.Fatalf("stored session %q = %s: want the key to be the SHA-256 of the cookie, and the cookie nowhere", k, v)
		}
	}
	// Use a one-time form nonce before the restart: it stays used after it.
	_, page := b.do("GET", "/integrations/new", nil)
	csrf, once := hidden(page, "csrf"), hidden(page, "once")
	save := url.Values{"csrf": {csrf}, "once": {once}, "name": {"Stitch Vero"}, "type": {"vero"}, "action": {"save"}}
	if resp, body := b.do("POST", "/integrations/new", save); resp.StatusCode != 200 || !tokenRe.MatchString(body) {
		t.Fatalf("save = %d", resp.StatusCode)
	}

	// Restart: close the state and open it again with a new dashboard.
	d.stop()
	d = openPebbleDashboard(t, dir, c)
	b.base = d.srv.URL
	if resp, _ := b.do("GET", "/", nil); resp.StatusCode != 200 {
		t.Fatalf("/ after a restart = %d, want 200 (still logged in)", resp.StatusCode)
	}
	if resp, body := b.do("POST", "/integrations/new", save); resp.StatusCode != http.StatusConflict || tokenRe.MatchString(body) {
		t.Fatalf("the form submitted before the restart, again after it = %d; want 409 without a URL", resp.StatusCode)
	}
	// The CSRF token is the session's, as before the restart.
	_, page = b.do("GET", "/", nil)
	if hidden(page, "csrf") != csrf {
		t.Fatal("the session's CSRF token changed across the restart")
	}

	// Logout deletes it from the state: after another restart the cookie is dead.
	if resp, _ := b.do("POST", "/logout", url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout = %d", resp.StatusCode)
	}
	if n := len(storedSessions(t, d.st)); n != 0 {
		t.Fatalf("%d sessions stored after logout", n)
	}
	d.stop()
	d = openPebbleDashboard(t, dir, c)
	b.base = d.srv.URL
	req, _ := http.NewRequest("GET", d.srv.URL+"/", nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("a logged-out cookie after a restart = %d, want 303 to /login", resp.StatusCode)
	}

	// Expiry: an expired session is deleted when it is seen, and at start.
	b.login(key)
	first := sessionCookieOf(t, b)
	b2 := d.client(t)
	b2.login(key)
	if n := len(storedSessions(t, d.st)); n != 2 {
		t.Fatalf("%d sessions stored, want 2", n)
	}
	c.Add(time.Hour)
	if resp, _ := b.do("GET", "/", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("/ after expiry = %d, want 303", resp.StatusCode)
	}
	stored = storedSessions(t, d.st)
	if _, ok := stored[keyOf(first)]; ok || len(stored) != 1 {
		t.Fatalf("after one expired session was used, %d are stored (its own: %v)", len(stored), ok)
	}
	d.stop()
	d = openPebbleDashboard(t, dir, c) // the other expired one goes at start
	if n := len(storedSessions(t, d.st)); n != 0 {
		t.Fatalf("%d expired sessions stored after a restart", n)
	}
	if n := len(d.web.sessions.m); n != 0 {
		t.Fatalf("%d expired sessions loaded", n)
	}
}

func (d *pebbleDashboard) client(t *testing.T) *browserish {
	return (&env{srv: d.srv}).client(t)
}

// TestSharedSessions: two nodes of a cluster over one store (SharedSessions):
// a login on one works on the other, a form nonce used on one is used on the
// other, and a logout on one ends the session on both.
func TestSharedSessions(t *testing.T) {
	st, err := state.OpenPebble(t.TempDir(), slog.New(slog.DiscardHandler), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	logger := slog.New(slog.DiscardHandler)
	a := newSessions(time.Hour, time.Now, st, logger).share(true)
	b := newSessions(time.Hour, time.Now, st, logger).share(true)
	id, _ := a.create()
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: id})
	sb := b.get(req)
	if sb == nil {
		t.Fatal("a login on node a is unknown to node b")
	}
	sa := a.get(req)
	if !a.useOnce(sa, "n1") || b.useOnce(sb, "n1") {
		t.Fatal("a form nonce used on node a can be used again on node b")
	}
	if err := a.end(req); err != nil {
		t.Fatal(err)
	}
	if b.get(req) != nil {
		t.Fatal("a logout on node a leaves the session valid on node b")
	}
	// Not shared (one node): b keeps what it loaded at start.
	c := newSessions(time.Hour, time.Now, st, logger)
	id2, _ := a.create()
	req2 := httptest.NewRequest("GET", "/", nil)
	req2.AddCookie(&http.Cookie{Name: sessionCookie, Value: id2})
	if c.get(req2) != nil {
		t.Fatal("an unshared session store read a session created after it loaded")
	}
}
