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
