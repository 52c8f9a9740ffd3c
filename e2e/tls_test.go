package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// testCA is a throwaway certificate authority for --tls-cert tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hookhouse test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue returns a PEM leaf certificate for name with serial, and its PEM key.
func (ca *testCA) issue(t *testing.T, name string, serial int64) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// httpsClient trusts roots and connects every host name to 127.0.0.1 on the
// URL's port, as DNS for the test's domain would. It follows no redirects.
func httpsClient(roots *x509.CertPool) *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	return &http.Client{
		Timeout: 3 * time.Minute, // the first handshake of an ACME name waits for issuance
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				_, port, err := net.SplitHostPort(addr)
				if err != nil {
					return nil, err
				}
				return dialer.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
			},
			DisableKeepAlives: true, // every request a new handshake: reloads are seen at once
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// leafSerial does a handshake with name on addr and returns the served
// certificate's serial number (verified against roots).
func leafSerial(t *testing.T, addr, name string, roots *x509.CertPool) string {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		t.Fatalf("TLS handshake with %s as %s: %v", addr, name, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// adminJSON sends an admin API request with the key and decodes the answer.
func adminJSON(t *testing.T, c *http.Client, method, url, key string, out any) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, url, err, body)
		}
	}
}

// createWebhook makes an integration named name over the admin API at base and
// returns its id and webhook URL (with the server's public URL).
func createWebhook(t *testing.T, c *http.Client, base, key, name string) (int64, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/integrations",
		strings.NewReader(fmt.Sprintf(`{"name":%q,"type":"webhooks"}`, name)))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var integ struct{ ID int64 }
	json.NewDecoder(resp.Body).Decode(&integ)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		t.Fatalf("create integration: %d", resp.StatusCode)
	}
	var u struct{ URL string }
	adminJSON(t, c, http.MethodPost, fmt.Sprintf("%s/api/v1/integrations/%d/webhook-urls", base, integ.ID), key, &u)
	return integ.ID, u.URL
}

// received is the integration's records_received.
func receivedOver(t *testing.T, c *http.Client, base, key string, id int64) int64 {
	t.Helper()
	var out struct {
		Stats struct {
			RecordsReceived int64 `json:"records_received"`
		} `json:"stats"`
	}
	adminJSON(t, c, http.MethodGet, fmt.Sprintf("%s/api/v1/integrations/%d", base, id), key, &out)
	return out.Stats.RecordsReceived
}

