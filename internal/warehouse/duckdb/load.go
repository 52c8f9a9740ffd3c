package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/hookhouse/hookhouse/internal/faults"
	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// keysTable is the per-connection TEMP table holding the keys of an upsert batch,
// filled with the Appender and used by the DELETEs. It lives only inside the load
// transaction.
const keysTable = `temp.main."_hookhouse_keys"`

// Load writes b in one transaction: schema and tables created or evolved, rows of
// replaced keys deleted (upserts), rows appended with the DuckDB Appender, and the
// integration's load state upserted. If anything fails, nothing of b remains.
//
// Loads are serialized: DuckDB lets two transactions that change the same catalog
// entries conflict at COMMIT, and the Appender is fast enough that one writer at a
// time is not the bottleneck.
func (d *DB) Load(ctx context.Context, b *warehouse.Batch) error {
	if b == nil {
		return errors.New("duckdb: load: nil batch")
	}
	if err := validateBatch(b); err != nil {
		return fmt.Errorf("duckdb: load integration %d: %w", b.Integration, err)
	}
	select {
	case d.loadSlot <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("duckdb: load integration %d: %w", b.Integration, ctx.Err())
	}
	defer func() { <-d.loadSlot }()

	start := time.Now()
	rows, err := d.load(ctx, b)
	if err != nil {
		// Not when the instance was invalidated before (by an earlier
		// error, which the message quotes): that is no reason to split.
		if outOfMemoryText(err) && !strings.Contains(err.Error(), "has been invalidated") {
			err = fmt.Errorf("%w: %w", warehouse.ErrOutOfMemory, err)
		}
		return fmt.Errorf("duckdb: load integration %d into schema %s: %w", b.Integration, b.Schema, err)
	}
	d.logger.Debug("batch loaded", "integration", b.Integration, "schema", b.Schema,
		"tables", len(b.Tables), "rows", rows, "position", b.State.Position,
		"duration", time.Since(start))
	return nil
}

func (d *DB) load(ctx context.Context, b *warehouse.Batch) (rows int, err error) {
	conn, err := d.rw.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()

	if _, err := conn.ExecContext(ctx, `BEGIN TRANSACTION`); err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	committed := false
	defer func() {
		if committed {
			return
		}
		rctx, cancel := detached(ctx)
		defer cancel()
		if _, rerr := conn.ExecContext(rctx, `ROLLBACK`); rerr != nil {
			// The connection's transaction state is unknown: make database/sql drop it.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			err = errors.Join(err, fmt.Errorf("rollback: %w", rerr))
		}
	}()

	// The fence first: the stored state must still be what the loader read.
	if err := d.advanceState(ctx, conn, b); err != nil {
		return 0, err
	}
	tx := &loadTx{conn: conn, catalog: d.catalog, b: b}
	if err := tx.evolve(ctx); err != nil {
		return 0, err
	}
	faults.Point(faults.WarehouseAfterEvolve)
	if b.Key != "" {
		if err := tx.deleteReplaced(ctx); err != nil {
			return 0, err
		}
	}
	for i := range b.Tables {
		if err := tx.appendRows(ctx, &b.Tables[i]); err != nil {
			return 0, err
		}
		rows += len(b.Tables[i].Rows)
	}
	if d.beforeCommit != nil {
		if err := d.beforeCommit(ctx, conn); err != nil {
			return 0, err
		}
	}
	faults.Point(faults.WarehouseBeforeCommit)
	// COMMIT runs even if ctx was cancelled after the last statement: the batch is
	// complete, and a commit cannot be half done.
	if _, err := conn.ExecContext(context.WithoutCancel(ctx), `COMMIT`); err != nil {
		// DuckDB rolls a failed COMMIT back. Drop the connection anyway rather
		// than hand a possibly still open transaction to the next load.
		committed = true
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		if durable(err) {
			// The batch is in: only the checkpoint after it failed, and the
			// instance is invalidated. Loaded, not out of memory (splitting
			// it would load nothing: the fence has moved on); the file is
			// opened again before the next call (NeedsReopen).
			d.invalid.Store(true)
			d.logger.Warn("a batch committed, but the checkpoint after it failed; the warehouse is opened again",
				"integration", b.Integration, "err", err)
			return rows, nil
		}
		return 0, fmt.Errorf("commit: %w", err)
	}
	committed = true
	return rows, nil
}

