//go:build pprof

package main

// Built with -tags pprof only (never in a release): HOOKHOUSE_PPROF=127.0.0.1:6060
// serves net/http/pprof there, for CPU profiles of a running server in benchmarks.

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("HOOKHOUSE_PPROF"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
