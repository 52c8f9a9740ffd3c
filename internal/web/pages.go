package web

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hookhouse/hookhouse/internal/api"
	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/history"
	"github.com/hookhouse/hookhouse/internal/verify"
	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// recentRows is how many rows of data and _sdc_rejected the integration page shows.
const recentRows = 20

// veroEvents are the Vero webhook events to tick (see the samples in
// shared/testdata/vero).
var veroEvents = []string{
	"Sent", "Delivered", "Opened", "Clicked", "Bounced", "Failed", "Converted",
	"Unsubscribed", "Resubscribed", "Complained (marked as spam)", "User created", "User updated",
}

type listRow struct {
	In    control.Integration
	Stats api.Stats
	Fresh Freshness
	Spark template.HTML // received per bucket of the window; empty without history
}

type listPage struct {
	base
	Rows    []listRow
	Flash   string
	LoadErr string
	Live    live
	Cluster *Cluster // cluster mode only
}

// list is the integrations list with freshness at a glance and the charts of
// all integrations together.
func (w *Web) list(rw http.ResponseWriter, r *http.Request) {
	loadErr := loadError(w.opts.Status(r.Context(), false))
	win := windowOf(r.URL.Query().Get("window"))
	ins := w.opts.Control.Integrations()
	p := listPage{base: w.base(r, "Integrations"), LoadErr: loadErr, Live: w.live("all-", 0, win, anyVerifies(ins))}
	if w.opts.Cluster != nil {
		p.Cluster = w.opts.Cluster()
	}
	if id := r.URL.Query().Get("deleted"); id != "" {
		if n, err := strconv.ParseInt(id, 10, 64); err == nil {
			p.Flash = fmt.Sprintf("Integration %d deleted. Its webhook URLs are revoked; its warehouse data stays.", n)
		}
	}
	for _, in := range ins {
		st := w.opts.Stats(in.ID)
		pts := w.points(in.ID, win)
		row := listRow{In: in, Stats: st, Fresh: freshness(st, loadErr, w.rejectionsOf(st, pts, win))}
		if pts != nil {
			row.Spark = sparkline(win, pts)
		}
		p.Rows = append(p.Rows, row)
	}
	if isFragment(r) {
		w.renderFragment(rw, "list.html", "live", p)
		return
	}
	w.render(rw, r, http.StatusOK, "list.html", p)
}

// live is what the polled parts of a page show besides the stats: the window
// and its charts, and when the numbers were read.
type live struct {
	History bool
	Win     windowView
	Windows []windowView
	Charts  []template.HTML
	// SigChart is the signature failures chart, drawn where something verifies.
	SigChart template.HTML
	AsOf     time.Time
}

// live draws the charts of integration (0: all) over win; signatures adds the
// signature failures chart (for integrations that verify).
func (w *Web) live(idPrefix string, integration int64, win windowView, signatures bool) live {
	l := live{History: w.opts.History != nil, Win: win, Windows: windows, AsOf: w.opts.Now()}
	if pts := w.points(integration, win); pts != nil {
		l.Charts = []template.HTML{
			recordsChart(idPrefix+"records", win, pts),
			lagChart(idPrefix+"lag", win, pts),
			refusedChart(idPrefix+"refused", win, pts),
		}
		if signatures {
			l.SigChart = signatureChart(idPrefix+"sigfails", win, pts)
		}
	}
	return l
}

// anyVerifies reports whether one of ins verifies signatures.
func anyVerifies(ins []control.Integration) bool {
	for _, in := range ins {
		if in.Verify != nil {
			return true
		}
	}
	return false
}

// points is the history of integration (0: all) over win; nil without history.
func (w *Web) points(integration int64, win windowView) []history.Point {
	if w.opts.History == nil {
		return nil
	}
	return w.opts.History(integration, win.W)
}

// rejectionsOf counts what the amber badge goes by: the records rejected in the
// window's points or, without history, every rejection so far.
func (w *Web) rejectionsOf(st api.Stats, pts []history.Point, win windowView) rejections {
	if w.opts.History == nil {
		return rejections{N: st.RecordsRejected, Span: "so far"}
	}
	var n int64
	for _, p := range pts {
		n += p.Rejected
	}
	return rejections{N: n, Span: win.Span}
}

