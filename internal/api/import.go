package api

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hookhouse/hookhouse/internal/ingest"
)

// Backfill imports (hookhouse import): POST /api/v1/integrations/{id}/import
// takes one chunk of an import as NDJSON and appends its records in one
// durable write together with a claim on the chunk's id, so that a chunk sent
// again (a rerun after an interruption, a retry whose answer was lost) adds
// nothing. The CLI cuts the file into chunks and names each by the SHA-256 of
// the file's content up to the chunk's end.
const (
	// MaxImportChunkBytes bounds one chunk's body; the CLI sends at most
	// half of it (plus one record that is larger on its own).
	MaxImportChunkBytes = 16 << 20
	// MaxImportChunkRecords bounds one chunk's records.
	MaxImportChunkRecords = 50_000
	// ImportWindow is how long a chunk id stays claimed: an import run again
	// within it loads nothing twice.
	ImportWindow = 400 * 24 * time.Hour
	// importSlots is how many chunks are handled at once; others wait their
	// turn, so the memory chunks take is bounded.
	importSlots = 2
)

// Importer appends an import chunk once (state.Importer, whose contract this is).
type Importer interface {
	AppendOnceAt(ctx context.Context, integration int64, now time.Time, receivedAt []time.Time, importID string, window time.Duration, bodies [][]byte) (first uint64, duplicate bool, err error)
}

// importBounded is an Importer whose one write holds a bounded number of
// bytes (JetStream: one NATS message, under the servers' max_payload). A
// record takes its body's length plus overhead.
type importBounded interface {
	MaxAppendBytes() int
}

// ImportLimits is the answer to GET /api/v1/integrations/{id}/import: how
// large a chunk this server takes. The CLI cuts its chunks to fit.
type ImportLimits struct {
	// MaxChunkBytes bounds a chunk's body (its records, one per line).
	MaxChunkBytes int `json:"max_chunk_bytes"`
	// MaxChunkRecords bounds a chunk's records.
	MaxChunkRecords int `json:"max_chunk_records"`
	// ClaimWindowSeconds is how long a chunk id stays claimed: a chunk sent
	// again within it adds nothing.
	ClaimWindowSeconds int64 `json:"claim_window_seconds"`
}

// importLimits returns the limits of a chunk on this server. On a bounded
// store (a cluster) a chunk of MaxChunkRecords records of MaxChunkBytes of
// body in all fits one write: the body counts one newline per record, a write
// recordOverhead bytes.
func (a *API) importLimits() ImportLimits {
	l := ImportLimits{MaxChunkBytes: MaxImportChunkBytes, MaxChunkRecords: MaxImportChunkRecords,
		ClaimWindowSeconds: int64(ImportWindow / time.Second)}
	if w, ok := a.Import.(interface{ DedupeWindow() time.Duration }); ok && w.DedupeWindow() < ImportWindow {
		l.ClaimWindowSeconds = int64(w.DedupeWindow() / time.Second)
	}
	if b, ok := a.Import.(importBounded); ok {
		max := b.MaxAppendBytes()
		l.MaxChunkRecords = min(MaxImportChunkRecords, max/(4*importRecordOverhead))
		l.MaxChunkBytes = min(MaxImportChunkBytes, max-(importRecordOverhead-1)*l.MaxChunkRecords)
	}
	return l
}

// importRecordOverhead is what a record takes in a bounded store's write
// beyond its body (state.RecordOverhead on JetStream).
const importRecordOverhead = 28

func (a *API) getImportLimits(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.integration(w, r); !ok {
		return
	}
	if a.Import == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "this server cannot import backfills")
		return
	}
	writeJSON(w, http.StatusOK, a.importLimits())
}

// ImportResult is the answer to one import chunk.
type ImportResult struct {
	// Records is how many records this request stored (0 for a duplicate).
	Records int `json:"records"`
	// Duplicate: this chunk was stored before; nothing was stored now.
	Duplicate bool `json:"duplicate"`
	// FirstPosition is the log position of the first record stored.
	FirstPosition uint64 `json:"first_position,omitempty"`
}

