package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

const testKey = "hh_admin_0123456789abcdef"

// seen is what the fake server received.
type seen struct {
	method, path, auth, contentType string
	body                            string
}

// fakeServer answers every request with status and body; last tells what the latest
// request was.
func fakeServer(t *testing.T, status int, body string) (srv *httptest.Server, last func() seen) {
	t.Helper()
	var (
		mu  sync.Mutex
		got seen
	)
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = seen{
			method:      r.Method,
			path:        r.URL.Path,
			auth:        r.Header.Get("Authorization"),
			contentType: r.Header.Get("Content-Type"),
			body:        string(b),
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, func() seen {
		mu.Lock()
		defer mu.Unlock()
		return got
	}
}

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func tsp(s string) *time.Time {
	t := ts(s)
	return &t
}

func TestRequests(t *testing.T) {
	integration := `{"id":7,"name":"Stitch Vero","type":"vero","schema":"stitch_vero","created_at":"2026-11-02T10:00:00Z"}`
	tests := []struct {
		name       string
		call       func(context.Context, *Client) (any, error)
		status     int
		answer     string
		wantMethod string
		wantPath   string
		wantBody   string // JSON; "" means no body
		want       any
	}{
		{
			name: "create integration",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.CreateIntegration(ctx, NewIntegration{Name: "Stitch Vero", Type: TypeVero})
			},
			status:     201,
			answer:     integration,
			wantMethod: "POST",
			wantPath:   "/api/v1/integrations",
			wantBody:   `{"name":"Stitch Vero","type":"vero"}`,
			want: &Integration{ID: 7, Name: "Stitch Vero", Type: "vero", Schema: "stitch_vero",
				CreatedAt: ts("2026-11-02T10:00:00Z")},
		},
		{
			name: "create integration with schema and primary key",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.CreateIntegration(ctx, NewIntegration{Name: "Orders", Type: TypeWebhooks, Schema: "shop", PrimaryKey: "order_id"})
			},
			status:     201,
			answer:     `{"id":8,"name":"Orders","type":"webhooks","schema":"shop","primary_key":"order_id","created_at":"2026-11-02T10:00:00Z"}`,
			wantMethod: "POST",
			wantPath:   "/api/v1/integrations",
			wantBody:   `{"name":"Orders","type":"webhooks","schema":"shop","primary_key":"order_id"}`,
			want: &Integration{ID: 8, Name: "Orders", Type: "webhooks", Schema: "shop", PrimaryKey: "order_id",
				CreatedAt: ts("2026-11-02T10:00:00Z")},
		},
		{
			name:       "list integrations",
			call:       func(ctx context.Context, c *Client) (any, error) { return c.Integrations(ctx) },
			status:     200,
			answer:     "[" + integration + "]",
			wantMethod: "GET",
			wantPath:   "/api/v1/integrations",
			want: []Integration{{ID: 7, Name: "Stitch Vero", Type: "vero", Schema: "stitch_vero",
				CreatedAt: ts("2026-11-02T10:00:00Z")}},
		},
		{
			name:   "show integration with stats",
			call:   func(ctx context.Context, c *Client) (any, error) { return c.Integration(ctx, 7) },
			status: 200,
			answer: `{"id":7,"name":"Stitch Vero","type":"vero","schema":"stitch_vero","created_at":"2026-11-02T10:00:00Z",
				"stats":{"records_received":14,"records_loaded":12,"records_rejected":1,
				"last_received_at":"2026-11-02T11:00:00Z","last_loaded_at":null,"backlog":1,"lag_seconds":0.25}}`,
			wantMethod: "GET",
			wantPath:   "/api/v1/integrations/7",
			want: &Integration{ID: 7, Name: "Stitch Vero", Type: "vero", Schema: "stitch_vero",
				CreatedAt: ts("2026-11-02T10:00:00Z"),
				Stats: &Stats{RecordsReceived: 14, RecordsLoaded: 12, RecordsRejected: 1,
					LastReceivedAt: tsp("2026-11-02T11:00:00Z"), Backlog: 1, LagSeconds: 0.25}},
		},
		{
			name:       "delete integration",
			call:       func(ctx context.Context, c *Client) (any, error) { return nil, c.DeleteIntegration(ctx, 7) },
			status:     204,
			wantMethod: "DELETE",
			wantPath:   "/api/v1/integrations/7",
		},
		{
			name:       "generate url",
			call:       func(ctx context.Context, c *Client) (any, error) { return c.GenerateURL(ctx, 7) },
			status:     201,
			answer:     `{"id":3,"url":"http://localhost:8080/v1/clients/7/token/` + strings.Repeat("ab", 32) + `","hint":"abab","created_at":"2026-11-02T10:00:00Z"}`,
			wantMethod: "POST",
			wantPath:   "/api/v1/integrations/7/webhook-urls",
			want: &WebhookURL{ID: 3, URL: "http://localhost:8080/v1/clients/7/token/" + strings.Repeat("ab", 32),
				Hint: "abab", CreatedAt: ts("2026-11-02T10:00:00Z")},
		},
		{
			name:   "list urls",
			call:   func(ctx context.Context, c *Client) (any, error) { return c.URLs(ctx, 7) },
			status: 200,
			answer: `[{"id":3,"hint":"abab","created_at":"2026-11-02T10:00:00Z","last_used_at":"2026-11-02T10:05:00Z","revoked_at":null},
				{"id":4,"hint":"cdcd","created_at":"2026-11-02T10:01:00Z","last_used_at":null,"revoked_at":"2026-11-02T10:02:00Z"}]`,
			wantMethod: "GET",
			wantPath:   "/api/v1/integrations/7/webhook-urls",
			want: []WebhookURL{
				{ID: 3, Hint: "abab", CreatedAt: ts("2026-11-02T10:00:00Z"), LastUsedAt: tsp("2026-11-02T10:05:00Z")},
				{ID: 4, Hint: "cdcd", CreatedAt: ts("2026-11-02T10:01:00Z"), RevokedAt: tsp("2026-11-02T10:02:00Z")},
			},
		},
		{
			name:       "revoke url",
			call:       func(ctx context.Context, c *Client) (any, error) { return nil, c.RevokeURL(ctx, 7, 3) },
			status:     204,
			wantMethod: "DELETE",
			wantPath:   "/api/v1/integrations/7/webhook-urls/3",
		},
		{
			name: "query",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Query(ctx, "select type, count(*) from stitch_vero.data group by 1")
			},
			status:     200,
			answer:     `{"columns":["type","count"],"rows":[["sent",3],[null,1]]}`,
			wantMethod: "POST",
			wantPath:   "/api/v1/query",
			wantBody:   `{"sql":"select type, count(*) from stitch_vero.data group by 1"}`,
			want: &QueryResult{Columns: []string{"type", "count"},
				Rows: [][]any{{"sent", json.Number("3")}, {nil, json.Number("1")}}},
		},
		{
			name:   "status",
			call:   func(ctx context.Context, c *Client) (any, error) { return c.Status(ctx) },
			status: 200,
			answer: `{"status":"degraded","version":"1.0.0","components":[{"name":"receiver","status":"operational","message":""},
				{"name":"loader","status":"degraded","message":"retrying"}],
				"integrations":[{"id":7,"name":"Stitch Vero","schema":"stitch_vero","records_received":5,"records_loaded":4,
				"records_rejected":0,"last_received_at":"2026-11-02T11:00:00Z","last_loaded_at":null,"backlog":1,"lag_seconds":1.5}]}`,
			wantMethod: "GET",
			wantPath:   "/status.json",
			want: &Status{Status: "degraded", Version: "1.0.0",
				Components: []Component{{Name: "receiver", Status: "operational"}, {Name: "loader", Status: "degraded", Message: "retrying"}},
				Integrations: []IntegrationStatus{{ID: 7, Name: "Stitch Vero", Schema: "stitch_vero",
					Stats: Stats{RecordsReceived: 5, RecordsLoaded: 4, LastReceivedAt: tsp("2026-11-02T11:00:00Z"), Backlog: 1, LagSeconds: 1.5}}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, last := fakeServer(t, tt.status, tt.answer)
			res, err := tt.call(t.Context(), New(srv.URL, testKey))
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			got := last()
			if got.method != tt.wantMethod || got.path != tt.wantPath {
				t.Errorf("request = %s %s, want %s %s", got.method, got.path, tt.wantMethod, tt.wantPath)
			}
			if got.auth != "Bearer "+testKey {
				t.Errorf("Authorization = %q, want the bearer key", got.auth)
			}
			if tt.wantBody == "" {
				if got.body != "" || got.contentType != "" {
					t.Errorf("request body = %q (Content-Type %q), want none", got.body, got.contentType)
				}
			} else {
				if got.contentType != "application/json" {
					t.Errorf("Content-Type = %q, want application/json", got.contentType)
				}
				if got.body != tt.wantBody {
					t.Errorf("request body = %s, want %s", got.body, tt.wantBody)
				}
			}
			if tt.want != nil && !reflect.DeepEqual(res, tt.want) {
				t.Errorf("decoded\n got %#v\nwant %#v", res, tt.want)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		answer  string
		want    Error
		wantMsg string
	}{
		{
			name:    "api error",
			status:  409,
			answer:  `{"error":{"code":"conflict","message":"integration \"x\" already uses schema stitch_vero"}}`,
			want:    Error{StatusCode: 409, Code: "conflict", Message: `integration "x" already uses schema stitch_vero`},
			wantMsg: `409 conflict: integration "x" already uses schema stitch_vero`,
		},
		{
			name:    "unauthorized",
			status:  401,
			answer:  `{"error":{"code":"unauthorized","message":"missing or wrong admin key"}}`,
			want:    Error{StatusCode: 401, Code: "unauthorized", Message: "missing or wrong admin key"},
			wantMsg: "401 unauthorized: missing or wrong admin key",
		},
		{
			name:    "message on several lines becomes one",
			status:  400,
			answer:  `{"error":{"code":"bad_request","message":"Parser Error:\n  syntax error at or near \"selec\""}}`,
			want:    Error{StatusCode: 400, Code: "bad_request", Message: `Parser Error: syntax error at or near "selec"`},
			wantMsg: `400 bad_request: Parser Error: syntax error at or near "selec"`,
		},
		{
			name:    "plain text from a proxy",
			status:  502,
			answer:  "upstream connect error\nmore detail",
			want:    Error{StatusCode: 502, Message: "upstream connect error"},
			wantMsg: "502 bad gateway: upstream connect error",
		},
		{
			name:    "html page",
			status:  404,
			answer:  "<html><body>Not Found</body></html>",
			want:    Error{StatusCode: 404},
			wantMsg: "404 not found",
		},
		{
			name:    "echoed key is hidden",
			status:  401,
			answer:  `{"error":{"code":"unauthorized","message":"bad key ` + testKey + `"}}`,
			want:    Error{StatusCode: 401, Code: "unauthorized", Message: "bad key ****"},
			wantMsg: "401 unauthorized: bad key ****",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := fakeServer(t, tt.status, tt.answer)
			_, err := New(srv.URL, testKey).Integrations(t.Context())
			var apiErr *Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("error = %v (%T), want *Error", err, err)
			}
			if *apiErr != tt.want {
				t.Errorf("error = %#v, want %#v", *apiErr, tt.want)
			}
			if err.Error() != tt.wantMsg {
				t.Errorf("Error() = %q, want %q", err.Error(), tt.wantMsg)
			}
		})
	}
}

