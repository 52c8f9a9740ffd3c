package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/hookhouse/hookhouse/internal/faults"
	"github.com/hookhouse/hookhouse/internal/warehouse"
)

const (
	rollbackTimeout = 5 * time.Second
	// maxIdentifier is PostgreSQL's NAMEDATALEN-1: longer names are silently cut,
	// which would make the table we write differ from the one we look up.
	maxIdentifier = 63
	// stageTable holds an upsert batch's data rows; it lives until COMMIT.
	stageTable = "_hookhouse_stage"
)

// Load writes b in one transaction: schema, tables and columns, the rows (COPY), and
// the integration's load state. On any error nothing of b is kept.
func (db *DB) Load(ctx context.Context, b *warehouse.Batch) error {
	if b == nil {
		return errors.New("postgres: load: nil batch")
	}
	if err := validate(b); err != nil {
		return &LoadError{Integration: b.Integration, Schema: b.Schema, Err: err,
			Hint: "the batch is malformed; this is a hookhouse bug, please report it"}
	}
	start := time.Now()
	var tx pgx.Tx
	conn, err := db.pool.conn(ctx, func(c *pgx.Conn) (err error) {
		tx, err = c.Begin(ctx)
		return err
	})
	if err != nil {
		return &LoadError{Integration: b.Integration, Schema: b.Schema, Err: err,
			Hint: "cannot reach the warehouse; check that PostgreSQL is running and reachable, loading resumes by itself"}
	}
	defer db.pool.release(conn)
	defer rollback(ctx, tx)

	l := &load{db: db, tx: tx, b: b}
	if err := l.run(ctx); err != nil {
		return err
	}
	faults.Point(faults.WarehouseBeforeCommit)
	if err := tx.Commit(ctx); err != nil {
		hint := "the batch was not stored and will be retried"
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) {
			// The connection broke during COMMIT: the server may have committed.
			hint = "the connection broke during COMMIT, so the batch may or may not be stored; " +
				"resume from LoadState, which is committed together with the rows"
		}
		return &LoadError{Integration: b.Integration, Schema: b.Schema, Err: fmt.Errorf("commit: %w", err), Hint: hint}
	}
	// Schema changes are logged once they are real.
	for _, name := range l.created {
		db.log.Info("created table", "integration", b.Integration, "schema", b.Schema, "table", name)
	}
	for _, a := range l.added {
		db.log.Info("added columns", "integration", b.Integration, "schema", b.Schema, "table", a.table, "columns", a.columns)
	}
	rows := 0
	for _, t := range b.Tables {
		rows += len(t.Rows)
	}
	db.log.Debug("batch loaded", "integration", b.Integration, "schema", b.Schema,
		"tables", len(b.Tables), "rows", rows, "position", b.State.Position, "duration", time.Since(start))
	return nil
}

// LoadError is a failed Load: which integration and table, and what to do about it.
type LoadError struct {
	Integration int64
	Schema      string
	Table       string // "" when the error is not about one table
	Err         error
	Hint        string
}

func (e *LoadError) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "postgres: load integration %d (schema %q", e.Integration, e.Schema)
	if e.Table != "" {
		fmt.Fprintf(&sb, ", table %q", e.Table)
	}
	fmt.Fprintf(&sb, "): %v", e.Err)
	if e.Hint != "" {
		sb.WriteString("; ")
		sb.WriteString(e.Hint)
	}
	return sb.String()
}

// Unwrap is Err, and warehouse.ErrOutOfMemory when PostgreSQL ran out of memory
// (SQLSTATE 53200), so that the loader splits the batch.
func (e *LoadError) Unwrap() []error {
	var pgErr *pgconn.PgError
	if errors.As(e.Err, &pgErr) && pgErr.Code == "53200" {
		return []error{e.Err, warehouse.ErrOutOfMemory}
	}
	return []error{e.Err}
}

// load is the state of one Load transaction.
type load struct {
	db *DB
	tx pgx.Tx
	b  *warehouse.Batch

	existing map[string][]pgColumn // batch tables as they were before this batch
	created  []string              // tables this batch creates, for the log
	added    []addedColumns        // columns this batch adds, for the log
}

