// Package config builds the server's Config from flags and their HOOKHOUSE_* env
// twins, validates it, and prints it with secrets hidden.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config is every setting of `hookhouse serve`.
type Config struct {
	Data        string        // data dir: Pebble state, DuckDB file, admin.key
	Listen      string        // HTTP listen address
	PublicURL   string        // base URL printed in webhook URLs
	Warehouse   string        // "" = embedded DuckDB; postgres://… = PostgreSQL
	QueryDSN    string        // PostgreSQL only: who /api/v1/query connects as; "" = a role hookhouse manages
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
	}
}

// Parse builds a Config from args, with HOOKHOUSE_<FLAG> env twins as defaults
// (flags win over env).
func Parse(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	c := Default()
	fs := flag.NewFlagSet("hookhouse serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	str := func(p *string, name, usage string) {
		fs.StringVar(p, name, *p, usage+" (env "+envName(name)+")")
	}
	str(&c.Data, "data", "data directory")
	str(&c.Listen, "listen", "HTTP listen address")
	str(&c.PublicURL, "public-url", "public base URL used to print webhook URLs")
	str(&c.Warehouse, "warehouse", "warehouse: empty for embedded DuckDB, or postgres://user@host:5432/db")
	str(&c.QueryDSN, "query-dsn", "PostgreSQL user for /api/v1/query, e.g. postgres://reader@host:5432/db; it must be able to read only the integration schemas (default: a role hookhouse creates and manages)")
	maxBody := byteSize(c.MaxBody)
	fs.Var(&maxBody, "max-body", "request body limit after gzip decoding, e.g. 20MiB (env HOOKHOUSE_MAX_BODY)")
	fs.IntVar(&c.BatchSize, "batch-size", c.BatchSize, "records per load batch (env HOOKHOUSE_BATCH_SIZE)")
	fs.DurationVar(&c.BatchWait, "batch-wait", c.BatchWait, "longest time a load batch stays open (env HOOKHOUSE_BATCH_WAIT)")
	fs.DurationVar(&c.Retention, "retention", c.Retention, "how long loaded records stay in the log (env HOOKHOUSE_RETENTION)")
	fs.IntVar(&c.MaxColumns, "max-columns", c.MaxColumns, "most columns per warehouse table (env HOOKHOUSE_MAX_COLUMNS)")
	str(&c.LogFormat, "log-format", "log format: text or json")
	str(&c.LogLevel, "log-level", "log level: debug, info, warn, error")
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", c.ReadHeaderTimeout, "cut off clients that do not send their headers in time (env HOOKHOUSE_READ_HEADER_TIMEOUT)")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", c.ReadTimeout, "cut off clients that do not send the whole request in time (env HOOKHOUSE_READ_TIMEOUT)")
	fs.DurationVar(&c.ShutdownMax, "shutdown-timeout", c.ShutdownMax, "deadline for graceful shutdown (env HOOKHOUSE_SHUTDOWN_TIMEOUT)")

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
		return c, envErr
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("config: unexpected argument %q", fs.Arg(0))
	}
	c.MaxBody = int64(maxBody)
	return c, c.Validate()
}

// Validate checks the settings and says what to change.
func (c *Config) Validate() error {
	var errs []error
	if c.Data == "" {
		errs = append(errs, errors.New("--data must not be empty"))
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
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

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
	return fmt.Sprintf("data=%s listen=%s public-url=%s warehouse=%s max-body=%d batch=%d/%s retention=%s max-columns=%d",
		c.Data, c.Listen, c.PublicURL, wh, c.MaxBody, c.BatchSize, c.BatchWait, c.Retention, c.MaxColumns)
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

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Set(s string) error {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("not a size: use bytes or a unit like 20MiB")
	}
	*b = byteSize(n * mult)
	return nil
}

// Env is os.Getenv, for callers.
var Env = os.Getenv
