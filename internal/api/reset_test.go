package api_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/hookhouse/hookhouse/internal/loader"
)

// TestResetRoute: POST …/reset takes no body or {"accept_partial"}, refuses
// other bodies, and maps the loader's refusals to 409 with their codes.
func TestResetRoute(t *testing.T) {
	a, srv, key := newAPI(t)
	var got []bool
	a.Reset = func(ctx context.Context, id int64, accept bool) error {
		got = append(got, accept)
		switch len(got) {
		case 2:
			return fmt.Errorf("loader: reset integration %d (schema secret_shop) refused, %w: the log no longer holds its first 3 records", id, loader.ErrPartial)
		case 3:
			return fmt.Errorf("loader: reset integration %d: %w", id, loader.ErrResetBusy)
		case 4:
			return fmt.Errorf("loader: reset integration %d: nothing was reset, loading is failing: warehouse down", id)
		}
		return nil
	}
	post := func(path, body string) (int, string) {
		req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct {
		body   string
		status int
		want   string
	}{
		{"", 200, `"schema":"secret_shop"`},
		{`{"accept_partial": true}`, 409, `"code":"partial_log","message":"reset integration 1 (schema secret_shop) refused, retention trimmed the log's head: the log no longer holds its first 3 records"`},
		{`{}`, 409, `"code":"reset_in_progress"`},
		{`{}`, 503, `"code":"unavailable","message":"reset integration 1: nothing was reset, loading is failing: warehouse down"`},
		{`{"accept":true}`, 400, `"code":"invalid"`},
		{`[1]`, 400, `"code":"invalid"`},
	} {
		status, body := post("/api/v1/integrations/1/reset", c.body)
		if status != c.status || !strings.Contains(body, c.want) {
			t.Errorf("reset with %q = %d %s, want %d with %s", c.body, status, body, c.status, c.want)
		}
	}
	if fmt.Sprint(got) != "[false true false false]" {
		t.Errorf("resets made with accept_partial %v", got)
	}
	if status, _ := post("/api/v1/integrations/99/reset", ""); status != 404 {
		t.Errorf("reset of an unknown integration = %d", status)
	}
	a.Reset = nil
	if status, body := post("/api/v1/integrations/1/reset", ""); status != 503 || !strings.Contains(body, "loader is not running") {
		t.Errorf("reset without a loader = %d %s", status, body)
	}
}
