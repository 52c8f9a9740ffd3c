package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Client talks to the admin API of one hookhouse server.
type Client struct {
	request *request
}

// New returns a client of the server at baseURL (e.g. "http://localhost:8080"; a bare
// "host:port" means http) that authenticates with adminKey. An empty key is allowed:
// Status then reports component states only, and admin calls answer 401.
func New(baseURL, adminKey string) *Client {
	endpoint := strings.TrimRight(strings.TrimSpace(baseURL), "/")
	if !strings.Contains(endpoint, "://") {
		endpoint = "http://" + endpoint
	}
	return &Client{request: &request{
		endpoint:   endpoint,
		key:        adminKey,
		httpClient: &http.Client{Timeout: defaultTimeout},
	}}
}

// CreateIntegration creates an integration; the server derives the schema from the
// name unless one is given.
func (c *Client) CreateIntegration(ctx context.Context, in NewIntegration) (*Integration, error) {
	var out Integration
	if err := c.request.do(ctx, http.MethodPost, "/api/v1/integrations", in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AddSecret adds a signing secret to a verifying integration, for a rotation
// (a third is refused with a 409). secret "" asks for a generated one, returned
// once in the answer's Secret.
func (c *Client) AddSecret(ctx context.Context, integrationID int64, secret string) (*Secret, error) {
	var out Secret
	body := map[string]string{"secret": secret}
	if err := c.request.do(ctx, http.MethodPost, integrationPath(integrationID)+"/secrets", body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// VerifyChange changes a verifying integration: empty fields stay as they are.
type VerifyChange struct {
	Mode         string // "enforce" or "monitor"
	Tolerance    string // e.g. "5m"
	DedupeWindow string // e.g. "48h"
}

// UpdateVerify changes how an integration verifies signatures, e.g. its mode
// from monitor to enforce at the end of a rollout.
func (c *Client) UpdateVerify(ctx context.Context, integrationID int64, ch VerifyChange) (*Integration, error) {
	v := map[string]string{}
	if ch.Mode != "" {
		v["mode"] = ch.Mode
	}
	if ch.Tolerance != "" {
		v["tolerance"] = ch.Tolerance
	}
	body := map[string]any{}
	if len(v) > 0 {
		body["verify"] = v
	}
	if ch.DedupeWindow != "" {
		body["dedupe_window"] = ch.DedupeWindow
	}
	var out Integration
	if err := c.request.do(ctx, http.MethodPatch, integrationPath(integrationID), body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetPaused pauses (true) or resumes (false) loading of an integration; receiving
// never pauses. The answer carries the stats.
func (c *Client) SetPaused(ctx context.Context, integrationID int64, paused bool) (*Integration, error) {
	action := "/resume"
	if paused {
		action = "/pause"
	}
	var out Integration
	if err := c.request.do(ctx, http.MethodPost, integrationPath(integrationID)+action, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Reset drops an integration's tables and reloads every record still in the
// server's log. It returns once the tables are dropped; the reload's progress
// is then Stats.Reset (poll Integration). Without acceptPartial it is refused
// (409, code "partial_log", saying how much is gone) when retention has
// trimmed the integration's first records from the log.
func (c *Client) Reset(ctx context.Context, integrationID int64, acceptPartial bool) (*Integration, error) {
	var out Integration
	body := map[string]bool{"accept_partial": acceptPartial}
	if err := c.request.do(ctx, http.MethodPost, integrationPath(integrationID)+"/reset", body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Secrets lists an integration's signing secrets by hint.
func (c *Client) Secrets(ctx context.Context, integrationID int64) ([]Secret, error) {
	var out []Secret
	if err := c.request.do(ctx, http.MethodGet, integrationPath(integrationID)+"/secrets", nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// RemoveSecret removes a signing secret, ending a rotation; the last one
// cannot be removed (409).
func (c *Client) RemoveSecret(ctx context.Context, integrationID, secretID int64) error {
	return c.request.do(ctx, http.MethodDelete, fmt.Sprintf("%s/secrets/%d", integrationPath(integrationID), secretID), nil, nil)
}

// Integrations lists every integration, without stats.
func (c *Client) Integrations(ctx context.Context) ([]Integration, error) {
	var out []Integration
	if err := c.request.do(ctx, http.MethodGet, "/api/v1/integrations", nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Integration returns one integration with its loading stats.
func (c *Client) Integration(ctx context.Context, id int64) (*Integration, error) {
	var out Integration
	if err := c.request.do(ctx, http.MethodGet, integrationPath(id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteIntegration deletes an integration and revokes its webhook URLs at once. Its
// warehouse data stays.
func (c *Client) DeleteIntegration(ctx context.Context, id int64) error {
	return c.request.do(ctx, http.MethodDelete, integrationPath(id), nil, nil)
}

// GenerateURL creates a webhook URL for an integration. The answer is the only time
// the URL is shown; the server keeps only a hash of its token. A third active URL is
// refused with a 409.
func (c *Client) GenerateURL(ctx context.Context, integrationID int64) (*WebhookURL, error) {
	var out WebhookURL
	if err := c.request.do(ctx, http.MethodPost, urlsPath(integrationID), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// URLs lists the webhook URLs of an integration, revoked ones included, without secrets.
func (c *Client) URLs(ctx context.Context, integrationID int64) ([]WebhookURL, error) {
	var out []WebhookURL
	if err := c.request.do(ctx, http.MethodGet, urlsPath(integrationID), nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// RevokeURL revokes a webhook URL: the next request with it gets 401. A URL that
// was revoked before stays as it was, and the answer is a 409 *Error with Code
// CodeAlreadyRevoked whose message says when.
func (c *Client) RevokeURL(ctx context.Context, integrationID, urlID int64) error {
	path := fmt.Sprintf("%s/%d", urlsPath(integrationID), urlID)
	return c.request.do(ctx, http.MethodDelete, path, nil, nil)
}

// Query runs one read-only SQL statement against the warehouse.
func (c *Client) Query(ctx context.Context, sql string) (*QueryResult, error) {
	in := struct {
		SQL string `json:"sql"`
	}{sql}
	var out QueryResult
	if err := c.request.do(ctx, http.MethodPost, "/api/v1/query", in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Status returns the server's status report (GET /status.json). A server that answers
// 503 with a report (because a component is down) gives the report, not an error.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	const path = "/status.json"
	resp, err := c.request.send(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()

	switch {
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
		var out Status
		if err := c.request.decode(resp, http.MethodGet, path, &out); err != nil {
			return nil, err
		}
		return &out, nil
	case resp.StatusCode == http.StatusServiceUnavailable:
		// A report lists every integration, so it may be far bigger than an error.
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		var out Status
		if isStatusBody(body, &out) {
			return &out, nil
		}
		return nil, c.request.errorFrom(resp.StatusCode, body)
	default:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return nil, c.request.errorFrom(resp.StatusCode, body)
	}
}

func integrationPath(id int64) string {
	return fmt.Sprintf("/api/v1/integrations/%d", id)
}

func urlsPath(integrationID int64) string {
	return integrationPath(integrationID) + "/webhook-urls"
}

// Backup asks the server for a consistent backup and returns its tar stream
// (package internal/backup reads it; manifest.json comes last) and the size of
// its files, for progress. The caller must close the stream. Only ctx bounds
// the call: a big warehouse takes longer than the client's usual timeout.
func (c *Client) Backup(ctx context.Context) (io.ReadCloser, int64, error) {
	r := *c.request
	hc := *r.httpClient
	hc.Timeout = 0
	r.httpClient = &hc
	resp, err := r.send(ctx, http.MethodPost, "/api/v1/backup", nil)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return nil, 0, r.errorFrom(resp.StatusCode, body)
	}
	size, _ := strconv.ParseInt(resp.Header.Get("X-Hookhouse-Backup-Bytes"), 10, 64)
	return resp.Body, size, nil
}
