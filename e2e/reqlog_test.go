package e2e

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/config"
)

// TestRefusedRequestsAreLogged: at the default level (info) every kind of
// refused webhook request leaves a line that explains it (masked path, status,
// the reason the client got, remote address, bytes, duration), successful ones
// leave none, no token or body value is ever written, and a flood of 10,000 bad
// requests from one address writes a bounded number of lines whose suppressed
// counts account for every request.
func TestRefusedRequestsAreLogged(t *testing.T) {
	in := startServer(t, func(c *config.Config) { c.LogLevel = "info" })
	_, hook := setupVero(t, in)
	token := hook[strings.LastIndex(hook, "/")+1:]
	base := strings.TrimSuffix(hook, token)
	c := clientAt("127.0.0.1")

	var badTokens []string
	badToken := func() string {
		b := make([]byte, 32)
		rand.Read(b)
		tok := hex.EncodeToString(b)
		badTokens = append(badTokens, tok)
		return tok
	}
	send := func(url string, body []byte, hdr ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("POST: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	if s, body := send(hook, mustRead(t, veroFiles(t)[0])); s != 200 {
		t.Fatalf("valid sample = %d %s", s, body)
	}
	for i := 0; i < 3; i++ {
		if s, body := send(base+badToken(), []byte(`{"a":1}`)); s != 401 {
			t.Fatalf("bad token = %d %s, want 401", s, body)
		}
	}
	const secretValue = "value-that-must-not-be-logged@example.com"
	if s, body := send(hook, []byte(`{"email":"`+secretValue+`",}`)); s != 400 {
		t.Fatalf("malformed JSON = %d %s, want 400", s, body)
	}
	// Over 20 MiB once decoded, a few KiB on the wire: the server reads up to the
	// limit and answers while the client has long finished sending.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"email":"` + secretValue + `","pad":"` + strings.Repeat("x", 21<<20) + `"}`))
	zw.Close()
	s, body413 := send(hook, gz.Bytes(), "Content-Encoding", "gzip")
	if s != 413 || !strings.Contains(body413, "limit of 20 MiB") {
		t.Fatalf("too large = %d %s, want 413 naming the limit as 20 MiB", s, body413)
	}
	got429 := false
	for i := 0; i < 100 && !got429; i++ {
		s, _ := send(base+badToken(), []byte(`{"a":1}`))
		got429 = s == 429
	}
	if !got429 {
		t.Fatal("100 bad tokens from one address never got a 429")
	}

	// Each kind has its line, with every field, at info.
	lines := parseLogLines(in.Logs.String())
	for _, status := range []string{"401", "400", "413", "429"} {
		l := findLine(lines, func(l map[string]string) bool {
			return l["msg"] == "webhook request refused" && l["status"] == status
		})
		if l == nil {
			t.Fatalf("no log line for the %s; log:\n%s", status, in.Logs.String())
		}
		for _, k := range []string{"path", "reason", "remote", "bytes", "duration"} {
			if l[k] == "" {
				t.Fatalf("the %s line has no %s: %v", status, k, l)
			}
		}
		if l["level"] != "INFO" || !strings.HasPrefix(l["path"], "/v1/clients/") || !strings.Contains(l["path"], "/token/****") {
			t.Fatalf("the %s line: want level INFO and a masked webhook path: %v", status, l)
		}
		if !strings.HasPrefix(l["remote"], "127.0.0.1:") {
			t.Fatalf("the %s line's remote = %q", status, l["remote"])
		}
		if _, err := time.ParseDuration(l["duration"]); err != nil {
			t.Fatalf("the %s line's duration = %q", status, l["duration"])
		}
		t.Logf("%s: %v", status, l)
	}
	reasons := map[string]string{
		"401": "unknown or revoked webhook URL",
		"400": "invalid JSON: expected a string key in object at byte",
		"413": "body larger than the limit of 20 MiB (after gzip decoding)",
		"429": "too many requests with unknown or revoked webhook URLs",
	}
	for status, want := range reasons {
		l := findLine(lines, func(l map[string]string) bool { return l["status"] == status })
		if !strings.HasPrefix(l["reason"], want) {
			t.Fatalf("the %s line's reason = %q, want the client's %q", status, l["reason"], want)
		}
	}
	if l := findLine(lines, func(l map[string]string) bool { return l["status"] == "413" }); l["bytes"] != strconv.Itoa(20<<20+1) {
		t.Fatalf("the 413 line's bytes = %s, want the %d read before stopping", l["bytes"], 20<<20+1)
	}
	if l := findLine(lines, func(l map[string]string) bool { return l["status"] == "400" }); l["integration"] == "" {
		t.Fatalf("the 400 line (a valid token) does not name the integration: %v", l)
	}
	if l := findLine(lines, func(l map[string]string) bool { return l["status"] == "200" }); l != nil {
		t.Fatalf("a successful request was logged at info: %v", l)
	}

	// A flood from another address: bounded lines, and every request counted.
	const flood = 10_000
	floodAddr := "127.0.0.2"
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fc := clientAt(floodAddr)
			tok := strings.Repeat("0", 64)
			for i := 0; i < flood/4; i++ {
				resp, err := fc.Post(base+tok, "application/json", strings.NewReader(`{"a":1}`))
				if err != nil {
					t.Errorf("flood: %v", err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				statuses[resp.StatusCode]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	duringFlood := 0
	for _, l := range parseLogLines(in.Logs.String()) {
		if strings.HasPrefix(l["remote"], floodAddr+":") {
			duringFlood++
		}
	}
	// Stopping reports the counts no line has carried yet.
	in.Stop(t)
	logs := in.Logs.String()
	written, suppressed := 0, 0
	for _, l := range parseLogLines(logs) {
		if l["remote"] != floodAddr && !strings.HasPrefix(l["remote"], floodAddr+":") {
			continue
		}
		if l["msg"] == "webhook request refused" {
			written++
		}
		n, _ := strconv.Atoi(l["suppressed"])
		suppressed += n
	}
	t.Logf("flood of %d (%v): %d lines during the flood, %d request lines in all, %d suppressed", flood, statuses, duringFlood, written, suppressed)
	if written > 100 {
		t.Fatalf("a flood of %d bad requests from one address wrote %d lines, want at most 100", flood, written)
	}
	if written+suppressed != flood {
		t.Fatalf("%d lines + %d suppressed = %d, want every one of the %d flood requests accounted for",
			written, suppressed, written+suppressed, flood)
	}

	for _, tok := range append(badTokens, token, strings.Repeat("0", 64)) {
		if strings.Contains(logs, tok) {
			t.Fatalf("a token is in the log")
		}
	}
	if strings.Contains(logs, secretValue) {
		t.Fatal("a body value is in the log")
	}
}

// clientAt sends requests from the loopback address local (127.0.0.x), so the
// server sees them as another client.
func clientAt(local string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 8}}
}

// parseLogLines reads slog's text format: key=value and key="quoted value".
func parseLogLines(logs string) []map[string]string {
	var out []map[string]string
	for _, line := range strings.Split(logs, "\n") {
		l := map[string]string{}
		for rest := strings.TrimSpace(line); rest != ""; rest = strings.TrimLeft(rest, " ") {
			eq := strings.IndexByte(rest, '=')
			if eq <= 0 {
				break
			}
			key, v := rest[:eq], rest[eq+1:]
			if strings.HasPrefix(v, `"`) {
				q, err := strconv.QuotedPrefix(v)
				if err != nil {
					break
				}
				l[key], _ = strconv.Unquote(q)
				rest = v[len(q):]
				continue
			}
			end := strings.IndexByte(v, ' ')
			if end < 0 {
				end = len(v)
			}
			l[key], rest = v[:end], v[end:]
		}
		if len(l) > 0 {
			out = append(out, l)
		}
	}
	return out
}

func findLine(lines []map[string]string, match func(map[string]string) bool) map[string]string {
	for _, l := range lines {
		if match(l) {
			return l
		}
	}
	return nil
}
