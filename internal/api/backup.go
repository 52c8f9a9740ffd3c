package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/hookhouse/hookhouse/internal/backup"
)

// Snapshotter stages a consistent backup of the running server (server.Server).
type Snapshotter interface {
	// Snapshot stages the backup; the caller streams it and then calls its
	// Release. It returns backup.ErrRunning while another backup runs.
	Snapshot(ctx context.Context) (*backup.Snapshot, error)
}

// BackupSizeHeader carries the size of the backup's files, for progress.
const BackupSizeHeader = "X-Hookhouse-Backup-Bytes"

// backup: POST /api/v1/backup answers a tar of a consistent snapshot (see
// server.Snapshot and package backup), manifest.json last. Errors before the
// first byte are JSON; a failure while streaming cuts the stream, which the
// receiver sees as a backup without its manifest.
func (a *API) backup(w http.ResponseWriter, r *http.Request) {
	if a.Backup == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "this server cannot take backups")
		return
	}
	// A big warehouse takes longer to copy and send than the server's write
	// timeout allows for ordinary answers.
	if err := http.NewResponseController(w).SetWriteDeadline(time.Time{}); err != nil {
		a.Logger.Warn("backup: cannot lift the write deadline; a long backup may be cut off", "err", err)
	}
	start := time.Now()
	snap, err := a.Backup.Snapshot(r.Context())
	if errors.Is(err, backup.ErrRunning) {
		writeError(w, http.StatusConflict, "conflict", err.Error())
		return
	}
	if errors.Is(err, backup.ErrCluster) {
		writeError(w, http.StatusNotImplemented, "not_implemented", err.Error())
		return
	}
	if err != nil {
		a.Logger.Error("backup failed", "err", err)
		writeError(w, http.StatusInternalServerError, "backup_failed", "the backup could not be taken: "+err.Error())
		return
	}
	defer snap.Release()
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set(BackupSizeHeader, strconv.FormatInt(snap.Bytes(), 10))
	w.WriteHeader(http.StatusOK)
	if err := backup.WriteTar(r.Context(), w, snap); err != nil {
		a.Logger.Error("backup: streaming stopped; the client's copy is incomplete and has no manifest", "err", err)
		return
	}
	a.Logger.Info("backup sent", "bytes", snap.Bytes(), "files", len(snap.Files), "took", time.Since(start).Round(time.Millisecond))
}
