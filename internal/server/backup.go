package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/hookhouse/hookhouse/internal/backup"
	"github.com/hookhouse/hookhouse/internal/secretbox"
	"github.com/hookhouse/hookhouse/internal/state"
	"github.com/hookhouse/hookhouse/internal/warehouse"
	"github.com/hookhouse/hookhouse/internal/warehouse/duckdb"
)

// Snapshot stages a consistent backup of the running server in
// <data>/backup.tmp (the API streams it, then calls Release, which removes it):
//
//  1. trims of the log are held (state.HoldTrims), so no record leaves the
//     log until step 3;
//  2. the embedded warehouse is copied by DuckDB in one transaction
//     (duckdb.DB.Backup); the copy holds load positions P. With PostgreSQL
//     nothing is copied and P is PostgreSQL's position now;
//  3. the log is checkpointed (state.Pebble.Checkpoint): it holds everything
//     accepted before, and since nothing was trimmed after step 1, every
//     record after P. CheckpointHeads checks exactly that on the copy;
//  4. secret.key, admin.key and the certs/ cache (if any) are copied.
//
// Receiving and loading go on throughout. A restore of the snapshot loads the
// records P+1..head from its log into its warehouse copy: each record once.
// Only one backup runs at a time (backup.ErrRunning).
//
// In cluster mode there is nothing local to copy: it answers backup.ErrCluster.
func (s *Server) Snapshot(ctx context.Context) (_ *backup.Snapshot, err error) {
	log, ok := s.state.(*state.Pebble)
	if !ok || s.cluster != nil {
		return nil, backup.ErrCluster
	}
	if !s.backupMu.TryLock() {
		return nil, backup.ErrRunning
	}
	dir := s.backupDir()
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
			s.backupMu.Unlock()
		}
	}()
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("remove the last backup's leftovers: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("stage the backup: %w", err)
	}
	start := time.Now()
	m := backup.Manifest{Format: backup.Format, Version: Version, CreatedAt: start.UTC(),
		Installation: s.control.Installation(), Warehouse: backup.WarehouseDuckDB}
	integrations := s.control.AllIntegrations()

	release := log.HoldTrims()
	var states map[int64]warehouse.State
	if s.cfg.Warehouse == "" {
		lw, ok := s.wh.(*lazyWarehouse)
		if !ok {
			release()
			return nil, fmt.Errorf("the warehouse %T cannot copy itself", s.wh)
		}
		states, err = lw.backup(ctx, filepath.Join(dir, "warehouse.duckdb"))
		if err != nil {
			release()
			return nil, fmt.Errorf("copy the warehouse: %w", err)
		}
	} else {
		m.Warehouse = backup.WarehousePostgres
		// Only for the manifest: the backup does not hold PostgreSQL's data.
		states, err = s.wh.LoadState(ctx)
		if err != nil {
			s.logger.Warn("backup: cannot read PostgreSQL's load positions; the manifest leaves them out", "err", err)
			states, err = nil, nil
		}
	}
	err = log.Checkpoint(filepath.Join(dir, "state"))
	release()
	if err != nil {
		return nil, err
	}
	copied := time.Now()

	loaded := map[int64]uint64{}
	for id, st := range states {
		if st.Installation == "" || st.Installation == m.Installation {
			loaded[id] = st.Position
		}
	}
	check := loaded
	if s.cfg.Warehouse != "" {
		check = nil // PostgreSQL's position is not the backup's: it moves on
	}
	heads, err := state.CheckpointHeads(filepath.Join(dir, "state"), s.logger.With("component", "backup"), check)
	if err != nil {
		return nil, fmt.Errorf("the staged backup is not consistent: %w", err)
	}
	for _, in := range integrations {
		bi := backup.Integration{ID: in.ID, Name: in.Name, Schema: in.Schema, Received: heads[in.ID].Position, Deleted: in.DeletedAt != nil}
		if pos, ok := loaded[in.ID]; ok {
			bi.Loaded = &pos
		} else if states != nil {
			var zero uint64
			bi.Loaded = &zero
		}
		m.Integrations = append(m.Integrations, bi)
	}

	if s.cfg.SecretKey == "" {
		if err := copyFile(filepath.Join(s.cfg.Data, secretbox.KeyFile), filepath.Join(dir, secretbox.KeyFile)); err == nil {
			m.SecretKeyIncluded = true
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("copy %s: %w", secretbox.KeyFile, err)
		}
	}
	if err := copyFile(s.cfg.AdminKeyPath(), filepath.Join(dir, "admin.key")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("copy admin.key: %w", err)
	}
	// The ACME certificate cache (SPEC §12), when there is one: a restored
	// server then need not ask for new certificates at once.
	if err := copyTree(filepath.Join(s.cfg.Data, "certs"), filepath.Join(dir, "certs")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("copy certs: %w", err)
	}
	files, err := backup.Stage(dir)
	if err != nil {
		return nil, err
	}
	snap := &backup.Snapshot{Dir: dir, Manifest: m, Files: files, Release: func() {
		if err := os.RemoveAll(dir); err != nil {
			s.logger.Warn("backup: could not remove the staged files", "dir", dir, "err", err)
		}
		s.backupMu.Unlock()
	}}
	s.logger.Info("backup staged", "warehouse", m.Warehouse, "integrations", len(m.Integrations), "files", len(files),
		"bytes", snap.Bytes(), "copy_took", copied.Sub(start).Round(time.Millisecond))
	return snap, nil
}