// isFragment reports whether app.js asks for only the live parts of a page.
//
// Live numbers are polled, not pushed with server-sent events: a poll is a
// short request like any other page (the same handler, session check, CSP and
// no-store), while an event stream would be cut by the server's WriteTimeout,
// hold a goroutine and a connection per open tab, and keep graceful shutdown
// waiting for streams that never end. Every few seconds is as fresh as an
// operator needs; the numbers are counters in memory and the charts come from
// the history, so a poll does not touch the warehouse.
func isFragment(r *http.Request) bool { return r.URL.Query().Get("fragment") == "1" }

type newPage struct {
	base
	Type       string
	Name       string
	PrimaryKey string
	Schema     string
	SchemaWhy  string
	Error      string
	Once       string
	Verify     verifyForm
	Schemes    []schemeInfo
}

func (w *Web) newForm(rw http.ResponseWriter, r *http.Request) {
	w.render(rw, r, http.StatusOK, "new.html", newPage{
		base: w.base(r, "Add integration"), Type: control.TypeVero, Once: randomToken(),
		Verify: verifyForm{Mode: string(verify.Enforce)}, Schemes: schemes,
	})
}

// create previews the schema name (action=preview) or saves the integration,
// generates its first URL and answers with the one-time reveal (action=save).
// A webhooks integration can verify signatures: its form also sends the
// scheme, mode and secret (see verifyForm); a generated secret is revealed
// together with the URL. A pasted secret or verify token is never sent back
// in the form: after a preview or an error it must be pasted again.
func (w *Web) create(rw http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	p := newPage{
		base: w.base(r, "Add integration"),
		Type: f.Get("type"), Name: strings.TrimSpace(f.Get("name")), PrimaryKey: strings.TrimSpace(f.Get("primary_key")),
		Once: f.Get("once"), Verify: readVerifyForm(f), Schemes: schemes,
	}
	if p.Type != control.TypeWebhooks {
		p.Type = control.TypeVero
	}
	if p.Name != "" {
		p.Schema = control.SchemaName(p.Name)
		if p.Schema == "" {
			p.SchemaWhy = "This name gives an empty schema name; use letters or digits."
		}
	}
	if f.Get("action") != "save" {
		if p.Once == "" {
			p.Once = randomToken()
		}
		w.render(rw, r, http.StatusOK, "new.html", p)
		return
	}
	req := control.NewIntegration{Name: p.Name, Type: p.Type}
	if p.Type == control.TypeWebhooks {
		req.PrimaryKey = p.PrimaryKey
		cfg, secret, msg := p.Verify.config()
		if msg != "" {
			p.Error = msg
			w.render(rw, r, http.StatusBadRequest, "new.html", p)
			return
		}
		req.Verify, req.Secret = cfg, secret
	}
	if !w.sessions.useOnce(sessionOf(r), p.Once) {
		// A resubmitted save (reload of the reveal, back button): never run it twice.
		p.Once = randomToken()
		p.Error = "This form was already submitted. If the integration was created, find it in the list; its URL was shown once. Otherwise save again."
		w.render(rw, r, http.StatusConflict, "new.html", p)
		return
	}
	in, secret, err := w.opts.Control.CreateRevealing(req, w.opts.Now())
	if err != nil {
		status, msg := w.controlError(err)
		p.Error, p.Once = verifyMessage(msg), randomToken()
		w.render(rw, r, status, "new.html", p)
		return
	}
	if in.Verify != nil {
		w.opts.Logger.Info("integration created", "integration", in.ID, "schema", in.Schema, "type", in.Type,
			"scheme", in.Verify.Scheme, "mode", in.Verify.Mode, "secret_generated", secret != "")
	} else {
		w.opts.Logger.Info("integration created", "integration", in.ID, "schema", in.Schema, "type", in.Type)
	}
	rv := reveal{In: in, Secret: secret, New: true}
	if secret != "" {
		rv.SecretHint = hintOf(secret)
	}
	u, token, err := w.opts.Control.GenerateURL(in.ID, w.opts.Now())
	if err != nil {
		_, msg := w.controlError(err)
		msg = "The integration was created but its first webhook URL could not be generated: " + msg + " Press Generate on its page to try again."
		if secret == "" {
			w.showIntegration(rw, r, http.StatusServiceUnavailable, in, "", msg)
			return
		}
		// The generated secret exists only in this answer: reveal it anyway.
		rv.Error = msg
	} else {
		w.opts.Logger.Info("webhook URL generated", "integration", in.ID, "url_id", u.ID, "hint", "****"+u.Hint)
		rv.URL, rv.Token = u, token
	}
	w.reveal(rw, r, rv)
}

