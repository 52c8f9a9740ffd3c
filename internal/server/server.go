// Package server is the composition root: it builds every part from the Config,
// owns them, opens them in pipeline order and closes them in the same order
// (stop HTTP, stop loading after flushing the open batch, close the warehouse,
// close the log).
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hookhouse/hookhouse/internal/api"
	"github.com/hookhouse/hookhouse/internal/backup"
	"github.com/hookhouse/hookhouse/internal/config"
	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/history"
	"github.com/hookhouse/hookhouse/internal/ingest"
	"github.com/hookhouse/hookhouse/internal/loader"
	"github.com/hookhouse/hookhouse/internal/secretbox"
	"github.com/hookhouse/hookhouse/internal/state"
	"github.com/hookhouse/hookhouse/internal/warehouse"
	"github.com/hookhouse/hookhouse/internal/warehouse/duckdb"
	"github.com/hookhouse/hookhouse/internal/warehouse/postgres"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Version is the build's version, set by main.
var Version = "dev"

// Server is a running hookhouse.
type Server struct {
	cfg    config.Config
	logger *slog.Logger

	// state is Pebble on one node, JetStream in cluster mode (cluster.go).
	state   state.Store
	control *control.Store
	wh      warehouse.Warehouse
	loader  *loader.Loader
	metrics *metrics
	api     *api.API
	web     *dashboard // sessions and pages (web.go)
	history *history.History
	http    *http.Server
	ln      net.Listener

	// HTTPS (tls.go): nil without --tls-cert/--tls-domain and --redirect-http.
	tlsConfig  *tls.Config
	redirect   *http.Server
	redirectLn net.Listener

	// AdminKey is set only on the first start, for the one-time reveal.
	AdminKey string

	bg     sync.WaitGroup
	stopBg chan struct{}

	backupMu sync.Mutex // held while a backup is staged and streamed (backup.go)

	// Cluster mode (cluster.go): nil on a single node.
	cluster *cluster
}