type addedColumns struct {
	table   string
	columns []string
}

func (l *load) fail(table string, err error, hint string) error {
	if hint == "" {
		hint = hintFor(err)
	}
	return &LoadError{Integration: l.b.Integration, Schema: l.b.Schema, Table: table, Err: err, Hint: hint}
}

// hintFor suggests what an operator can do about a database error.
func hintFor(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "42501":
			return "the warehouse role lacks a privilege; grant it CREATE on the database and ownership of the integration's schema"
		case strings.HasPrefix(pgErr.Code, "53"):
			return "the warehouse is out of resources (disk, memory or connections); free some, loading resumes by itself"
		case strings.HasPrefix(pgErr.Code, "57") || strings.HasPrefix(pgErr.Code, "08"):
			return "the warehouse went away; loading resumes by itself when it is back"
		}
		return "the batch was rolled back and will be retried; if this repeats, check the table in the warehouse"
	}
	if pgconn.SafeToRetry(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return "the batch was rolled back and will be retried"
	}
	return "the batch was rolled back and will be retried; check that PostgreSQL is reachable"
}

func (l *load) run(ctx context.Context) error {
	b := l.b
	if err := l.advanceState(ctx); err != nil {
		return err
	}
	// Serialise DDL per schema: concurrent CREATE SCHEMA/TABLE IF NOT EXISTS can
	// fail in PostgreSQL with a unique violation in the catalog.
	if len(b.Tables) > 0 {
		sql := fmt.Sprintf("SELECT pg_advisory_xact_lock(%d, %d); CREATE SCHEMA IF NOT EXISTS %s",
			lockClass, schemaLockKey(b.Schema), pgx.Identifier{b.Schema}.Sanitize())
		if _, err := l.tx.Exec(ctx, sql); err != nil {
			return l.fail("", fmt.Errorf("create schema: %w", err), "")
		}
	}

	names := make([]string, len(b.Tables))
	for i, t := range b.Tables {
		names[i] = t.Name
	}
	var err error
	if l.existing, err = tableColumns(ctx, l.tx, b.Schema, names); err != nil {
		return l.fail("", fmt.Errorf("read catalog: %w", err), "")
	}
	if err := l.evolve(ctx); err != nil {
		return err
	}
	faults.Point(faults.WarehouseAfterEvolve)
	// The data table goes first (the loader sends it first anyway): an upsert batch
	// must clear the subtable rows of the keys it rewrites before writing new ones.
	order := make([]*warehouse.Table, 0, len(b.Tables))
	for i := range b.Tables {
		if b.Tables[i].Name == warehouse.DataTable {
			order = append([]*warehouse.Table{&b.Tables[i]}, order...)
		} else {
			order = append(order, &b.Tables[i])
		}
	}
	for _, t := range order {
		if err := l.write(ctx, t); err != nil {
			return err
		}
	}

	return nil
}

// advanceState moves the integration's stored state from b.Prev to b.State, or
// fails with warehouse.ErrStateMismatch (see warehouse.Batch.Prev). It runs first
// in the transaction: the UPDATE locks the state row, so a second loader of the
// same integration waits here, then finds the position moved and gives up before
// writing a row.
func (l *load) advanceState(ctx context.Context) error {
	b := l.b
	state := pgx.Identifier{warehouse.StateSchema, warehouse.StateTable}.Sanitize()
	var tag pgconn.CommandTag
	var err error
	if b.Prev.Position == 0 {
		// No state, or one at position 0 (nothing loaded yet) of Prev's installation.
		tag, err = l.tx.Exec(ctx, `INSERT INTO `+state+` AS s (integration_id, installation_id, position, sequence, updated_at)
VALUES ($1, $2, $3, $4, now()) ON CONFLICT (integration_id) DO UPDATE
SET installation_id = EXCLUDED.installation_id, position = EXCLUDED.position,
	sequence = EXCLUDED.sequence, updated_at = EXCLUDED.updated_at
WHERE s.position = 0 AND coalesce(s.installation_id, '') = $5`,
			b.Integration, b.State.Installation, int64(b.State.Position), b.State.Sequence, b.Prev.Installation)
	} else {
		tag, err = l.tx.Exec(ctx, `UPDATE `+state+`
SET installation_id = $2, position = $3, sequence = $4, updated_at = now()
WHERE integration_id = $1 AND coalesce(installation_id, '') = $5 AND position = $6`,
			b.Integration, b.State.Installation, int64(b.State.Position), b.State.Sequence,
			b.Prev.Installation, int64(b.Prev.Position))
	}
	if err != nil {
		return l.fail("", fmt.Errorf("store load state: %w", err), "")
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var stored warehouse.State
	var pos int64
	err = l.tx.QueryRow(ctx, `SELECT coalesce(installation_id, ''), position, sequence FROM `+state+` WHERE integration_id = $1`,
		b.Integration).Scan(&stored.Installation, &pos, &stored.Sequence)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return l.fail("", fmt.Errorf("store load state: %w", err), "")
	}
	stored.Position = uint64(max(pos, 0))
	return &LoadError{Integration: b.Integration, Schema: b.Schema, Err: warehouse.Mismatch(b, stored, err == nil)}
}