type rows struct {
	Missing bool
	Err     string
	Columns []string
	Rows    [][]any
}

type integrationPage struct {
	base
	In          control.Integration
	Stats       api.Stats
	Fresh       Freshness
	Live        live
	URLs        []control.WebhookURL
	Active      int
	Max         int
	CanGenerate bool
	Once        string
	Flash       string
	Error       string
	Data        rows
	Rejected    rows
	Example     string
	Events      []string
	// For integrations that verify signatures.
	Scheme     schemeInfo
	Secrets    []control.Secret
	MaxSecrets int
	SecretOnce string
	VerifyOnce string
}

func (w *Web) integration(rw http.ResponseWriter, r *http.Request) {
	in, ok := w.lookup(rw, r)
	if !ok {
		return
	}
	if isFragment(r) {
		p := integrationPage{In: *in}
		w.fillLive(r, &p)
		w.renderFragment(rw, "integration.html", "live", p)
		return
	}
	flash := ""
	q := r.URL.Query()
	if id, err := strconv.ParseInt(q.Get("revoked"), 10, 64); err == nil {
		urls, _ := w.opts.Control.URLs(in.ID)
		for _, u := range urls {
			if u.ID == id && u.RevokedAt != nil {
				flash = fmt.Sprintf("Webhook URL ****%s revoked: requests with it now get 401.", u.Hint)
			}
		}
	}
	if q.Get("reset") != "" {
		flash = fmt.Sprintf("The tables of schema %s were dropped; every record the log holds is reloading (progress under Loading).", in.Schema)
	}
	if q.Get("resubmitted") != "" {
		flash = "That form was already submitted. A webhook URL is shown only once; if you missed it, revoke it and generate another."
	}
	if f := secretFlash(w.opts.Control, in, q); f != "" {
		flash = f
	}
	if f := verifyFlash(in, q); f != "" {
		flash = f
	}
	w.showIntegration(rw, r, http.StatusOK, in, flash, "")
}

// fillLive reads what the polled part of the integration page shows: stats,
// badge and charts.
func (w *Web) fillLive(r *http.Request, p *integrationPage) {
	win := windowOf(r.URL.Query().Get("window"))
	p.Stats = w.opts.Stats(p.In.ID)
	p.Live = w.live("", p.In.ID, win, p.In.Verify != nil)
	p.Fresh = freshness(p.Stats, loadError(w.opts.Status(r.Context(), false)), w.rejectionsOf(p.Stats, w.points(p.In.ID, win), win))
}

func (w *Web) showIntegration(rw http.ResponseWriter, r *http.Request, status int, in *control.Integration, flash, errMsg string) {
	urls, err := w.opts.Control.URLs(in.ID)
	if err != nil {
		_, msg := w.controlError(err)
		w.fail(rw, r, http.StatusNotFound, msg)
		return
	}
	p := integrationPage{
		base: w.base(r, in.Name), In: *in, URLs: urls, Max: control.MaxActiveURLs,
		Once: randomToken(), Flash: flash, Error: errMsg, Events: veroEvents,
		Example: api.WebhookURL(w.opts.PublicURL, in.ID, "<TOKEN>"),
		Scheme:  schemeOf(""), MaxSecrets: verify.MaxSecrets,
	}
	if in.Verify != nil {
		p.Scheme, p.SecretOnce, p.VerifyOnce = schemeOf(in.Verify.Scheme), randomToken(), randomToken()
		if p.Secrets, err = w.opts.Control.Secrets(in.ID); err != nil {
			_, msg := w.controlError(err)
			w.fail(rw, r, http.StatusNotFound, msg)
			return
		}
	}
	w.fillLive(r, &p)
	for _, u := range urls {
		if u.RevokedAt == nil {
			p.Active++
		}
	}
	p.CanGenerate = p.Active < control.MaxActiveURLs
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	p.Data = w.recent(ctx, in.Schema, warehouse.DataTable, warehouse.ColSequence)
	p.Rejected = w.recent(ctx, in.Schema, warehouse.RejectedTable, warehouse.RejectedColumns[0].Name)
	w.render(rw, r, status, "integration.html", p)
}