func (a *API) importChunk(w http.ResponseWriter, r *http.Request) {
	in, ok := a.integration(w, r)
	if !ok {
		return
	}
	if a.Import == nil {
		// Not a passing state: retrying would not help.
		writeError(w, http.StatusNotImplemented, "not_implemented", "this server cannot import backfills")
		return
	}
	chunk := strings.ToLower(r.URL.Query().Get("chunk"))
	if b, err := hex.DecodeString(chunk); err != nil || len(b) != 32 {
		writeError(w, http.StatusBadRequest, "invalid", "query parameter chunk must be the chunk's id, 64 hex characters")
		return
	}
	field := r.URL.Query().Get("received_at")
	if r.ContentLength > MaxImportChunkBytes {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("an import chunk may have at most %d bytes", MaxImportChunkBytes))
		return
	}
	// One slot per chunk in work, so at most importSlots bodies are held.
	select {
	case a.importSlots() <- struct{}{}:
		defer func() { <-a.importSlots() }()
	case <-r.Context().Done():
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxImportChunkBytes+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", "could not read the request body")
		return
	}
	if len(body) > MaxImportChunkBytes {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("an import chunk may have at most %d bytes", MaxImportChunkBytes))
		return
	}
	now := time.Now()
	lines := bytes.Count(body, []byte{'\n'}) + 1
	records := make([][]byte, 0, min(lines, MaxImportChunkRecords))
	times := make([]time.Time, 0, cap(records))
	line := 0
	for rest := body; len(rest) > 0; {
		var l []byte
		l, rest, _ = bytes.Cut(rest, []byte{'\n'})
		line++
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		if len(records) == MaxImportChunkRecords {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", "an import chunk may have at most "+strconv.Itoa(MaxImportChunkRecords)+" records")
			return
		}
		rec, at, err := ingest.ImportRecord(l, field)
		if err != nil {
			// Nothing of the chunk is stored.
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("line %d of the chunk: %v; nothing of this chunk was stored", line, err))
			return
		}
		if field == "" {
			at = now
		}
		records = append(records, rec)
		times = append(times, at)
	}
	if len(records) == 0 {
		writeJSON(w, http.StatusOK, ImportResult{})
		return
	}
	if b, ok := a.Import.(importBounded); ok {
		size := 0
		for _, rec := range records {
			size += len(rec) + importRecordOverhead
		}
		if max := b.MaxAppendBytes(); size > max {
			l := a.importLimits()
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf(
				"this chunk's %d records take %d bytes in one NATS message; on this cluster a chunk may take at most %d "+
					"(the NATS servers' max_payload less room for headers; a record takes its length plus %d): "+
					"send chunks of at most %d bytes and %d records (hookhouse import cuts them so itself; a single record larger than that cannot be stored on this cluster); nothing of this chunk was stored",
				len(records), size, max, importRecordOverhead, l.MaxChunkBytes, l.MaxChunkRecords))
			return
		}
	}
	first, dup, err := a.Import.AppendOnceAt(r.Context(), in.ID, now, times, "import:"+chunk, ImportWindow, records)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return // the client is gone
		}
		a.Logger.Warn("import chunk refused", "integration", in.ID, "records", len(records), "err", err)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "hookhouse cannot store records right now (disk full, shutting down, or the NATS cluster unreachable); retry later")
		return
	}
	if dup {
		writeJSON(w, http.StatusOK, ImportResult{Duplicate: true})
		return
	}
	if a.ImportObserve != nil {
		a.ImportObserve.Accepted(in.ID, len(records))
	}
	writeJSON(w, http.StatusOK, ImportResult{Records: len(records), FirstPosition: first})
}

// importSlots returns the semaphore of chunks in work, made on first use.
func (a *API) importSlots() chan struct{} {
	a.importOnce.Do(func() { a.importSem = make(chan struct{}, importSlots) })
	return a.importSem
}
