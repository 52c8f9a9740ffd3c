// Package web is the dashboard and the /status page (SPEC §8–9): server-rendered
// html/template pages behind a login with the admin key. Templates and static files
// are embedded and parsed when New runs, so a broken template stops start-up.
//
// Security model:
//   - A session is a random 32-byte id in an HttpOnly, SameSite=Strict cookie with an
//     expiry (Secure when the public URL is https). Sessions are kept in memory and
//     in hookhouse's state (Options.Sessions) under the SHA-256 of the id, never
//     the id, so they survive a restart; expired ones are deleted.
//   - Every form carries a per-session CSRF token (compared in constant time); a POST
//     without it gets 403. The login form, which has no session yet, uses a
//     double-submit cookie instead. Cross-origin POSTs are refused as well
//     (http.CrossOriginProtection).
//   - Every page sends a Content-Security-Policy without inline script,
//     X-Frame-Options: DENY, Referrer-Policy: no-referrer and nosniff.
//   - A webhook token or a generated signing secret appears in exactly one
//     response: the one to the POST that generated it (see reveal). It is never
//     put in a URL, a cookie, a redirect or a log line, and the reveal is sent
//     with Cache-Control: no-store. A pasted signing secret is not sent back at
//     all; pages show secrets by hint only.
package web

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hookhouse/hookhouse/internal/api"
	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/history"
	"github.com/hookhouse/hookhouse/internal/warehouse"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Control is the part of the control store the dashboard uses (*control.Store).
type Control interface {
	CheckAdminKey(key string) bool
	Integrations() []control.Integration
	Integration(id int64) (*control.Integration, error)
	// CreateRevealing stores a new integration; for one that verifies with a
	// generated secret it returns that secret, once (else "").
	CreateRevealing(req control.NewIntegration, now time.Time) (*control.Integration, string, error)
	Delete(id int64, now time.Time) error
	GenerateURL(id int64, now time.Time) (*control.WebhookURL, string, error)
	URLs(id int64) ([]control.WebhookURL, error)
	RevokeURL(intID, urlID int64, now time.Time) error
	// Signing secrets of an integration that verifies: listed by hint, never
	// the secret. AddSecret returns a generated secret once (secret "" where
	// the scheme allows); a third secret is ErrConflict. Removing the last is
	// ErrConflict.
	Secrets(intID int64) ([]control.Secret, error)
	AddSecret(intID int64, secret string, now time.Time) (*control.Secret, string, error)
	RemoveSecret(intID, secretID int64, now time.Time) error
	// UpdateVerify changes a verifying integration's mode or tolerance (nil
	// fields stay); one that does not verify is ErrInvalid.
	UpdateVerify(intID int64, ch control.VerifyChange) (*control.Integration, error)
	// SetPaused pauses or resumes loading; receiving never pauses.
	SetPaused(intID int64, paused bool, now time.Time) (*control.Integration, error)
}

// Warehouse is what the integration page reads: recent and rejected rows.
type Warehouse interface {
	Columns(ctx context.Context, schema, table string) ([]warehouse.Column, error)
	Recent(ctx context.Context, schema, table, orderBy string, limit int) (*warehouse.Result, error)
}

// Status is the server's status report (server.Status, copied to avoid an import cycle).
type Status struct {
	Status       string
	Version      string
	Components   []Component
	Integrations []IntegrationStatus
	// Cluster is set in cluster mode; without details it holds only Node.
	Cluster *Cluster
}

// Cluster is what a node of a cluster shows of it (server.ClusterStatus).
type Cluster struct {
	Node          string
	Servers       []string // the NATS servers this node knows (no credentials)
	Connected     string   // the one it talks to, "" while disconnected
	Stream        string
	Replicas      []Replica
	ReplicasError string
	ControlWatch  string // "current", or why not
	Details       bool   // the NATS part is filled in
}

// Replica is one copy of the stream.
type Replica struct {
	Name            string
	Leader, Current bool
	Lag             uint64
}

// Component is one part's state: operational, degraded or down.
type Component struct {
	Name, Status, Message string
}

// IntegrationStatus is one integration's freshness.
type IntegrationStatus struct {
	ID           int64
	Name, Schema string
	LoaderNode   string // cluster mode: the node that loads it ("" unknown)
	Stats        api.Stats
}

// Component states (SPEC §8).
const (
	Operational = "operational"
	Degraded    = "degraded"
	Down        = "down"
)