// recent reads the newest rows of schema.table by orderBy; a missing table is not
// an error. The warehouse quotes the names: no SQL is built here.
func (w *Web) recent(ctx context.Context, schema, table, orderBy string) rows {
	cols, err := w.opts.Warehouse.Columns(ctx, schema, table)
	if err != nil {
		return rows{Err: "could not read the table: " + err.Error()}
	}
	if cols == nil {
		return rows{Missing: true}
	}
	res, err := w.opts.Warehouse.Recent(ctx, schema, table, orderBy, recentRows)
	if err != nil {
		return rows{Err: "could not read the table: " + err.Error()}
	}
	if table == warehouse.DataTable {
		res = fieldsFirst(res)
	}
	return rows{Columns: res.Columns, Rows: res.Rows, Missing: len(res.Rows) == 0}
}

// fieldsFirst orders the data table's columns for reading: when a record
// arrived and its place in the log (_sdc_received_at, _sdc_sequence) on the
// left, where they are seen without scrolling a wide table, then the record's
// own fields, then the other _sdc columns.
func fieldsFirst(res *warehouse.Result) *warehouse.Result {
	var order []int
	pick := func(name string) {
		for i, c := range res.Columns {
			if c == name && !slices.Contains(order, i) {
				order = append(order, i)
			}
		}
	}
	pick(warehouse.ColReceivedAt)
	pick(warehouse.ColSequence)
	for i, c := range res.Columns {
		if !strings.HasPrefix(c, "_sdc") && !strings.HasPrefix(c, "__sdc") {
			order = append(order, i)
		}
	}
	for _, c := range []string{warehouse.ColBatchedAt, warehouse.ColPrimaryKey, warehouse.ColTableVersion} {
		pick(c)
	}
	for i := range res.Columns { // any other _sdc column, e.g. _sdc_extra
		if !slices.Contains(order, i) {
			order = append(order, i)
		}
	}
	out := &warehouse.Result{Columns: make([]string, len(order)), Rows: make([][]any, len(res.Rows))}
	for j, i := range order {
		out.Columns[j] = res.Columns[i]
	}
	for r, row := range res.Rows {
		out.Rows[r] = make([]any, len(order))
		for j, i := range order {
			if i < len(row) {
				out.Rows[r][j] = row[i]
			}
		}
	}
	return out
}

// generate makes another webhook URL and answers with its one-time reveal.
func (w *Web) generate(rw http.ResponseWriter, r *http.Request) {
	in, ok := w.lookup(rw, r)
	if !ok {
		return
	}
	if !w.sessions.useOnce(sessionOf(r), r.PostForm.Get("once")) {
		http.Redirect(rw, r, fmt.Sprintf("/integrations/%d?resubmitted=1", in.ID), http.StatusSeeOther)
		return
	}
	u, token, err := w.opts.Control.GenerateURL(in.ID, w.opts.Now())
	if err != nil {
		status, msg := w.controlError(err)
		w.showIntegration(rw, r, status, in, "", msg)
		return
	}
	w.opts.Logger.Info("webhook URL generated", "integration", in.ID, "url_id", u.ID, "hint", "****"+u.Hint)
	w.reveal(rw, r, reveal{In: in, URL: u, Token: token})
}

type confirmPage struct {
	base
	Heading string
	Message string
	Action  string
	Button  string
	Cancel  string
}

