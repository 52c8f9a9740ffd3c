package config

// HTTPS and proxies: --tls-cert/--tls-key, --tls-domain (ACME), --redirect-http
// and --trusted-proxies. Kept apart from the other settings; Parse and Validate
// call in here.

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
)

// TLS is how hookhouse serves HTTPS and which proxies it believes.
type TLS struct {
	// CertFile and KeyFile are a PEM certificate chain and its key, re-read when
	// they change (certbot renewals need no restart).
	CertFile string
	KeyFile  string
	// Domains get automatic certificates over ACME (autocert), cached in
	// <data>/certs.
	Domains []string
	// ACMEDirectory is the ACME server's directory URL ("" = Let's Encrypt).
	ACMEDirectory string
	// ACMECA is a PEM file of roots to trust when talking to the ACME server, for
	// a CA with a private root ("" = the system roots).
	ACMECA string
	// ACMEEmail is the contact address given to the CA ("" = none).
	ACMEEmail string
	// RedirectHTTP is a plain-HTTP address that redirects to HTTPS and answers
	// ACME HTTP-01 challenges ("" = none).
	RedirectHTTP string
	// TrustedProxies are the networks whose X-Forwarded-For / Forwarded headers
	// name the client (nil = no one's: the headers are ignored).
	TrustedProxies []netip.Prefix
}

// tlsFlagNames order the "HTTPS and proxies" help group.
var tlsFlagNames = []string{"tls-cert", "tls-key", "tls-domain", "acme-directory", "acme-ca", "acme-email",
	"redirect-http", "trusted-proxies"}

func (t *TLS) register(fs *flag.FlagSet) {
	fs.StringVar(&t.CertFile, "tls-cert", "", "serve HTTPS with the certificate chain in this PEM `FILE` (with --tls-key); "+
		"re-read within seconds when it changes, so renewals need no restart")
	fs.StringVar(&t.KeyFile, "tls-key", "", "the private key of --tls-cert, a PEM `FILE`")
	fs.Var((*hostList)(&t.Domains), "tls-domain", "serve HTTPS for `HOSTS` (comma-separated) with certificates obtained "+
		"and renewed automatically over ACME (Let's Encrypt unless --acme-directory), cached in <data>/certs; "+
		"the CA must reach this server on :443, or on :80 through --redirect-http. With HTTPS, --listen defaults to :443")
	fs.StringVar(&t.ACMEDirectory, "acme-directory", "", "directory `URL` of another ACME CA for --tls-domain "+
		"(default: Let's Encrypt's production directory)")
	fs.StringVar(&t.ACMECA, "acme-ca", "", "PEM `FILE` of root certificates to trust when talking to the ACME server, "+
		"for a CA with a private root (default: the system's roots)")
	fs.StringVar(&t.ACMEEmail, "acme-email", "", "contact `ADDRESS` given to the ACME CA for expiry notices")
	fs.StringVar(&t.RedirectHTTP, "redirect-http", "", "also listen on plain-HTTP `ADDR` (e.g. :80) to redirect browsers to "+
		"HTTPS and answer the ACME HTTP-01 challenge; webhooks sent there are refused, not redirected")
	fs.Var((*prefixList)(&t.TrustedProxies), "trusted-proxies", "`CIDRS` (comma-separated, e.g. 127.0.0.1/32,10.0.0.0/8) "+
		"of reverse proxies whose X-Forwarded-For (or Forwarded) header names the client, for the 401 rate limit and "+
		"the request log; from any other address the headers are ignored")
}

// isSet reports whether flag name was given on the command line or by its env twin.
func isSet(fs *flag.FlagSet, getenv func(string) string, name string) bool {
	set := getenv(envName(name)) != ""
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// On reports whether hookhouse serves HTTPS itself.
func (t TLS) On() bool { return t.CertFile != "" || t.KeyFile != "" || len(t.Domains) > 0 }

// defaultPublicURL is https://<host>[:port]: the first --tls-domain, else the
// first DNS name in --tls-cert, else the host from --listen; the port only when
// listen's is not 443.
func (t TLS) defaultPublicURL(listen string) string {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return Default().PublicURL // Validate says what is wrong with listen
	}
	host := ""
	switch {
	case len(t.Domains) > 0:
		host = t.Domains[0]
	case t.CertFile != "":
		host = certHost(t.CertFile)
	}
	if host == "" {
		u, _ := url.Parse(DefaultPublicURL(listen))
		host = u.Hostname()
	}
	if port == "443" {
		return "https://" + host
	}
	return "https://" + net.JoinHostPort(host, port)
}

// certHost is the first DNS name of the first certificate in file, "" if it
// cannot be read (the server then says why when it loads the pair).
func certHost(file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return ""
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return ""
	}
	for _, n := range cert.DNSNames {
		if !strings.HasPrefix(n, "*.") {
			return n
		}
	}
	return ""
}