func TestQueryKeepsBigIntegersExact(t *testing.T) {
	srv, _ := fakeServer(t, 200, `{"columns":["_sdc_sequence","x"],"rows":[[1762077600000000001,1.5]],"truncated":true}`)
	res, err := New(srv.URL, testKey).Query(t.Context(), "select _sdc_sequence, x from s.data")
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Rows[0][0]; got != json.Number("1762077600000000001") {
		t.Errorf("_sdc_sequence = %#v, want every digit kept", got)
	}
	if got := res.Rows[0][1]; got != json.Number("1.5") {
		t.Errorf("x = %#v, want 1.5", got)
	}
	if !res.Truncated {
		t.Error("Truncated = false, want true")
	}
}

func TestStatusWithoutKeyIsAnonymous(t *testing.T) {
	srv, last := fakeServer(t, 200, `{"status":"operational","version":"dev","components":[{"name":"log","status":"operational","message":""}]}`)
	st, err := New(srv.URL, "").Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := last(); got.auth != "" {
		t.Errorf("Authorization = %q, want none without a key", got.auth)
	}
	if st.Status != "operational" || len(st.Components) != 1 || st.Integrations != nil {
		t.Errorf("status = %+v", st)
	}
}

func TestStatusDownIsAReportNotAnError(t *testing.T) {
	srv, _ := fakeServer(t, 503, `{"status":"down","version":"dev","components":[{"name":"log","status":"down","message":"disk full"}]}`)
	st, err := New(srv.URL, testKey).Status(t.Context())
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if st.Status != StatusDown || st.Components[0].Message != "disk full" {
		t.Errorf("status = %+v", st)
	}

	srv, _ = fakeServer(t, 503, `{"error":{"code":"unavailable","message":"shutting down"}}`)
	_, err = New(srv.URL, testKey).Status(t.Context())
	if err == nil || err.Error() != "503 unavailable: shutting down" {
		t.Errorf("error = %v, want the 503 reason", err)
	}
}

