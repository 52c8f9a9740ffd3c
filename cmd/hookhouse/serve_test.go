package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestServeRefusesDuckDBInClusterMode: --nats without a PostgreSQL warehouse
// exits with status 2 and says why, before connecting anywhere.
func TestServeRefusesDuckDBInClusterMode(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"serve", "--nats", "nats://127.0.0.1:1", "--data", t.TempDir()}, strings.NewReader(""), &out, &errOut)
	if code != 2 {
		t.Fatalf("exit %d, want 2; stderr: %s", code, errOut.String())
	}
	if msg := errOut.String(); !strings.Contains(msg, "DuckDB") || !strings.Contains(msg, "PostgreSQL") {
		t.Fatalf("stderr %q does not say DuckDB is refused and PostgreSQL is needed", msg)
	}
}

func TestServeProcs(t *testing.T) {
	for _, c := range []struct {
		def     int
		fromEnv bool
		want    int
	}{
		{def: 1, want: 2}, // no spare Ps on one CPU
		{def: 2, want: 4},
		{def: 8, want: 10},
		{def: 1, fromEnv: true, want: 2}, // the fsync loop needs a second P
		{def: 2, fromEnv: true, want: 2},
		{def: 6, fromEnv: true, want: 6},
	} {
		if got := serveProcs(c.def, c.fromEnv); got != c.want {
			t.Errorf("serveProcs(%d, %v) = %d, want %d", c.def, c.fromEnv, got, c.want)
		}
	}
}