// evolve creates missing tables and adds missing columns, in one round trip.
func (l *load) evolve(ctx context.Context) error {
	b := l.b
	var ddl []string
	for _, t := range b.Tables {
		table := pgx.Identifier{b.Schema, t.Name}.Sanitize()
		have, exists := l.existing[t.Name]
		if !exists {
			defs := make([]string, 0, len(t.Columns)+1)
			for _, c := range t.Columns {
				defs = append(defs, pgx.Identifier{c.Name}.Sanitize()+" "+sqlType(c.Type))
			}
			if b.Key != "" && t.Name == warehouse.DataTable && hasColumn(t.Columns, b.Key) {
				defs = append(defs, "PRIMARY KEY ("+pgx.Identifier{b.Key}.Sanitize()+")")
			}
			ddl = append(ddl, "CREATE TABLE "+table+" (\n\t"+strings.Join(defs, ",\n\t")+"\n)")
			if b.Key != "" && isSubtable(t.Name) && len(t.Columns) > 0 {
				// Upserts delete a key's subtable rows on every batch.
				ddl = append(ddl, "CREATE INDEX ON "+table+" ("+pgx.Identifier{t.Columns[0].Name}.Sanitize()+")")
			}
			l.created = append(l.created, t.Name)
			continue
		}
		byName := make(map[string]pgColumn, len(have))
		for _, c := range have {
			byName[c.name] = c
		}
		var adds []string
		var added []string
		for _, c := range t.Columns {
			got, ok := byName[c.Name]
			if !ok {
				// IF NOT EXISTS: harmless insurance should a name repeat.
				adds = append(adds, "ADD COLUMN IF NOT EXISTS "+pgx.Identifier{c.Name}.Sanitize()+" "+sqlType(c.Type))
				added = append(added, c.Name)
				continue
			}
			if got.typ != c.Type {
				return l.fail(t.Name, fmt.Errorf("column %q is %s in the warehouse but the batch holds %s values",
					c.Name, got.pgType, c.Type),
					"the column was changed outside hookhouse; restore its type (or drop the column) and loading resumes")
			}
		}
		if b.Key != "" && t.Name == warehouse.DataTable && hasColumn(t.Columns, b.Key) {
			// ON CONFLICT needs a unique index on the key. A data table created
			// before the key column first arrived (a batch of rejected records
			// only) or outside hookhouse gets its primary key now.
			ok := false
			if !slices.Contains(added, b.Key) {
				var err error
				if ok, err = l.hasUniqueIndex(ctx, t.Name, b.Key); err != nil {
					return l.fail(t.Name, fmt.Errorf("read catalog: %w", err), "")
				}
			}
			if !ok {
				adds = append(adds, "ADD PRIMARY KEY ("+pgx.Identifier{b.Key}.Sanitize()+")")
			}
		}
		if len(adds) > 0 {
			ddl = append(ddl, "ALTER TABLE "+table+"\n\t"+strings.Join(adds, ",\n\t"))
			if len(added) > 0 {
				l.added = append(l.added, addedColumns{t.Name, added})
			}
		}
	}
	if len(ddl) == 0 {
		return nil
	}
	if _, err := l.tx.Exec(ctx, strings.Join(ddl, ";\n")); err != nil {
		return l.fail("", fmt.Errorf("create or alter tables: %w", err), "")
	}
	return nil
}