func (t TLS) validate(listen, publicURL string) []error {
	var errs []error
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		errs = append(errs, errors.New("--tls-cert needs --tls-key, the file of its private key"))
	case t.KeyFile != "" && t.CertFile == "":
		errs = append(errs, errors.New("--tls-key needs --tls-cert, the file of its certificate chain"))
	}
	if len(t.Domains) > 0 && (t.CertFile != "" || t.KeyFile != "") {
		errs = append(errs, errors.New("--tls-domain and --tls-cert/--tls-key are two ways to get a certificate: use one"))
	}
	if len(t.Domains) == 0 {
		for _, f := range []struct{ name, value string }{
			{"--acme-directory", t.ACMEDirectory}, {"--acme-ca", t.ACMECA}, {"--acme-email", t.ACMEEmail},
		} {
			if f.value != "" {
				errs = append(errs, fmt.Errorf("%s is only used with --tls-domain", f.name))
			}
		}
	}
	if t.ACMEDirectory != "" {
		if u, err := url.Parse(t.ACMEDirectory); err != nil || u.Scheme != "https" || u.Host == "" {
			errs = append(errs, fmt.Errorf("--acme-directory %q must be an https URL like https://acme-staging-v02.api.letsencrypt.org/directory", t.ACMEDirectory))
		}
	}
	if t.RedirectHTTP != "" {
		if !t.On() {
			errs = append(errs, errors.New("--redirect-http redirects to HTTPS: it needs --tls-domain or --tls-cert/--tls-key"))
		}
		if _, _, err := net.SplitHostPort(t.RedirectHTTP); err != nil {
			errs = append(errs, fmt.Errorf("--redirect-http %q must be host:port or :port, like :80", t.RedirectHTTP))
		} else if t.RedirectHTTP == listen {
			errs = append(errs, fmt.Errorf("--redirect-http and --listen are both %s: HTTPS and the redirect need a port each", listen))
		}
		if u, err := url.Parse(publicURL); err == nil && u.Scheme != "https" {
			errs = append(errs, fmt.Errorf("--redirect-http sends browsers to --public-url, which is %q: make it https://", publicURL))
		}
	}
	return errs
}

// String is the part of Config.String for these settings ("" when all are off).
func (t TLS) String() string {
	var b strings.Builder
	switch {
	case len(t.Domains) > 0:
		fmt.Fprintf(&b, " tls=acme domains=%s", strings.Join(t.Domains, ","))
		if t.ACMEDirectory != "" {
			fmt.Fprintf(&b, " acme-directory=%s", t.ACMEDirectory)
		}
	case t.CertFile != "":
		fmt.Fprintf(&b, " tls=files cert=%s key=%s", t.CertFile, t.KeyFile)
	}
	if t.RedirectHTTP != "" {
		fmt.Fprintf(&b, " redirect-http=%s", t.RedirectHTTP)
	}
	if len(t.TrustedProxies) > 0 {
		fmt.Fprintf(&b, " trusted-proxies=%s", (*prefixList)(&t.TrustedProxies).String())
	}
	return b.String()
}

// hostList is a comma-separated list of DNS names.
type hostList []string

func (h *hostList) String() string { return strings.Join(*h, ",") }

func (h *hostList) Set(s string) error {
	var out []string
	for _, name := range strings.Split(s, ",") {
		name = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
		if name == "" {
			continue
		}
		if strings.Contains(name, "://") || strings.ContainsAny(name, "/:") {
			return fmt.Errorf("%q is not a host name: give names only, like hooks.example.com", name)
		}
		if net.ParseIP(name) != nil {
			return fmt.Errorf("%q is an IP address: ACME certificates need a DNS name", name)
		}
		if !strings.Contains(name, ".") {
			return fmt.Errorf("%q is not a public DNS name (it has no dot): ACME CAs only certify names like hooks.example.com", name)
		}
		out = append(out, name)
	}
	if len(out) == 0 {
		return errors.New("no host name given")
	}
	*h = out
	return nil
}

// prefixList is a comma-separated list of CIDRs; a bare address is one host.
type prefixList []netip.Prefix

func (p *prefixList) String() string {
	parts := make([]string, len(*p))
	for i, pr := range *p {
		parts[i] = pr.String()
	}
	return strings.Join(parts, ",")
}

func (p *prefixList) Set(s string) error {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if pr, err := netip.ParsePrefix(part); err == nil {
			if pr != pr.Masked() {
				return fmt.Errorf("%q has host bits set: did you mean %s?", part, pr.Masked())
			}
			out = append(out, pr)
			continue
		}
		addr, err := netip.ParseAddr(part)
		if err != nil {
			return fmt.Errorf("%q is not an address or CIDR like 10.0.0.0/8 or 127.0.0.1", part)
		}
		out = append(out, netip.PrefixFrom(addr, addr.BitLen()))
	}
	*p = out
	return nil
}
