package server

// Behind a reverse proxy every connection comes from the proxy. With
// --trusted-proxies, a request whose peer is in those networks is taken to come
// from the client its X-Forwarded-For (or, without one, Forwarded) header names:
// the right-most address that is not itself a trusted proxy. Proxies append the
// peer they saw, so everything to the left of that is the client's to write and
// is never believed. From any other peer the headers are ignored.

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// proxyKey holds, in a request's context, the peer address of the trusted
// proxy that forwarded it (the request log prints it as "proxy").
type proxyKey struct{}

// clientAddress sets r.RemoteAddr to the forwarded client's address (without a
// port) for requests from a trusted proxy.
func (s *Server) clientAddress(next http.Handler) http.Handler {
	trusted := s.cfg.TrustedProxies
	if len(trusted) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if client, ok := forwardedClient(r, trusted); ok {
			r2 := r.WithContext(context.WithValue(r.Context(), proxyKey{}, r.RemoteAddr))
			r2.RemoteAddr = client.String()
			r = r2
		}
		next.ServeHTTP(w, r)
	})
}

// proxyOf is the trusted proxy a request came through, "" for a direct one.
func proxyOf(r *http.Request) string {
	p, _ := r.Context().Value(proxyKey{}).(string)
	return p
}

// forwardedClient is the client a trusted proxy forwarded r for; false when r's
// peer is not trusted or names no client.
func forwardedClient(r *http.Request, trusted []netip.Prefix) (netip.Addr, bool) {
	peer, ok := parseAddr(r.RemoteAddr)
	if !ok || !isTrusted(peer, trusted) {
		return netip.Addr{}, false
	}
	var chain []string
	if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		for _, v := range xff {
			chain = append(chain, strings.Split(v, ",")...)
		}
	} else {
		for _, v := range r.Header.Values("Forwarded") {
			for _, elem := range strings.Split(v, ",") {
				chain = append(chain, forwardedFor(elem))
			}
		}
	}
	var last netip.Addr
	for i := len(chain) - 1; i >= 0; i-- {
		a, ok := parseAddr(chain[i])
		if !ok {
			break // unknown, obfuscated or garbage: nothing left of it can be believed
		}
		if !isTrusted(a, trusted) {
			return a, true
		}
		last = a // another trusted proxy: look one hop further left
	}
	return last, last.IsValid()
}

// forwardedFor is the for= value of one Forwarded element (RFC 7239), "" if none.
func forwardedFor(elem string) string {
	for _, pair := range strings.Split(elem, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "for") {
			return strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	return ""
}

// parseAddr reads an address as proxies and net/http write it: 192.0.2.1,
// 192.0.2.1:4711, 2001:db8::1, [2001:db8::1]:4711 or [2001:db8::1].
func parseAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
