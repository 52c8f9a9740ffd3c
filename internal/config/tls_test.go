package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTLSFlags(t *testing.T) {
	env := map[string]string{"HOOKHOUSE_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1", "HOOKHOUSE_ACME_EMAIL": "ops@example.com"}
	c, err := Parse([]string{"--listen", ":443", "--tls-domain", "Hooks.Example.com,b.example.com.", "--redirect-http", ":80",
		"--acme-directory", "https://acme.test/dir"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Domains, " "); got != "hooks.example.com b.example.com" {
		t.Errorf("Domains = %q", got)
	}
	if c.PublicURL != "https://hooks.example.com" {
		t.Errorf("PublicURL = %q, want https://hooks.example.com (TLS on :443)", c.PublicURL)
	}
	if got := (*prefixList)(&c.TrustedProxies).String(); got != "10.0.0.0/8,127.0.0.1/32" {
		t.Errorf("TrustedProxies from the env twin = %q", got)
	}
	if c.ACMEEmail != "ops@example.com" || c.RedirectHTTP != ":80" || c.ACMEDirectory != "https://acme.test/dir" {
		t.Errorf("ACME settings = %+v", c.TLS)
	}
	if s := c.String(); !strings.Contains(s, "tls=acme domains=hooks.example.com,b.example.com") ||
		!strings.Contains(s, "trusted-proxies=10.0.0.0/8,127.0.0.1/32") {
		t.Errorf("String() = %s", s)
	}

	// Without --listen, HTTPS listens on :443 (the env twin counts as given).
	c, err = Parse([]string{"--tls-domain", "hooks.example.com"}, noEnv, io.Discard)
	if err != nil || c.Listen != ":443" || c.PublicURL != "https://hooks.example.com" {
		t.Errorf("TLS without --listen: listen %q, public URL %q, %v; want :443 and https://hooks.example.com", c.Listen, c.PublicURL, err)
	}
	c, err = Parse([]string{"--tls-domain", "hooks.example.com"}, func(k string) string {
		return map[string]string{"HOOKHOUSE_LISTEN": ":8443"}[k]
	}, io.Discard)
	if err != nil || c.Listen != ":8443" || c.PublicURL != "https://hooks.example.com:8443" {
		t.Errorf("TLS with HOOKHOUSE_LISTEN: listen %q, public URL %q, %v", c.Listen, c.PublicURL, err)
	}

	// Another port is kept in the default public URL; an explicit one wins.
	c, err = Parse([]string{"--listen", ":8443", "--tls-domain", "hooks.example.com"}, noEnv, io.Discard)
	if err != nil || c.PublicURL != "https://hooks.example.com:8443" {
		t.Errorf("PublicURL = %q, %v; want https://hooks.example.com:8443", c.PublicURL, err)
	}
	c, err = Parse([]string{"--tls-domain", "hooks.example.com", "--public-url", "https://proxy.example.com/"}, noEnv, io.Discard)
	if err != nil || c.PublicURL != "https://proxy.example.com" {
		t.Errorf("PublicURL = %q, %v", c.PublicURL, err)
	}
	// Without TLS nothing changes.
	c, err = Parse(nil, noEnv, io.Discard)
	if err != nil || c.TLS.On() || c.PublicURL != "http://localhost:8080" || strings.Contains(c.String(), "tls=") {
		t.Errorf("defaults: %+v %q %v", c.TLS, c.PublicURL, err)
	}
}

func TestTLSPublicURLFromCertificate(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"},
		DNSNames: []string{"*.example.com", "hooks.example.com"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := filepath.Join(dir, "cert.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	c, err := Parse([]string{"--listen", "0.0.0.0:443", "--tls-cert", cert, "--tls-key", filepath.Join(dir, "key.pem")}, noEnv, io.Discard)
	if err != nil || c.PublicURL != "https://hooks.example.com" {
		t.Errorf("PublicURL = %q, %v; want the certificate's first non-wildcard name", c.PublicURL, err)
	}
	// Unreadable: the host of --listen (the server then says what is wrong with the file).
	c, err = Parse([]string{"--listen", ":8443", "--tls-cert", filepath.Join(dir, "missing.pem"), "--tls-key", "k"}, noEnv, io.Discard)
	if err != nil || c.PublicURL != "https://localhost:8443" {
		t.Errorf("PublicURL = %q, %v", c.PublicURL, err)
	}
}

func TestTLSFlagConflicts(t *testing.T) {
	tests := []struct {
		args []string
		err  string
	}{
		{[]string{"--tls-cert", "c.pem"}, "--tls-cert needs --tls-key"},
		{[]string{"--tls-key", "k.pem"}, "--tls-key needs --tls-cert"},
		{[]string{"--tls-domain", "a.example.com", "--tls-cert", "c.pem", "--tls-key", "k.pem"}, "two ways to get a certificate: use one"},
		{[]string{"--acme-directory", "https://acme.test/dir"}, "--acme-directory is only used with --tls-domain"},
		{[]string{"--acme-ca", "ca.pem"}, "--acme-ca is only used with --tls-domain"},
		{[]string{"--acme-email", "a@b.c"}, "--acme-email is only used with --tls-domain"},
		{[]string{"--tls-domain", "a.example.com", "--acme-directory", "http://acme.test/dir"}, "--acme-directory \"http://acme.test/dir\" must be an https URL"},
		{[]string{"--redirect-http", ":80"}, "--redirect-http redirects to HTTPS: it needs --tls-domain or --tls-cert/--tls-key"},
		{[]string{"--tls-domain", "a.example.com", "--listen", ":443", "--redirect-http", ":443"}, "HTTPS and the redirect need a port each"},
		{[]string{"--tls-domain", "a.example.com", "--redirect-http", "80"}, "--redirect-http \"80\" must be host:port or :port"},
		{[]string{"--tls-domain", "a.example.com", "--redirect-http", ":80", "--public-url", "http://a.example.com"}, "make it https://"},
		{[]string{"--tls-domain", "localhost"}, "has no dot"},
		{[]string{"--tls-domain", "https://a.example.com"}, "is not a host name"},
		{[]string{"--tls-domain", "192.0.2.1"}, "is an IP address"},
		{[]string{"--tls-domain", " , "}, "no host name given"},
		{[]string{"--trusted-proxies", "10.0.0.1/8"}, "has host bits set: did you mean 10.0.0.0/8?"},
		{[]string{"--trusted-proxies", "proxy.local"}, "is not an address or CIDR"},
	}
	for _, tc := range tests {
		_, err := Parse(tc.args, noEnv, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.args, err, tc.err)
		}
	}
	// Valid combinations.
	for _, args := range [][]string{
		{"--tls-cert", "c.pem", "--tls-key", "k.pem", "--redirect-http", ":80"},
		{"--tls-domain", "a.example.com", "--acme-ca", "ca.pem", "--acme-directory", "https://127.0.0.1:14000/dir"},
		{"--trusted-proxies", "::1,fd00::/8"},
	} {
		if _, err := Parse(args, noEnv, io.Discard); err != nil {
			t.Errorf("Parse(%q): %v", args, err)
		}
	}
}
