package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/hookhouse/hookhouse/internal/config"
	"github.com/hookhouse/hookhouse/internal/server"
)

// runServe is `hookhouse serve`: the whole service on the embedded defaults
// unless flags or HOOKHOUSE_* env say otherwise. It returns when ctx ends
// (SIGINT/SIGTERM) after a graceful shutdown.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := config.Parse(args, config.Env, stdout)
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stderr)
	if n := serveProcs(runtime.GOMAXPROCS(0), os.Getenv("GOMAXPROCS") != ""); n != runtime.GOMAXPROCS(0) {
		runtime.GOMAXPROCS(n)
	}
	// The Go heap's share of --memory-limit (config.Budget) is its soft limit:
	// big bodies are short-lived garbage, and the limit makes the GC return it
	// promptly instead of letting the heap double. GOMEMLIMIT overrides it.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(cfg.Budget().GoHeap)
	}
	server.Version = buildVersion()
	logger.Info("starting hookhouse", "version", server.Version, "config", cfg.String())
	srv, err := server.Open(ctx, cfg, logger)
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		srv.Close(context.Background())
		return err
	}
	if srv.AdminKey != "" {
		// The one-time reveal: on stdout, never through the logger.
		fmt.Fprintf(stdout, "\nAdmin key (shown once; also saved to %s, mode 0600):\n\n    %s\n\nThe CLI on this machine reads it from there. Dashboard: %s/\n\n",
			cfg.AdminKeyPath(), srv.AdminKey, cfg.PublicURL)
		srv.AdminKey = ""
	}
	return srv.Serve(ctx)
}

// spareProcs is how many Ps serve adds to Go's default GOMAXPROCS (the CPUs it
// may use). Two goroutines spend long stretches outside Go: the loader in
// DuckDB's C code (a COMMIT or an Appender flush takes milliseconds) and the
// log's fsync. Each holds its P until the runtime's monitor takes it back,
// 20 µs to 10 ms later, while requests wait behind it; and each needs a free P
// the moment it returns, or it waits in the global run queue with the log's
// commit stalled behind it. Two spare Ps cover both. Measured with wrk -t2 -c64
// on 2 cores (docs/performance.md, "fourth pass"): 0.38–0.40 of the trivial
// handler against 0.31–0.36 with GOMAXPROCS at the default.
const spareProcs = 2

// serveProcs is the GOMAXPROCS serve runs with, given Go's default (which
// follows the CPU affinity and a container's CPU limit) and whether the
// GOMAXPROCS environment variable set it. serve needs at least 2 (the log's
// fsync loop and the requests). The spare Ps are added from 2 CPUs up: on one
// CPU they measured no better than 2 Ps (10,330–11,960 req/s against
// 9,975–12,459, and one run of 3 Ps fell to 7,629), as Ps with nothing to
// run spin on the only core. An explicit setting is kept.
func serveProcs(def int, fromEnv bool) int {
	if fromEnv || def < 2 {
		return max(def, 2)
	}
	return def + spareProcs
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
