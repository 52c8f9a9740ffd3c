// Package ingest is the webhook endpoint, POST /v1/clients/{id}/token/{token}
// (SPEC §4): token check, limits, JSON validation, a durable append, then the answer.
package ingest

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hookhouse/hookhouse/internal/verify"
)

// Authenticator checks a token against an integration (control.Store). An
// error means it cannot tell now (in cluster mode: its cache may be behind
// and the cluster cannot be asked): the request is answered 503, never
// accepted.
type Authenticator interface {
	Authorize(integration int64, token string, now time.Time) (bool, error)
}

// Appender stores records durably (state.Pebble); it returns only once they are on disk.
type Appender interface {
	Append(ctx context.Context, integration int64, receivedAt time.Time, bodies [][]byte) (uint64, error)
}

// Observer is told the outcome of each request (metrics); may be nil.
type Observer interface {
	Request(status int)
	Accepted(integration int64, records int)
	// SignatureFailed is told of each delivery that did not verify (in monitor
	// mode too), with the reason for stats and logs (never sent to clients).
	SignatureFailed(integration int64, code verify.Code, reason string)
	// Deduplicated is told of each redelivery answered without a new row.
	Deduplicated(integration int64)
}

// Verifiers gives each integration's signature verifier (control.Store).
type Verifiers interface {
	// Verifier returns the integration's verifier; verifying false: it does
	// not verify. A verifying integration without a usable verifier (nil)
	// refuses every delivery.
	Verifier(integration int64) (v *verify.Verifier, verifying bool)
	// DedupeWindow is how long the integration's delivery ids count as seen.
	DedupeWindow(integration int64) time.Duration
}

// Deduper appends a delivery's records unless the integration already
// accepted its id (state.Deduper, whose contract this is).
type Deduper interface {
	AppendOnce(ctx context.Context, integration int64, receivedAt time.Time, deliveryID string, window time.Duration, bodies [][]byte) (first uint64, duplicate bool, err error)
}

// Outcome is what a request log needs to know about one webhook request.
type Outcome struct {
	// Integration is the integration the request was for, once its token was
	// accepted; 0 before (a refused token proves nothing about the id in the path).
	Integration int64
	// Reason is the message the client got with a refusal ("" for a 200). It
	// never holds a token or a value from the body.
	Reason string
	// Bytes is how many body bytes were read (after gzip decoding), or the
	// declared Content-Length when the body was not read (-1: unknown).
	Bytes int64
}

// Reporter is implemented by a ResponseWriter that wants each request's
// Outcome (the server's request log); ServeHTTP calls it once, after answering.
type Reporter interface {
	ReportOutcome(Outcome)
}

