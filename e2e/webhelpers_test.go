package e2e

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// webClient is a browser stand-in for the dashboard over plain HTTP: it keeps
// cookies and does not follow redirects, so tests see every 303.
type webClient struct {
	t    testing.TB
	base string
	hc   *http.Client
}

func newWebClient(t testing.TB, base string) *webClient {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &webClient{t: t, base: base, hc: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// do sends a request and returns the response (body read and closed) and body.
func (c *webClient) do(req *http.Request) (*http.Response, string) {
	c.t.Helper()
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	return resp, string(b)
}

func (c *webClient) get(path string, hdr ...string) (*http.Response, string) {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return c.do(req)
}

// postForm posts vals (form-encoded) with optional extra headers.
func (c *webClient) postForm(path string, vals url.Values, hdr ...string) (*http.Response, string) {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader(vals.Encode()))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return c.do(req)
}

// login logs in with key and fails the test if that does not give a session.
func (c *webClient) login(key string) {
	c.t.Helper()
	_, page := c.get("/login")
	resp, body := c.postForm("/login", url.Values{"csrf": {formValue(page, "csrf")}, "key": {key}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		c.t.Fatalf("login = %d %s, want 303 to /\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
}

// csrf returns the session's CSRF token, read from a page's forms.
func (c *webClient) csrf() string {
	c.t.Helper()
	_, page := c.get("/integrations/new")
	tok := formValue(page, "csrf")
	if tok == "" {
		c.t.Fatalf("no CSRF token in the add form:\n%s", page)
	}
	return tok
}

// formValue returns the value of the first hidden input called name in page.
func formValue(page, name string) string {
	re := regexp.MustCompile(`name="` + regexp.QuoteMeta(name) + `" value="([^"]*)"`)
	m := re.FindStringSubmatch(page)
	if m == nil {
		return ""
	}
	return m[1]
}

// tokenRe finds a webhook URL's token in a page.
var tokenRe = regexp.MustCompile(`/v1/clients/\d+/token/([0-9a-f]{64})`)
