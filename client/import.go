package client

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// ImportResult is the answer to one chunk of a backfill import.
type ImportResult struct {
	// Records is how many records this request stored (0 for a duplicate).
	Records int `json:"records"`
	// Duplicate: the server stored this chunk before (an earlier run, or a
	// retry whose answer was lost); nothing was stored now.
	Duplicate bool `json:"duplicate"`
	// FirstPosition is the log position of the first record stored.
	FirstPosition uint64 `json:"first_position,omitempty"`
}

// ImportChunk sends one chunk of a backfill import: ndjson holds one JSON
// object per line. chunkID (64 hex characters) names the chunk; the server
// stores a chunk id once, together with its records, so sending a chunk again
// is safe. receivedAtField, if not empty, names the top-level field each
// record's _sdc_received_at is taken from; otherwise it is the time of the
// import. A chunk is stored whole or not at all.
func (c *Client) ImportChunk(ctx context.Context, integrationID int64, chunkID, receivedAtField string, ndjson []byte) (*ImportResult, error) {
	q := url.Values{"chunk": {chunkID}}
	if receivedAtField != "" {
		q.Set("received_at", receivedAtField)
	}
	path := integrationPath(integrationID) + "/import?" + q.Encode()
	r := c.request
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.endpoint+path, bytes.NewReader(ndjson))
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/x-ndjson")
	if r.key != "" {
		req.Header.Set("Authorization", "Bearer "+r.key)
	}
	resp, err := r.httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return nil, r.errorFrom(resp.StatusCode, body)
	}
	var out ImportResult
	if err := r.decode(resp, http.MethodPost, path, &out); err != nil {
		return nil, err
	}
	if out.Records == 0 && !out.Duplicate && len(bytes.TrimSpace(ndjson)) > 0 {
		return nil, fmt.Errorf("unexpected answer to POST %s: no records stored and not a duplicate", path)
	}
	return &out, nil
}

// ImportLimits says how large an import chunk the server takes.
type ImportLimits struct {
	// MaxChunkBytes bounds a chunk's body.
	MaxChunkBytes int `json:"max_chunk_bytes"`
	// MaxChunkRecords bounds a chunk's records.
	MaxChunkRecords int `json:"max_chunk_records"`
	// ClaimWindowSeconds is how long a chunk id stays claimed: a chunk sent
	// again within it adds nothing.
	ClaimWindowSeconds int64 `json:"claim_window_seconds"`
}

// ImportLimits asks the server how large an import chunk may be (on a
// cluster, a chunk must fit one NATS message). A server older than this call
// answers 404 or 405 (an *Error).
func (c *Client) ImportLimits(ctx context.Context, integrationID int64) (*ImportLimits, error) {
	var out ImportLimits
	if err := c.request.do(ctx, http.MethodGet, integrationPath(integrationID)+"/import", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