// Open builds and starts everything but the HTTP listener (see Serve).
func Open(ctx context.Context, cfg config.Config, logger *slog.Logger) (*Server, error) {
	s := &Server{cfg: cfg, logger: logger, stopBg: make(chan struct{})}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("server: create data dir: %w", err)
	}
	if err := backup.CheckComplete(cfg.Data); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if err := s.setupTLS(); err != nil {
		return nil, err
	}
	s.metrics = newMetrics(s.allStats)
	// A backup cut off by a crash leaves its staged copy; no backup runs now.
	if err := os.RemoveAll(s.backupDir()); err != nil {
		logger.Warn("could not remove an interrupted backup's staged files", "err", err)
	}
	if cfg.Cluster() {
		if err := s.openCluster(ctx); err != nil { // cluster.go
			return nil, err
		}
	} else {
		st, err := state.OpenPebble(filepath.Join(cfg.Data, "state"), logger.With("component", "log"), state.Options{
			SyncObserver: s.metrics.Sync,
		})
		if err != nil {
			return nil, err
		}
		s.state = st
	}
	st := s.state
	ctl, err := control.Open(st, state.ErrNotFound, logger.With("component", "control"))
	if err != nil {
		s.closeState()
		return nil, err
	}
	s.control = ctl
	if s.cluster != nil {
		s.followControl() // cluster.go: other nodes' changes into the caches
	}
	box, err := secretbox.Load(cfg.Data, cfg.SecretKey)
	if err != nil {
		s.closeState()
		return nil, fmt.Errorf("server: signing secrets key: %w", err)
	}
	if s.cluster != nil {
		if err := ctl.CheckSealer(box); err != nil {
			s.closeState()
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	if err := ctl.SetSealer(box); err != nil {
		s.closeState()
		return nil, err
	}
	if err := s.ensureAdminKey(); err != nil {
		s.closeState()
		return nil, err
	}
	if err := s.openHistory(); err != nil {
		s.closeState()
		return nil, err
	}
	budget := cfg.Budget()
	logger.Info("memory budget", "split", budget.String())
	whLogger := logger.With("component", "warehouse")
	if cfg.Warehouse == "" {
		// The embedded warehouse is a local file: failing to open it at start is
		// fatal. Later, after a fatal DuckDB error, it is opened again.
		open := func(ctx context.Context) (warehouse.Warehouse, error) {
			return duckdb.OpenWith(ctx, filepath.Join(cfg.Data, "warehouse.duckdb"), duckdb.Options{
				MemoryLimit: budget.DuckDB, Threads: budget.DuckDBThreads,
				// Only for a checkpoint at open that does not fit in the
				// pool (see duckdb.Options): a short overshoot of DuckDB's
				// share, taken from the Go heap's.
				RecoveryMemoryLimit: budget.DuckDB + budget.GoHeap/2,
			}, whLogger)
		}
		first, err := open(ctx)
		if err != nil {
			s.closeState()
			return nil, fmt.Errorf("server: open warehouse: %w", err)
		}
		s.wh = &lazyWarehouse{logger: whLogger, retryEvery: time.Second, open: open, broken: duckdb.Invalidated, inner: first}
	} else {
		// A server warehouse may be down at start; accept webhooks meanwhile.
		lazy := &lazyWarehouse{logger: whLogger, retryEvery: time.Second,
			open: func(ctx context.Context) (warehouse.Warehouse, error) {
				return postgres.Open(ctx, cfg.Warehouse, postgres.Options{QueryDSN: cfg.QueryDSN}, whLogger)
			}}
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := lazy.get(octx)
		cancel()
		if err != nil {
			logger.Warn("starting without the warehouse; loading begins when it is reachable", "err", err)
		}
		s.wh = lazy
	}
	// Notes of large loads in progress: a start after a kill during one splits it.
	attemptsDir := filepath.Join(cfg.Data, "loading")
	if err := os.MkdirAll(attemptsDir, 0o700); err != nil {
		s.wh.Close()
		s.closeState()
		return nil, fmt.Errorf("server: create %s: %w", attemptsDir, err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	s.pauseAheadOfLog(pctx) // before loading starts (backup.go)
	pcancel()
	var leases *loader.Leases // nil on a single node: it loads every integration
	if cfg.NATS != "" {
		leases = leasesFor(st, cfg.NodeName, logger) // lease.go
	}
	s.loader = loader.New(st, s.wh, ctl, loader.Options{
		Installation: ctl.Installation(), Leases: leases,
		BatchSize: cfg.BatchSize, BatchWait: cfg.BatchWait, MaxColumns: cfg.MaxColumns,
		Retention: cfg.Retention, Observe: s.metrics, Resets: ctl,
		MaxBatchBytes: int(budget.BatchBytes), AttemptsDir: attemptsDir,
		MaxText: int(budget.DuckDBMaxText),
	}, logger.With("component", "loader"))
	s.loader.Start()
	s.history.Start() // after the loader: it samples the loader's lag
	s.api = &api.API{
		Control: ctl, Stats: s.apiStats, Query: s.wh, PublicURL: cfg.PublicURL,
		Logger: logger.With("component", "api"), Reset: s.reset, Backup: s,
		ImportObserve: s.metrics,
	}
	if imp, ok := st.(api.Importer); ok {
		s.api.Import = imp // Pebble and JetStream both can
	}
	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.ReadTimeout + 30*time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          httpErrorLog(logger.With("component", "http")),
		TLSConfig:         s.tlsConfig,
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.flushLastUsed()
	}()
	return s, nil
}

// closeState closes the state and, in cluster mode, the NATS connection.
func (s *Server) closeState() error {
	err := s.state.Close()
	if s.cluster != nil {
		s.cluster.nc.Close()
	}
	return err
}

// ensureAdminKey creates the admin key on first start and writes it to
// <data>/admin.key (0600) for the CLI on this machine. In cluster mode only the
// node that creates it (the first to start) reveals and writes it; the others
// use its hash from the cluster.
func (s *Server) ensureAdminKey() error {
	key, err := s.control.EnsureAdminKey()
	if err != nil {
		return fmt.Errorf("server: create admin key: %w", err)
	}
	if key == "" {
		if s.cluster != nil {
			if _, err := os.Stat(s.cfg.AdminKeyPath()); errors.Is(err, os.ErrNotExist) {
				s.logger.Info("using the cluster's admin key, minted by the first node to start; for the CLI on this machine, copy admin.key from that node's data dir (or set HOOKHOUSE_ADMIN_KEY)")
			}
		}
		return nil
	}
	s.AdminKey = key
	if err := os.WriteFile(s.cfg.AdminKeyPath(), []byte(key+"\n"), 0o600); err != nil {
		return fmt.Errorf("server: write %s: %w", s.cfg.AdminKeyPath(), err)
	}
	return nil
}

// flushLastUsed writes webhook URLs' last use every few seconds instead of per request.
func (s *Server) flushLastUsed() {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stopBg:
			return
		case <-t.C:
			if err := s.control.FlushLastUsed(); err != nil {
				s.logger.Warn("could not record webhook URL use", "err", err)
			}
		}
	}
}

