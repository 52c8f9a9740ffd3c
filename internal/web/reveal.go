package web

import (
	"net/http"

	"github.com/hookhouse/hookhouse/internal/api"
	"github.com/hookhouse/hookhouse/internal/control"
)

// reveal is what one reveal page shows: a new webhook URL, a generated signing
// secret, or both (a new integration that verifies).
type reveal struct {
	In         *control.Integration
	URL        *control.WebhookURL // nil: no URL in this reveal
	Token      string
	Secret     string // "": none generated
	SecretHint string
	New        bool   // the integration was just created
	Error      string // something that failed beside what is revealed
}

type revealPage struct {
	base
	In         control.Integration
	URL        string
	Hint       string
	Secret     string
	SecretHint string
	New        bool
	Error      string
	Scheme     schemeInfo
}

// reveal is the only page that ever holds a token or a signing secret. It is
// the direct answer to the POST that generated it (no redirect, so neither is in
// a URL) and is sent with Cache-Control: no-store; Continue is a plain link to
// the integration page, which shows only the hints. Reloading re-submits the
// form, which its one-time nonce refuses.
func (w *Web) reveal(rw http.ResponseWriter, r *http.Request, rv reveal) {
	rw.Header().Set("Cache-Control", "no-store")
	rw.Header().Set("Pragma", "no-cache")
	title := "Your webhook URL"
	if rv.URL == nil {
		title = "Your signing secret"
	}
	p := revealPage{
		base: w.base(r, title), In: *rv.In, New: rv.New, Error: rv.Error,
		Secret: rv.Secret, SecretHint: rv.SecretHint,
	}
	if rv.In.Verify != nil {
		p.Scheme = schemeOf(rv.In.Verify.Scheme)
	} else {
		p.Scheme = schemeOf("")
	}
	if rv.URL != nil {
		p.URL, p.Hint = api.WebhookURL(w.opts.PublicURL, rv.In.ID, rv.Token), rv.URL.Hint
	}
	w.render(rw, r, http.StatusOK, "reveal.html", p)
}
