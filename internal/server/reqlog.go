package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/hookhouse/hookhouse/internal/ingest"
)

// The request log answers "why did my provider's requests fail?" at the default
// level without letting a flood fill the disk:
//   - every refused webhook request (any answer but 200 on /v1/clients/…) at
//     info, and every 5xx of any route at warn, at most reqlogBurst lines per
//     (integration, client address, status), refilled at one per
//     1/reqlogRate s, and reqlogGlobalBurst lines for all keys together;
//   - lines held back are counted: the key's next line carries suppressed=N,
//     and every reqlogReport the counts not yet reported get lines of their own
//     (also at shutdown);
//   - everything else (successful requests, 404s of other routes) at debug.
//
// Lines hold the masked path, status, the reason the client got, remote
// address (behind a trusted proxy: the client's, with the proxy's as proxy),
// body bytes and duration; never a token or a body value.
const (
	reqlogBurst       = 10
	reqlogRate        = 1.0 / 6
	reqlogGlobalBurst = 100
	reqlogGlobalRate  = 2
	reqlogReport      = time.Minute
	reqlogReportKeys  = 10  // keys with their own "not logged" line per report
	reqlogReasonMax   = 200 // bytes of a reason kept in a line
)

// logRequests wraps next with the request log. Its reporting goroutine stops
// with the server's other background work (stopBg).
func (s *Server) logRequests(next http.Handler) http.Handler {
	rl := &requestLog{
		logger: s.logger.With("component", "http"),
		limit: &ingest.LineLimiter{Rate: reqlogRate, Burst: reqlogBurst,
			GlobalRate: reqlogGlobalRate, GlobalBurst: reqlogGlobalBurst},
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		t := time.NewTicker(reqlogReport)
		defer t.Stop()
		for {
			select {
			case <-s.stopBg:
				rl.reportSuppressed() // HTTP has stopped by now: the counts are final
				return
			case <-t.C:
				rl.reportSuppressed()
			}
		}
	}()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				// The panic value and request could hold a secret: log only its type,
				// the masked path and the stack (which holds no string contents).
				rl.logger.Error("panic while serving a request", "path", ingest.MaskPath(r.URL.Path),
					"panic_type", fmt.Sprintf("%T", v), "stack", string(debug.Stack()))
				if rec.status == http.StatusOK && !rec.wrote {
					http.Error(w, `{"status":"error","message":"internal error"}`, http.StatusInternalServerError)
				}
			}
		}()
		next.ServeHTTP(rec, r)
		if rec.status != http.StatusOK && s.history != nil && strings.HasPrefix(r.URL.Path, "/v1/clients/") {
			// For the charts' non-200 answers, by the integration once its token
			// was accepted (0 before: the id in the path is unproven).
			s.history.Refused(rec.outcome.Integration, rec.status)
		}
		rl.log(r, rec, time.Since(start))
	})
}

type requestLog struct {
	logger *slog.Logger
	limit  *ingest.LineLimiter
}

func (rl *requestLog) log(r *http.Request, rec *statusRecorder, took time.Duration) {
	ctx := r.Context()
	webhook := strings.HasPrefix(r.URL.Path, "/v1/clients/")
	level, msg := slog.LevelDebug, "request"
	switch {
	case rec.status >= 500:
		level, msg = slog.LevelWarn, "request failed"
	case webhook && rec.status != http.StatusOK:
		level, msg = slog.LevelInfo, "webhook request refused"
	}
	if !rl.logger.Enabled(ctx, level) { // skip building the attributes per request when off
		return
	}
	var suppressed int64
	if level > slog.LevelDebug {
		ok := false
		ok, suppressed = rl.limit.Allow(ingest.LineKey{Integration: rec.outcome.Integration,
			Addr: clientHost(r.RemoteAddr), Status: rec.status}, time.Now())
		if !ok {
			return
		}
	}
	attrs := make([]slog.Attr, 0, 10)
	attrs = append(attrs, slog.String("method", r.Method), slog.String("path", ingest.MaskPath(r.URL.Path)),
		slog.Int("status", rec.status))
	if reason := rec.reason(); reason != "" {
		attrs = append(attrs, slog.String("reason", reason))
	}
	if rec.outcome.Integration > 0 {
		attrs = append(attrs, slog.Int64("integration", rec.outcome.Integration))
	}
	bytes := r.ContentLength
	if rec.reported {
		bytes = rec.outcome.Bytes
	}
	attrs = append(attrs, slog.String("remote", r.RemoteAddr))
	if p := proxyOf(r); p != "" {
		// remote is the client a trusted proxy named (proxy.go); this is the proxy.
		attrs = append(attrs, slog.String("proxy", p))
	}
	attrs = append(attrs, slog.Int64("bytes", bytes), slog.Duration("duration", took.Round(time.Microsecond)))
	if suppressed > 0 {
		attrs = append(attrs, slog.Int64("suppressed", suppressed))
	}
	rl.logger.LogAttrs(ctx, level, msg, attrs...)
}

// reportSuppressed writes the counts of held-back lines that no later line of
// their key has reported: one line per key for the largest, one for the rest.
func (rl *requestLog) reportSuppressed() {
	top, rest, restKeys := rl.limit.TakeSuppressed(reqlogReportKeys)
	for _, s := range top {
		level := slog.LevelInfo
		if s.Key.Status >= 500 {
			level = slog.LevelWarn
		}
		attrs := []slog.Attr{slog.Int("status", s.Key.Status), slog.String("remote", s.Key.Addr)}
		if s.Key.Integration > 0 {
			attrs = append(attrs, slog.Int64("integration", s.Key.Integration))
		}
		attrs = append(attrs, slog.Int64("suppressed", s.Lines))
		rl.logger.LogAttrs(context.Background(), level, "request log lines suppressed by the rate limit", attrs...)
	}
	if rest > 0 {
		rl.logger.Info("request log lines suppressed by the rate limit", "suppressed", rest,
			"other_keys", restKeys)
	}
}

// clientHost is the address without its port: a client's connections share a key.
func clientHost(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}

// statusRecorder keeps the status written and, for webhook requests, the
// ingest handler's Outcome (ingest.Reporter).
type statusRecorder struct {
	http.ResponseWriter
	status   int
	wrote    bool
	outcome  ingest.Outcome
	reported bool
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.wrote = true
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *statusRecorder) ReportOutcome(o ingest.Outcome) {
	r.outcome = o
	r.reported = true
}

// reason is the refusal's reason as the client got it, cut to reqlogReasonMax
// bytes; the status text when the handler gave none (a 404 of the mux).
func (r *statusRecorder) reason() string {
	if r.status == http.StatusOK {
		return ""
	}
	reason := r.outcome.Reason
	if reason == "" {
		reason = strings.ToLower(http.StatusText(r.status))
	}
	if len(reason) > reqlogReasonMax {
		reason = strings.ToValidUTF8(reason[:reqlogReasonMax], "") + "…"
	}
	return reason
}
