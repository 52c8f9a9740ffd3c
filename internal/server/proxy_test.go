package server

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestForwardedClient(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("fd00::/8")}
	tests := []struct {
		name   string
		remote string
		hdr    map[string][]string
		want   string // "" = not forwarded: keep RemoteAddr
	}{
		{"untrusted peer: header ignored", "192.0.2.9:5000", map[string][]string{"X-Forwarded-For": {"203.0.113.7"}}, ""},
		{"untrusted peer: Forwarded ignored", "192.0.2.9:5000", map[string][]string{"Forwarded": {"for=203.0.113.7"}}, ""},
		{"trusted peer, no header", "127.0.0.1:5000", nil, ""},
		{"trusted peer", "127.0.0.1:5000", map[string][]string{"X-Forwarded-For": {"203.0.113.7"}}, "203.0.113.7"},
		{"spoofed left part is not believed", "127.0.0.1:5000",
			map[string][]string{"X-Forwarded-For": {"198.51.100.1, 203.0.113.7"}}, "203.0.113.7"},
		{"several header lines, several trusted hops", "127.0.0.1:5000",
			map[string][]string{"X-Forwarded-For": {"198.51.100.1, 203.0.113.7", "10.1.2.3"}}, "203.0.113.7"},
		{"every hop trusted: the left-most", "127.0.0.1:5000", map[string][]string{"X-Forwarded-For": {"10.0.0.5, 10.0.0.6"}}, "10.0.0.5"},
		{"garbage stops the walk", "127.0.0.1:5000", map[string][]string{"X-Forwarded-For": {"203.0.113.7, nonsense, 10.0.0.6"}}, "10.0.0.6"},
		{"garbage only", "127.0.0.1:5000", map[string][]string{"X-Forwarded-For": {"nonsense"}}, ""},
		{"address with port", "127.0.0.1:5000", map[string][]string{"X-Forwarded-For": {"203.0.113.7:4711"}}, "203.0.113.7"},
		{"IPv6", "[::ffff:127.0.0.1]:5000", map[string][]string{"X-Forwarded-For": {"2001:db8::1"}}, "2001:db8::1"},
		{"IPv6 peer in trusted range", "[fd00::1]:5000", map[string][]string{"X-Forwarded-For": {"[2001:db8::1]:80"}}, "2001:db8::1"},
		{"Forwarded", "127.0.0.1:5000",
			map[string][]string{"Forwarded": {`for=198.51.100.1;proto=https, for="[2001:db8:cafe::17]:4711";by=10.0.0.1`}}, "2001:db8:cafe::17"},
		{"Forwarded, trusted hop", "127.0.0.1:5000", map[string][]string{"Forwarded": {"For=192.0.2.60", "for=10.9.9.9"}}, "192.0.2.60"},
		{"Forwarded unknown", "127.0.0.1:5000", map[string][]string{"Forwarded": {"for=unknown"}}, ""},
		{"X-Forwarded-For wins over Forwarded", "127.0.0.1:5000",
			map[string][]string{"X-Forwarded-For": {"203.0.113.7"}, "Forwarded": {"for=198.51.100.1"}}, "203.0.113.7"},
	}
	for _, tc := range tests {
		r := httptest.NewRequest(http.MethodPost, "/v1/clients/1/token/x", nil)
		r.RemoteAddr = tc.remote
		for k, vs := range tc.hdr {
			for _, v := range vs {
				r.Header.Add(k, v)
			}
		}
		got, ok := forwardedClient(r, trusted)
		switch {
		case tc.want == "" && ok:
			t.Errorf("%s: forwarded for %s, want the header ignored", tc.name, got)
		case tc.want != "" && (!ok || got.String() != tc.want):
			t.Errorf("%s: got %v %v, want %s", tc.name, got, ok, tc.want)
		}
	}
}

func TestClientAddressMiddleware(t *testing.T) {
	s := &Server{}
	s.cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	var remote, proxy string
	h := s.clientAddress(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		remote, proxy = r.RemoteAddr, proxyOf(r)
	}))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "127.0.0.1:5000"
	r.Header.Set("X-Forwarded-For", "203.0.113.7")
	h.ServeHTTP(httptest.NewRecorder(), r)
	if remote != "203.0.113.7" || proxy != "127.0.0.1:5000" {
		t.Errorf("through a trusted proxy: remote %q proxy %q", remote, proxy)
	}
	r.RemoteAddr = "192.0.2.9:5000"
	h.ServeHTTP(httptest.NewRecorder(), r)
	if remote != "192.0.2.9:5000" || proxy != "" {
		t.Errorf("from an untrusted peer: remote %q proxy %q", remote, proxy)
	}
}