func (l *load) hasUniqueIndex(ctx context.Context, table, column string) (bool, error) {
	var ok bool
	err := l.tx.QueryRow(ctx, `
SELECT EXISTS (
	SELECT 1
	FROM pg_catalog.pg_index i
	JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
	JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
	WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3
	  AND i.indisunique AND i.indnatts = 1 AND i.indpred IS NULL AND i.indexprs IS NULL)`,
		l.b.Schema, table, column).Scan(&ok)
	return ok, err
}

// isSubtable reports whether a table of an integration's schema holds array elements.
func isSubtable(name string) bool {
	return name != warehouse.DataTable && name != warehouse.RejectedTable
}

// write puts t's rows into the warehouse: COPY straight into the table, or for an
// upsert batch's data table COPY into a staging table, upsert from there and clear
// the subtable rows of the rewritten keys (so the data table must come first).
func (l *load) write(ctx context.Context, t *warehouse.Table) error {
	b := l.b
	upsertData := b.Key != "" && t.Name == warehouse.DataTable
	if len(t.Rows) == 0 || len(t.Columns) == 0 {
		return nil
	}
	src := &rowSource{t: t, rows: t.Rows, i: -1, buf: make([]any, len(t.Columns))}
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = c.Name
	}
	target := pgx.Identifier{b.Schema, t.Name}

	if upsertData {
		keyIdx := slices.Index(cols, b.Key)
		for i, row := range t.Rows {
			if keyIdx >= len(row) || row[keyIdx] == nil {
				return l.fail(t.Name, fmt.Errorf("row %d has no value for the key column %q", i, b.Key),
					"records without a key belong in _sdc_rejected; this is a hookhouse bug, please report it")
			}
		}
		if dups := src.keepLastPerKey(keyIdx); dups > 0 {
			l.db.log.Warn("batch repeats keys; keeping the last row of each", "integration", b.Integration,
				"schema", b.Schema, "table", t.Name, "dropped", dups)
		}
		defs := make([]string, len(t.Columns))
		for i, c := range t.Columns {
			defs[i] = pgx.Identifier{c.Name}.Sanitize() + " " + sqlType(c.Type)
		}
		create := "CREATE TEMP TABLE " + stageTable + " (" + strings.Join(defs, ", ") + ") ON COMMIT DROP"
		if _, err := l.tx.Exec(ctx, create); err != nil {
			return l.fail(t.Name, fmt.Errorf("create staging table: %w", err), "")
		}
		target = pgx.Identifier{"pg_temp", stageTable}
	}

	if _, err := l.tx.CopyFrom(ctx, target, cols, src); err != nil {
		if src.err != nil {
			return l.fail(t.Name, src.err, "the batch holds a value the column cannot take; this is a hookhouse bug, please report it")
		}
		return l.fail(t.Name, fmt.Errorf("copy: %w", err), "")
	}
	if !upsertData {
		return nil
	}

	quoted := make([]string, len(cols))
	var set []string
	for i, c := range cols {
		quoted[i] = pgx.Identifier{c}.Sanitize()
		if c != b.Key {
			set = append(set, quoted[i]+" = EXCLUDED."+quoted[i])
		}
	}
	action := "DO NOTHING"
	if len(set) > 0 {
		action = "DO UPDATE SET " + strings.Join(set, ", ")
	}
	list := strings.Join(quoted, ", ")
	upsert := fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM pg_temp.%s ON CONFLICT (%s) %s",
		pgx.Identifier{b.Schema, t.Name}.Sanitize(), list, list, stageTable, pgx.Identifier{b.Key}.Sanitize(), action)
	if _, err := l.tx.Exec(ctx, upsert); err != nil {
		return l.fail(t.Name, fmt.Errorf("upsert: %w", err), "")
	}
	return l.deleteRewritten(ctx)
}

