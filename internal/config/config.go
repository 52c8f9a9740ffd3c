// Package config builds the server's Config from flags and their HOOKHOUSE_* env
// twins, validates it, and prints it with secrets hidden.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config is every setting of `hookhouse serve`.
type Config struct {
	Data      string // data dir: Pebble state, DuckDB file, admin.key
	Listen    string // HTTP listen address
	PublicURL string // base URL printed in webhook URLs
	Warehouse string // "" = embedded DuckDB; postgres://… = PostgreSQL
	QueryDSN  string // PostgreSQL only: who /api/v1/query connects as; "" = a role hookhouse manages
	// SecretKey seals signing secrets at rest: HOOKHOUSE_SECRET_KEY (env only, so
	// it stays out of process listings), or "" for <data>/secret.key. Never printed.
	SecretKey   string
	MaxBody     int64         // request body limit after gzip decoding
	BatchSize   int           // records per load batch
	BatchWait   time.Duration // max age of an open batch
	Retention   time.Duration // how long loaded records stay in the log
	MaxColumns  int           // columns per warehouse table
	LogFormat   string        // text or json
	LogLevel    string        // debug, info, warn, error
	ShutdownMax time.Duration // deadline for graceful shutdown
	// Slow or stalled clients are cut off after these.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration // whole request including the body

	// HTTPS and proxies (tls.go).
	TLS
	// MemoryLimit is the whole process's memory budget (see Budget).
	MemoryLimit int64

	// Cluster mode (cluster.go): NATS is --nats, "" for a single node.
	NATS         string
	NATSCreds    string // credentials file
	NATSCA       string // PEM roots for the NATS servers' TLS
	NATSReplicas int
	NATSStream   string // the stream's name; the KV buckets derive theirs from it
	NodeName     string // default: the hostname
}

// Default returns the embedded defaults of SPEC §1.
func Default() Config {
	return Config{
		Data:        "./hookhouse-data",
		Listen:      ":8080",
		PublicURL:   "http://localhost:8080",
		MaxBody:     20 << 20,
		BatchSize:   10000,
		BatchWait:   time.Second,
		Retention:   7 * 24 * time.Hour,
		MaxColumns:  1000,
		LogFormat:   "text",
		LogLevel:    "info",
		ShutdownMax: 30 * time.Second,

		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,

		MemoryLimit: 1 << 30,

		NATSReplicas: DefaultNATSReplicas,
		NATSStream:   DefaultNATSStream,
	}
}

// serveGroups order the help of `hookhouse serve`; every flag is in one of them.
var serveGroups = []FlagGroup{
	{"Listening", []string{"listen", "public-url", "read-header-timeout", "read-timeout", "shutdown-timeout"}},
	{"HTTPS and proxies", tlsFlagNames},
	{"Storage", []string{"data", "retention", "warehouse", "query-dsn"}},
	{"Receiving and loading", []string{"max-body", "batch-size", "batch-wait", "max-columns"}},
	{"Logging", []string{"log-format", "log-level"}},
	{"Memory", []string{"memory-limit"}},
	{"Cluster", clusterFlagNames},
	{"Other", nil},
}

