package duckdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// backupAlias is the name the backup's file is attached under while it is written.
const backupAlias = "hookhouse_backup"

// Backup writes a consistent copy of the whole warehouse (every schema and
// table, hookhouse's load positions in _hookhouse included) to a new DuckDB
// file dest, which must be directly in BackupDir of the warehouse's file and
// must not exist. It returns the load state the copy holds, per integration.
//
// The copy is made by DuckDB: the file is attached and each table created
// there with the statement DuckDB keeps for it (its columns, types and primary
// key) and filled with INSERT … SELECT, all inside one transaction, so the
// copy is the snapshot that transaction sees: every table as of one moment, and
// the load positions with the rows they count. (COPY FROM DATABASE would do the
// same, but it changes a setting that the locked configuration refuses.) Loads go on meanwhile (they commit after the snapshot and are not in
// the copy). When Backup returns the copy is detached and complete on its own
// (no WAL beside it); on an error nothing is left at dest.
func (d *DB) Backup(ctx context.Context, dest string) (states map[int64]warehouse.State, err error) {
	if _, err := os.Lstat(dest); !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("duckdb: backup to %s: the file exists", dest)
	}
	conn, err := d.rw.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("duckdb: backup: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `ATTACH `+quoteString(dest)+` AS `+quoteIdent(backupAlias)); err != nil {
		if strings.Contains(err.Error(), "disabled by configuration") {
			return nil, fmt.Errorf("duckdb: backup: %s is outside %s, the only directory this warehouse may write to: %w", dest, BackupDir(dest), err)
		}
		return nil, fmt.Errorf("duckdb: backup: attach %s: %w", dest, err)
	}
	attached := true
	defer func() {
		if attached {
			cctx, cancel := detached(ctx)
			defer cancel()
			_, _ = conn.ExecContext(cctx, `ROLLBACK`)
			_, _ = conn.ExecContext(cctx, `DETACH `+quoteIdent(backupAlias))
		}
		if err != nil {
			os.Remove(dest)
			os.Remove(dest + ".wal")
		}
	}()
	if _, err := conn.ExecContext(ctx, `BEGIN TRANSACTION`); err != nil {
		return nil, fmt.Errorf("duckdb: backup: %w", err)
	}
	if err := d.copyTables(ctx, conn); err != nil {
		return nil, fmt.Errorf("duckdb: backup: copy the warehouse: %w", err)
	}
	// Read back from the copy, in the same transaction: the positions it holds.
	table := quoteIdent(backupAlias) + "." + quoteIdent(warehouse.StateSchema) + "." + quoteIdent(warehouse.StateTable)
	rows, err := conn.QueryContext(ctx, `SELECT integration_id, coalesce(installation_id, ''), position, sequence, updated_at FROM `+table)
	if err != nil {
		return nil, fmt.Errorf("duckdb: backup: read the copy's load state: %w", err)
	}
	states = map[int64]warehouse.State{}
	for rows.Next() {
		var id int64
		var s warehouse.State
		if err := rows.Scan(&id, &s.Installation, &s.Position, &s.Sequence, &s.LoadedAt); err != nil {
			rows.Close()
			return nil, fmt.Errorf("duckdb: backup: read the copy's load state: %w", err)
		}
		states[id] = s
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("duckdb: backup: read the copy's load state: %w", err)
	}
	if _, err := conn.ExecContext(ctx, `COMMIT`); err != nil {
		return nil, fmt.Errorf("duckdb: backup: commit the copy: %w", err)
	}
	// A checkpoint moves the copy out of its WAL into the file. DuckDB
	// refuses it while any write transaction is open, the main database's
	// included, so loads wait for it (receiving goes on).
	select {
	case d.loadSlot <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("duckdb: backup: %w", ctx.Err())
	}
	_, err = conn.ExecContext(ctx, `CHECKPOINT `+quoteIdent(backupAlias))
	<-d.loadSlot
	if err != nil {
		return nil, fmt.Errorf("duckdb: backup: checkpoint the copy: %w", err)
	}
	if _, err := conn.ExecContext(ctx, `DETACH `+quoteIdent(backupAlias)); err != nil {
		return nil, fmt.Errorf("duckdb: backup: detach the copy: %w", err)
	}
	attached = false
	if _, err := os.Stat(dest + ".wal"); err == nil {
		return nil, fmt.Errorf("duckdb: backup: the copy %s still has a WAL after CHECKPOINT and DETACH", filepath.Base(dest))
	}
	return states, nil
}

// copyTables creates and fills every table of the warehouse in the attached
// copy, inside conn's open transaction. hookhouse's warehouse holds only
// schemas and tables (user queries cannot create anything).
func (d *DB) copyTables(ctx context.Context, conn *sql.Conn) error {
	type table struct{ schema, name, create string }
	var tables []table
	var schemas []string
	err := func() error {
		rows, err := conn.QueryContext(ctx, `SELECT schema_name FROM duckdb_schemas()
			WHERE database_name = ? AND NOT internal ORDER BY schema_name`, d.catalog)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				return err
			}
			schemas = append(schemas, s)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows.Close()
		rows, err = conn.QueryContext(ctx, `SELECT schema_name, table_name, sql FROM duckdb_tables()
			WHERE database_name = ? AND NOT temporary ORDER BY schema_name, table_name`, d.catalog)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var t table
			if err := rows.Scan(&t.schema, &t.name, &t.create); err != nil {
				return err
			}
			tables = append(tables, t)
		}
		return rows.Err()
	}()
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	for _, s := range schemas {
		if _, err := conn.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS `+quoteIdent(backupAlias)+"."+quoteIdent(s)); err != nil {
			return fmt.Errorf("create schema %s: %w", s, err)
		}
	}
	// The kept CREATE statements name schema.table without a catalog: with the
	// copy as the default catalog they create there.
	if _, err := conn.ExecContext(ctx, `USE `+quoteIdent(backupAlias)); err != nil {
		return err
	}
	defer func() {
		cctx, cancel := detached(ctx)
		defer cancel()
		_, _ = conn.ExecContext(cctx, `USE `+quoteIdent(d.catalog))
	}()
	for _, t := range tables {
		if _, err := conn.ExecContext(ctx, t.create); err != nil {
			return fmt.Errorf("create table %s.%s: %w", t.schema, t.name, err)
		}
		if _, err := conn.ExecContext(ctx, `INSERT INTO `+quoteIdent(backupAlias)+"."+quoteIdent(t.schema)+"."+quoteIdent(t.name)+
			` SELECT * FROM `+d.table(t.schema, t.name)); err != nil {
			return fmt.Errorf("copy table %s.%s: %w", t.schema, t.name, err)
		}
	}
	return nil
}
