package ingest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/state"
)

func reqFrom(addr string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/clients/1/token/x", nil)
	r.RemoteAddr = addr
	return r
}

func TestFailLimiterBurstAndRefill(t *testing.T) {
	l := &FailLimiter{Rate: 2, Burst: 50}
	t0 := time.Unix(1_800_000_000, 0)
	a := reqFrom("192.0.2.1:1111")
	for i := 0; i < 50; i++ {
		if !l.Allow(a, t0) {
			t.Fatalf("failure %d of the burst of 50 was limited", i+1)
		}
	}
	if l.Allow(a, t0) {
		t.Fatal("failure 51 at the same instant was allowed")
	}
	// The port is not part of the address: a new connection changes nothing.
	if l.Allow(reqFrom("192.0.2.1:2222"), t0) {
		t.Fatal("a new source port escaped the limit")
	}
	// Headers a client controls are not trusted for the address.
	spoof := reqFrom("192.0.2.1:3333")
	spoof.Header.Set("X-Forwarded-For", "203.0.113.9")
	spoof.Header.Set("X-Real-IP", "203.0.113.9")
	if l.Allow(spoof, t0) {
		t.Fatal("X-Forwarded-For escaped the limit")
	}
	// Refill: 2 per second, so after 1.5 s three more failures are answered 401.
	t1 := t0.Add(1500 * time.Millisecond)
	for i := 0; i < 3; i++ {
		if !l.Allow(a, t1) {
			t.Fatalf("refilled failure %d was limited", i+1)
		}
	}
	if l.Allow(a, t1) {
		t.Fatal("a fourth failure after 1.5 s was allowed (refill faster than 2/s)")
	}
	// Refill stops at the burst.
	t2 := t1.Add(time.Hour)
	n := 0
	for l.Allow(a, t2) {
		n++
	}
	if n != 50 {
		t.Fatalf("after an hour %d failures were allowed, want the burst of 50", n)
	}
}

func TestFailLimiterPerAddress(t *testing.T) {
	l := &FailLimiter{Rate: 2, Burst: 5}
	now := time.Unix(1_800_000_000, 0)
	for i := 0; i < 10; i++ {
		l.Allow(reqFrom("192.0.2.1:1"), now)
	}
	if l.Allow(reqFrom("192.0.2.1:1"), now) {
		t.Fatal("exhausted address allowed")
	}
	for _, other := range []string{"192.0.2.2:1", "[2001:db8::1]:1", "[2001:db8::2]:1"} {
		if !l.Allow(reqFrom(other), now) {
			t.Fatalf("%s was limited by another address's failures", other)
		}
	}
	// A nil limiter allows everything.
	var none *FailLimiter
	if !none.Allow(reqFrom("192.0.2.1:1"), now) {
		t.Fatal("nil limiter limited")
	}
}

func TestFailLimiterBoundedMemory(t *testing.T) {
	l := &FailLimiter{Rate: 2, Burst: 50}
	t0 := time.Unix(1_800_000_000, 0)
	// One noisy address that used up its burst.
	noisy := reqFrom("198.51.100.7:1")
	for l.Allow(noisy, t0) {
	}
	// 50,000 addresses failing once each (think IPv6).
	for i := 0; i < 50_000; i++ {
		l.Allow(reqFrom(fmt.Sprintf("[2001:db8::%x]:1", i)), t0.Add(time.Duration(i)*time.Microsecond))
	}
	if n := len(l.buckets); n > 50_001 {
		t.Fatalf("%d buckets for 50,001 addresses", n)
	}
	// Two seconds later their buckets are full again and are forgotten at the
	// next failure; the noisy address (4 of 50 refilled) is not.
	t1 := t0.Add(2 * time.Second)
	l.Allow(reqFrom("192.0.2.200:1"), t1)
	if n := len(l.buckets); n != 2 {
		t.Fatalf("%d buckets kept after the sweep, want the noisy address and the new one", n)
	}
	allowed := 0
	for l.Allow(noisy, t1) {
		allowed++
	}
	if allowed != 4 {
		t.Fatalf("the noisy address got %d failures after 2 s, want 4: the sweep forgot its bucket", allowed)
	}
}

