package config

// Cluster mode: --nats and the options a real NATS JetStream cluster needs
// (docs/cluster.md). Kept apart from the other settings; Parse and Validate
// call in here.

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// clusterFlagNames order the "Cluster" help group.
var clusterFlagNames = []string{"nats", "nats-creds", "nats-ca", "nats-replicas", "nats-stream", "node-name"}

// Cluster defaults.
const (
	DefaultNATSReplicas = 3
	DefaultNATSStream   = "hookhouse"
)

func (c *Config) registerCluster(fs *flag.FlagSet) {
	fs.StringVar(&c.NATS, "nats", "", "run as one node of a cluster: keep the log and the control data on the NATS JetStream "+
		"cluster at these `URLS` (comma-separated, nats://host:4222 or tls://host:4222) instead of in --data; "+
		"needs a PostgreSQL --warehouse. Without it hookhouse is a single node")
	fs.StringVar(&c.NATSCreds, "nats-creds", "", "NATS credentials `FILE` (a user JWT and its NKey seed, as nsc writes it)")
	fs.StringVar(&c.NATSCA, "nats-ca", "", "PEM `FILE` of the root certificates to trust for the NATS servers' TLS "+
		"(default: the system's roots)")
	fs.IntVar(&c.NATSReplicas, "nats-replicas", c.NATSReplicas, "replicas of the stream and the KV buckets, `N` of 1, 3 or 5; "+
		"a write is acknowledged once a majority stored it. A change applies to the stream at the next start; "+
		"the KV buckets keep the number they were created with")
	fs.StringVar(&c.NATSStream, "nats-stream", c.NATSStream, "`NAME` of the JetStream stream; the KV buckets are named after it "+
		"(NAME_control, NAME_log). Letters, digits, - and _")
	fs.StringVar(&c.NodeName, "node-name", "", "this node's `NAME` in the cluster, shown in /status, the dashboard and metrics "+
		"and given to NATS as the connection name (default: the hostname)")
}

// Cluster reports whether hookhouse runs as one node of a cluster (--nats).
func (c Config) Cluster() bool { return c.NATS != "" }

// NATSURLs is --nats split into its URLs.
func (c Config) NATSURLs() []string {
	var out []string
	for _, u := range strings.Split(c.NATS, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// defaultNodeName is the hostname, or "hookhouse" if it cannot be read.
func defaultNodeName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "hookhouse"
	}
	return h
}

func (c *Config) validateCluster() []error {
	var errs []error
	if !c.Cluster() {
		for _, f := range []struct{ name, v string }{{"nats-creds", c.NATSCreds}, {"nats-ca", c.NATSCA}} {
			if f.v != "" {
				errs = append(errs, fmt.Errorf("--%s is for cluster mode: it needs --nats", f.name))
			}
		}
		return errs
	}
	urls := c.NATSURLs()
	if len(urls) == 0 {
		errs = append(errs, errors.New("--nats must list at least one nats:// URL"))
	}
	for _, s := range urls {
		if why := checkNATSURL(s); why != "" {
			errs = append(errs, fmt.Errorf("--nats: %s", why))
		}
	}
	if c.Warehouse == "" {
		errs = append(errs, errors.New("--nats needs a PostgreSQL --warehouse (postgres://…): the embedded DuckDB warehouse is a file "+
			"that belongs to one process, so a cluster of nodes cannot share it"))
	}
	for _, f := range []struct{ name, path string }{{"nats-creds", c.NATSCreds}, {"nats-ca", c.NATSCA}} {
		if f.path == "" {
			continue
		}
		if _, err := os.ReadFile(f.path); err != nil {
			errs = append(errs, fmt.Errorf("--%s %s cannot be read: %v", f.name, f.path, unwrapPath(err)))
		}
	}
	switch c.NATSReplicas {
	case 1, 3, 5:
	default:
		errs = append(errs, fmt.Errorf("--nats-replicas must be 1, 3 or 5 (NATS allows up to 5; an even number adds no safety), not %d", c.NATSReplicas))
	}
	if c.NATSStream == "" || len(c.NATSStream) > 64 || strings.Trim(c.NATSStream, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != "" {
		errs = append(errs, fmt.Errorf("--nats-stream %q must be 1–64 letters, digits, - or _", c.NATSStream))
	}
	if c.NodeName == "" || len(c.NodeName) > 64 || strings.ContainsAny(c.NodeName, "/ \t\r\n*>") {
		errs = append(errs, fmt.Errorf("--node-name %q must be 1–64 characters without spaces, '/', '*' or '>'", c.NodeName))
	}
	return errs
}

// checkNATSURL says what is wrong with one --nats URL, "" if nothing. The URL
// itself is not repeated when it carries a password.
func checkNATSURL(s string) string {
	u, err := url.Parse(s)
	shown := s
	if err == nil && u.User != nil {
		shown = RedactNATSURL(s)
	}
	if err != nil {
		return "cannot parse a URL; use nats://host:4222"
	}
	switch u.Scheme {
	case "nats", "tls":
	default:
		return fmt.Sprintf("%q must start with nats:// or tls://", shown)
	}
	if u.Hostname() == "" {
		return fmt.Sprintf("%q names no host; use nats://host:4222", shown)
	}
	if u.Path != "" && u.Path != "/" {
		return fmt.Sprintf("%q has a path; a NATS URL is nats://host:port", shown)
	}
	return ""
}

// RedactNATSURL returns a NATS URL fit for a log line or a status page: a
// password or token in it replaced by xxxxx.
func RedactNATSURL(s string) string {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return "(unparsable URL)"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), redacted)
		} else {
			u.User = url.User(redacted) // nats://TOKEN@host: the user part is a token
		}
	}
	return u.String()
}

// unwrapPath drops the path os.ReadFile repeats in its error.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// clusterString is the cluster settings for the start-up log line.
func (c Config) clusterString() string {
	if !c.Cluster() {
		return ""
	}
	var urls []string
	for _, u := range c.NATSURLs() {
		urls = append(urls, RedactNATSURL(u))
	}
	s := fmt.Sprintf(" nats=%s nats-stream=%s nats-replicas=%d node-name=%s", strings.Join(urls, ","), c.NATSStream, c.NATSReplicas, c.NodeName)
	if c.NATSCreds != "" {
		s += " nats-creds=" + c.NATSCreds
	}
	if c.NATSCA != "" {
		s += " nats-ca=" + c.NATSCA
	}
	return s
}
