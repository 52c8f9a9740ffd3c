// Package postgres is the PostgreSQL warehouse adapter: the shared, server-grade
// warehouse (SPEC §1). Batches are written with COPY inside one transaction together
// with the integration's load state; queries run in read-only transactions so that
// PostgreSQL, not a SQL parser, refuses writes.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// DB is a PostgreSQL warehouse.
type DB struct {
	pool *pool
	q    *queryAccess // Query's own connections and login (role.go)
	log  *slog.Logger
}

var _ warehouse.Warehouse = (*DB)(nil)

// defaultConnectTimeout applies when the URL sets no connect_timeout.
const defaultConnectTimeout = 10 * time.Second

// lockClass is the first key of the two-key advisory locks this package takes, so
// they never meet single-key locks or other hookhouse components' locks.
const lockClass = 0x68686c64 // "hhld"

// Open connects to the PostgreSQL database at dsn (a postgres:// URL or key=value
// string), checks that it answers and creates hookhouse's bookkeeping table
// "_hookhouse"."load_state" if it is missing. Besides libpq's parameters the URL may
// set pool_max_conns (default: the larger of 4 and the number of CPUs). It also
// sets up the login Query uses (see Options and role.go); when that is not
// possible, Open still succeeds and only queries are refused.
func Open(ctx context.Context, dsn string, opts Options, logger *slog.Logger) (*DB, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message may echo the DSN, password included; keep only our words.
		return nil, errors.New("postgres: cannot parse the warehouse URL; expected postgres://user:password@host:port/database")
	}
	if !strings.Contains(dsn, "default_query_exec_mode") {
		// Describe instead of caching prepared statements: DDL changes tables under
		// us, the statements differ from batch to batch, and it works behind
		// PgBouncer's transaction pooling.
		cfg.DefaultQueryExecMode = pgx.QueryExecModeDescribeExec
	}
	if cfg.ConnectTimeout == 0 {
		// An unreachable host should fail a call, not hang it for minutes.
		cfg.ConnectTimeout = defaultConnectTimeout
	}
	// pool_max_conns as pgxpool spells it; PostgreSQL must not see it.
	maxConns := 0
	if v, ok := cfg.RuntimeParams["pool_max_conns"]; ok {
		delete(cfg.RuntimeParams, "pool_max_conns")
		if maxConns, err = strconv.Atoi(v); err != nil || maxConns < 1 {
			return nil, fmt.Errorf("postgres: pool_max_conns=%q in the warehouse URL must be a positive integer", v)
		}
	}
	db := &DB{pool: newPool(cfg, maxConns), log: logger}
	if err := db.ensureStateTable(ctx); err != nil {
		db.pool.close()
		return nil, err
	}
	if db.q, err = newQueryAccess(ctx, cfg, db.pool, opts, logger); err != nil {
		db.pool.close()
		return nil, err
	}
	return db, nil
}

// migrations create and change hookhouse's own tables, in order; each runs once,
// recorded in _hookhouse.migrations. Never edit one that has shipped: add the
// next. The first also fits a warehouse made before migrations were numbered.
var migrations = []string{
	1: `CREATE TABLE IF NOT EXISTS "_hookhouse"."load_state" (
	integration_id bigint PRIMARY KEY,
	position bigint NOT NULL,
	sequence bigint NOT NULL,
	updated_at timestamptz NOT NULL
)`,
	// The installation whose log positions the row counts; NULL for rows written
	// before installations had ids (the loader claims those).
	2: `ALTER TABLE "_hookhouse"."load_state" ADD COLUMN IF NOT EXISTS installation_id text`,
}