// Handler serves the webhook endpoint.
type Handler struct {
	Auth    Authenticator
	Log     Appender
	MaxBody int64
	Logger  *slog.Logger
	Observe Observer
	// RetryAfter is the Retry-After seconds sent with 503s.
	RetryAfter int
	// Large bounds how many bodies over 1 MiB are buffered at once (nil: no bound).
	Large Slots
	// Failures rate-limits 401s per client address (nil: no limit).
	Failures *FailLimiter
	// Verify checks signatures of integrations that verify (nil: none do);
	// Dedupe drops their redeliveries (nil: no dedupe).
	Verify Verifiers
	Dedupe Deduper

	bufs sync.Pool
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o := Outcome{Bytes: r.ContentLength}
	status := h.serve(w, r, &o)
	if h.Observe != nil {
		h.Observe.Request(status)
	}
	if rep, ok := w.(Reporter); ok {
		rep.ReportOutcome(o)
	}
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, o *Outcome) int {
	if r.Method == http.MethodGet {
		if status, ok := h.getHandshake(w, r, o); ok {
			return status
		}
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return o.fail(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed: webhooks must be sent with POST")
	}
	now := time.Now()
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	ok := false
	if err == nil && id > 0 {
		if ok, err = h.Auth.Authorize(id, r.PathValue("token"), now); err != nil {
			h.Logger.Warn("cannot check a webhook URL now", "integration", id, "err", err)
			w.Header().Set("Retry-After", strconv.Itoa(max(h.RetryAfter, 1)))
			return o.fail(w, http.StatusServiceUnavailable, "hookhouse cannot check webhook URLs right now; retry later")
		}
	}
	if !ok {
		if !h.Failures.Allow(r, now) {
			w.Header().Set("Retry-After", "10")
			return o.fail(w, http.StatusTooManyRequests, "too many requests with unknown or revoked webhook URLs from this address; slow down")
		}
		return o.fail(w, http.StatusUnauthorized, "unknown or revoked webhook URL")
	}
	o.Integration = id
	if ct := r.Header.Get("Content-Type"); ct != "" && !isJSON(ct) {
		return o.fail(w, http.StatusUnsupportedMediaType, "Content-Type "+strconv.Quote(ct)+" is not JSON: send application/json")
	}
	if r.ContentLength > h.MaxBody && !isGzip(r) {
		return h.tooLarge(w, o)
	}
	body := r.Body
	if isGzip(r) {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return o.fail(w, http.StatusBadRequest, "Content-Encoding is gzip but the body is not valid gzip")
		}
		defer zr.Close()
		body = zr
	} else if enc := r.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
		return o.fail(w, http.StatusUnsupportedMediaType, "Content-Encoding "+strconv.Quote(enc)+" is not supported: send gzip or no encoding")
	}
	buf := h.getBuf()
	defer h.putBuf(buf)
	data, err := h.readBody(w, r, now, body, buf)
	if errors.Is(err, errTooLarge) {
		o.Bytes = h.MaxBody + 1 // readLimited stops at the first byte past the limit
		return h.tooLarge(w, o)
	}
	if errors.Is(err, errBusy) {
		w.Header().Set("Retry-After", strconv.Itoa(max(h.RetryAfter, 1)))
		w.Header().Set("Connection", "close")
		return o.fail(w, http.StatusServiceUnavailable, "too many large requests at once; retry later")
	}
	if err != nil {
		return o.fail(w, http.StatusBadRequest, "could not read the request body: "+bodyErr(err))
	}
	*buf = data
	o.Bytes = int64(len(data))
	deliveryID := ""
	if h.Verify != nil {
		if v, verifying := h.Verify.Verifier(id); verifying {
			var status int
			if deliveryID, status = h.verify(w, r, o, v, id, data, now); status != 0 {
				return status // refused, or a handshake answered
			}
		}
	}
	records, err := Split(data)
	if err != nil {
		return o.fail(w, http.StatusBadRequest, "invalid JSON: "+err.Error())
	}
	if len(records) > 0 && deliveryID != "" && h.Dedupe != nil {
		_, dup, err := h.Dedupe.AppendOnce(r.Context(), id, now, deliveryID, h.Verify.DedupeWindow(id), records)
		if err != nil {
			h.Logger.Warn("append refused", "integration", id, "records", len(records), "err", err)
			w.Header().Set("Retry-After", strconv.Itoa(max(h.RetryAfter, 1)))
			return o.fail(w, http.StatusServiceUnavailable, "hookhouse cannot store events right now; retry later")
		}
		if dup {
			if h.Observe != nil {
				h.Observe.Deduplicated(id)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, `{"status":"ok","records":0,"duplicates":1}`+"\n")
			return http.StatusOK
		}
		if h.Observe != nil {
			h.Observe.Accepted(id, len(records))
		}
	} else if len(records) > 0 {
		if _, err := h.Log.Append(r.Context(), id, now, records); err != nil {
			h.Logger.Warn("append refused", "integration", id, "records", len(records), "err", err)
			w.Header().Set("Retry-After", strconv.Itoa(max(h.RetryAfter, 1)))
			return o.fail(w, http.StatusServiceUnavailable, "hookhouse cannot store events right now; retry later")
		}
		if h.Observe != nil {
			h.Observe.Accepted(id, len(records))
		}
	}
	// The header value is shared and never changed: net/http copies the header
	// when writing it, so setting it costs no allocation per request.
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusOK)
	if len(records) == 1 { // the usual webhook: one event
		w.Write(okOneRecord)
		return http.StatusOK
	}
	answer := strconv.AppendInt(append(make([]byte, 0, 40), `{"status":"ok","records":`...), int64(len(records)), 10)
	w.Write(append(answer, "}\n"...))
	return http.StatusOK
}

var (
	jsonContentType = []string{"application/json"}
	okOneRecord     = []byte(`{"status":"ok","records":1}` + "\n")
)

func (h *Handler) tooLarge(w http.ResponseWriter, o *Outcome) int {
	// Don't read the rest: close the connection after answering.
	w.Header().Set("Connection", "close")
	return o.fail(w, http.StatusRequestEntityTooLarge, "body larger than the limit of "+HumanSize(h.MaxBody)+" (after gzip decoding)")
}

