package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestClusterFlags: --nats and its options, from flags and env twins, with
// their defaults, and a clear refusal for each mistake.
func TestClusterFlags(t *testing.T) {
	creds := filepath.Join(t.TempDir(), "hh.creds")
	if err := os.WriteFile(creds, []byte("-----BEGIN NATS USER JWT-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"HOOKHOUSE_NATS":       "nats://a:4222, nats://b:4222",
		"HOOKHOUSE_NATS_CREDS": creds,
		"HOOKHOUSE_WAREHOUSE":  "postgres://u@h/db",
	}
	c, err := Parse([]string{"--nats-stream", "hh_test", "--node-name", "hh-1"}, func(k string) string { return env[k] }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Cluster() || len(c.NATSURLs()) != 2 || c.NATSURLs()[1] != "nats://b:4222" || c.NATSCreds != creds ||
		c.NATSReplicas != 3 || c.NATSStream != "hh_test" || c.NodeName != "hh-1" {
		t.Fatalf("parsed %+v", c)
	}
	host, _ := os.Hostname()
	if c, err := Parse(nil, func(k string) string { return env[k] }, nil); err != nil || c.NodeName != host || c.NATSStream != "hookhouse" {
		t.Fatalf("defaults: node %q stream %q, %v; want the hostname %q and hookhouse", c.NodeName, c.NATSStream, err, host)
	}
	if c, err := Parse(nil, noEnv, nil); err != nil || c.Cluster() {
		t.Fatalf("without --nats: cluster %v, %v", c.Cluster(), err)
	}

	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--nats", "nats://a:4222"}, []string{"--nats needs a PostgreSQL --warehouse", "DuckDB", "one process"}},
		{[]string{"--nats", "http://a:4222", "--warehouse", "postgres://h/db"}, []string{"nats://", "tls://"}},
		{[]string{"--nats", " , ", "--warehouse", "postgres://h/db"}, []string{"at least one nats:// URL"}},
		{[]string{"--nats", "nats://a:4222", "--warehouse", "postgres://h/db", "--nats-creds", "/no/such.creds"}, []string{"--nats-creds /no/such.creds cannot be read", "no such file"}},
		{[]string{"--nats", "nats://a:4222", "--warehouse", "postgres://h/db", "--nats-ca", "/no/ca.pem"}, []string{"--nats-ca /no/ca.pem cannot be read"}},
		{[]string{"--nats-ca", creds}, []string{"--nats-ca is for cluster mode: it needs --nats"}},
		{[]string{"--nats", "nats://a:4222", "--warehouse", "postgres://h/db", "--nats-replicas", "2"}, []string{"--nats-replicas must be 1, 3 or 5"}},
		{[]string{"--nats", "nats://a:4222", "--warehouse", "postgres://h/db", "--nats-stream", "a.b"}, []string{"--nats-stream"}},
		{[]string{"--nats", "nats://a:4222", "--warehouse", "postgres://h/db", "--node-name", "a/b"}, []string{"--node-name"}},
	} {
		_, err := Parse(tc.args, noEnv, nil)
		var ue *UsageError
		if !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a UsageError", tc.args, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: %q lacks %q", tc.args, err, w)
			}
		}
	}

	// A password or token in a NATS URL is never printed.
	c, err = Parse([]string{"--nats", "nats://hh:s3cret@a:4222,nats://t0ken@b:4222", "--warehouse", "postgres://h/db"}, noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := c.String(); strings.Contains(s, "s3cret") || strings.Contains(s, "t0ken") || !strings.Contains(s, "nats://hh:xxxxx@a:4222") {
		t.Errorf("String() = %s", s)
	}
	if _, err := Parse([]string{"--nats", "ftp://hh:s3cret@a:4222", "--warehouse", "postgres://h/db"}, noEnv, nil); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("bad URL with a password: %v", err)
	}
}
