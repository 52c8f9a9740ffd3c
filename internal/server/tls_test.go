package server

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/config"
)

// selfSigned returns a PEM certificate for name with the given serial and
// validity, and its PEM key.
func selfSigned(t *testing.T, name string, serial int64, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func TestCertFilesReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	write := func(c, k []byte) {
		if err := os.WriteFile(certFile, c, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, k, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	cf := &certFiles{certFile: certFile, keyFile: keyFile, every: 0,
		logger: slog.New(slog.NewTextHandler(&logs, nil))}
	serial := func() int64 {
		c, err := cf.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.SerialNumber.Int64()
	}

	if err := cf.load(); err == nil || !strings.Contains(err.Error(), "--tls-cert") {
		t.Fatalf("load of missing files = %v, want an error naming --tls-cert", err)
	}
	c1, k1 := selfSigned(t, "hooks.example.com", 1, time.Now().Add(time.Hour))
	c2, k2 := selfSigned(t, "hooks.example.com", 2, time.Now().Add(time.Hour))
	write(c1, k2)
	if err := cf.load(); err == nil || !strings.Contains(err.Error(), "private key does not match") {
		t.Fatalf("load of a mismatched pair = %v", err)
	}
	write(c1, k1)
	if err := cf.load(); err != nil {
		t.Fatal(err)
	}
	if got := serial(); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}

	// A renewal is put in use.
	write(c2, k2)
	if got := serial(); got != 2 {
		t.Fatalf("after the files changed: serial %d, want 2", got)
	}
	// Half-written (new cert, old key): the one in use stays, and the reason is
	// logged once, not on every handshake.
	c3, k3 := selfSigned(t, "hooks.example.com", 3, time.Now().Add(time.Hour))
	write(c3, k2)
	for range 3 {
		if got := serial(); got != 2 {
			t.Fatalf("after a mismatched pair: serial %d, want 2 kept", got)
		}
	}
	if n := strings.Count(logs.String(), "private key does not match public key"); n != 1 {
		t.Errorf("the mismatch is logged %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "keeping the certificate in use") {
		t.Errorf("log does not say the certificate in use is kept:\n%s", logs.String())
	}
	// The rest of the renewal arrives.
	write(c3, k3)
	if got := serial(); got != 3 {
		t.Fatalf("serial %d, want 3", got)
	}
	// An expired certificate and a deleted file are refused too.
	c4, k4 := selfSigned(t, "hooks.example.com", 4, time.Now().Add(-time.Hour))
	write(c4, k4)
	if got := serial(); got != 3 {
		t.Fatalf("after an expired pair: serial %d, want 3 kept", got)
	}
	os.Remove(keyFile)
	if got := serial(); got != 3 {
		t.Fatalf("after the key was deleted: serial %d, want 3 kept", got)
	}
	for _, want := range []string{"the certificate expired", "--tls-key: open"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), "PRIVATE KEY") {
		t.Error("a key is in the log")
	}

	// At most every `every`: within it the files are not looked at.
	cf.every = time.Hour
	write(c1, k1)
	cf.lastLook = time.Now()
	if got := serial(); got != 3 {
		t.Errorf("within the check interval: serial %d, want 3", got)
	}
}

func TestRedirectAndHSTS(t *testing.T) {
	s := &Server{cfg: config.Config{PublicURL: "https://hooks.example.com"}}
	// GET: to the same path on the public URL, whatever Host says.
	r := httptest.NewRequest(http.MethodGet, "http://evil.example/dashboard?x=1", nil)
	w := httptest.NewRecorder()
	s.redirectToHTTPS(w, r)
	if w.Code != http.StatusMovedPermanently || w.Header().Get("Location") != "https://hooks.example.com/dashboard?x=1" {
		t.Errorf("GET: %d %q", w.Code, w.Header().Get("Location"))
	}
	// POST: refused, never redirected (the body would be sent again in the clear).
	r = httptest.NewRequest(http.MethodPost, "http://hooks.example.com/v1/clients/1/token/t0ken", strings.NewReader("{}"))
	w = httptest.NewRecorder()
	s.redirectToHTTPS(w, r)
	if w.Code != http.StatusBadRequest || w.Header().Get("Location") != "" || !strings.Contains(w.Body.String(), "https://") ||
		strings.Contains(w.Body.String(), "t0ken") {
		t.Errorf("POST: %d %q %s", w.Code, w.Header().Get("Location"), w.Body.String())
	}
	// HSTS only on HTTPS answers.
	h := hsts(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r = httptest.NewRequest(http.MethodGet, "/", nil)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if got := w.Header().Get("Strict-Transport-Security"); got != "" {
		t.Errorf("plain HTTP answer has HSTS %q", got)
	}
	r = httptest.NewRequest(http.MethodGet, "https://hooks.example.com/", nil) // r.TLS set
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if got := w.Header().Get("Strict-Transport-Security"); got != hstsValue {
		t.Errorf("HTTPS answer has HSTS %q", got)
	}
}

func TestHTTPErrorLogAndThrottle(t *testing.T) {
	var buf bytes.Buffer
	l := httpErrorLog(slog.New(slog.NewTextHandler(&buf, nil))) // info and up
	l.Printf("http: TLS handshake error from 192.0.2.1:4444: EOF")
	l.Printf("http: Accept error: too many open files; retrying in 5ms")
	out := buf.String()
	if strings.Contains(out, "TLS handshake error") {
		t.Errorf("a failed handshake is logged above debug:\n%s", out)
	}
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "Accept error") {
		t.Errorf("other net/http errors are not logged at warn:\n%s", out)
	}

	le := &logEvery{every: time.Minute}
	now := time.Now()
	if ok, held := le.allow("a.example.com", now); !ok || held != 0 {
		t.Fatalf("first line: %v %d", ok, held)
	}
	for i := range 5 {
		if ok, _ := le.allow("a.example.com", now.Add(time.Duration(i)*time.Second)); ok {
			t.Fatal("a second line within the minute was let through")
		}
	}
	if ok, _ := le.allow("b.example.com", now); !ok {
		t.Error("another key is held back by the first")
	}
	if ok, held := le.allow("a.example.com", now.Add(time.Minute)); !ok || held != 5 {
		t.Errorf("after the minute: %v, held %d; want true, 5", ok, held)
	}
}