// Parse builds a Config from args, with HOOKHOUSE_<FLAG> env twins as defaults
// (flags win over env). For -h or --help it writes the help to help and returns
// flag.ErrHelp. Unless --public-url is given, it follows --listen (see
// DefaultPublicURL).
func Parse(args []string, getenv func(string) string, help io.Writer) (Config, error) {
	if help == nil {
		help = io.Discard
	}
	c := Default()
	c.PublicURL = ""
	c.SecretKey = getenv("HOOKHOUSE_SECRET_KEY")
	fs := flag.NewFlagSet("hookhouse serve", flag.ContinueOnError)
	// Mistakes are returned as one-line errors; help is printed on request only.
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.Listen, "listen", c.Listen, "listen on `ADDR`, host:port or :port")
	fs.StringVar(&c.PublicURL, "public-url", "", "base `URL` of the webhook URLs and the dashboard link hookhouse prints, as "+
		"providers reach it (default with HTTPS: https://<first --tls-domain, or the name in --tls-cert>, with :<port> "+
		"unless it is 443; else http://localhost:<port> from --listen, or its host when it names one)")
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", c.ReadHeaderTimeout, "cut off clients that do not send their headers in this `TIME`")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", c.ReadTimeout, "cut off clients that do not send the whole request in this `TIME`")
	fs.DurationVar(&c.ShutdownMax, "shutdown-timeout", c.ShutdownMax, "on SIGINT/SIGTERM, give in-flight requests and the open load batch this `TIME` to finish")

	fs.StringVar(&c.Data, "data", c.Data, "`DIR` for the log, the control data, admin.key and the embedded DuckDB warehouse")
	fs.DurationVar(&c.Retention, "retention", c.Retention, "keep loaded records in the log for `TIME`")
	fs.StringVar(&c.Warehouse, "warehouse", c.Warehouse, "`URL` of a PostgreSQL warehouse, postgres://user@host:5432/db (default: the embedded DuckDB file in --data)")
	fs.StringVar(&c.QueryDSN, "query-dsn", c.QueryDSN, "PostgreSQL login `URL` for /api/v1/query, e.g. postgres://reader@host:5432/db; "+
		"it must be able to read only the integration schemas (default: a role hookhouse creates and manages)")

	maxBody := byteSize(c.MaxBody)
	fs.Var(&maxBody, "max-body", "`SIZE` limit of a request body, after gzip decoding, e.g. 20MiB or 512KiB")
	fs.IntVar(&c.BatchSize, "batch-size", c.BatchSize, "close a load batch at `N` records")
	fs.DurationVar(&c.BatchWait, "batch-wait", c.BatchWait, "close a load batch when it is this `TIME` old")
	fs.IntVar(&c.MaxColumns, "max-columns", c.MaxColumns, "most columns of a warehouse table; further fields go to _sdc_extra as JSON")

	memoryLimit := byteSize(c.MemoryLimit)
	fs.Var(&memoryLimit, "memory-limit", "memory the whole process may use, a `SIZE` like 512MiB, 1GiB or 2G (G, M, K are binary units), "+
		"split between DuckDB's memory limit, the loader's batches, the large bodies received at once and the Go heap. "+
		"At the default: "+splitMemory(c.MemoryLimit, c.MaxBody, true).String()+". "+
		"With a PostgreSQL warehouse DuckDB's share goes to batches and bodies. Set the service's memory limit (systemd MemoryMax) to about 10% more")

	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log `FORMAT`: text or json")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log `LEVEL`: debug, info, warn or error")

	c.TLS.register(fs)    // HTTPS and proxies (tls.go)
	c.registerCluster(fs) // cluster mode (cluster.go)

	fs.Usage = func() {} // flag calls it on every mistake; help is printed below, on request
	usage := func() {
		fmt.Fprint(help, `Usage: hookhouse serve [flags]

Run the server: webhook receiver, loader, admin API and dashboard. Each flag
can also be set by its env twin, named below; a flag on the command line wins.

`)
		PrintFlags(help, fs, serveGroups, envName)
	}

	// Env twins first, so flags override them.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(envName(f.Name)); v != "" && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("config: %s=%q: %w", envName(f.Name), v, err)
			}
		}
	})
	if envErr != nil {
		return c, &UsageError{envErr}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage()
			return c, err
		}
		return c, &UsageError{fmt.Errorf("config: %w (see 'hookhouse serve --help')", err)}
	}
	if fs.NArg() > 0 {
		return c, &UsageError{fmt.Errorf("config: unexpected argument %q (see 'hookhouse serve --help')", fs.Arg(0))}
	}
	if c.NodeName == "" {
		c.NodeName = defaultNodeName()
	}
	c.MaxBody = int64(maxBody)
	c.MemoryLimit = int64(memoryLimit)
	if c.TLS.On() && !isSet(fs, getenv, "listen") {
		c.Listen = ":443" // HTTPS and proxies (tls.go): HTTPS on its own port unless told otherwise
	}
	if c.PublicURL == "" {
		c.PublicURL = DefaultPublicURL(c.Listen)
		if c.TLS.On() {
			c.PublicURL = c.TLS.defaultPublicURL(c.Listen)
		}
	}
	return c, c.Validate()
}

