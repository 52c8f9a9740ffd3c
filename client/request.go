package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	userAgent = "hookhouse-client"
	// A query over a big table may take a while; anything longer is better cut off
	// than left hanging a terminal or a test.
	defaultTimeout = 60 * time.Second
	// Error bodies are small; a proxy's HTML page need not be read in full.
	maxErrorBody = 64 << 10
)

// Error is an answer from the server other than 2xx. Its Error method is a one-line
// reason such as `409 conflict: integration "x" already uses schema stitch_vero`.
type Error struct {
	StatusCode int    // HTTP status code
	Code       string // machine-readable code from the body, e.g. "conflict"; may be empty
	Message    string // human-readable reason from the body; may be empty
}

func (e *Error) Error() string {
	code := e.Code
	if code == "" {
		code = strings.ToLower(http.StatusText(e.StatusCode))
	}
	reason := fmt.Sprintf("%d %s", e.StatusCode, code)
	if e.Message != "" {
		reason += ": " + e.Message
	}
	return reason
}

// errorBody is how the admin API reports a failure (SPEC §6).
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

type request struct {
	endpoint   string
	key        string
	httpClient *http.Client
}

// do sends in (when not nil) as JSON and decodes a 2xx answer into out (when not nil).
func (r *request) do(ctx context.Context, method, path string, in, out any) error {
	resp, err := r.send(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return r.errorFrom(resp.StatusCode, body)
	}
	return r.decode(resp, method, path, out)
}

func (r *request) send(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}

	req, err := http.NewRequestWithContext(ctx, method, r.endpoint+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	// Without a key the request goes out anonymously: /status.json then shows component
	// states only, and the admin API answers 401.
	if r.key != "" {
		req.Header.Set("Authorization", "Bearer "+r.key)
	}

	// The error names the method and URL but never a header, so the key stays out of it.
	return r.httpClient.Do(req)
}

func (r *request) decode(resp *http.Response, method, path string, out any) error {
	if out == nil {
		// Drain so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil
	}
	dec := json.NewDecoder(resp.Body)
	// Keep 19-digit integers such as _sdc_sequence exact in query results.
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("unexpected answer to %s %s (is %s a hookhouse server?): %w", method, path, r.endpoint, err)
	}
	return nil
}

// errorFrom builds an *Error from a failed answer. A body that is not the API's error
// JSON (a proxy's page, plain text) gives its first line, when it is short text.
func (r *request) errorFrom(status int, body []byte) *Error {
	e := &Error{StatusCode: status}
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err == nil && (eb.Error.Code != "" || eb.Error.Message != "") {
		e.Code, e.Message = eb.Error.Code, eb.Error.Message
	} else if text := strings.TrimSpace(string(body)); text != "" && !strings.HasPrefix(text, "<") && !strings.HasPrefix(text, "{") {
		e.Message, _, _ = strings.Cut(text, "\n")
		if len(e.Message) > 200 {
			cut := 200
			for cut > 0 && !utf8.RuneStart(e.Message[cut]) {
				cut--
			}
			e.Message = e.Message[:cut] + "…"
		}
	}
	e.Message = oneLine(e.Message)
	// Belt and braces: a server should never echo the key, but if one did, it must not
	// end up on a terminal or in a CI log through us.
	if len(r.key) >= 8 {
		e.Message = strings.ReplaceAll(e.Message, r.key, "****")
	}
	return e
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// isStatusBody reports whether a non-2xx answer still carries a status report: a server
// that is down may well say so with a 503 and the report.
func isStatusBody(body []byte, s *Status) bool {
	return json.Unmarshal(body, s) == nil && s.Status != ""
}