// Handler is every route.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v1/clients/{id}/token/{token}", &ingest.Handler{
		Auth: s.control, Log: s.state, MaxBody: s.cfg.MaxBody, RetryAfter: 5,
		Logger: s.logger.With("component", "ingest"), Observe: s.metrics,
		Large:    ingest.NewSlots(s.cfg.Budget().LargeSlots),
		Failures: &ingest.FailLimiter{Rate: 2, Burst: 50},
		Verify:   s.control, Dedupe: s.state,
	})
	s.api.Register(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /status.json", s.statusJSON)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	s.registerWeb(mux)
	// Outermost first: the client address behind a trusted proxy (proxy.go), so
	// the request log and the 401 limit see it; HSTS on HTTPS answers (tls.go).
	return s.clientAddress(hsts(s.logRequests(mux)))
}

// Listen binds the listen address and, with --redirect-http, the redirect
// address (Addr and RedirectAddr tell which ports were taken).
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("server: listen on %s: %w", s.cfg.Listen, err)
	}
	if s.redirect != nil {
		rln, err := net.Listen("tcp", s.cfg.RedirectHTTP)
		if err != nil {
			ln.Close()
			return fmt.Errorf("server: --redirect-http: listen on %s: %w", s.cfg.RedirectHTTP, err)
		}
		s.redirectLn = rln
	}
	s.ln = ln
	return nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// RedirectAddr is the bound --redirect-http address, "" without one.
func (s *Server) RedirectAddr() string {
	if s.redirectLn == nil {
		return ""
	}
	return s.redirectLn.Addr().String()
}

// Serve answers HTTP until ctx ends, then shuts everything down in order.
func (s *Server) Serve(ctx context.Context) error {
	if s.ln == nil {
		if err := s.Listen(); err != nil {
			s.Close(context.Background())
			return err
		}
	}
	errc := make(chan error, 2)
	if s.tlsConfig != nil {
		// The certificates come from TLSConfig.GetCertificate. A plain-HTTP
		// request on this port is not served: net/http answers it with a bare
		// 400 "Client sent an HTTP request to an HTTPS server" and closes.
		go func() { errc <- s.http.ServeTLS(s.ln, "", "") }()
	} else {
		go func() { errc <- s.http.Serve(s.ln) }()
	}
	if s.redirectLn != nil {
		go func() { errc <- s.redirect.Serve(s.redirectLn) }()
	}
	scheme := "http"
	if s.tlsConfig != nil {
		scheme = "https"
	}
	s.logger.Info("hookhouse is serving", "addr", s.Addr(), "scheme", scheme, "public_url", s.cfg.PublicURL, "version", Version)
	if s.redirectLn != nil {
		s.logger.Info("redirecting plain HTTP to HTTPS", "addr", s.RedirectAddr())
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownMax)
	defer cancel()
	err := s.Close(sctx)
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return err
}