// ensureStateTable creates hookhouse's schema and applies the migrations it
// lacks, all in one transaction under an advisory lock, so that two hookhouse
// processes opening one database at once do not race.
func (db *DB) ensureStateTable(ctx context.Context) error {
	var tx pgx.Tx
	conn, err := db.pool.conn(ctx, func(c *pgx.Conn) (err error) {
		tx, err = c.Begin(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: connect to the warehouse: %w; check the URL and that PostgreSQL is running", err)
	}
	defer db.pool.release(conn)
	defer rollback(ctx, tx)
	schema := pgx.Identifier{warehouse.StateSchema}.Sanitize()
	applied := pgx.Identifier{warehouse.StateSchema, "migrations"}.Sanitize()
	sql := fmt.Sprintf(`SELECT pg_advisory_xact_lock(%d, %d);
CREATE SCHEMA IF NOT EXISTS %s;
CREATE TABLE IF NOT EXISTS %s (version integer PRIMARY KEY, applied_at timestamptz NOT NULL)`,
		lockClass, schemaLockKey(warehouse.StateSchema), schema, applied)
	if _, err := tx.Exec(ctx, sql); err != nil {
		return fmt.Errorf("postgres: create schema %s: %w; the role needs CREATE on the database", schema, err)
	}
	var have int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+applied).Scan(&have); err != nil {
		return fmt.Errorf("postgres: read applied migrations: %w", err)
	}
	latest := len(migrations) - 1
	if have > latest {
		return fmt.Errorf("postgres: the warehouse's %s schema is at version %d, newer than this hookhouse knows (%d); run a newer hookhouse", schema, have, latest)
	}
	for v := have + 1; v <= latest; v++ {
		if _, err := tx.Exec(ctx, migrations[v]); err != nil {
			return fmt.Errorf("postgres: migration %d of %s: %w", v, schema, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+applied+` VALUES ($1, now())`, v); err != nil {
			return fmt.Errorf("postgres: migration %d of %s: %w", v, schema, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: migrate %s: %w", schema, err)
	}
	return nil
}

// Ping reports whether the warehouse answers.
func (db *DB) Ping(ctx context.Context) error {
	conn, err := db.pool.conn(ctx, func(c *pgx.Conn) error { return c.Ping(ctx) })
	if err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	db.pool.release(conn)
	return nil
}

// Close closes the connections: idle ones now, busy ones when their call ends.
func (db *DB) Close() error {
	db.q.close()
	db.pool.close()
	return nil
}

// LoadState returns the load state of every integration, empty if none was stored.
func (db *DB) LoadState(ctx context.Context) (map[int64]warehouse.State, error) {
	table := pgx.Identifier{warehouse.StateSchema, warehouse.StateTable}.Sanitize()
	var state map[int64]warehouse.State
	conn, err := db.pool.conn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, "SELECT integration_id, coalesce(installation_id, ''), position, sequence, updated_at FROM "+table)
		if err != nil {
			return err
		}
		state = map[int64]warehouse.State{}
		var id, pos, seq int64
		var inst string
		var at time.Time
		_, err = pgx.ForEachRow(rows, []any{&id, &inst, &pos, &seq, &at}, func() error {
			if pos < 0 {
				return fmt.Errorf("integration %d has a negative position %d", id, pos)
			}
			state[id] = warehouse.State{Installation: inst, Position: uint64(pos), Sequence: seq, LoadedAt: at.UTC()}
			return nil
		})
		return err
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000") {
			return map[int64]warehouse.State{}, nil // undefined table or schema
		}
		return nil, fmt.Errorf("postgres: read load state: %w", err)
	}
	db.pool.release(conn)
	return state, nil
}

// Columns returns the columns of schema.table in order, nil if it does not exist.
func (db *DB) Columns(ctx context.Context, schema, table string) ([]warehouse.Column, error) {
	var tables map[string][]pgColumn
	conn, err := db.pool.conn(ctx, func(c *pgx.Conn) (err error) {
		tables, err = tableColumns(ctx, c, schema, []string{table})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: columns of %s: %w", pgx.Identifier{schema, table}.Sanitize(), err)
	}
	db.pool.release(conn)
	cols := tables[table]
	if cols == nil {
		return nil, nil
	}
	out := make([]warehouse.Column, len(cols))
	for i, c := range cols {
		out[i] = warehouse.Column{Name: c.name, Type: c.typ}
	}
	return out, nil
}

// Tables returns the tables of schema with their columns.
func (db *DB) Tables(ctx context.Context, schema string) (map[string][]warehouse.Column, error) {
	var tables map[string][]pgColumn
	conn, err := db.pool.conn(ctx, func(c *pgx.Conn) (err error) {
		tables, err = tableColumns(ctx, c, schema, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: tables of %s: %w", pgx.Identifier{schema}.Sanitize(), err)
	}
	db.pool.release(conn)
	out := make(map[string][]warehouse.Column, len(tables))
	for name, cols := range tables {
		wc := make([]warehouse.Column, len(cols))
		for i, c := range cols {
			wc[i] = warehouse.Column{Name: c.name, Type: c.typ}
		}
		out[name] = wc
	}
	return out, nil
}

// CountRows counts the rows of schema.table; 0 when it does not exist.
func (db *DB) CountRows(ctx context.Context, schema, table string) (int64, error) {
	var n int64
	conn, err := db.pool.conn(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{schema, table}.Sanitize()).Scan(&n)
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000") {
			return 0, nil // undefined table or schema
		}
		return 0, fmt.Errorf("postgres: count rows of %s: %w", pgx.Identifier{schema, table}.Sanitize(), err)
	}
	db.pool.release(conn)
	return n, nil
}

// Recent returns the newest limit rows of schema.table by orderBy, read in a read-only
// transaction on hookhouse's own connection (names quoted, no user SQL).
func (db *DB) Recent(ctx context.Context, schema, table, orderBy string, limit int) (*warehouse.Result, error) {
	name := pgx.Identifier{schema, table}.Sanitize()
	var tx pgx.Tx
	conn, err := db.pool.conn(ctx, func(c *pgx.Conn) (err error) {
		tx, err = c.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: recent rows of %s: %w", name, err)
	}
	defer db.pool.release(conn)
	defer rollback(ctx, tx)
	rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT * FROM %s ORDER BY %s DESC LIMIT %d`,
		name, pgx.Identifier{orderBy}.Sanitize(), max(limit, 0)))
	if err != nil {
		return nil, fmt.Errorf("postgres: recent rows of %s: %w", name, err)
	}
	res, err := collect(rows, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: recent rows of %s: %w", name, err)
	}
	return res, nil
}

// pgColumn is a column as the catalog describes it.
type pgColumn struct {
	name   string
	typ    warehouse.Type
	pgType string // e.g. "integer", for messages
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// tableColumns reads the columns of the named relations of schema (every table of
// it when tables is nil), in ordinal order. A missing relation has no entry; one
// without columns has an empty, non-nil slice.
func tableColumns(ctx context.Context, q querier, schema string, tables []string) (map[string][]pgColumn, error) {
	// A domain counts as its base type.
	rows, err := q.Query(ctx, `
SELECT c.relname, a.attname,
       CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END,
       format_type(a.atttypid, a.atttypmod)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
WHERE n.nspname = $1 AND ($2::text[] IS NULL OR c.relname = ANY($2)) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
ORDER BY c.relname, a.attnum`, schema, tables)
	if err != nil {
		return nil, err
	}
	out := map[string][]pgColumn{}
	var rel string
	var name, format pgtype.Text
	var oid pgtype.Uint32
	_, err = pgx.ForEachRow(rows, []any{&rel, &name, &oid, &format}, func() error {
		cols := out[rel]
		if cols == nil {
			cols = []pgColumn{}
		}
		if name.Valid {
			cols = append(cols, pgColumn{name: name.String, typ: typeOf(oid.Uint32), pgType: format.String})
		}
		out[rel] = cols
		return nil
	})
	return out, err
}

// typeOf maps a PostgreSQL type to the warehouse type the loader should write; types
// hookhouse never creates read as the nearest one, and anything else as text.
func typeOf(oid uint32) warehouse.Type {
	switch oid {
	case pgtype.Int8OID, pgtype.Int4OID, pgtype.Int2OID:
		return warehouse.BigInt
	case pgtype.Float8OID, pgtype.Float4OID:
		return warehouse.Double
	case pgtype.BoolOID:
		return warehouse.Boolean
	case pgtype.NumericOID:
		return warehouse.Numeric
	case pgtype.TimestamptzOID, pgtype.TimestampOID:
		return warehouse.Timestamp
	}
	return warehouse.Text
}

// sqlType is the column type hookhouse creates for t.
func sqlType(t warehouse.Type) string {
	switch t {
	case warehouse.Text:
		return "text"
	case warehouse.BigInt:
		return "bigint"
	case warehouse.Double:
		return "double precision"
	case warehouse.Boolean:
		return "boolean"
	case warehouse.Numeric:
		return "numeric"
	case warehouse.Timestamp:
		return "timestamp with time zone"
	}
	return ""
}

// schemaLockKey is the second key of the advisory lock that serialises DDL in one
// schema (FNV-1a of the name).
func schemaLockKey(schema string) int32 {
	h := uint32(2166136261)
	for i := 0; i < len(schema); i++ {
		h ^= uint32(schema[i])
		h *= 16777619
	}
	return int32(h)
}

// rollback ends tx if it is still open; after a commit it does nothing.
func rollback(ctx context.Context, tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	tx.Rollback(ctx)
}
