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
	// The log's fsync loop needs a second P: with GOMAXPROCS=1 ack latency explodes.
	if runtime.GOMAXPROCS(0) < 2 {
		runtime.GOMAXPROCS(2)
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

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
