// Package api is the admin JSON API under /api/v1 (SPEC §6). Every route is in
// Routes, and every route requires the admin key.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/verify"
	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// Stats is an integration's loading picture (SPEC §6).
type Stats struct {
	RecordsReceived int64      `json:"records_received"`
	RecordsLoaded   int64      `json:"records_loaded"`
	RecordsRejected int64      `json:"records_rejected"`
	LastReceivedAt  *time.Time `json:"last_received_at"`
	LastLoadedAt    *time.Time `json:"last_loaded_at"`
	Backlog         int64      `json:"backlog"`
	LagSeconds      float64    `json:"lag_seconds"`
	// LoadError says why loading this integration is failing; absent while it works.
	LoadError string `json:"load_error,omitempty"`
	// Paused: loading is paused by an operator (receiving goes on).
	Paused bool `json:"paused,omitempty"`
	// Reset is the last reset's progress (reset.go); absent if there was none.
	Reset *ResetStats `json:"reset,omitempty"`
	// For integrations that verify signatures: failures since the server
	// started, the last one's time and reason, and redeliveries dropped.
	SignatureFailures    *int64   `json:"signature_failures,omitempty"`
	LastSignatureFailure *Failure `json:"last_signature_failure,omitempty"`
	RecordsDeduplicated  *int64   `json:"records_deduplicated,omitempty"`
}

// Failure is one signature failure: when, and why (never a secret or a value).
type Failure struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// Querier runs read-only SQL (a warehouse).
type Querier interface {
	Query(ctx context.Context, sql string, maxRows int) (*warehouse.Result, error)
}

// API serves /api/v1.
type API struct {
	Control *control.Store
	Stats   func(integration int64) Stats
	// Reset drops an integration's tables and reloads its log (loader.Reset);
	// nil until the loader runs.
	Reset     func(ctx context.Context, integration int64, acceptPartial bool) error
	Query     Querier // nil until the warehouse is open
	PublicURL string
	Logger    *slog.Logger
	// MaxQueryRows caps /query answers.
	MaxQueryRows int
	// Import appends backfill import chunks (nil: imports answer 501);
	// ImportObserve, if set, is told of records imported (metrics).
	Import        Importer
	ImportObserve interface {
		Accepted(integration int64, records int)
	}
	importOnce sync.Once
	importSem  chan struct{}
	// Backup takes backups (POST /api/v1/backup); nil answers 501.
	Backup Snapshotter
}

// Route is one admin route.
type Route struct {
	Pattern string
	Handler http.HandlerFunc
}

// Routes lists every admin route; Register wraps each in the admin-key check.
func (a *API) Routes() []Route {
	return []Route{
		{"POST /api/v1/integrations", a.createIntegration},
		{"GET /api/v1/integrations", a.listIntegrations},
		{"GET /api/v1/integrations/{id}", a.getIntegration},
		{"DELETE /api/v1/integrations/{id}", a.deleteIntegration},
		{"POST /api/v1/integrations/{id}/webhook-urls", a.generateURL},
		{"GET /api/v1/integrations/{id}/webhook-urls", a.listURLs},
		{"DELETE /api/v1/integrations/{id}/webhook-urls/{url_id}", a.revokeURL},
		{"PATCH /api/v1/integrations/{id}", a.updateIntegration},
		{"POST /api/v1/integrations/{id}/pause", a.pause},
		{"POST /api/v1/integrations/{id}/resume", a.resume},
		{"POST /api/v1/integrations/{id}/reset", a.reset},
		{"POST /api/v1/integrations/{id}/secrets", a.addSecret},
		{"GET /api/v1/integrations/{id}/secrets", a.listSecrets},
		{"DELETE /api/v1/integrations/{id}/secrets/{secret_id}", a.removeSecret},
		{"POST /api/v1/query", a.query},
		{"POST /api/v1/integrations/{id}/import", a.importChunk},
		{"GET /api/v1/integrations/{id}/import", a.getImportLimits},
		{"POST /api/v1/backup", a.backup},
	}
}

// Register adds every route to mux behind the admin key, plus a JSON 404 for
// unknown /api/ paths.
func (a *API) Register(mux *http.ServeMux) {
	for _, r := range a.Routes() {
		mux.Handle(r.Pattern, a.RequireKey(r.Handler))
	}
	mux.Handle("/api/", a.RequireKey(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such API route: "+r.Method+" "+r.URL.Path)
	}))
}