// Options are the dashboard's dependencies.
type Options struct {
	Control   Control
	Stats     func(integration int64) api.Stats
	Warehouse Warehouse
	Status    func(ctx context.Context, details bool) Status
	// Cluster, in cluster mode, is the cluster panel's content (nil: one node).
	Cluster func() *Cluster
	// Reset drops an integration's tables and reloads its log (loader.Reset);
	// nil: the reset button answers that the loader is not running.
	Reset func(ctx context.Context, integration int64, acceptPartial bool) error
	// History gives the points of an integration's charts (0: all of them),
	// oldest first, one per bucket of the window. Nil: no charts.
	History func(integration int64, w history.Window) []history.Point
	// Sessions keeps logins across restarts (state.Pebble). Nil: in memory only.
	Sessions SessionStore
	// SharedSessions says that other nodes of a cluster log in and out in the
	// same Sessions store (which must then have Get): every request checks
	// its session there, so a login works on every node and a logout ends it
	// on every node.
	SharedSessions bool
	// PublicURL builds webhook URLs; an https URL also makes the cookie Secure.
	PublicURL string
	Logger    *slog.Logger
	// SessionTTL is how long a login lasts (default 12h).
	SessionTTL time.Duration
	// Now is the clock (tests).
	Now func() time.Time
}

// Web serves the dashboard.
type Web struct {
	opts     Options
	secure   bool
	pages    map[string]*template.Template
	sessions *sessions
	static   http.Handler
	origin   *http.CrossOriginProtection
}

// New parses the embedded templates and returns the dashboard.
func New(opts Options) (*Web, error) {
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 12 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	pages, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	w := &Web{
		opts:     opts,
		secure:   strings.HasPrefix(strings.ToLower(opts.PublicURL), "https://"),
		pages:    pages,
		sessions: newSessions(opts.SessionTTL, opts.Now, opts.Sessions, opts.Logger).share(opts.SharedSessions),
		static:   http.StripPrefix("/static/", http.FileServerFS(static)),
		origin:   http.NewCrossOriginProtection(),
	}
	// Browsers too old to send Sec-Fetch-Site are checked by Origin against Host;
	// behind a proxy that rewrites Host, the public URL's origin still passes.
	if u, err := url.Parse(opts.PublicURL); err == nil && u.Scheme != "" && u.Host != "" {
		_ = w.origin.AddTrustedOrigin(u.Scheme + "://" + u.Host)
	}
	w.origin.SetDenyHandler(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.fail(rw, r, http.StatusForbidden, "This form was sent from another site, so it was refused.")
	}))
	return w, nil
}

// parseTemplates builds one template set per page: the layout plus the page.
func parseTemplates() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	pages := map[string]*template.Template{}
	for _, name := range names {
		base := strings.TrimPrefix(name, "templates/")
		if base == "layout.html" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", name)
		if err != nil {
			return nil, fmt.Errorf("web: parse %s: %w", name, err)
		}
		pages[base] = t
	}
	if len(pages) == 0 {
		return nil, fmt.Errorf("web: no templates embedded")
	}
	return pages, nil
}

// Register adds every dashboard route to mux. This is the whole route table.
func (w *Web) Register(mux *http.ServeMux) {
	mux.Handle("GET /static/", w.public(w.serveStatic))
	mux.Handle("GET /login", w.public(w.loginForm))
	mux.Handle("POST /login", w.public(w.login))
	mux.Handle("POST /logout", w.form(w.logout))
	mux.Handle("GET /status", w.public(w.statusPage))

	mux.Handle("GET /{$}", w.page(w.list))
	mux.Handle("GET /integrations/new", w.page(w.newForm))
	mux.Handle("POST /integrations/new", w.form(w.create))
	mux.Handle("GET /integrations/{id}", w.page(w.integration))
	mux.Handle("POST /integrations/{id}/urls", w.form(w.generate))
	mux.Handle("GET /integrations/{id}/urls/{url}/revoke", w.page(w.revokeConfirm))
	mux.Handle("POST /integrations/{id}/urls/{url}/revoke", w.form(w.revoke))
	mux.Handle("POST /integrations/{id}/secrets", w.form(w.addSecret))
	mux.Handle("POST /integrations/{id}/verify", w.form(w.updateVerify))
	mux.Handle("POST /integrations/{id}/pause", w.form(w.setPaused))
	mux.Handle("GET /integrations/{id}/reset", w.page(w.resetConfirm))
	mux.Handle("POST /integrations/{id}/reset", w.form(w.reset))
	mux.Handle("GET /integrations/{id}/secrets/{secret}/remove", w.page(w.removeSecretConfirm))
	mux.Handle("POST /integrations/{id}/secrets/{secret}/remove", w.form(w.removeSecret))
	mux.Handle("GET /integrations/{id}/delete", w.page(w.deleteConfirm))
	mux.Handle("POST /integrations/{id}/delete", w.form(w.delete))
}