// advanceState moves the integration's stored state from b.Prev to b.State inside
// the load's transaction, or fails with warehouse.ErrStateMismatch (see
// warehouse.Batch.Prev) when the stored state is not b.Prev.
func (d *DB) advanceState(ctx context.Context, conn *sql.Conn, b *warehouse.Batch) error {
	pos, now := strconv.FormatUint(b.State.Position, 10), time.Now().UTC()
	var res sql.Result
	var err error
	if b.Prev.Position == 0 {
		// No state, or one at position 0 (nothing loaded yet) of Prev's installation.
		res, err = conn.ExecContext(ctx, `INSERT INTO `+d.stateTable+` AS s (integration_id, installation_id, position, sequence, updated_at)
			VALUES (?, ?, ?::UBIGINT, ?, ?) ON CONFLICT (integration_id) DO UPDATE
			SET installation_id = excluded.installation_id, position = excluded.position,
				sequence = excluded.sequence, updated_at = excluded.updated_at
			WHERE s.position = 0 AND coalesce(s.installation_id, '') = ?`,
			b.Integration, b.State.Installation, pos, b.State.Sequence, now, b.Prev.Installation)
	} else {
		res, err = conn.ExecContext(ctx, `UPDATE `+d.stateTable+`
			SET installation_id = ?, position = ?::UBIGINT, sequence = ?, updated_at = ?
			WHERE integration_id = ? AND coalesce(installation_id, '') = ? AND position = ?::UBIGINT`,
			b.State.Installation, pos, b.State.Sequence, now,
			b.Integration, b.Prev.Installation, strconv.FormatUint(b.Prev.Position, 10))
	}
	if err != nil {
		return fmt.Errorf("store load state: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store load state: %w", err)
	} else if n == 1 {
		return nil
	}
	var stored warehouse.State
	err = conn.QueryRowContext(ctx, `SELECT coalesce(installation_id, ''), position, sequence FROM `+d.stateTable+` WHERE integration_id = ?`,
		b.Integration).Scan(&stored.Installation, &stored.Position, &stored.Sequence)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("store load state: %w", err)
	}
	return warehouse.Mismatch(b, stored, err == nil)
}

// durable reports whether a failed COMMIT's err says the transaction committed
// and only the checkpoint after it failed (a FATAL error that invalidates the
// instance).
func durable(err error) bool {
	return Invalidated(err) && strings.Contains(err.Error(), "COMMIT succeeded and is durable")
}

// NeedsReopen reports whether the instance stopped working after a load
// committed (its checkpoint failed): the caller closes it and opens the file
// again, which replays and checkpoints what was committed.
func (d *DB) NeedsReopen() bool { return d.invalid.Load() }

// outOfMemory reports whether err is DuckDB's "Out of Memory Error": the load
// needed more than memory_limit (and the temp directory) could give.
func outOfMemory(err error) bool {
	var de *duckdb.Error
	return errors.As(err, &de) && de.Type == duckdb.ErrorTypeOutOfMemory
}

// validateBatch catches what would otherwise surface as confusing SQL errors.
func validateBatch(b *warehouse.Batch) error {
	if b.Schema == "" {
		return errors.New("batch has no schema")
	}
	if strings.EqualFold(b.Schema, warehouse.StateSchema) {
		return fmt.Errorf("schema %s is reserved for hookhouse's own state; give the integration another schema", b.Schema)
	}
	seenTables := map[string]bool{}
	for _, t := range b.Tables {
		if t.Name == "" {
			return errors.New("batch has a table without a name")
		}
		if seenTables[strings.ToLower(t.Name)] {
			return fmt.Errorf("table %s appears twice in the batch", t.Name)
		}
		seenTables[strings.ToLower(t.Name)] = true
		if len(t.Columns) == 0 {
			return fmt.Errorf("table %s has no columns", t.Name)
		}
		seen := map[string]bool{}
		for _, c := range t.Columns {
			if c.Name == "" {
				return fmt.Errorf("table %s has a column without a name", t.Name)
			}
			if seen[strings.ToLower(c.Name)] {
				return fmt.Errorf("table %s has column %s twice", t.Name, c.Name)
			}
			seen[strings.ToLower(c.Name)] = true
			if _, err := sqlType(c.Type); err != nil {
				return fmt.Errorf("table %s column %s: %w", t.Name, c.Name, err)
			}
		}
		if b.Key != "" && t.Name == warehouse.DataTable && keyIndex(t.Columns, b.Key) < 0 {
			return fmt.Errorf("table %s has no column for the upsert key %s", t.Name, b.Key)
		}
	}
	return nil
}

func keyIndex(cols []warehouse.Column, key string) int {
	for i, c := range cols {
		if c.Name == key {
			return i
		}
	}
	return -1
}

// loadTx is one load transaction: its connection, the batch, and the catalog
// (database) name every identifier is qualified with, so that a schema named like a
// catalog (temp, system) is not ambiguous.
type loadTx struct {
	conn    *sql.Conn
	catalog string
	b       *warehouse.Batch
}

// table is the fully qualified name of a table of the batch's schema.
func (l *loadTx) table(name string) string {
	return quoteIdent(l.catalog) + "." + quoteIdent(l.b.Schema) + "." + quoteIdent(name)
}