// deleteRewritten deletes the subtable rows of the keys this upsert batch rewrites,
// from every subtable of the schema: a record whose array is now shorter, empty or
// gone must not keep its old elements. Besides the batch's own subtables, only
// tables shaped like subtables (data__…, first column _sdc_source_key_…) are
// touched.
func (l *load) deleteRewritten(ctx context.Context) error {
	b := l.b
	rows, err := l.tx.Query(ctx, `
SELECT c.relname, a.attname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN LATERAL (
	SELECT attname FROM pg_catalog.pg_attribute
	WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped
	ORDER BY attnum LIMIT 1) a ON true
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
  AND c.relname LIKE 'data\_\_%' AND a.attname LIKE '\_sdc\_source\_key\_%'
ORDER BY c.relname`, b.Schema)
	if err != nil {
		return l.fail("", fmt.Errorf("list subtables: %w", err), "")
	}
	// Source key column per subtable: the batch's first column for its own
	// subtables that existed before it, the catalog's for the others.
	keyCol := map[string]string{}
	var rel, col string
	_, err = pgx.ForEachRow(rows, []any{&rel, &col}, func() error {
		keyCol[rel] = col
		return nil
	})
	if err != nil {
		return l.fail("", fmt.Errorf("list subtables: %w", err), "")
	}
	for _, t := range b.Tables {
		if _, existed := l.existing[t.Name]; existed && isSubtable(t.Name) {
			keyCol[t.Name] = t.Columns[0].Name
		}
	}
	names := slices.Sorted(maps.Keys(keyCol))
	stmts := make([]string, 0, len(names))
	for _, rel := range names {
		stmts = append(stmts, fmt.Sprintf("DELETE FROM %s WHERE %s IN (SELECT %s FROM pg_temp.%s)",
			pgx.Identifier{b.Schema, rel}.Sanitize(), pgx.Identifier{keyCol[rel]}.Sanitize(),
			pgx.Identifier{b.Key}.Sanitize(), stageTable))
	}
	if len(stmts) == 0 {
		return nil
	}
	if _, err := l.tx.Exec(ctx, strings.Join(stmts, ";\n")); err != nil {
		return l.fail("", fmt.Errorf("delete subtable rows of rewritten keys: %w", err), "")
	}
	return nil
}

// validate checks what PostgreSQL would otherwise reject late or, worse, accept
// differently (names over 63 bytes are silently cut).
func validate(b *warehouse.Batch) error {
	if err := checkName("schema", b.Schema); err != nil {
		return err
	}
	if b.State.Position > math.MaxInt64 {
		return fmt.Errorf("position %d does not fit a bigint", b.State.Position)
	}
	seen := map[string]bool{}
	for _, t := range b.Tables {
		if err := checkName("table", t.Name); err != nil {
			return err
		}
		if seen[t.Name] {
			return fmt.Errorf("table %q appears twice", t.Name)
		}
		seen[t.Name] = true
		cols := map[string]bool{}
		for _, c := range t.Columns {
			if err := checkName("column", c.Name); err != nil {
				return fmt.Errorf("table %q: %w", t.Name, err)
			}
			if cols[c.Name] {
				return fmt.Errorf("table %q: column %q appears twice", t.Name, c.Name)
			}
			cols[c.Name] = true
			if sqlType(c.Type) == "" {
				return fmt.Errorf("table %q: column %q has unknown type %d", t.Name, c.Name, c.Type)
			}
		}
		for i, row := range t.Rows {
			if len(row) > len(t.Columns) {
				return fmt.Errorf("table %q: row %d has %d values for %d columns", t.Name, i, len(row), len(t.Columns))
			}
		}
		if b.Key != "" && t.Name == warehouse.DataTable && !cols[b.Key] && len(t.Rows) > 0 {
			return fmt.Errorf("table %q lacks the key column %q", t.Name, b.Key)
		}
		if b.Key != "" && isSubtable(t.Name) && len(t.Columns) == 0 {
			return fmt.Errorf("subtable %q has no source key column", t.Name)
		}
	}
	return nil
}