func (w *Web) revokeConfirm(rw http.ResponseWriter, r *http.Request) {
	in, u, ok := w.lookupURL(rw, r)
	if !ok {
		return
	}
	if u.RevokedAt != nil {
		http.Redirect(rw, r, fmt.Sprintf("/integrations/%d", in.ID), http.StatusSeeOther)
		return
	}
	w.render(rw, r, http.StatusOK, "confirm.html", confirmPage{
		base:    w.base(r, "Revoke webhook URL"),
		Heading: fmt.Sprintf("Revoke webhook URL ****%s of %s?", u.Hint, in.Name),
		Message: "Requests with this URL get 401 from the moment you revoke it, and it cannot be restored. " +
			"If the provider still sends to it, generate a new URL and update the provider first.",
		Action: fmt.Sprintf("/integrations/%d/urls/%d/revoke", in.ID, u.ID),
		Button: "Revoke", Cancel: fmt.Sprintf("/integrations/%d", in.ID),
	})
}

func (w *Web) revoke(rw http.ResponseWriter, r *http.Request) {
	in, u, ok := w.lookupURL(rw, r)
	if !ok {
		return
	}
	if err := w.opts.Control.RevokeURL(in.ID, u.ID, w.opts.Now()); err != nil {
		status, msg := w.controlError(err)
		w.showIntegration(rw, r, status, in, "", msg)
		return
	}
	w.opts.Logger.Info("webhook URL revoked", "integration", in.ID, "url_id", u.ID)
	http.Redirect(rw, r, fmt.Sprintf("/integrations/%d?revoked=%d", in.ID, u.ID), http.StatusSeeOther)
}

func (w *Web) deleteConfirm(rw http.ResponseWriter, r *http.Request) {
	in, ok := w.lookup(rw, r)
	if !ok {
		return
	}
	w.render(rw, r, http.StatusOK, "confirm.html", confirmPage{
		base:    w.base(r, "Delete integration"),
		Heading: fmt.Sprintf("Delete integration %s?", in.Name),
		Message: fmt.Sprintf("Its webhook URLs are revoked at once, so the provider's requests get 401. "+
			"The data already in schema %s stays in the warehouse, and the schema name stays taken.", in.Schema),
		Action: fmt.Sprintf("/integrations/%d/delete", in.ID),
		Button: "Delete integration", Cancel: fmt.Sprintf("/integrations/%d", in.ID),
	})
}

func (w *Web) delete(rw http.ResponseWriter, r *http.Request) {
	in, ok := w.lookup(rw, r)
	if !ok {
		return
	}
	if err := w.opts.Control.Delete(in.ID, w.opts.Now()); err != nil {
		status, msg := w.controlError(err)
		w.fail(rw, r, status, msg)
		return
	}
	w.opts.Logger.Info("integration deleted; its URLs are revoked, its warehouse data stays", "integration", in.ID)
	http.Redirect(rw, r, fmt.Sprintf("/?deleted=%d", in.ID), http.StatusSeeOther)
}

// lookup finds the integration named by the {id} path value, or answers 404.
func (w *Web) lookup(rw http.ResponseWriter, r *http.Request) (*control.Integration, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		w.fail(rw, r, http.StatusNotFound, "There is no such integration.")
		return nil, false
	}
	in, err := w.opts.Control.Integration(id)
	if err != nil {
		status, msg := w.controlError(err)
		w.fail(rw, r, status, msg)
		return nil, false
	}
	return in, true
}

// lookupURL finds the {url} of the {id} integration, or answers 404.
func (w *Web) lookupURL(rw http.ResponseWriter, r *http.Request) (*control.Integration, *control.WebhookURL, bool) {
	in, ok := w.lookup(rw, r)
	if !ok {
		return nil, nil, false
	}
	uid, err := strconv.ParseInt(r.PathValue("url"), 10, 64)
	if err == nil {
		urls, err := w.opts.Control.URLs(in.ID)
		if err == nil {
			for _, u := range urls {
				if u.ID == uid {
					return in, &u, true
				}
			}
		}
	}
	w.fail(rw, r, http.StatusNotFound, fmt.Sprintf("Integration %s has no such webhook URL.", in.Name))
	return nil, nil, false
}

// controlError maps a control error to a status and a message for the user.
func (w *Web) controlError(err error) (int, string) {
	switch {
	case errors.Is(err, control.ErrNotFound):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, control.ErrConflict):
		return http.StatusConflict, err.Error()
	case errors.Is(err, control.ErrInvalid):
		return http.StatusBadRequest, err.Error()
	}
	w.opts.Logger.Error("control data write failed", "err", err)
	return http.StatusServiceUnavailable, "The change could not be stored; try again shortly."
}