func TestNewNormalizesBaseURL(t *testing.T) {
	srv, last := fakeServer(t, 200, `[]`)
	for _, base := range []string{srv.URL + "/", strings.TrimPrefix(srv.URL, "http://"), " " + srv.URL + " "} {
		if _, err := New(base, testKey).Integrations(t.Context()); err != nil {
			t.Errorf("New(%q): %v", base, err)
			continue
		}
		if got := last(); got.path != "/api/v1/integrations" {
			t.Errorf("New(%q): path = %q", base, got.path)
		}
	}
}

func TestUnreachableServer(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()

	_, err := New(url, testKey).Integrations(t.Context())
	if err == nil {
		t.Fatal("want an error from a closed server")
	}
	var apiErr *Error
	if errors.As(err, &apiErr) {
		t.Errorf("error = %#v, want a transport error, not *Error", apiErr)
	}
	if strings.Contains(err.Error(), testKey) {
		t.Errorf("error %q contains the admin key", err)
	}
}

func TestNotAHookhouseServer(t *testing.T) {
	srv, _ := fakeServer(t, 200, `<html>welcome to nginx</html>`)
	_, err := New(srv.URL, testKey).Integrations(t.Context())
	if err == nil || !strings.Contains(err.Error(), "a hookhouse server?") {
		t.Errorf("error = %v, want a hint that this is not a hookhouse server", err)
	}
}

func TestContextCancel(t *testing.T) {
	srv, _ := fakeServer(t, 200, `[]`)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := New(srv.URL, testKey).Integrations(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want context.Canceled", err)
	}
}