// HasSession reports whether r carries a live dashboard session.
func (w *Web) HasSession(r *http.Request) bool { return w.sessions.get(r) != nil }

type ctxKey struct{}

func sessionOf(r *http.Request) *session {
	s, _ := r.Context().Value(ctxKey{}).(*session)
	return s
}

// setHeaders sends the security headers every page carries.
func setHeaders(rw http.ResponseWriter) {
	h := rw.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "+
		"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

// public is a page anyone may see; it still knows about a session if there is one.
func (w *Web) public(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		setHeaders(rw)
		if s := w.sessions.get(r); s != nil {
			r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, s))
		}
		h(rw, r)
	})
}

// page needs a session; without one it redirects to /login.
func (w *Web) page(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		setHeaders(rw)
		s := w.sessions.get(r)
		if s == nil {
			http.Redirect(rw, r, "/login", http.StatusSeeOther)
			return
		}
		rw.Header().Set("Cache-Control", "no-store")
		h(rw, r.WithContext(context.WithValue(r.Context(), ctxKey{}, s)))
	})
}

// form is a POST that changes something: it needs a session, a same-origin
// request and the session's CSRF token.
func (w *Web) form(h http.HandlerFunc) http.Handler {
	inner := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		s := w.sessions.get(r)
		if s == nil {
			http.Redirect(rw, r, "/login", http.StatusSeeOther)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, s))
		r.Body = http.MaxBytesReader(rw, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			w.fail(rw, r, http.StatusBadRequest, "The form could not be read.")
			return
		}
		if !sameSecret(r.PostForm.Get("csrf"), s.csrf) {
			w.fail(rw, r, http.StatusForbidden, "The form's security token is missing or out of date. Go back, reload the page and try again.")
			return
		}
		rw.Header().Set("Cache-Control", "no-store")
		h(rw, r)
	})
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		setHeaders(rw)
		w.origin.Handler(inner).ServeHTTP(rw, r)
	})
}

func (w *Web) serveStatic(rw http.ResponseWriter, r *http.Request) {
	rw.Header().Set("Cache-Control", "public, max-age=300")
	w.static.ServeHTTP(rw, r)
}

// base is what the layout needs on every page.
type base struct {
	Title    string
	LoggedIn bool
	CSRF     string
}

func (w *Web) base(r *http.Request, title string) base {
	b := base{Title: title}
	if s := sessionOf(r); s != nil {
		b.LoggedIn, b.CSRF = true, s.csrf
	}
	return b
}

// render executes a page into a buffer first, so a template error becomes a
// clean 500 rather than half a page.
func (w *Web) render(rw http.ResponseWriter, r *http.Request, status int, page string, data any) {
	t := w.pages[page]
	if t == nil {
		w.opts.Logger.Error("no such page template", "page", page)
		http.Error(rw, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		w.opts.Logger.Error("render page", "page", page, "err", err)
		http.Error(rw, "internal error: the page could not be rendered", http.StatusInternalServerError)
		return
	}
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	rw.WriteHeader(status)
	rw.Write(buf.Bytes())
}

// renderFragment executes one named template of a page, without the layout:
// the live parts that app.js polls for (see isFragment in pages.go).
func (w *Web) renderFragment(rw http.ResponseWriter, page, name string, data any) {
	t := w.pages[page]
	var buf bytes.Buffer
	if t == nil || t.Lookup(name) == nil {
		w.opts.Logger.Error("no such fragment template", "page", page, "fragment", name)
		http.Error(rw, "internal error", http.StatusInternalServerError)
		return
	}
	if err := t.ExecuteTemplate(&buf, name, data); err != nil {
		w.opts.Logger.Error("render fragment", "page", page, "err", err)
		http.Error(rw, "internal error: the fragment could not be rendered", http.StatusInternalServerError)
		return
	}
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	rw.Write(buf.Bytes())
}

type errorPage struct {
	base
	Message string
	Back    string
}

// fail shows an error page.
func (w *Web) fail(rw http.ResponseWriter, r *http.Request, status int, msg string) {
	w.render(rw, r, status, "error.html", errorPage{base: w.base(r, http.StatusText(status)), Message: msg, Back: "/"})
}
