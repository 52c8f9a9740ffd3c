package server

// HTTPS: certificates from files (re-read when they change) or over ACME
// (autocert), the optional plain-HTTP redirect listener that also answers ACME
// HTTP-01 challenges, and HSTS.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// certCheckEvery is how often, at most, --tls-cert and --tls-key are re-read:
// on a handshake at least this long after the last look.
const certCheckEvery = 3 * time.Second

// hstsValue is sent on every HTTPS answer: browsers then use HTTPS only for a
// year. No includeSubDomains: hookhouse does not speak for sibling names.
const hstsValue = "max-age=31536000"

// setupTLS builds the TLS config and, with --redirect-http, the redirect
// server. With certificate files, a missing or broken pair stops start-up here,
// before anything else is opened.
func (s *Server) setupTLS() error {
	t := s.cfg.TLS
	if !t.On() {
		return nil
	}
	logger := s.logger.With("component", "tls")
	var tlsConfig *tls.Config
	redirect := http.Handler(http.HandlerFunc(s.redirectToHTTPS))
	if len(t.Domains) > 0 {
		m, err := s.acmeManager(logger)
		if err != nil {
			return err
		}
		tlsConfig = m.TLSConfig() // h2, http/1.1 and acme-tls/1 (the TLS-ALPN-01 challenge)
		get := tlsConfig.GetCertificate
		failures := &logEvery{every: time.Minute}
		tlsConfig.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			cert, err := get(hello)
			if err != nil && s.ourDomain(hello.ServerName) {
				// Names not ours are scanners: net/http logs those at debug.
				if ok, held := failures.allow(hello.ServerName, time.Now()); ok {
					logger.Warn("no certificate for a TLS handshake", "domain", hello.ServerName, "err", err,
						"failures_not_logged", held)
				}
			}
			return cert, err
		}
		if t.RedirectHTTP != "" {
			redirect = m.HTTPHandler(redirect) // HTTP-01 challenges, then the redirect
		}
	} else {
		files := &certFiles{certFile: t.CertFile, keyFile: t.KeyFile, logger: logger, every: certCheckEvery}
		if err := files.load(); err != nil {
			return err
		}
		tlsConfig = &tls.Config{GetCertificate: files.GetCertificate, NextProtos: []string{"h2", "http/1.1"}}
	}
	tlsConfig.MinVersion = tls.VersionTLS12
	s.tlsConfig = tlsConfig
	if t.RedirectHTTP != "" {
		s.redirect = &http.Server{
			Handler:           redirect,
			ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
			ReadTimeout:       s.cfg.ReadTimeout,
			WriteTimeout:      s.cfg.ReadTimeout,
			IdleTimeout:       30 * time.Second,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          httpErrorLog(s.logger.With("component", "http-redirect")),
		}
	}
	return nil
}