// RequireKey refuses requests without `Authorization: Bearer <admin key>`.
func (a *API) RequireKey(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := BearerKey(r)
		if !ok || !a.Control.CheckAdminKey(key) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="hookhouse"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong admin key: send Authorization: Bearer <admin key>")
			return
		}
		h(w, r)
	})
}

// BearerKey returns the bearer token of r.
func BearerKey(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const p = "Bearer "
	if len(h) <= len(p) || !strings.EqualFold(h[:len(p)], p) {
		return "", false
	}
	return strings.TrimSpace(h[len(p):]), true
}

type integrationJSON struct {
	control.Integration
	DeletedAt *time.Time `json:"deleted_at,omitempty"`
	// Reset hides the control record of the last reset: stats.reset shows it.
	Reset   *struct{}      `json:"reset,omitempty"`
	Verify  *verify.Config `json:"verify,omitempty"`
	Secrets []SecretJSON   `json:"secrets,omitempty"`
	// Secret is a generated signing secret, only in the answer that made it.
	Secret string `json:"secret,omitempty"`
	Stats  *Stats `json:"stats,omitempty"`
}

// integrationView is in as answers show it.
func (a *API) integrationView(in control.Integration) integrationJSON {
	out := integrationJSON{Integration: in, Verify: shownVerify(in)}
	if in.Verify != nil {
		list, _ := a.Control.Secrets(in.ID)
		out.Secrets = make([]SecretJSON, len(list))
		for i, s := range list {
			out.Secrets[i] = secretJSON(s)
		}
	}
	return out
}

func (a *API) createIntegration(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if !decode(w, r, &req) {
		return
	}
	if req.Verify != nil {
		cfg := req.Verify.Config
		req.NewIntegration.Verify, req.NewIntegration.Secret = &cfg, req.Verify.Secret
	}
	in, revealed, err := a.Control.CreateRevealing(req.NewIntegration, time.Now())
	if err != nil {
		a.controlError(w, err)
		return
	}
	a.Logger.Info("integration created", "integration", in.ID, "schema", in.Schema, "type", in.Type)
	out := a.integrationView(*in)
	out.Secret = revealed
	writeJSON(w, http.StatusCreated, out)
}

