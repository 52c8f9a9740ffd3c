// Package samples finds the real-shaped provider payloads tests and the
// benchmark use. The source of truth is ../shared/testdata/vero beside the
// checkout when it is there; testdata/vero in the repository is a verbatim copy
// (checked by TestCopyIsVerbatim), so a fresh clone without the shared folder
// tests and benchmarks against the same payloads.
package samples

import (
	"os"
	"path/filepath"
	"runtime"
)

// Root is the repository root: the directory of this source file's module, or,
// when the binary was built elsewhere or with -trimpath, the nearest directory
// holding go.mod upwards from the working directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	if exists(filepath.Join(root, "go.mod")) {
		return root
	}
	wd, err := os.Getwd()
	if err != nil {
		return root
	}
	for d := wd; ; d = filepath.Dir(d) {
		if exists(filepath.Join(d, "go.mod")) {
			return d
		}
		if filepath.Dir(d) == d {
			return root
		}
	}
}

// SharedVeroDir is $HOOKHOUSE_VERO_SAMPLES when set, else
// ../shared/testdata/vero beside the checkout, or "" if absent.
func SharedVeroDir() string {
	if d := os.Getenv("HOOKHOUSE_VERO_SAMPLES"); d != "" {
		return d
	}
	return sharedVeroDir(Root())
}

// VeroDir is the directory of the Vero samples: the shared one when present,
// else the repository's copy, testdata/vero.
func VeroDir() string {
	if d := os.Getenv("HOOKHOUSE_VERO_SAMPLES"); d != "" {
		return d
	}
	return veroDir(Root())
}

func veroDir(root string) string {
	if d := sharedVeroDir(root); d != "" {
		return d
	}
	return filepath.Join(root, "testdata", "vero")
}

func sharedVeroDir(root string) string {
	d := filepath.Join(root, "..", "shared", "testdata", "vero")
	if exists(filepath.Join(d, "01-sent.json")) {
		return d
	}
	return ""
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