// HumanSize writes a byte count the way --max-body takes it, with a space:
// "20 MiB", "512 KiB", "1.5 MiB", "100 bytes".
func HumanSize(n int64) string {
	units := []struct {
		name string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}
	for _, u := range units {
		if n >= u.size {
			if n%u.size == 0 {
				return strconv.FormatInt(n/u.size, 10) + " " + u.name
			}
			return strconv.FormatFloat(float64(n)/float64(u.size), 'f', 1, 64) + " " + u.name
		}
	}
	if n == 1 {
		return "1 byte"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

func (h *Handler) getBuf() *[]byte {
	if b, ok := h.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 64<<10)
	return &b
}

func (h *Handler) putBuf(b *[]byte) {
	if cap(*b) <= 1<<20 { // keep small buffers only, so big bodies don't pin memory
		*b = (*b)[:0]
		h.bufs.Put(b)
	}
}

var errTooLarge = errors.New("body too large")

// readBody reads the body within the size limit, taking a large-body slot (kept
// until the request ends) once it passes 1 MiB.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, start time.Time, body io.Reader, buf *[]byte) ([]byte, error) {
	ctx := r.Context()
	held := false
	data, err := readLimited(body, h.MaxBody, buf, func() error {
		waitStart := time.Now()
		if err := h.Large.acquire(ctx, 30*time.Second); err != nil {
			return err
		}
		held = true
		extendDeadlines(w, r, start, time.Since(waitStart))
		return nil
	})
	if held {
		// Released when the request is done with the bytes (after the append).
		context.AfterFunc(ctx, h.Large.release)
	}
	return data, err
}

// extendDeadlines gives a request that now holds a large-body slot a fresh
// --read-timeout (and write timeout) from now for the rest of its body, or
// moves them out by the time it waited for the slot when that is later. The
// wait, and reading the other large bodies on a busy machine, are the server's
// doing: without this, a client sending at full speed would have its body read
// cut off by --read-timeout and get a 400 it must not retry, instead of a 200.
// A client trickling its body is still cut off: it gets at most the timeout for
// its first MiB and the timeout again for the rest.
func extendDeadlines(w http.ResponseWriter, r *http.Request, start time.Time, waited time.Duration) {
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	if srv == nil {
		return
	}
	now := time.Now()
	later := func(timeout time.Duration) time.Time {
		d := start.Add(timeout + waited)
		if fresh := now.Add(timeout); fresh.After(d) {
			return fresh
		}
		return d
	}
	rc := http.NewResponseController(w)
	if srv.ReadTimeout > 0 {
		_ = rc.SetReadDeadline(later(srv.ReadTimeout))
	}
	if srv.WriteTimeout > 0 {
		_ = rc.SetWriteDeadline(later(srv.WriteTimeout))
	}
}

// readLimited reads r into buf, growing it, and fails with errTooLarge as soon as
// more than limit bytes arrive, without reading further. onLarge is called once
// when the body grows past largeBody.
func readLimited(r io.Reader, limit int64, buf *[]byte, onLarge func() error) ([]byte, error) {
	b := (*buf)[:0]
	large := false
	for {
		if !large && len(b) > largeBody && onLarge != nil {
			large = true
			if err := onLarge(); err != nil {
				return nil, err
			}
		}
		if len(b) == cap(b) {
			grow := cap(b)
			if grow < 4096 {
				grow = 4096
			}
			if int64(cap(b)+grow) > limit+1 {
				grow = int(limit+1) - cap(b)
				if grow <= 0 {
					grow = 1
				}
			}
			b = append(b, make([]byte, grow)...)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if int64(len(b)) > limit {
			return nil, errTooLarge
		}
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func bodyErr(err error) string {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return "too large"
	case errors.Is(err, gzip.ErrChecksum), errors.Is(err, gzip.ErrHeader), errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated or corrupt body"
	case errors.Is(err, context.DeadlineExceeded), strings.Contains(err.Error(), "timeout"):
		return "timed out"
	}
	return "connection error"
}

func isGzip(r *http.Request) bool {
	return strings.EqualFold(strings.TrimSpace(r.Header.Get("Content-Encoding")), "gzip")
}

func isJSON(ct string) bool {
	if ct == "application/json" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")
}

// fail writes {"status":"error","message":…} and keeps msg as the request's
// reason for the request log.
func (o *Outcome) fail(w http.ResponseWriter, status int, msg string) int {
	o.Reason = msg
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(struct {
		Status  string `json:"status"`
		Message string `json:"message"`
	}{"error", msg})
	w.Write(append(b, '\n'))
	return status
}

// MaskPath hides the token in a webhook path for logs: /v1/clients/7/token/****abcd.
func MaskPath(path string) string {
	const marker = "/token/"
	i := strings.Index(path, marker)
	if !strings.HasPrefix(path, "/v1/clients/") || i < 0 {
		return path
	}
	tok := path[i+len(marker):]
	hint := ""
	if len(tok) >= 4 && len(tok) == 64 {
		hint = tok[len(tok)-4:]
	}
	return path[:i+len(marker)] + "****" + hint
}