// DefaultPublicURL is where a server listening on listen is reached from its own
// machine: http://localhost:<port> when listen names no host or a wildcard one
// (":8082", "0.0.0.0:8082", "[::]:8082"), else http://<host>:<port>.
func DefaultPublicURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return Default().PublicURL // Validate says what is wrong with listen
	}
	switch host {
	case "", "0.0.0.0", "::":
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// Validate checks the settings and says what to change.
func (c *Config) Validate() error {
	var errs []error
	if c.Data == "" {
		errs = append(errs, errors.New("--data must not be empty"))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q must be host:port or :port, like :8080", c.Listen))
	}
	if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("--public-url %q must be an http(s) URL like https://hooks.example.com", c.PublicURL))
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.Warehouse != "" && !strings.HasPrefix(c.Warehouse, "postgres://") && !strings.HasPrefix(c.Warehouse, "postgresql://") {
		errs = append(errs, errors.New("--warehouse must be empty (embedded DuckDB) or a postgres:// URL"))
	}
	if c.QueryDSN != "" {
		if c.Warehouse == "" {
			errs = append(errs, errors.New("--query-dsn needs a PostgreSQL --warehouse; the embedded DuckDB has no users"))
		} else if !strings.HasPrefix(c.QueryDSN, "postgres://") && !strings.HasPrefix(c.QueryDSN, "postgresql://") {
			errs = append(errs, errors.New("--query-dsn must be a postgres:// URL"))
		}
	}
	if c.MaxBody < 1024 {
		errs = append(errs, errors.New("--max-body must be at least 1KiB"))
	}
	if c.MemoryLimit < MinMemoryLimit {
		errs = append(errs, fmt.Errorf("--memory-limit must be at least %s", byteSize(MinMemoryLimit)))
	} else if c.MaxBody*5/2 > c.MemoryLimit/4 {
		errs = append(errs, fmt.Errorf("--max-body %s is too large for --memory-limit %s: a body needs about 2.5 times its size while it is received; "+
			"raise --memory-limit to at least %s or lower --max-body", byteSize(c.MaxBody), byteSize(c.MemoryLimit), byteSize((c.MaxBody*10+(1<<20)-1)&^(1<<20-1))))
	}
	if c.BatchSize < 1 {
		errs = append(errs, errors.New("--batch-size must be at least 1"))
	}
	if c.BatchWait < time.Millisecond {
		errs = append(errs, errors.New("--batch-wait must be at least 1ms"))
	}
	if c.ReadHeaderTimeout <= 0 || c.ReadTimeout <= 0 {
		errs = append(errs, errors.New("--read-header-timeout and --read-timeout must be positive"))
	}
	if c.Retention < 0 {
		errs = append(errs, errors.New("--retention must not be negative"))
	}
	if c.MaxColumns < 20 {
		errs = append(errs, errors.New("--max-columns must be at least 20"))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, errors.New("--log-format must be text or json"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, errors.New("--log-level must be debug, info, warn or error"))
	}
	errs = append(errs, c.TLS.validate(c.Listen, c.PublicURL)...) // HTTPS and proxies (tls.go)
	errs = append(errs, c.validateCluster()...)                   // cluster mode (cluster.go)
	if err := errors.Join(errs...); err != nil {
		return &UsageError{fmt.Errorf("config: %w", err)}
	}
	return nil
}

// UsageError is a mistake in the settings (a flag, an env twin, or a
// combination of them): `hookhouse serve` exits with status 2 on it.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// AdminKeyPath is where the admin key is written for the CLI.
func (c Config) AdminKeyPath() string { return filepath.Join(c.Data, "admin.key") }

// String prints the settings with the warehouse passwords hidden.
func (c Config) String() string {
	wh := "duckdb " + filepath.Join(c.Data, "warehouse.duckdb")
	if c.Warehouse != "" {
		wh = RedactDSN(c.Warehouse)
	}
	if c.QueryDSN != "" {
		wh += " query-dsn=" + RedactDSN(c.QueryDSN)
	}
	return fmt.Sprintf("data=%s listen=%s public-url=%s warehouse=%s max-body=%s batch=%d/%s retention=%s max-columns=%d memory-limit=%s",
		c.Data, c.Listen, c.PublicURL, wh, byteSize(c.MaxBody).String(), c.BatchSize, c.BatchWait, c.Retention, c.MaxColumns, byteSize(c.MemoryLimit)) +
		c.TLS.String() + // HTTPS and proxies (tls.go)
		c.clusterString() // cluster mode (cluster.go)
}