func hasColumn(cols []warehouse.Column, name string) bool {
	return slices.ContainsFunc(cols, func(c warehouse.Column) bool { return c.Name == name })
}

func checkName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty %s name", what)
	case len(name) > maxIdentifier:
		return fmt.Errorf("%s name %q is longer than %d bytes", what, name, maxIdentifier)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("%s name %q holds a NUL byte", what, name)
	}
	return nil
}

// rowSource feeds a table's rows to COPY, converting each value to what pgx encodes
// for the column type and padding short rows with NULLs. It reuses one row buffer:
// pgx encodes a row before asking for the next.
type rowSource struct {
	t    *warehouse.Table
	rows [][]any // the rows to write, possibly a filtered copy of t.Rows
	i    int
	buf  []any
	err  error
}

func (s *rowSource) Next() bool {
	s.i++
	return s.err == nil && s.i < len(s.rows)
}

func (s *rowSource) Values() ([]any, error) {
	row := s.rows[s.i]
	for j, c := range s.t.Columns {
		var v any
		if j < len(row) {
			v = row[j]
		}
		cv, err := convert(c.Type, v)
		if err != nil {
			s.err = fmt.Errorf("row %d, column %q (%s): %w", s.i, c.Name, c.Type, err)
			return nil, s.err
		}
		s.buf[j] = cv
	}
	return s.buf, nil
}

func (s *rowSource) Err() error { return s.err }

// keepLastPerKey drops all but the last row of each key value (the loader already
// does this; a repeated key would make ON CONFLICT fail) and returns how many rows
// it dropped.
func (s *rowSource) keepLastPerKey(keyIdx int) int {
	last := make(map[any]int, len(s.rows))
	for i, row := range s.rows {
		if k, ok := keyOf(row, keyIdx); ok {
			last[k] = i
		}
	}
	if len(last) == len(s.rows) {
		return 0
	}
	kept := make([][]any, 0, len(last))
	for i, row := range s.rows {
		if k, ok := keyOf(row, keyIdx); !ok || last[k] == i {
			kept = append(kept, row)
		}
	}
	dropped := len(s.rows) - len(kept)
	s.rows = kept
	return dropped
}

// keyOf returns a comparable form of a row's key; NULL and odd values are not keys
// (they fail later with a clear error).
func keyOf(row []any, idx int) (any, bool) {
	if idx >= len(row) || row[idx] == nil {
		return nil, false
	}
	switch k := row[idx].(type) {
	case string, int64, float64, bool:
		return k, true
	case time.Time:
		return k.UnixMicro(), true
	}
	return nil, false
}

// convert checks v against the column type and returns what pgx should encode. It
// is strict about Go types (see warehouse.Type): a mismatch is a loader bug that
// should fail loudly, not be stored as something else.
func convert(t warehouse.Type, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	ok := false
	switch t {
	case warehouse.Text:
		var s string
		if s, ok = v.(string); ok && strings.IndexByte(s, 0) >= 0 {
			return nil, errors.New("text holds a NUL byte, which PostgreSQL cannot store")
		}
	case warehouse.BigInt:
		_, ok = v.(int64)
	case warehouse.Double:
		_, ok = v.(float64)
	case warehouse.Boolean:
		_, ok = v.(bool)
	case warehouse.Timestamp:
		var ts time.Time
		if ts, ok = v.(time.Time); ok {
			return warehouse.UTC(ts), nil
		}
	case warehouse.Numeric:
		s, isString := v.(string)
		if !isString {
			break
		}
		if !isInteger(s) {
			return nil, fmt.Errorf("%q is not a string of decimal digits", truncate(s, 60))
		}
		n, ok := new(big.Int).SetString(s, 10)
		if !ok {
			return nil, fmt.Errorf("%q is not a string of decimal digits", truncate(s, 60))
		}
		return pgtype.Numeric{Int: n, Valid: true}, nil
	}
	if !ok {
		return nil, fmt.Errorf("got a Go %T, which a %s column does not take", v, t)
	}
	return v, nil
}

// isInteger reports whether s is decimal digits with an optional leading '-'.
func isInteger(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
