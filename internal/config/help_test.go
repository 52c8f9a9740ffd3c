package config

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
)

func noEnv(string) string { return "" }

// TestServeHelp: grouped, double-dash flags with human defaults and env names.
func TestServeHelp(t *testing.T) {
	var out bytes.Buffer
	_, err := Parse([]string{"--help"}, noEnv, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Parse(--help) = %v, want flag.ErrHelp", err)
	}
	help := out.String()
	words := strings.Join(strings.Fields(help), " ") // wrapping aside
	for _, want := range []string{
		"Usage: hookhouse serve [flags]",
		"Listening: --listen ADDR ",
		"Storage: --data DIR ", "Receiving and loading: --max-body SIZE ", "Logging: --log-format FORMAT ",
		"HTTPS and proxies: --tls-cert FILE ", "--tls-domain HOSTS ", "--trusted-proxies CIDRS ", "(env HOOKHOUSE_TLS_DOMAIN)",
		"(default 20MiB; env HOOKHOUSE_MAX_BODY)",
		"(default 1s; env HOOKHOUSE_BATCH_WAIT)",
		"(default 168h; env HOOKHOUSE_RETENTION)",
		"(default :8080; env HOOKHOUSE_LISTEN)",
		"(default ./hookhouse-data; env HOOKHOUSE_DATA)",
		"http://localhost:<port> from --listen, or its host when it names one; env HOOKHOUSE_PUBLIC_URL)",
		"--public-url URL ", "--max-body SIZE ", "--batch-size N ", "--read-timeout TIME ",
	} {
		if !strings.Contains(words, want) {
			t.Errorf("help lacks %q:\n%s", want, help)
		}
	}
	for _, bad := range []string{"20971520", "168h0m0s", "Other:", "\n  -max-body", "value"} {
		if strings.Contains(help, bad) {
			t.Errorf("help holds %q", bad)
		}
	}
	for _, line := range strings.Split(help, "\n") {
		if len(line) > helpWidth {
			t.Errorf("line longer than %d: %q", helpWidth, line)
		}
	}
	// Every flag is in a group and named with its env twin.
	var grouped []string
	for _, g := range serveGroups {
		grouped = append(grouped, g.Flags...)
	}
	for _, name := range grouped {
		if !strings.Contains(help, "--"+name+" ") || !strings.Contains(help, envName(name)) {
			t.Errorf("help lacks --%s or %s", name, envName(name))
		}
	}
	if n := strings.Count(help, "\n  --"); n != len(grouped) {
		t.Errorf("help shows %d flags, the groups name %d: a flag is in no group (it would show under Other)", n, len(grouped))
	}
}

func TestPublicURLFollowsListen(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, nil, "http://localhost:8080"},
		{[]string{"--listen", ":8082"}, nil, "http://localhost:8082"},
		{[]string{"--listen", "0.0.0.0:8082"}, nil, "http://localhost:8082"},
		{[]string{"--listen", "[::]:8082"}, nil, "http://localhost:8082"},
		{[]string{"--listen", "127.0.0.1:9000"}, nil, "http://127.0.0.1:9000"},
		{[]string{"--listen", "[::1]:9000"}, nil, "http://[::1]:9000"},
		{[]string{"--listen", "hooks.internal:80"}, nil, "http://hooks.internal:80"},
		{nil, map[string]string{"HOOKHOUSE_LISTEN": ":9001"}, "http://localhost:9001"},
		// An explicit public URL stays as given, from a flag or its env twin.
		{[]string{"--listen", ":8082", "--public-url", "https://hooks.example.com/"}, nil, "https://hooks.example.com"},
		{[]string{"--listen", ":8082"}, map[string]string{"HOOKHOUSE_PUBLIC_URL": "https://hooks.example.com"}, "https://hooks.example.com"},
	}
	for _, tc := range tests {
		c, err := Parse(tc.args, func(k string) string { return tc.env[k] }, nil)
		if err != nil || c.PublicURL != tc.want {
			t.Errorf("Parse(%q, env %v): public URL %q, %v; want %q", tc.args, tc.env, c.PublicURL, err, tc.want)
		}
	}
	if _, err := Parse([]string{"--listen", "8080"}, noEnv, nil); err == nil || !strings.Contains(err.Error(), "--listen \"8080\" must be host:port or :port") {
		t.Errorf("Parse(--listen 8080) = %v, want an error naming --listen", err)
	}
	if _, err := Parse([]string{"-bogus"}, noEnv, nil); err == nil || !strings.Contains(err.Error(), "hookhouse serve --help") {
		t.Errorf("Parse(-bogus) = %v, want an error pointing at --help", err)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]string{"20MiB": "20MiB", "20971520": "20MiB", "1536KiB": "1536KiB", "1GiB": "1GiB", "1000": "1000", "1MB": "1000000"} {
		var b byteSize
		if err := b.Set(in); err != nil || b.String() != want {
			t.Errorf("byteSize %q = %s, %v; want %s", in, b.String(), err, want)
		}
	}
}
