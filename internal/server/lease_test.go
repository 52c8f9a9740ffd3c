package server

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/hookhouse/hookhouse/internal/loader"
	"github.com/hookhouse/hookhouse/internal/state"
)

// TestLeasesFor: the leases the server makes in cluster mode are this node's,
// over the real state store.
func TestLeasesFor(t *testing.T) {
	st, err := state.OpenPebble(filepath.Join(t.TempDir(), "state"), slog.New(slog.NewTextHandler(io.Discard, nil)), state.Options{MinFreeBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var kv loader.LeaseKV = st
	if got := leasesFor(kv, "hh-7", slog.New(slog.NewTextHandler(io.Discard, nil))).Node(); got != "hh-7" {
		t.Fatalf("node = %q", got)
	}
}
