package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/config"
)

// TestVeroFlow is issue 2's end-to-end test against the real server.
func TestVeroFlow(t *testing.T) {
	in := startServer(t, nil)
	ctx := context.Background()
	c := in.Client

	integ, err := c.CreateIntegration(ctx, client.NewIntegration{Name: "Stitch Vero", Type: "vero"})
	if err != nil {
		t.Fatal(err)
	}
	if integ.Schema != "stitch_vero" || integ.Type != "vero" || integ.ID <= 0 {
		t.Fatalf("created %+v, want schema stitch_vero", integ)
	}
	if _, err := c.CreateIntegration(ctx, client.NewIntegration{Name: "stitch-vero", Type: "vero"}); !isStatus(err, 409) {
		t.Fatalf("duplicate schema: %v, want 409", err)
	}

	u1, err := c.GenerateURL(ctx, integ.ID)
	if err != nil {
		t.Fatal(err)
	}
	u2, err := c.GenerateURL(ctx, integ.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GenerateURL(ctx, integ.ID); !isStatus(err, 409) || !strings.Contains(err.Error(), "revoke") {
		t.Fatalf("third URL: %v, want 409 saying to revoke one", err)
	}
	for _, u := range []*client.WebhookURL{u1, u2} {
		want := fmt.Sprintf("http://localhost:8080/v1/clients/%d/token/", integ.ID)
		tok := strings.TrimPrefix(u.URL, want)
		if !strings.HasPrefix(u.URL, want) || len(tok) != 64 || strings.Trim(tok, "0123456789abcdef") != "" || u.Hint != tok[60:] {
			t.Fatalf("webhook URL %q (hint %q) is not <public-url>/v1/clients/<id>/token/<64 hex>", u.URL, u.Hint)
		}
	}
	// Listings never show the secret again.
	list, err := c.URLs(ctx, integ.ID)
	if err != nil || len(list) != 2 {
		t.Fatalf("URLs = %v, %v", list, err)
	}
	for _, u := range list {
		if u.URL != "" {
			t.Fatalf("listing shows a URL: %+v", u)
		}
	}

	url1, url2 := in.hookURL(u1.URL), in.hookURL(u2.URL)
	for _, f := range veroFiles(t) {
		body, _ := os.ReadFile(f)
		status, resp := post(t, url1, "application/json", body)
		if status != 200 || resp != `{"status":"ok","records":1}`+"\n" {
			t.Fatalf("POST %s = %d %s", f, status, resp)
		}
	}
	status, resp := post(t, url2, "application/json", []byte(`[{"type":"a"},{"type":"b"},{"type":"c"}]`))
	if status != 200 || !strings.Contains(resp, `"records":3`) {
		t.Fatalf("array of 3 = %d %s", status, resp)
	}
	got, err := c.Integration(ctx, integ.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Stats == nil || got.Stats.RecordsReceived != 17 {
		t.Fatalf("stats = %+v, want records_received 17", got.Stats)
	}

	if err := c.RevokeURL(ctx, integ.ID, u1.ID); err != nil {
		t.Fatal(err)
	}
	if status, _ := post(t, url1, "application/json", []byte(`{"a":1}`)); status != 401 {
		t.Fatalf("revoked URL answered %d, want 401", status)
	}
	if status, _ := post(t, url2, "application/json", []byte(`{"a":1}`)); status != 200 {
		t.Fatalf("other URL answered %d after revoking the first, want 200", status)
	}
	list, _ = c.URLs(ctx, integ.ID)
	if list[0].RevokedAt == nil || list[1].RevokedAt != nil {
		t.Fatalf("revoked_at wrong in listing: %+v", list)
	}

	// Deleting the integration revokes its URLs at once.
	if err := c.DeleteIntegration(ctx, integ.ID); err != nil {
		t.Fatal(err)
	}
	if status, _ := post(t, url2, "application/json", []byte(`{"a":1}`)); status != 401 {
		t.Fatalf("URL of a deleted integration answered %d, want 401", status)
	}
	if _, err := c.Integration(ctx, integ.ID); !isStatus(err, 404) {
		t.Fatalf("deleted integration: %v, want 404", err)
	}
}

// TestBadRequests checks every refusal of SPEC §4 and that none stores anything.
func TestBadRequests(t *testing.T) {
	in := startServer(t, nil)
	ctx := context.Background()
	id, url := setupVero(t, in)
	other, err := in.Client.CreateIntegration(ctx, client.NewIntegration{Name: "Other", Type: "webhooks"})
	if err != nil {
		t.Fatal(err)
	}
	otherURL, _ := in.Client.GenerateURL(ctx, other.ID)
	tok := url[strings.LastIndex(url, "/")+1:]
	base := in.URL + "/v1/clients/"

	big := bytes.Repeat([]byte("x"), 21<<20)
	copy(big, `{"a":"`)
	var bomb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestCompression)
	zw.Write([]byte(`{"a":"`))
	zw.Write(make([]byte, 21<<20))
	zw.Close()
	var gz bytes.Buffer
	zw = gzip.NewWriter(&gz)
	zw.Write([]byte(`[{"a":1},{"b":2}]`))
	zw.Close()
	deep := strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100)

	cases := []struct {
		name        string
		method, url string
		ctype       string
		body        []byte
		hdr         []string
		status      int
		msg         string
	}{
		{"wrong token", "POST", base + fmt.Sprint(id) + "/token/" + strings.Repeat("0", 64), "application/json", []byte(`{}`), nil, 401, "unknown or revoked"},
		{"malformed token", "POST", base + fmt.Sprint(id) + "/token/abc", "application/json", []byte(`{}`), nil, 401, "unknown or revoked"},
		{"other integration's id", "POST", base + fmt.Sprint(other.ID) + "/token/" + tok, "application/json", []byte(`{}`), nil, 401, "unknown or revoked"},
		{"token of other integration", "POST", base + fmt.Sprint(id) + "/token/" + otherURL.URL[len(otherURL.URL)-64:], "application/json", []byte(`{}`), nil, 401, "unknown or revoked"},
		{"unknown id", "POST", base + "999/token/" + tok, "application/json", []byte(`{}`), nil, 401, "unknown or revoked"},
		{"GET", "GET", url, "", nil, nil, 405, "POST"},
		{"PUT", "PUT", url, "application/json", []byte(`{}`), nil, 405, "POST"},
		{"form content type", "POST", url, "application/x-www-form-urlencoded", []byte(`a=1`), nil, 415, "not JSON"},
		{"text/plain", "POST", url, "text/plain", []byte(`{}`), nil, 415, "not JSON"},
		{"21 MiB body", "POST", url, "application/json", big, nil, 413, "limit"},
		{"gzip bomb", "POST", url, "application/json", bomb.Bytes(), []string{"Content-Encoding", "gzip"}, 413, "after gzip"},
		{"not gzip", "POST", url, "application/json", []byte(`{}`), []string{"Content-Encoding", "gzip"}, 400, "gzip"},
		{"brotli", "POST", url, "application/json", []byte(`{}`), []string{"Content-Encoding", "br"}, 415, "Content-Encoding"},
		{"array of numbers", "POST", url, "application/json", []byte(`[1,2]`), nil, 400, "not an object"},
		{"string", "POST", url, "application/json", []byte(`"x"`), nil, 400, "scalar"},
		{"truncated JSON", "POST", url, "application/json", []byte(`{"a":[1,2`), nil, 400, "truncated"},
		{"invalid UTF-8", "POST", url, "application/json", []byte("{\"a\":\"\xff\"}"), nil, 400, "UTF-8"},
		{"depth 100", "POST", url, "application/json", []byte(deep), nil, 400, "deeper than 64"},
		{"trailing garbage", "POST", url, "application/json", []byte(`{"a":1}}`), nil, 400, "trailing"},
		{"half good array", "POST", url, "application/json", []byte(`[{"a":1},{"b":2},3]`), nil, 400, "element 2"},
		{"empty body", "POST", url, "application/json", nil, nil, 400, "empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, tc.url, bytes.NewReader(tc.body))
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			for i := 0; i < len(tc.hdr); i += 2 {
				req.Header.Set(tc.hdr[i], tc.hdr[i+1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct{ Status, Message string }
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("error body is not JSON: %v", err)
			}
			if resp.StatusCode != tc.status || body.Status != "error" || !strings.Contains(body.Message, tc.msg) {
				t.Fatalf("got %d %+v, want %d with a message containing %q", resp.StatusCode, body, tc.status, tc.msg)
			}
			if tc.status == 405 && resp.Header.Get("Allow") != "POST" {
				t.Fatalf("405 without Allow: POST")
			}
			if strings.Contains(body.Message, tok) {
				t.Fatal("error message contains the token")
			}
		})
	}
	for _, iid := range []int64{id, other.ID} {
		got, err := in.Client.Integration(ctx, iid)
		if err != nil {
			t.Fatal(err)
		}
		if got.Stats.RecordsReceived != 0 {
			t.Fatalf("integration %d: refused requests stored %d records", iid, got.Stats.RecordsReceived)
		}
	}
	// Accepted shapes still work: gzip, +json, no content type, empty array.
	for _, ok := range []struct {
		ctype string
		body  []byte
		hdr   []string
		n     string
	}{
		{"application/json", gz.Bytes(), []string{"Content-Encoding", "gzip"}, `"records":2`},
		{"application/vnd.vero+json; charset=utf-8", []byte(`{"a":1}`), nil, `"records":1`},
		{"", []byte(`{"a":1}`), nil, `"records":1`},
		{"application/json", []byte(`[]`), nil, `"records":0`},
	} {
		status, resp := post(t, url, ok.ctype, ok.body, ok.hdr...)
		if status != 200 || !strings.Contains(resp, ok.n) {
			t.Fatalf("%q %q = %d %s, want 200 %s", ok.ctype, ok.body, status, resp, ok.n)
		}
	}
	got, _ := in.Client.Integration(ctx, id)
	if got.Stats.RecordsReceived != 4 {
		t.Fatalf("records_received = %d, want 4", got.Stats.RecordsReceived)
	}
}

// TestAdminAuth checks that the admin API refuses requests without the key.
func TestAdminAuth(t *testing.T) {
	in := startServer(t, nil)
	for _, key := range []string{"", "wrong", in.Key + "x"} {
		_, err := newClient(in.URL, key).Integrations(context.Background())
		if !isStatus(err, 401) {
			t.Fatalf("key %q: %v, want 401", key, err)
		}
	}
	if _, err := in.Client.Integrations(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(in.URL + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", p, resp, err)
		}
		resp.Body.Close()
	}
}

// TestAdminKeyFile checks the one-time admin key and <data>/admin.key.
func TestAdminKeyFile(t *testing.T) {
	dir := t.TempDir()
	in := startServer(t, func(c *config.Config) { c.Data = dir })
	fi, err := os.Stat(dir + "/admin.key")
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.key: %v %v, want mode 0600", fi, err)
	}
	if !strings.HasPrefix(in.Key, "hhk_") {
		t.Fatalf("first start did not create an admin key")
	}
	in.Stop(t)
	again := startServer(t, func(c *config.Config) { c.Data = dir })
	if again.Srv.AdminKey != "" {
		t.Fatal("the admin key was revealed again on the second start")
	}
	if _, err := again.Client.Integrations(context.Background()); err != nil {
		t.Fatalf("the key from admin.key does not work after a restart: %v", err)
	}
}

func newClient(url, key string) *client.Client { return client.New(url, key) }

func isStatus(err error, code int) bool {
	var e *client.Error
	return errors.As(err, &e) && e.StatusCode == code
}
