package e2e

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/hookhouse/hookhouse/internal/config"
)

// TestTrustedProxies: X-Forwarded-For and Forwarded name the client only on
// requests from a --trusted-proxies address, for the 401 rate limit and the
// request log. From anyone else they are ignored, so a spoofed header neither
// escapes the limit nor shows in the log; through the proxy, the right-most
// address the proxy appended is the client, whatever the client wrote left of it.
func TestTrustedProxies(t *testing.T) {
	in := startServer(t, func(c *config.Config) {
		c.LogLevel = "info"
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	})
	_, hook := setupVero(t, in)
	token := hook[strings.LastIndex(hook, "/")+1:]
	badURL := strings.TrimSuffix(hook, token) + strings.Repeat("0", len(token))
	proxy, direct := clientAt("127.0.0.2"), clientAt("127.0.0.3")

	send := func(c *http.Client, url string, hdr ...string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"id":1}`))
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Add(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("POST: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// untilLimited sends bad-token requests until one gets 429; hdr(i) gives the
	// headers of request i. It returns how many were sent.
	untilLimited := func(c *http.Client, hdr func(i int) []string) int {
		t.Helper()
		for i := 1; i <= 300; i++ {
			switch s := send(c, badURL, hdr(i)...); s {
			case http.StatusTooManyRequests:
				return i
			case http.StatusUnauthorized:
			default:
				t.Fatalf("bad token: status %d", s)
			}
		}
		return 0
	}

	// Not a trusted proxy: a new spoofed client address on every request does
	// not escape the limit of the real peer.
	if n := untilLimited(direct, func(i int) []string {
		return []string{"X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i%250+1), "Forwarded", fmt.Sprintf("for=198.51.100.%d", i%250+1)}
	}); n == 0 {
		t.Fatal("300 bad tokens from one untrusted peer with rotating X-Forwarded-For never got a 429: the spoofed header was believed")
	}

	// Through the trusted proxy: the client is the right-most address. A client
	// that rotates what it writes to the left of it stays one client…
	if n := untilLimited(proxy, func(i int) []string {
		return []string{"X-Forwarded-For", fmt.Sprintf("198.51.100.%d, 203.0.113.50", i%250+1)}
	}); n == 0 {
		t.Fatal("300 bad tokens from one forwarded client never got a 429: the client's own part of the header was believed")
	}
	// …while another client behind the same proxy, and the same proxy's peer
	// address itself, are not limited by it.
	if s := send(proxy, badURL, "X-Forwarded-For", "203.0.113.51"); s != http.StatusUnauthorized {
		t.Errorf("another client behind the proxy: %d, want 401 (its own limit)", s)
	}
	if s := send(proxy, badURL, "Forwarded", `for="[2001:db8::7]:4711";proto=https`); s != http.StatusUnauthorized {
		t.Errorf("a client named by Forwarded: %d, want 401", s)
	}
	if s := send(proxy, hook, "X-Forwarded-For", "203.0.113.50"); s != http.StatusOK {
		t.Errorf("a valid webhook from the limited client: %d, want 200 (valid tokens are never limited)", s)
	}

	// The request log names the same clients.
	var fromDirect, spoofed, fromProxy, fromForwarded int
	for _, l := range parseLogLines(in.Logs.String()) {
		if l["msg"] != "webhook request refused" {
			continue
		}
		remote := l["remote"]
		switch {
		case strings.HasPrefix(remote, "127.0.0.3:") && l["proxy"] == "":
			fromDirect++
		case strings.HasPrefix(remote, "203.0.113.") && l["proxy"] == "":
			spoofed++
		case remote == "203.0.113.50" && strings.HasPrefix(l["proxy"], "127.0.0.2:"):
			fromProxy++
		case remote == "2001:db8::7" && strings.HasPrefix(l["proxy"], "127.0.0.2:"):
			fromForwarded++
		}
		if strings.HasPrefix(remote, "198.51.100.") {
			t.Errorf("the log believed a spoofed address: %v", l)
		}
	}
	if fromDirect == 0 || spoofed != 0 || fromProxy == 0 || fromForwarded != 1 {
		t.Errorf("log lines: %d from the untrusted peer, %d with its spoofed address, %d for the forwarded client, %d for the Forwarded one; want >0, 0, >0, 1\n%s",
			fromDirect, spoofed, fromProxy, fromForwarded, in.Logs.String())
	}
}