// redacted replaces a secret in a printed DSN.
const redacted = "xxxxx"

// RedactDSN returns a PostgreSQL connection string fit for a log line: every
// secret-bearing part replaced by xxxxx, the rest (host, port, user, database,
// options) kept so the operator can still tell which server is meant. pgx takes
// secrets in more places than user:password@ (see secretKey), and in two syntaxes:
// URLs (postgres://…?password=…) and libpq key=value strings (host=h
// password='a b'). Text that parses as neither is not printed at all.
func RedactDSN(s string) string {
	trimmed := strings.TrimSpace(s)
	lower := strings.ToLower(trimmed)
	if strings.HasPrefix(lower, "postgres://") || strings.HasPrefix(lower, "postgresql://") {
		return redactURL(trimmed)
	}
	if out, ok := redactKeyValue(trimmed); ok {
		return out
	}
	return "(unparsable DSN)"
}

// secretKey reports whether a DSN parameter holds a secret: password and
// sslpassword (the key file's passphrase) as pgx knows them, and, should a
// future driver take one, anything named like a password, secret or token. Paths
// (sslkey, sslcert, passfile) are not secrets: a file's name does not open it.
func secretKey(key string) bool {
	k := strings.ToLower(key)
	for _, s := range []string{"password", "passwd", "pwd", "secret", "token"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// redactURL hides the password in user:password@ and the value of every secret
// query parameter, keeping the parameters' order. The fragment is dropped: pgx
// ignores it, and a mistyped '#' in a password would leave the rest of it there.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		// url.Parse quotes the whole input in its error; say nothing of it.
		return "(unparsable URL)"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), redacted)
		}
	}
	if u.RawQuery != "" {
		parts := strings.Split(u.RawQuery, "&")
		for i, p := range parts {
			rawKey, _, _ := strings.Cut(p, "=")
			key, err := url.QueryUnescape(rawKey)
			if err != nil || secretKey(key) {
				// A key we cannot read might be one we would hide.
				parts[i] = rawKey + "=" + redacted
			}
		}
		u.RawQuery = strings.Join(parts, "&")
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// redactKeyValue rewrites a libpq key=value string (keys separated by spaces,
// values bare or single-quoted with backslash escapes) with secret values
// replaced; ok is false when s is not in that form.
func redactKeyValue(s string) (_ string, ok bool) {
	var out []string
	i := 0
	skipSpace := func() {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
	}
	for {
		skipSpace()
		if i == len(s) {
			break
		}
		start := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[start:i]
		skipSpace()
		if key == "" || i == len(s) || s[i] != '=' {
			return "", false
		}
		i++ // '='
		skipSpace()
		vstart := i
		if i < len(s) && s[i] == '\'' {
			i++
			for i < len(s) && s[i] != '\'' {
				if s[i] == '\\' {
					i++
				}
				i++
			}
			if i >= len(s) {
				return "", false // unterminated quote
			}
			i++ // closing quote
		} else {
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' {
					i++
				}
				i++
			}
			i = min(i, len(s))
		}
		value := s[vstart:i]
		if secretKey(key) {
			value = redacted
		}
		out = append(out, key+"="+value)
	}
	if len(out) == 0 {
		return "", false
	}
	return strings.Join(out, " "), true
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func envName(flagName string) string {
	return "HOOKHOUSE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// byteSize parses 20MiB, 512KiB, 1048576.
type byteSize int64

// String is the size in the largest binary unit that divides it: 20MiB, 1536KiB, 100.
func (b byteSize) String() string {
	n := int64(b)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

func (b *byteSize) Set(s string) error {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
		// G, M, K alone are binary, as in systemd's MemoryMax and docker --memory.
		{"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("not a size: use bytes or a unit like 20MiB")
	}
	*b = byteSize(n * mult)
	return nil
}

// Env is os.Getenv, for callers.
var Env = os.Getenv