// evolve creates the schema and each table, or adds the columns a table lacks, as
// the live catalog inside the transaction shows it.
func (l *loadTx) evolve(ctx context.Context) error {
	conn, b := l.conn, l.b
	if _, err := conn.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS `+quoteIdent(l.catalog)+"."+quoteIdent(b.Schema)); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	for _, t := range b.Tables {
		existing, err := columns(ctx, conn, b.Schema, t.Name)
		if err != nil {
			return fmt.Errorf("table %s: read catalog: %w", t.Name, err)
		}
		if existing == nil {
			if err := l.createTable(ctx, &t); err != nil {
				return fmt.Errorf("table %s: create: %w", t.Name, err)
			}
			continue
		}
		have := make(map[string]warehouse.Type, len(existing))
		for _, c := range existing {
			have[strings.ToLower(c.Name)] = c.Type
		}
		for _, c := range t.Columns {
			typ, ok := have[strings.ToLower(c.Name)]
			if ok && typ != c.Type {
				return fmt.Errorf("table %s column %s is %s in the warehouse but %s in the batch; "+
					"a column's type never changes, so the loader and the table disagree", t.Name, c.Name, typ, c.Type)
			}
			if ok {
				continue
			}
			st, _ := sqlType(c.Type)
			if _, err := conn.ExecContext(ctx, fmt.Sprintf(`ALTER TABLE %s ADD COLUMN %s %s`,
				l.table(t.Name), quoteIdent(c.Name), st)); err != nil {
				return fmt.Errorf("table %s: add column %s: %w", t.Name, c.Name, err)
			}
		}
	}
	return nil
}

func (l *loadTx) createTable(ctx context.Context, t *warehouse.Table) error {
	var sb strings.Builder
	sb.WriteString(`CREATE TABLE IF NOT EXISTS `)
	sb.WriteString(l.table(t.Name))
	sb.WriteString(" (")
	for i, c := range t.Columns {
		if i > 0 {
			sb.WriteString(", ")
		}
		st, _ := sqlType(c.Type)
		sb.WriteString(quoteIdent(c.Name) + " " + st)
	}
	if l.b.Key != "" && t.Name == warehouse.DataTable {
		sb.WriteString(", PRIMARY KEY (" + quoteIdent(l.b.Key) + ")")
	}
	sb.WriteString(")")
	_, err := l.conn.ExecContext(ctx, sb.String())
	return err
}

// deleteReplaced removes, for an upsert batch, the data rows whose key the batch
// brings again and the rows of every subtable of the schema that hang off those keys.
// Every subtable, not only those in the batch: a record whose array became empty
// brings no subtable rows, yet its old elements must go.
func (l *loadTx) deleteReplaced(ctx context.Context) error {
	conn, b := l.conn, l.b
	var data *warehouse.Table
	for i := range b.Tables {
		if b.Tables[i].Name == warehouse.DataTable {
			data = &b.Tables[i]
		}
	}
	if data == nil || len(data.Rows) == 0 {
		return nil
	}
	ki := keyIndex(data.Columns, b.Key)
	keyType := data.Columns[ki].Type
	st, _ := sqlType(keyType)
	if _, err := conn.ExecContext(ctx, `CREATE OR REPLACE TEMP TABLE "_hookhouse_keys" (k `+st+`)`); err != nil {
		return fmt.Errorf("upsert: create key table: %w", err)
	}
	err := conn.Raw(func(dc any) error {
		a, err := duckdb.NewAppender(dc.(driver.Conn), "temp", "main", "_hookhouse_keys")
		if err != nil {
			return err
		}
		for i, row := range data.Rows {
			var v any
			if ki < len(row) {
				v = row[ki]
			}
			if v == nil {
				abandon(a)
				return fmt.Errorf("row %d has no value for the upsert key %s", i, b.Key)
			}
			kv, err := toDriver(v, keyType)
			if err != nil {
				abandon(a)
				return fmt.Errorf("row %d key %s: %w", i, b.Key, err)
			}
			if err := a.AppendRow(kv); err != nil {
				abandon(a)
				return err
			}
		}
		return a.CloseWithCancel(ctx)
	})
	if err != nil {
		return fmt.Errorf("upsert: table %s: %w", warehouse.DataTable, err)
	}

	// The subtables as the catalog shows them now, i.e. after this batch's DDL.
	rows, err := conn.QueryContext(ctx, `
		SELECT c.table_name, c.column_name
		FROM duckdb_columns() c
		JOIN duckdb_tables() t USING (database_oid, schema_oid, table_oid)
		WHERE c.database_name = current_database() AND lower(c.schema_name) = lower(?)
		  AND c.column_index = 1
		  AND starts_with(c.table_name, 'data__') AND starts_with(c.column_name, '_sdc_source_key_')
		ORDER BY c.table_name`, b.Schema)
	if err != nil {
		return fmt.Errorf("upsert: list subtables: %w", err)
	}
	type target struct{ table, column string }
	targets := []target{{warehouse.DataTable, b.Key}}
	for rows.Next() {
		var t target
		if err := rows.Scan(&t.table, &t.column); err != nil {
			rows.Close()
			return fmt.Errorf("upsert: list subtables: %w", err)
		}
		targets = append(targets, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("upsert: list subtables: %w", err)
	}
	for _, t := range targets {
		if _, err := conn.ExecContext(ctx, fmt.Sprintf(`DELETE FROM %s WHERE %s IN (SELECT k FROM %s)`,
			l.table(t.table), quoteIdent(t.column), keysTable)); err != nil {
			return fmt.Errorf("upsert: table %s: delete replaced rows: %w", t.table, err)
		}
	}
	if _, err := conn.ExecContext(ctx, `DROP TABLE `+keysTable); err != nil {
		return fmt.Errorf("upsert: drop key table: %w", err)
	}
	return nil
}

// appendRows writes t's rows with the Appender on the transaction's connection. The
// Appender flushes into the connection's open transaction, so its rows commit or
// roll back with everything else (TestAppenderRowsRollBack checks this).
func (l *loadTx) appendRows(ctx context.Context, t *warehouse.Table) error {
	if len(t.Rows) == 0 {
		return nil
	}
	names := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		names[i] = c.Name
	}
	err := l.conn.Raw(func(dc any) error {
		a, err := duckdb.NewAppenderWithColumns(dc.(driver.Conn), l.catalog, l.b.Schema, t.Name, names)
		if err != nil {
			return err
		}
		vals := make([]driver.Value, len(t.Columns))
		for i, row := range t.Rows {
			// Appending is in-process work that never looks at ctx: check it now
			// and then, so a shutdown's hard stop ends a big batch promptly.
			if i%4096 == 4095 {
				if err := ctx.Err(); err != nil {
					abandon(a)
					return err
				}
			}
			if len(row) > len(t.Columns) {
				abandon(a)
				return fmt.Errorf("row %d has %d values for %d columns", i, len(row), len(t.Columns))
			}
			for j, c := range t.Columns {
				var v any
				if j < len(row) {
					v = row[j]
				}
				if vals[j], err = toDriver(v, c.Type); err != nil {
					abandon(a)
					return fmt.Errorf("row %d column %s: %w", i, c.Name, err)
				}
			}
			if err := a.AppendRow(vals...); err != nil {
				abandon(a)
				return fmt.Errorf("row %d: %w", i, err)
			}
		}
		return a.CloseWithCancel(ctx)
	})
	if err != nil {
		return fmt.Errorf("table %s: append: %w", t.Name, err)
	}
	return nil
}

// toDriver converts a batch value to what the Appender takes for the column's type.
// It is strict: a value of another Go type than warehouse.Type documents is a loader
// bug and fails the batch. Errors name the Go type, never the value (payload data
// stays out of logs).
func toDriver(v any, t warehouse.Type) (driver.Value, error) {
	if v == nil {
		return nil, nil
	}
	ok := false
	switch t {
	case warehouse.Text:
		_, ok = v.(string)
	case warehouse.BigInt:
		_, ok = v.(int64)
	case warehouse.Double:
		_, ok = v.(float64)
	case warehouse.Boolean:
		_, ok = v.(bool)
	case warehouse.Numeric:
		if s, isString := v.(string); isString {
			n, err := parseNumeric(s)
			if err != nil {
				return nil, err
			}
			return n, nil
		}
	case warehouse.Timestamp:
		if ts, isTime := v.(time.Time); isTime {
			if ts.Location() == time.UTC && ts.Nanosecond()%1000 == 0 {
				return v, nil // already what UTC gives: no new boxed copy per value
			}
			return warehouse.UTC(ts), nil
		}
	}
	if !ok {
		return nil, fmt.Errorf("a %s column cannot take a Go %T", t, v)
	}
	return v, nil
}

// parseNumeric accepts what warehouse.Numeric promises: an optional '-' and 1 to 38
// decimal digits.
func parseNumeric(s string) (*big.Int, error) {
	digits := strings.TrimPrefix(s, "-")
	if len(digits) == 0 || len(digits) > 38 || strings.Trim(digits, "0123456789") != "" {
		return nil, errors.New("a numeric value must be an integer of at most 38 decimal digits")
	}
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		return nil, errors.New("a numeric value must be an integer of at most 38 decimal digits")
	}
	return n, nil
}

// abandon closes an Appender after an error without flushing its buffered rows.
func abandon(a *duckdb.Appender) {
	_ = a.Clear()
	_ = a.Close()
}