// waitHTTPS waits until GET base/readyz answers 200 over HTTPS.
func waitHTTPS(t *testing.T, c *http.Client, proc *child, base string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	var last error
	for time.Now().Before(deadline) {
		resp, err := c.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Errorf("status %d", resp.StatusCode)
		} else {
			last = err
		}
		if proc.Exited() {
			t.Fatalf("hookhouse exited; stderr:\n%s", proc.Stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("not ready over HTTPS after 3m (%v); stderr:\n%s", last, proc.Stderr.String())
}

func writeFiles(t *testing.T, files map[string][]byte) {
	t.Helper()
	for name, b := range files {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTLSCertFiles: --tls-cert/--tls-key serve HTTPS with HSTS and Secure
// cookies; plain HTTP on the TLS port is not served; --redirect-http redirects
// browsers and refuses webhooks; a renewed pair is picked up without a restart,
// and a broken one is refused with the old one kept.
func TestTLSCertFiles(t *testing.T) {
	const name = "hooks.test"
	ca := newTestCA(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	certFile, keyFile := filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	c1, k1 := ca.issue(t, name, 101)
	writeFiles(t, map[string][]byte{certFile: c1, keyFile: k1})

	addr, raddr := freePort(t), freePort(t)
	_, port, _ := net.SplitHostPort(addr)
	proc := launchChild(t, nil, data, addr, "--tls-cert", certFile, "--tls-key", keyFile, "--redirect-http", raddr)
	c := httpsClient(ca.pool)
	base := "https://" + net.JoinHostPort(name, port) // the default public URL: the certificate's name
	waitHTTPS(t, c, proc, base)
	key := adminKey(t, data)

	id, hook := createWebhook(t, c, base, key, "TLS files")
	if !strings.HasPrefix(hook, base+"/v1/clients/") {
		t.Fatalf("webhook URL %q does not start with the default public URL %s", hook, base)
	}
	resp, err := c.Post(hook, "application/json", strings.NewReader(`{"id":1,"event":"over https"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("webhook over HTTPS: %d", resp.StatusCode)
	}
	if got := resp.Header.Get("Strict-Transport-Security"); !strings.Contains(got, "max-age=") {
		t.Errorf("HTTPS answer without HSTS: %q", got)
	}

	// Dashboard cookies are Secure.
	resp, err = c.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if len(cookies) == 0 {
		t.Fatal("GET /login set no cookie")
	}
	for _, ck := range cookies {
		if !ck.Secure {
			t.Errorf("cookie %s is not Secure under TLS", ck.Name)
		}
	}

	// Plain HTTP on the TLS port: the webhook is not served (no 200, nothing
	// stored), nor is any route.
	plainHook := strings.Replace(hook, base, "http://"+addr, 1)
	if resp, err := http.Post(plainHook, "application/json", strings.NewReader(`{"id":2}`)); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || !strings.Contains(string(body), "HTTP request to an HTTPS server") {
			t.Errorf("plain HTTP webhook on the TLS port: %d %q", resp.StatusCode, body)
		}
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", name)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	raw, _ := io.ReadAll(bufio.NewReader(conn))
	conn.Close()
	if bytes.Contains(raw, []byte("200 OK")) || bytes.Contains(raw, []byte("ok\n")) {
		t.Errorf("plain HTTP GET /healthz on the TLS port was served: %q", raw)
	}

	// The redirect listener: browsers go to HTTPS, webhooks are refused.
	plain := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = plain.Get("http://" + raddr + "/login?next=x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != base+"/login?next=x" {
		t.Errorf("redirect listener GET: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	redirHook := strings.Replace(hook, base, "http://"+raddr, 1)
	resp, err = plain.Post(redirHook, "application/json", strings.NewReader(`{"id":3}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Errorf("redirect listener POST: %d %q, want 400 without a redirect", resp.StatusCode, resp.Header.Get("Location"))
	}
	if n := receivedOver(t, c, base, key, id); n != 1 {
		t.Errorf("records received %d, want 1: only the HTTPS request", n)
	}

	// A renewal (as certbot writes it) is served without a restart.
	if got := leafSerial(t, addr, name, ca.pool); got != "101" {
		t.Fatalf("serial %s, want 101", got)
	}
	c2, k2 := ca.issue(t, name, 102)
	writeFiles(t, map[string][]byte{certFile: c2, keyFile: k2})
	waitFor(t, 60*time.Second, "the renewed certificate", func() (bool, string) {
		s := leafSerial(t, addr, name, ca.pool)
		return s == "102", "serial " + s
	})
	// The line may follow the swap by a moment.
	waitFor(t, 10*time.Second, "the reload line in the log", func() (bool, string) {
		return strings.Contains(proc.Stderr.String(), "reloaded the TLS certificate"), "log:\n" + proc.Stderr.String()
	})
	// A broken pair (new certificate, old key) is refused: 102 stays, the log says why.
	c3, _ := ca.issue(t, name, 103)
	writeFiles(t, map[string][]byte{certFile: c3})
	waitFor(t, 60*time.Second, "the log line refusing the broken pair", func() (bool, string) {
		s := leafSerial(t, addr, name, ca.pool) // handshakes make the server look at the files
		if s != "102" {
			t.Fatalf("serial %s after a broken pair, want 102 kept", s)
		}
		return strings.Contains(proc.Stderr.String(), "do not load; keeping the certificate in use"), "serial " + s
	})
	if !strings.Contains(proc.Stderr.String(), "private key does not match public key") {
		t.Errorf("the log does not say why the pair was refused:\n%s", proc.Stderr.String())
	}
	resp, err = c.Post(hook, "application/json", strings.NewReader(`{"id":4}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("webhook after a refused reload: %d", resp.StatusCode)
	}
	proc.Term(t)
	if strings.Contains(proc.Stderr.String(), "PRIVATE KEY") {
		t.Error("a private key is in the log")
	}
}

// TestTLSStartErrors: bad TLS settings stop `hookhouse serve` with a message
// that says what to change.
func TestTLSStartErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	c1, _ := ca.issue(t, "hooks.test", 1)
	_, k2 := ca.issue(t, "hooks.test", 2)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFiles(t, map[string][]byte{certFile: c1, keyFile: k2})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", certFile}, "--tls-cert needs --tls-key"},
		{[]string{"--tls-cert", certFile, "--tls-key", filepath.Join(dir, "missing.pem")}, "--tls-key: open"},
		{[]string{"--tls-cert", certFile, "--tls-key", keyFile}, "private key does not match public key"},
		{[]string{"--tls-domain", "hooks.test", "--tls-cert", certFile, "--tls-key", keyFile}, "use one"},
		{[]string{"--redirect-http", "127.0.0.1:0"}, "--redirect-http redirects to HTTPS"},
		{[]string{"--tls-domain", "hooks.test", "--acme-ca", filepath.Join(dir, "missing-ca.pem")}, "--acme-ca"},
	} {
		p := launchChild(t, nil, filepath.Join(dir, "data"), freePort(t), tc.args...)
		select {
		case <-p.done:
		case <-time.After(60 * time.Second):
			t.Fatalf("%q: still running after 60s", tc.args)
		}
		if p.cmd.ProcessState.Success() || !strings.Contains(p.Stderr.String(), tc.want) {
			t.Errorf("%q: exit %v, stderr %q; want a failure saying %q", tc.args, p.cmd.ProcessState, p.Stderr.String(), tc.want)
		}
	}
}

// acmeServer is Let's Encrypt's test CA, Pebble (github.com/letsencrypt/pebble,
// not our log store), run in this process: its ACME directory over HTTPS, its
// validation authority resolving every name to 127.0.0.1 through a tiny DNS
// server, and the root it issues under.
type acmeServer struct {
	Directory string         // https URL of the ACME directory
	CAFile    string         // PEM of the directory's HTTPS certificate, for --acme-ca
	Roots     *x509.CertPool // the root the issued certificates chain to
	Log       *syncBuffer
	close     func()
}

// startACME starts Pebble. Its validation authority fetches HTTP-01 challenges
// from httpPort and TLS-ALPN-01 ones from tlsPort.
func startACME(t *testing.T, httpPort, tlsPort int) *acmeServer {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")      // no random 0-5 s sleep before each validation
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0") // no deliberately rejected nonces
	logs := &syncBuffer{}
	logger := log.New(logs, "pebble ", log.Lmicroseconds)

	// DNS: every A question is answered 127.0.0.1 (Pebble asks over TCP).
	dnsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dnsSrv := &dns.Server{Listener: dnsLn, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		for _, q := range req.Question {
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET},
					A: net.IPv4(127, 0, 0, 1)})
			}
		}
		w.WriteMsg(m)
	})}
	go dnsSrv.ActivateAndServe()

	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	validator := va.New(logger, httpPort, tlsPort, false, dnsLn.Addr().String(), store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 3, 5)
	web := httptest.NewUnstartedServer(front.Handler())
	web.Config.ErrorLog = log.New(logs, "pebble http ", 0)
	web.StartTLS()

	caFile := filepath.Join(t.TempDir(), "acme-ca.pem")
	writeFiles(t, map[string][]byte{caFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: web.Certificate().Raw})})
	roots := x509.NewCertPool()
	roots.AddCert(authority.GetRootCert(0).Cert)
	a := &acmeServer{Directory: web.URL + wfe.DirectoryPath, CAFile: caFile, Roots: roots, Log: logs}
	a.close = func() {
		web.Close()
		dnsSrv.Shutdown()
	}
	t.Cleanup(a.Close)
	return a
}

// Close stops the CA (idempotent).
func (a *acmeServer) Close() {
	if a.close != nil {
		a.close()
		a.close = nil
	}
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscan(p, &n)
	return n
}

// TestTLSACME: --tls-domain gets its certificate from a real ACME server, the
// HTTP-01 challenge answered through the --redirect-http listener; a webhook
// over HTTPS then gets 200, and after a restart with the CA gone the cached
// certificate in <data>/certs is served again.
func TestTLSACME(t *testing.T) {
	const domain = "hooks.test"
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	addr, raddr, closed := freePort(t), freePort(t), freePort(t)
	// TLS-ALPN-01 is pointed at a closed port, so only HTTP-01 through the
	// redirect listener can validate: the certificate proves that path works.
	acme := startACME(t, portOf(t, raddr), portOf(t, closed))
	args := []string{"--tls-domain", domain, "--acme-directory", acme.Directory, "--acme-ca", acme.CAFile,
		"--redirect-http", raddr, "--acme-email", "ops@hooks.test"}
	proc := launchChild(t, nil, data, addr, args...)
	c := httpsClient(acme.Roots)
	base := "https://" + net.JoinHostPort(domain, fmt.Sprint(portOf(t, addr))) // the default public URL
	waitHTTPS(t, c, proc, base)

	challenge := fmt.Sprintf("Attempting to validate w/ HTTP: http://%s/.well-known/acme-challenge/", net.JoinHostPort(domain, fmt.Sprint(portOf(t, raddr))))
	if logs := acme.Log.String(); !strings.Contains(logs, challenge) || !strings.Contains(logs, "set VALID by completed challenge") {
		t.Errorf("Pebble's log shows no HTTP-01 validation through the redirect listener (%q):\n%s", challenge, logs)
	}
	if !strings.Contains(proc.Stderr.String(), "obtained a certificate over ACME") {
		t.Errorf("hookhouse does not log the new certificate:\n%s", proc.Stderr.String())
	}
	serial := leafSerial(t, addr, domain, acme.Roots)

	key := adminKey(t, data)
	id, hook := createWebhook(t, c, base, key, "ACME")
	if !strings.HasPrefix(hook, base+"/v1/clients/") {
		t.Fatalf("webhook URL %q does not start with %s", hook, base)
	}
	resp, err := c.Post(hook, "application/json", strings.NewReader(`{"id":1,"event":"acme"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("webhook over HTTPS: %d", resp.StatusCode)
	}

	// The cache: <data>/certs, 0700, with the certificate and the account key.
	certs := filepath.Join(data, "certs")
	fi, err := os.Stat(certs)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("%s has mode %v, want 0700", certs, fi.Mode().Perm())
	}
	if b, err := os.ReadFile(filepath.Join(certs, domain)); err != nil || !bytes.Contains(b, []byte("CERTIFICATE")) {
		t.Errorf("no cached certificate for %s: %v", domain, err)
	}
	proc.Term(t)

	// Restart with the CA gone: the cached certificate is served.
	acme.Close()
	proc = launchChild(t, nil, data, addr, args...)
	waitHTTPS(t, c, proc, base)
	if got := leafSerial(t, addr, domain, acme.Roots); got != serial {
		t.Errorf("after a restart the served certificate is %s, want the cached %s", got, serial)
	}
	resp, err = c.Post(hook, "application/json", strings.NewReader(`{"id":2,"event":"after restart"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("webhook after a restart: %d", resp.StatusCode)
	}
	if n := receivedOver(t, c, base, key, id); n != 2 {
		t.Errorf("records received %d, want 2", n)
	}
	if strings.Contains(proc.Stderr.String(), "obtained a certificate") {
		t.Errorf("a new certificate was obtained after the restart instead of the cached one:\n%s", proc.Stderr.String())
	}
	proc.Term(t)
}