// acmeManager is autocert with its cache in <data>/certs (0700) and, for
// --acme-ca, an HTTP client that trusts that root.
func (s *Server) acmeManager(logger *slog.Logger) (*autocert.Manager, error) {
	t := s.cfg.TLS
	dir := filepath.Join(s.cfg.Data, "certs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("server: create the certificate cache: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("server: certificate cache: %w", err)
	}
	client := &acme.Client{DirectoryURL: t.ACMEDirectory, UserAgent: "hookhouse/" + Version}
	if client.DirectoryURL == "" {
		client.DirectoryURL = autocert.DefaultACMEDirectory
	}
	if t.ACMECA != "" {
		pem, err := os.ReadFile(t.ACMECA)
		if err != nil {
			return nil, fmt.Errorf("server: --acme-ca: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("server: --acme-ca %s holds no PEM certificate", t.ACMECA)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		client.HTTPClient = &http.Client{Transport: tr, Timeout: time.Minute}
	}
	return &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      loggingCache{autocert.DirCache(dir), t.Domains, logger},
		HostPolicy: s.hostPolicy,
		Client:     client,
		Email:      t.ACMEEmail,
	}, nil
}

// hostPolicy allows certificates for --tls-domain names only. Unlike
// autocert.HostWhitelist it ignores a port, which an HTTP-01 request's Host
// carries when the CA validates on another port than 80 (a test CA).
func (s *Server) hostPolicy(_ context.Context, host string) error {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if !s.ourDomain(host) {
		return fmt.Errorf("%q is not a --tls-domain name", host)
	}
	return nil
}

// ourDomain reports whether name is one of --tls-domain.
func (s *Server) ourDomain(name string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	for _, d := range s.cfg.TLS.Domains {
		if d == name {
			return true
		}
	}
	return false
}

// loggingCache says when a certificate was obtained (or renewed) and stored.
type loggingCache struct {
	autocert.Cache
	domains []string
	logger  *slog.Logger
}

func (c loggingCache) Put(ctx context.Context, key string, data []byte) error {
	err := c.Cache.Put(ctx, key, data)
	for _, d := range c.domains {
		// autocert keys a domain's certificates as "<domain>" (ECDSA) and "<domain>+rsa".
		if key == d || key == d+"+rsa" {
			if err != nil {
				c.logger.Error("could not store a new certificate in the cache; it is fetched again after a restart", "domain", d, "err", err)
			} else {
				c.logger.Info("obtained a certificate over ACME", "domain", d, "cache", key)
			}
		}
	}
	return err
}

// redirectToHTTPS answers the plain-HTTP listener: browsers (GET, HEAD) are sent
// to the same path on the public URL; anything else is refused, since a POST
// would be sent again in the clear.
func (s *Server) redirectToHTTPS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"status":"error","message":"this address only redirects to HTTPS: send requests to the https:// URL"}`+"\n")
		return
	}
	http.Redirect(w, r, s.cfg.PublicURL+r.URL.RequestURI(), http.StatusMovedPermanently)
}

// hsts adds Strict-Transport-Security to every answer sent over TLS.
func hsts(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			w.Header().Set("Strict-Transport-Security", hstsValue)
		}
		next.ServeHTTP(w, r)
	})
}

// certFiles serves the pair in --tls-cert and --tls-key, re-reading both at
// most every `every` when a handshake asks. A pair that changed is put in use
// only if it loads (key matches, not expired); otherwise the one in use stays
// and the reason is logged once per change.
type certFiles struct {
	certFile, keyFile string
	logger            *slog.Logger
	every             time.Duration

	mu       sync.Mutex
	cert     *tls.Certificate
	certPEM  []byte // the files' contents last seen, good or bad
	keyPEM   []byte
	lastErr  string
	lastLook time.Time
}

// load reads the pair at start-up: an error stops the server.
func (c *certFiles) load() error {
	certPEM, keyPEM, err := c.read()
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	cert, err := parsePair(certPEM, keyPEM, time.Now())
	if err != nil {
		return fmt.Errorf("server: --tls-cert %s and --tls-key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cert, c.certPEM, c.keyPEM, c.lastLook = cert, certPEM, keyPEM, time.Now()
	c.logger.Info("serving HTTPS with the certificate files", "names", cert.Leaf.DNSNames,
		"not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

func (c *certFiles) read() (certPEM, keyPEM []byte, err error) {
	certPEM, err = os.ReadFile(c.certFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--tls-cert: %w", err)
	}
	keyPEM, err = os.ReadFile(c.keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--tls-key: %w", err)
	}
	return certPEM, keyPEM, nil
}

// parsePair loads a PEM pair and refuses one whose certificate has expired.
func parsePair(certPEM, keyPEM []byte, now time.Time) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
	}
	if now.After(cert.Leaf.NotAfter) {
		return nil, fmt.Errorf("the certificate expired at %s", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &cert, nil
}

// GetCertificate is tls.Config.GetCertificate.
func (c *certFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.lastLook) >= c.every {
		c.lastLook = now
		c.reload(now)
	}
	return c.cert, nil
}

func (c *certFiles) reload(now time.Time) {
	certPEM, keyPEM, err := c.read()
	if err != nil {
		c.fail(err)
		return
	}
	if bytes.Equal(certPEM, c.certPEM) && bytes.Equal(keyPEM, c.keyPEM) {
		return // unchanged since the last look (in use, or already reported as bad)
	}
	c.certPEM, c.keyPEM = certPEM, keyPEM
	cert, err := parsePair(certPEM, keyPEM, now)
	if err != nil {
		c.fail(err)
		return
	}
	c.cert, c.lastErr = cert, ""
	c.logger.Info("reloaded the TLS certificate", "names", cert.Leaf.DNSNames,
		"not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
}

// fail logs why the files were not put in use, once per distinct reason.
func (c *certFiles) fail(err error) {
	if msg := err.Error(); msg != c.lastErr {
		c.lastErr = msg
		c.logger.Warn("the changed certificate files do not load; keeping the certificate in use",
			"cert", c.certFile, "key", c.keyFile, "err", err,
			"in_use_not_after", c.cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
}

// logEvery lets one line per key through per `every` and counts the rest.
type logEvery struct {
	every time.Duration
	mu    sync.Mutex
	last  map[string]time.Time
	held  map[string]int
}

// allow reports whether key may log now, and how many lines it held back since
// the last one.
func (l *logEvery) allow(key string, now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last, l.held = map[string]time.Time{}, map[string]int{}
	}
	if t, ok := l.last[key]; ok && now.Sub(t) < l.every {
		l.held[key]++
		return false, 0
	}
	held := l.held[key]
	l.last[key], l.held[key] = now, 0
	return true, held
}

// httpErrorLog is net/http's ErrorLog at warn, except failed TLS handshakes
// (scanners, old clients, names that are not ours), which a public server sees
// all day: those go to debug.
func httpErrorLog(logger *slog.Logger) *log.Logger {
	return log.New(httpErrorWriter{logger}, "", 0)
}

type httpErrorWriter struct{ logger *slog.Logger }

func (w httpErrorWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	if strings.HasPrefix(msg, "http: TLS handshake error") {
		level = slog.LevelDebug
	}
	w.logger.Log(context.Background(), level, msg)
	return len(p), nil
}