// fixture is the real ingest handler with a real control store and log.
type fixture struct {
	srv   *httptest.Server
	ctl   *control.Store
	log   *state.Pebble
	id    int64
	token string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := state.OpenPebble(t.TempDir(), logger, state.Options{MinFreeBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctl, err := control.Open(st, state.ErrNotFound, logger)
	if err != nil {
		t.Fatal(err)
	}
	in, err := ctl.Create(control.NewIntegration{Name: "Limits", Type: control.TypeWebhooks}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, token, err := ctl.GenerateURL(in.ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/clients/{id}/token/{token}", &Handler{
		Auth: ctl, Log: st, MaxBody: 1 << 20, Logger: logger, RetryAfter: 5,
		Large: NewSlots(8), Failures: &FailLimiter{Rate: 2, Burst: 50},
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, ctl: ctl, log: st, id: in.ID, token: token}
}

// clientFrom sends requests from the loopback address local (127.0.0.x).
func clientFrom(local string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

func (f *fixture) post(t *testing.T, c *http.Client, token string) int {
	t.Helper()
	u := fmt.Sprintf("%s/v1/clients/%d/token/%s", f.srv.URL, f.id, token)
	resp, err := c.Post(u, "application/json", strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	return resp.StatusCode
}

// TestRepeated401sAreLimited: a client guessing tokens is slowed to 429 after
// its burst, while a valid token from the same address still gets 200 at once
// and another address still gets a plain 401.
func TestRepeated401sAreLimited(t *testing.T) {
	f := newFixture(t)
	noisy := clientFrom("127.0.0.1")
	wrong := func() string {
		b := make([]byte, 32)
		rand.Read(b)
		return hex.EncodeToString(b)
	}
	counts := map[int]int{}
	first429 := 0
	for i := 1; i <= 60; i++ {
		s := f.post(t, noisy, wrong())
		counts[s]++
		if s == 429 && first429 == 0 {
			first429 = i
		}
	}
	if counts[401] < 50 || counts[429] == 0 || counts[401]+counts[429] != 60 {
		t.Fatalf("60 bad tokens got %v, want 50 × 401 then 429s", counts)
	}
	t.Logf("60 bad tokens: %v; first 429 at request %d", counts, first429)

	// A valid token from the same address: 200 every time, and it does not
	// refill the bucket (the next bad token is still refused).
	for i := 0; i < 20; i++ {
		if s := f.post(t, noisy, f.token); s != 200 {
			t.Fatalf("valid token %d from the limited address = %d, want 200", i, s)
		}
	}
	if s := f.post(t, noisy, wrong()); s != 429 {
		t.Fatalf("bad token after valid ones = %d, want 429", s)
	}
	// A near miss of the valid token is no better than a random one.
	if s := f.post(t, noisy, flip(f.token, len(f.token)-1)); s != 429 {
		t.Fatalf("near-miss token = %d, want 429", s)
	}
	// Another address has its own budget.
	other := clientFrom("127.0.0.2")
	if s := f.post(t, other, wrong()); s != 401 {
		t.Fatalf("bad token from another address = %d, want 401", s)
	}
	if s := f.post(t, other, f.token); s != 200 {
		t.Fatalf("valid token from another address = %d, want 200", s)
	}
	if got := f.log.Head(f.id).Position; got != 21 {
		t.Fatalf("log holds %d records, want the 21 sent with the valid token", got)
	}
}

// TestAuthenticateWholeToken: only the exact token is accepted: not a prefix,
// an extension, a near miss or another case. Authenticate looks up the SHA-256
// of the whole token, so no comparison ever sees the token's characters.
func TestAuthenticateWholeToken(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	tok := f.token
	if !f.ctl.Authenticate(f.id, tok, now) {
		t.Fatal("the valid token is refused")
	}
	bad := map[string]string{
		"prefix 63":     tok[:63],
		"prefix 60":     tok[:60],
		"empty":         "",
		"extended":      tok + "0",
		"last differs":  flip(tok, 63),
		"first differs": flip(tok, 0),
		"upper case":    strings.ToUpper(tok),
		"with NUL":      tok + "\x00",
		"hash of token": hex.EncodeToString(sha256Sum(tok)),
	}
	for name, b := range bad {
		if f.ctl.Authenticate(f.id, b, now) {
			t.Errorf("%s: accepted", name)
		}
	}
	if f.ctl.Authenticate(f.id+1, tok, now) || f.ctl.Authenticate(0, tok, now) {
		t.Error("the token is accepted for another integration")
	}
}

// BenchmarkAuthenticate compares a valid token, a token sharing its first 60
// characters and a random one. An early-exit comparison would make the prefix
// case slower than the random one; hashing first makes them the same. Figures
// are reported, not asserted (timing on a shared machine is noise).
func BenchmarkAuthenticate(b *testing.B) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := state.OpenPebble(b.TempDir(), logger, state.Options{MinFreeBytes: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctl, err := control.Open(st, state.ErrNotFound, logger)
	if err != nil {
		b.Fatal(err)
	}
	in, err := ctl.Create(control.NewIntegration{Name: "Bench", Type: control.TypeWebhooks}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	_, tok, err := ctl.GenerateURL(in.ID, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	rnd := make([]byte, 32)
	rand.Read(rnd)
	prefix := tok[:60] + "ffff"
	if prefix == tok {
		prefix = tok[:60] + "0000"
	}
	now := time.Now()
	for _, c := range []struct{ name, token string }{
		{"valid", tok}, {"prefix60", prefix}, {"random", hex.EncodeToString(rnd)},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				ctl.Authenticate(in.ID, c.token, now)
			}
		})
	}
}

// flip changes the character at i of a hex token to another hex digit.
func flip(s string, i int) string {
	b := []byte(s)
	if b[i] == 'a' {
		b[i] = 'b'
	} else {
		b[i] = 'a'
	}
	return string(b)
}

func sha256Sum(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// TestSlotWaitIsNotTheClientsTime: a large body that waits for a large-body slot
// longer than the server's ReadTimeout is still read and stored (the wait is the
// server's doing), instead of being cut off with a 400 the sender must not retry.
func TestSlotWaitIsNotTheClientsTime(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := state.OpenPebble(t.TempDir(), logger, state.Options{MinFreeBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctl, err := control.Open(st, state.ErrNotFound, logger)
	if err != nil {
		t.Fatal(err)
	}
	in, _ := ctl.Create(control.NewIntegration{Name: "Slots", Type: control.TypeWebhooks}, time.Now())
	_, token, _ := ctl.GenerateURL(in.ID, time.Now())
	h := &Handler{Auth: ctl, Log: st, MaxBody: 8 << 20, Logger: logger, RetryAfter: 5, Large: NewSlots(1)}
	mux := http.NewServeMux()
	mux.Handle("/v1/clients/{id}/token/{token}", h)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ReadTimeout = time.Second
	srv.Config.WriteTimeout = time.Second
	srv.Start()
	defer srv.Close()

	h.Large <- struct{}{} // another large body holds the only slot
	released := make(chan struct{})
	go func() {
		defer close(released)
		time.Sleep(2500 * time.Millisecond)
		h.Large.release()
	}()
	body := `{"pad":"` + strings.Repeat("x", 3<<20) + `"}`
	resp, err := http.Post(fmt.Sprintf("%s/v1/clients/%d/token/%s", srv.URL, in.ID, token), "application/json", strings.NewReader(body))
	<-released
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a 3 MiB body that waited 2.5 s for a slot (read timeout 1 s) = %d %s, want 200", resp.StatusCode, b)
	}
	if st.Head(in.ID).Position != 1 {
		t.Fatal("the record was not stored")
	}
}
