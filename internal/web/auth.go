package web

import (
	"net/http"
	"time"
)

type loginPage struct {
	base
	LoginCSRF string
	Error     string
}

// loginForm shows the login form and sets the login CSRF cookie it is checked against.
func (w *Web) loginForm(rw http.ResponseWriter, r *http.Request) {
	if sessionOf(r) != nil {
		http.Redirect(rw, r, "/", http.StatusSeeOther)
		return
	}
	w.showLogin(rw, r, http.StatusOK, "")
}

func (w *Web) showLogin(rw http.ResponseWriter, r *http.Request, status int, msg string) {
	tok := randomToken()
	http.SetCookie(rw, &http.Cookie{
		Name: loginCookie, Value: tok, Path: "/login", MaxAge: 3600,
		HttpOnly: true, Secure: w.secure || r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	rw.Header().Set("Cache-Control", "no-store")
	w.render(rw, r, status, "login.html", loginPage{base: w.base(r, "Log in"), LoginCSRF: tok, Error: msg})
}

// login checks the admin key and starts a session.
func (w *Web) login(rw http.ResponseWriter, r *http.Request) {
	if err := w.origin.Check(r); err != nil {
		w.fail(rw, r, http.StatusForbidden, "This form was sent from another site, so it was refused.")
		return
	}
	r.Body = http.MaxBytesReader(rw, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		w.fail(rw, r, http.StatusBadRequest, "The form could not be read.")
		return
	}
	c, err := r.Cookie(loginCookie)
	if err != nil || !sameSecret(r.PostForm.Get("csrf"), c.Value) {
		w.render(rw, r, http.StatusForbidden, "error.html", errorPage{
			base:    w.base(r, "Forbidden"),
			Message: "The login form's security token is missing or out of date. Open the login page again (cookies must be enabled).",
			Back:    "/login",
		})
		return
	}
	if !w.opts.Control.CheckAdminKey(r.PostForm.Get("key")) {
		w.opts.Logger.Warn("dashboard login with a wrong admin key", "remote", r.RemoteAddr)
		w.showLogin(rw, r, http.StatusUnauthorized, "That is not the admin key. It was printed on first start and is in <data>/admin.key on the server.")
		return
	}
	// A new id on every login: no session fixation.
	if err := w.sessions.end(r); err != nil {
		w.opts.Logger.Warn("could not delete the previous dashboard session", "err", err)
	}
	id, _ := w.sessions.create()
	http.SetCookie(rw, &http.Cookie{
		Name: sessionCookie, Value: id, Path: "/",
		MaxAge: int(w.opts.SessionTTL / time.Second), Expires: w.opts.Now().Add(w.opts.SessionTTL),
		HttpOnly: true, Secure: w.secure || r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	http.SetCookie(rw, &http.Cookie{Name: loginCookie, Value: "", Path: "/login", MaxAge: -1,
		HttpOnly: true, Secure: w.secure || r.TLS != nil, SameSite: http.SameSiteStrictMode})
	w.opts.Logger.Info("dashboard login", "remote", r.RemoteAddr)
	http.Redirect(rw, r, "/", http.StatusSeeOther)
}

// logout ends the session, here and in the stored state.
func (w *Web) logout(rw http.ResponseWriter, r *http.Request) {
	err := w.sessions.end(r)
	http.SetCookie(rw, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: w.secure || r.TLS != nil, SameSite: http.SameSiteStrictMode})
	if err != nil {
		// The session is gone from memory and from this browser, but the state
		// still has it: say so rather than pretend it is gone for good.
		w.opts.Logger.Error("could not delete the dashboard session from the state; it is valid again after a restart until it expires", "err", err)
		w.render(rw, r, http.StatusServiceUnavailable, "error.html", errorPage{
			base: base{Title: "Logged out, not stored"},
			Message: "You are logged out in this browser, but the server could not record the logout " +
				"(is its disk full?). Until the session expires it would be valid again after a restart. Log in and out again once the disk has room.",
			Back: "/login",
		})
		return
	}
	http.Redirect(rw, r, "/login", http.StatusSeeOther)
}
