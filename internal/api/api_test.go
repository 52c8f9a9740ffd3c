package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

type apiError struct {
	Error struct{ Code, Message string } `json:"error"`
}

func decodeError(t *testing.T, a answer) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal([]byte(a.body), &e); err != nil {
		t.Fatalf("answer %d is not an API error: %s", a.status, a.body)
	}
	return e
}

// TestRevokeTwice: the second revocation is told apart from the first, with the
// time of the first, and changes nothing.
func TestRevokeTwice(t *testing.T) {
	a, srv, key := newAPI(t)
	auth := []string{"Bearer " + key}
	if got := call(t, srv, "DELETE", "/api/v1/integrations/1/webhook-urls/1", auth); got.status != http.StatusNoContent {
		t.Fatalf("revoke = %d %s, want 204", got.status, got.body)
	}
	urls, _ := a.Control.URLs(1)
	if len(urls) != 1 || urls[0].RevokedAt == nil {
		t.Fatalf("URLs after revoking = %+v", urls)
	}
	first := *urls[0].RevokedAt

	got := call(t, srv, "DELETE", "/api/v1/integrations/1/webhook-urls/1", auth)
	e := decodeError(t, got)
	want := fmt.Sprintf("webhook URL ****%s (id 1) of integration 1 was already revoked at %s", urls[0].Hint, first.Format("2006-01-02T15:04:05Z"))
	if got.status != http.StatusConflict || e.Error.Code != "already_revoked" || !strings.Contains(e.Error.Message, want) {
		t.Fatalf("second revoke = %d %s, want 409 already_revoked saying %q", got.status, got.body, want)
	}
	if urls, _ := a.Control.URLs(1); !urls[0].RevokedAt.Equal(first) {
		t.Errorf("the second revoke moved revoked_at to %s", urls[0].RevokedAt)
	}
	if got := call(t, srv, "DELETE", "/api/v1/integrations/1/webhook-urls/9", auth); got.status != http.StatusNotFound {
		t.Errorf("revoke of an unknown URL = %d, want 404", got.status)
	}
}

func postQuery(t *testing.T, base, key, sql string) answer {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"sql": sql})
	req, _ := http.NewRequest("POST", base+"/api/v1/query", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b), resp.Header}
}

// failingQuerier answers every query with err.
type failingQuerier struct{ err error }

func (f failingQuerier) Query(context.Context, string, int) (*warehouse.Result, error) {
	return nil, f.err
}

// TestQueryErrors: refusals say in one sentence what may run, and no error shows
// the adapters' prefixes. The errors are built the way the adapters build them.
func TestQueryErrors(t *testing.T) {
	a, srv, key := newAPI(t)
	ro := warehouse.ErrReadOnly
	tests := []struct {
		err    error
		status int
		code   string
		want   string // the whole message
	}{
		{fmt.Errorf("duckdb: query: %w", fmt.Errorf("%w: only SELECT and EXPLAIN statements can run here (this is a DROP statement)", ro)),
			403, "read_only", "Only a single read-only SELECT (or EXPLAIN of one) on the integration schemas can run here; this statement was refused: it is a DROP statement"},
		{fmt.Errorf("duckdb: query: %w", fmt.Errorf("%w: _hookhouse is hookhouse's own schema; only the integration schemas can be read", ro)),
			403, "read_only", "Only a single read-only SELECT (or EXPLAIN of one) on the integration schemas can run here; this statement was refused: _hookhouse is hookhouse's own schema; only the integration schemas can be read"},
		{fmt.Errorf("duckdb: query: %w", fmt.Errorf("%w: %w", ro, errors.New("Permission Error: File system operations are disabled by configuration"))),
			403, "read_only", "Only a single read-only SELECT (or EXPLAIN of one) on the integration schemas can run here; this statement was refused: Permission Error: File system operations are disabled by configuration"},
		{fmt.Errorf("postgres: query: %w: queries may only read the integration schemas: %s", ro, "permission denied for function pg_read_file"),
			403, "read_only", "Only a single read-only SELECT (or EXPLAIN of one) on the integration schemas can run here; this statement was refused: permission denied for function pg_read_file"},
		{fmt.Errorf("postgres: query: %w", fmt.Errorf("%w: only statements that return rows (SELECT, WITH, VALUES, TABLE, SHOW, EXPLAIN) can run here", ro)),
			403, "read_only", "Only a single read-only SELECT (or EXPLAIN of one) on the integration schemas can run here; this statement was refused: it is not a query: it returns no rows"},
		{fmt.Errorf("postgres: query: %w: %s", ro, "cannot execute CREATE TABLE in a read-only transaction"),
			403, "read_only", "Only a single read-only SELECT (or EXPLAIN of one) on the integration schemas can run here; this statement was refused: cannot execute CREATE TABLE in a read-only transaction"},
		{fmt.Errorf("duckdb: query: %w", errors.New("Parser Error: syntax error at or near \"selec\"\n\nLINE 1: selec 1\n        ^")),
			400, "query_failed", "Parser Error: syntax error at or near \"selec\"\n\nLINE 1: selec 1\n        ^"},
		{fmt.Errorf("postgres: query: %w", errors.New(`ERROR: relation "nope.data" does not exist (SQLSTATE 42P01)`)),
			400, "query_failed", `ERROR: relation "nope.data" does not exist (SQLSTATE 42P01)`},
	}
	for _, tc := range tests {
		a.Query = failingQuerier{tc.err}
		got := postQuery(t, srv.URL, key, "select 1")
		e := decodeError(t, got)
		if got.status != tc.status || e.Error.Code != tc.code || e.Error.Message != tc.want {
			t.Errorf("error %q:\n got %d %s: %s\nwant %d %s: %s", tc.err, got.status, e.Error.Code, e.Error.Message, tc.status, tc.code, tc.want)
		}
	}
}