// backupDir is where a backup is staged: the one directory the embedded
// warehouse may write into (duckdb.BackupDir).
func (s *Server) backupDir() string {
	return duckdb.BackupDir(filepath.Join(s.cfg.Data, "warehouse.duckdb"))
}

// duckBackup is the embedded warehouse's copy (duckdb.DB.Backup).
type duckBackup interface {
	Backup(ctx context.Context, dest string) (map[int64]warehouse.State, error)
}

// backup copies the open embedded warehouse to dest.
func (l *lazyWarehouse) backup(ctx context.Context, dest string) (map[int64]warehouse.State, error) {
	w, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	b, ok := w.(duckBackup)
	if !ok {
		return nil, fmt.Errorf("the warehouse %T cannot copy itself", w)
	}
	st, err := b.Backup(ctx, dest)
	return st, l.check(w, err)
}

// copyFile copies a small file (a key) with mode 0600 and fsyncs it.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	return errors.Join(err, out.Close())
}

// pauseAheadOfLog pauses loading of every integration whose warehouse has
// loaded past the end of this installation's log: a data dir restored from a
// backup older than its PostgreSQL warehouse (a pg_dump taken after the
// backup, or the same database loaded on after it). The loader refuses such a
// position only while its log is shorter; once new webhooks push the log past
// it, the loader would load on from there and skip the new records in
// between. A pause keeps loading stopped until the operator has set the
// position right (docs/history.md, backup and restore) and resumes. It runs at
// start, before loading; a warehouse not reachable then is not checked.
func (s *Server) pauseAheadOfLog(ctx context.Context) {
	states, err := s.wh.LoadState(ctx)
	if err != nil {
		s.logger.Warn("could not compare the warehouse's load positions with the log at start", "err", err)
		return
	}
	for _, in := range s.control.AllIntegrations() {
		st, ok := states[in.ID]
		if !ok || in.DeletedAt != nil || in.PausedAt != nil || (st.Installation != "" && st.Installation != s.control.Installation()) {
			continue
		}
		head := s.state.Head(in.ID).Position
		if st.Position <= head {
			continue
		}
		if _, err := s.control.SetPaused(in.ID, true, time.Now()); err != nil {
			s.logger.Error("could not pause an integration whose warehouse is ahead of the log", "integration", in.ID, "err", err)
			continue
		}
		s.logger.Error("the warehouse has loaded past the end of this log (a data dir restored from a backup older than the warehouse?): "+
			"loading of this integration is paused so that no new record is skipped; set the warehouse's position to the log's end, then resume (docs/history.md)",
			"integration", in.ID, "schema", in.Schema, "warehouse_position", st.Position, "log_end", head)
	}
}

// copyTree copies the regular files under src (a small directory) to dst.
func copyTree(src, dst string) error {
	if _, err := os.Stat(src); err != nil {
		return err
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		case d.Type().IsRegular():
			return copyFile(p, filepath.Join(dst, rel))
		}
		return nil // sockets, links: not ours
	})
}