func (a *API) listIntegrations(w http.ResponseWriter, r *http.Request) {
	list := a.Control.Integrations()
	out := make([]integrationJSON, len(list))
	for i, in := range list {
		out[i] = a.integrationView(in)
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) getIntegration(w http.ResponseWriter, r *http.Request) {
	in, ok := a.integration(w, r)
	if !ok {
		return
	}
	st := a.Stats(in.ID)
	out := a.integrationView(*in)
	out.Stats = &st
	writeJSON(w, http.StatusOK, out)
}

func (a *API) deleteIntegration(w http.ResponseWriter, r *http.Request) {
	in, ok := a.integration(w, r)
	if !ok {
		return
	}
	if err := a.Control.Delete(in.ID, time.Now()); err != nil {
		a.controlError(w, err)
		return
	}
	a.Logger.Info("integration deleted; its URLs are revoked, its warehouse data stays", "integration", in.ID)
	w.WriteHeader(http.StatusNoContent)
}

// URLJSON is a webhook URL as the API shows it: never the hash, the URL only once.
type URLJSON struct {
	ID         int64      `json:"id"`
	URL        string     `json:"url,omitempty"`
	Hint       string     `json:"hint"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
}

func (a *API) generateURL(w http.ResponseWriter, r *http.Request) {
	in, ok := a.integration(w, r)
	if !ok {
		return
	}
	u, token, err := a.Control.GenerateURL(in.ID, time.Now())
	if err != nil {
		a.controlError(w, err)
		return
	}
	a.Logger.Info("webhook URL generated", "integration", in.ID, "url_id", u.ID, "hint", "****"+u.Hint)
	writeJSON(w, http.StatusCreated, URLJSON{
		ID: u.ID, URL: WebhookURL(a.PublicURL, in.ID, token), Hint: u.Hint, CreatedAt: u.CreatedAt,
	})
}

// WebhookURL is the secret URL of a token.
func WebhookURL(publicURL string, integration int64, token string) string {
	return strings.TrimRight(publicURL, "/") + "/v1/clients/" + strconv.FormatInt(integration, 10) + "/token/" + token
}

func (a *API) listURLs(w http.ResponseWriter, r *http.Request) {
	in, ok := a.integration(w, r)
	if !ok {
		return
	}
	urls, err := a.Control.URLs(in.ID)
	if err != nil {
		a.controlError(w, err)
		return
	}
	out := make([]URLJSON, len(urls))
	for i, u := range urls {
		out[i] = URLJSON{ID: u.ID, Hint: u.Hint, CreatedAt: u.CreatedAt, LastUsedAt: u.LastUsedAt, RevokedAt: u.RevokedAt}
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) revokeURL(w http.ResponseWriter, r *http.Request) {
	in, ok := a.integration(w, r)
	if !ok {
		return
	}
	uid, err := strconv.ParseInt(r.PathValue("url_id"), 10, 64)
	if err != nil || uid <= 0 {
		writeError(w, http.StatusNotFound, "not_found", "webhook URL id must be a positive integer")
		return
	}
	if err := a.Control.RevokeURL(in.ID, uid, time.Now()); err != nil {
		a.controlError(w, err)
		return
	}
	a.Logger.Info("webhook URL revoked", "integration", in.ID, "url_id", uid)
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) query(w http.ResponseWriter, r *http.Request) {
	var req struct {
		SQL string `json:"sql"`
	}
	if !decode(w, r, &req) {
		return
	}
	if strings.TrimSpace(req.SQL) == "" {
		writeError(w, http.StatusBadRequest, "invalid", `"sql" is required`)
		return
	}
	if a.Query == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the warehouse is not open yet; retry shortly")
		return
	}
	maxRows := a.MaxQueryRows
	if maxRows <= 0 {
		maxRows = 10000
	}
	res, err := a.Query.Query(r.Context(), req.SQL, maxRows)
	if err != nil {
		if errors.Is(err, warehouse.ErrReadOnly) {
			writeError(w, http.StatusForbidden, "read_only", readOnlyMessage(err))
			return
		}
		writeError(w, http.StatusBadRequest, "query_failed", queryMessage(err))
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// queryMessage is the database's own message (a syntax error and its position,
// a missing table) without the adapter's prefixes, which mean nothing to a user.
func queryMessage(err error) string {
	msg := err.Error()
	for _, p := range []string{"duckdb: query: ", "postgres: query: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return msg
}

// readOnlyReasons reword the adapters' reasons for a refusal that would repeat
// the sentence readOnlyMessage starts with.
var readOnlyReasons = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`^only SELECT and EXPLAIN statements can run here \(this is an? (.+) statement\)$`), "it is a $1 statement"},
	{regexp.MustCompile(`^only statements that return rows \(.*\) can run here$`), "it is not a query: it returns no rows"},
	{regexp.MustCompile(`^queries may only read the integration schemas: `), ""},
}

// readOnlyMessage says in one sentence what the query endpoint runs, then why
// this statement was refused (err wraps warehouse.ErrReadOnly).
func readOnlyMessage(err error) string {
	reason := queryMessage(err)
	if _, after, ok := strings.Cut(reason, warehouse.ErrReadOnly.Error()); ok {
		reason = strings.TrimLeft(after, ": ")
	}
	for _, r := range readOnlyReasons {
		reason = r.re.ReplaceAllString(reason, r.repl)
	}
	msg := "Only a single read-only SELECT (or EXPLAIN of one) on the integration schemas can run here"
	if reason == "" {
		return msg + "."
	}
	return msg + "; this statement was refused: " + reason
}

func (a *API) integration(w http.ResponseWriter, r *http.Request) (*control.Integration, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusNotFound, "not_found", "integration id must be a positive integer")
		return nil, false
	}
	in, err := a.Control.Integration(id)
	if err != nil {
		a.controlError(w, err)
		return nil, false
	}
	return in, true
}

func (a *API) controlError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, control.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, control.ErrAlreadyRevoked):
		writeError(w, http.StatusConflict, "already_revoked", err.Error())
	case errors.Is(err, control.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, control.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
	default:
		a.Logger.Error("control data write failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "could not store the change; retry later")
	}
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid", "request body must be a JSON object: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.Encode(v)
}

// WriteError writes {"error":{"code","message"}}.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}