// Close shuts down in pipeline order within ctx.
func (s *Server) Close(ctx context.Context) error {
	s.logger.Info("shutting down: finishing in-flight requests")
	var errs []error
	if s.redirect != nil {
		// Plain HTTP carries no webhooks: close it at once (and its listener,
		// which Serve may never have taken over).
		s.redirect.Close()
		if s.redirectLn != nil {
			s.redirectLn.Close()
		}
	}
	if s.http != nil {
		// At most half the time for HTTP: Shutdown also waits (up to 5 s) for
		// connections that never sent a request, which must not eat the loader's
		// share. What is still open then is closed; a request cut off that way
		// got no 200, so its sender retries.
		hctx := ctx
		if deadline, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			hctx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(deadline)/2))
			defer cancel()
		}
		if err := s.http.Shutdown(hctx); err != nil {
			s.logger.Warn("closing connections that did not finish in time", "err", err)
			if err := s.http.Close(); err != nil {
				errs = append(errs, fmt.Errorf("http close: %w", err))
			}
		}
	}
	s.logger.Info("flushing the open load batch")
	lerr := s.loader.Close(ctx)
	close(s.stopBg)
	s.bg.Wait()
	if err := s.control.FlushLastUsed(); err != nil {
		errs = append(errs, err)
	}
	if err := s.history.Close(); err != nil {
		errs = append(errs, err)
	}
	if errors.Is(lerr, loader.ErrStillRunning) {
		// Closing storage under a running load would crash it. Both are safe to
		// leave to the process exit: every acknowledged record is fsync'd in the
		// log, and the warehouse keeps only committed batches.
		s.logger.Error("loader workers did not stop in time; leaving the warehouse and the log open for the process exit", "err", lerr)
		return errors.Join(append(errs, lerr)...)
	}
	if err := s.wh.Close(); err != nil {
		errs = append(errs, fmt.Errorf("warehouse close: %w", err))
	}
	if err := s.closeState(); err != nil {
		errs = append(errs, fmt.Errorf("log close: %w", err))
	}
	s.logger.Info("stopped")
	return errors.Join(errs...)
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	if err := s.state.Writable(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "log not writable\n")
		return
	}
	if !s.loader.Running() {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "loader not running\n")
		return
	}
	io.WriteString(w, "ready\n")
}

func (s *Server) apiStats(id int64) api.Stats {
	st := s.loader.Stats(id)
	out := api.Stats{
		RecordsReceived: st.Received, RecordsLoaded: st.Loaded, RecordsRejected: st.Rejected,
		Backlog: st.Backlog, LagSeconds: st.Lag.Seconds(), LoadError: st.Error, Paused: st.Paused,
		Reset: api.NewResetStats(st.Reset),
	}
	if !st.LastReceivedAt.IsZero() {
		t := st.LastReceivedAt.UTC()
		out.LastReceivedAt = &t
	}
	if !st.LastLoadedAt.IsZero() {
		t := st.LastLoadedAt.UTC()
		out.LastLoadedAt = &t
	}
	if _, verifying := s.control.Verifier(id); verifying {
		sig := s.metrics.Signatures(id)
		dedup := s.state.Deduplicated(id)
		out.SignatureFailures, out.RecordsDeduplicated = &sig.Failures, &dedup
		if sig.Failures > 0 {
			out.LastSignatureFailure = &api.Failure{At: sig.LastAt, Reason: sig.Last}
		}
	}
	return out
}

// reset resets an integration (API and dashboard).
func (s *Server) reset(ctx context.Context, id int64, acceptPartial bool) error {
	_, err := s.loader.Reset(ctx, id, acceptPartial)
	return err
}

func (s *Server) allStats() map[int64]loader.Stats {
	out := map[int64]loader.Stats{}
	for _, in := range s.control.AllIntegrations() {
		out[in.ID] = s.loader.Stats(in.ID)
	}
	return out
}
