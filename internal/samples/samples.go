// Package samples finds the real-shaped provider payloads tests use. The source
// of truth is ../shared/testdata/vero beside the checkout; testdata/vero in the
// repository is a verbatim copy (checked by TestCopyIsVerbatim) so that a checkout
// without the shared folder still tests against the same payloads.
package samples

import (
	"os"
	"path/filepath"
	"runtime"
)

// Root is the repository root.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// SharedVeroDir is ../shared/testdata/vero beside the checkout, or "" if absent.
func SharedVeroDir() string {
	if d := os.Getenv("HOOKHOUSE_VERO_SAMPLES"); d != "" {
		return d
	}
	d := filepath.Join(Root(), "..", "shared", "testdata", "vero")
	if _, err := os.Stat(filepath.Join(d, "01-sent.json")); err == nil {
		return d
	}
	return ""
}

// VeroDir is the directory of the Vero samples: the shared one when present,
// else the repository's copy.
func VeroDir() string {
	if d := SharedVeroDir(); d != "" {
		return d
	}
	return filepath.Join(Root(), "testdata", "vero")
}
