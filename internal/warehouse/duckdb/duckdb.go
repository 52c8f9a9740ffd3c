// Package duckdb is the embedded warehouse: one DuckDB file in the data directory.
//
// Writes (Load) go through one connection at a time and use the DuckDB Appender inside
// an explicit transaction, so a batch, its schema changes and the integration's load
// state commit together or not at all. Reads from users (Query) run on a fresh
// connection in a READ ONLY transaction of a database opened with external access
// and configuration changes disabled; see query.go.
package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

var _ warehouse.Warehouse = (*DB)(nil)

// DB is a DuckDB warehouse. It is safe for concurrent use.
type DB struct {
	logger     *slog.Logger
	catalog    string // DuckDB's name for the file's database, e.g. "warehouse"
	stateTable string // qualified name of the load state table

	// rw serves Load, Columns, LoadState and Ping. Loads take loadSlot first, so at
	// most one write transaction is open at a time: concurrent DuckDB transactions
	// that touch the same catalog entries abort each other at commit.
	rw       *sql.DB
	loadSlot chan struct{}

	// ro serves Query. It keeps no idle connections, so every query gets a fresh
	// DuckDB connection and no session state (USE, SET search_path, temp tables)
	// survives from one user query to the next.
	ro *sql.DB

	closeOnce sync.Once
	closeErr  error

	// invalid is set when a load committed but the checkpoint after it
	// failed, which invalidates the instance (NeedsReopen).
	invalid atomic.Bool

	// beforeCommit, if set (tests only), runs inside the load transaction just
	// before COMMIT; an error aborts the load.
	beforeCommit func(ctx context.Context, conn *sql.Conn) error
}

// instanceConfig is applied when DuckDB opens the file, and lockDown right
// after, before Open returns: allowed_directories can only be set while
// external access is on, and the C API that passes these options cannot set it
// (nor order them). Without external access no query can read or write files
// (read_csv, COPY, ATTACH of a file, EXPORT, INSTALL, LOAD), except in the one
// directory a backup writes its copy into (BackupDir); lock_configuration makes
// every later SET/RESET/PRAGMA of a global option fail, so a user query cannot
// turn external access back on or change memory limits. User queries cannot
// reach BackupDir either: they run only SELECTs whose table functions are
// allowed by name (guard.go), and no file reader is.
//
// The checkpoint threshold and the thread cap (set in DSN) are measured
// (docs/performance.md, BenchmarkLoaderVero, 2M Vero records): with DuckDB's
// default 16 MB checkpoint threshold the loader checkpoints every few
// 10,000-record batches and rewrites the table's partly filled last row group each
// time, which made COMMIT more than half of the loader's CPU (20.6 µs per record,
// 55k records/s); at 64 MB it is 12.8 µs and 96k records/s (128 MB gains only 6%
// more). A checkpoint needs free disk about the size of the WAL, which the
// receiver's 64 MiB free-space reserve leaves, and a restart replays at most 64 MB.
// DuckDB's worker threads are capped at half the cores, which loads as fast and
// leaves the other half to the receiver: 15% less CPU per record on 2 cores. The
// memory cap is maxMemory.
var instanceConfig = []struct{ name, value string }{
	{"autoinstall_known_extensions", "false"},
	{"autoload_known_extensions", "false"},
	{"allow_community_extensions", "false"},
	{"allow_persistent_secrets", "false"},
	{"checkpoint_threshold", "64MB"},
}

// lockDown runs on the new instance, in this order, before any other statement.
func lockDown(backupDir string) []string {
	return []string{
		`SET GLOBAL allowed_directories = [` + quoteString(backupDir+string(os.PathSeparator)) + `]`,
		`SET GLOBAL enable_external_access = false`,
		`SET GLOBAL lock_configuration = true`,
	}
}

// BackupDir is the only directory the DuckDB instance of the file at path may
// write files into (Backup's copy): backup.tmp next to the file.
func BackupDir(path string) string {
	return filepath.Join(filepath.Dir(path), "backup.tmp")
}

// Options bound the memory DuckDB uses; the zero value picks defaults from the
// machine (see memoryLimit).
type Options struct {
	// MemoryLimit is DuckDB's memory_limit: its buffer pool, which spills to
	// its temp directory, <file>.tmp, beyond it. (The directory cannot be set
	// with external access disabled.) 0: memoryLimit().
	MemoryLimit int64
	// Threads is DuckDB's worker threads. 0: half the cores.
	Threads int
	// RecoveryMemoryLimit, if above MemoryLimit, is the memory_limit of a
	// one-off open when the file cannot be opened within MemoryLimit: DuckDB
	// replays its WAL and checkpoints at open, and a checkpoint of 1,000-column
	// tables can need more than a small pool. Without it such a file could not
	// be opened again (and an autocheckpoint that failed for memory leaves the
	// instance invalidated, so it must be). The one-off open checkpoints and
	// closes; the file is then opened within MemoryLimit.
	RecoveryMemoryLimit int64
}

// allocatorConfig makes DuckDB's allocator (jemalloc) return freed memory
// promptly: by default it keeps up to 128 MiB per thread cached after a task and
// flushes bulk frees only past 512 MiB, memory that counts in the process's RSS
// but in no limit. Measured in docs/performance.md ("Memory budget").
var allocatorConfig = []struct{ name, value string }{
	{"allocator_flush_threshold", "16MiB"},
	{"allocator_bulk_deallocation_flush_threshold", "16MiB"},
	{"allocator_background_threads", "true"},
}

// DSN is the DuckDB connection string Open uses for path: the file with
// instanceConfig, the thread cap and the memory cap (Open then applies
// lockDown). Benchmarks use it to measure bare DuckDB with the same settings.
func DSN(path string) string { return dsn(path, Options{}) }

func dsn(path string, o Options) string {
	q := url.Values{}
	for _, o := range instanceConfig {
		q.Set(o.name, o.value)
	}
	for _, o := range allocatorConfig {
		q.Set(o.name, o.value)
	}
	if o.Threads <= 0 {
		o.Threads = max(1, runtime.NumCPU()/2)
	}
	if o.MemoryLimit <= 0 {
		o.MemoryLimit = memoryLimit()
	}
	q.Set("threads", strconv.Itoa(o.Threads))
	q.Set("memory_limit", strconv.FormatInt(max(o.MemoryLimit>>20, 32), 10)+"MiB")
	return path + "?" + q.Encode()
}

// maxMemory caps DuckDB's buffer pool when no Options.MemoryLimit is given
// (tests, benchmarks): by default DuckDB may grow to 80% of the machine's memory.
// The server passes its share of --memory-limit instead.
const maxMemory = 2 << 30

// memoryLimit is maxMemory, or half the memory this process may use when that is
// less: the machine's (/proc/meminfo) or its container's (cgroup v2 memory.max,
// cgroup v1 memory.limit_in_bytes).
func memoryLimit() int64 {
	read := func(path string) string {
		b, _ := os.ReadFile(path)
		return string(b)
	}
	return memoryLimitFrom(read("/proc/meminfo"), read("/sys/fs/cgroup/memory.max"),
		read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
}

// memoryLimitFrom is memoryLimit on the contents of those files ("" when absent).
func memoryLimitFrom(meminfo, cgroupV2, cgroupV1 string) int64 {
	avail := int64(-1)
	less := func(n int64) {
		if n > 0 && (avail < 0 || n < avail) {
			avail = n
		}
	}
	for line := range strings.Lines(meminfo) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil && kb < 1<<40 {
				less(kb << 10)
			}
		}
	}
	for _, c := range []string{cgroupV2, cgroupV1} { // "max" or a huge number: no limit
		if n, err := strconv.ParseInt(strings.TrimSpace(c), 10, 64); err == nil && n < 1<<50 {
			less(n)
		}
	}
	limit := int64(maxMemory)
	if avail > 0 {
		limit = min(limit, avail/2)
	}
	return max(limit, 256<<20)
}

// Open opens (creating if needed) the DuckDB file at path and makes sure hookhouse's
// own state table exists. The directory must exist. Only one process can have the
// file open; the file is locked until Close.
func Open(ctx context.Context, path string, logger *slog.Logger) (*DB, error) {
	return OpenWith(ctx, path, Options{}, logger)
}

// OpenWith is Open with memory options.
func OpenWith(ctx context.Context, path string, opts Options, logger *slog.Logger) (*DB, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d, err := open(ctx, path, opts, logger)
	if err == nil || opts.RecoveryMemoryLimit <= opts.MemoryLimit || !outOfMemoryText(err) {
		return d, err
	}
	logger.Warn("the warehouse needs more memory than its share to open (its checkpoint); opening it once with more to checkpoint",
		"memory_limit_mib", opts.MemoryLimit>>20, "recovery_memory_limit_mib", opts.RecoveryMemoryLimit>>20, "err", err)
	big := opts
	big.MemoryLimit = opts.RecoveryMemoryLimit
	r, rerr := open(ctx, path, big, logger)
	if rerr != nil {
		return nil, fmt.Errorf("%w; with memory_limit %d MiB: %w", err, big.MemoryLimit>>20, rerr)
	}
	_, cerr := r.rw.ExecContext(ctx, `CHECKPOINT`)
	if err := errors.Join(cerr, r.Close()); err != nil {
		return nil, fmt.Errorf("duckdb: open %s: checkpoint with memory_limit %d MiB: %w", path, big.MemoryLimit>>20, err)
	}
	return open(ctx, path, opts, logger)
}

// outOfMemoryText reports whether err says DuckDB ran out of memory. Not all
// such errors are typed: a COMMIT that cannot pin a block fails as a
// "TransactionContext Error", an open as a plain error. Only hookhouse's own
// statements are judged by this (never a user query's error).
func outOfMemoryText(err error) bool {
	if outOfMemory(err) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "Out of Memory") || strings.Contains(msg, "failed to pin block") || strings.Contains(msg, "could not allocate block")
}

func open(ctx context.Context, path string, opts Options, logger *slog.Logger) (*DB, error) {
	if path == "" || strings.ContainsAny(path, "?#%") {
		return nil, fmt.Errorf("duckdb: open %q: the path must be non-empty and must not contain '?', '#' or '%%'", path)
	}
	connector, err := duckdb.NewConnector(dsn(path, opts), nil)
	if err != nil {
		return nil, fmt.Errorf("duckdb: open %s: %w (is another hookhouse process using this data directory?)", path, err)
	}
	d := &DB{
		logger:   logger,
		rw:       sql.OpenDB(connector),
		loadSlot: make(chan struct{}, 1),
		ro:       sql.OpenDB(sharedConnector{connector}),
	}
	// One connection loads; the others answer Columns, LoadState and Ping meanwhile.
	d.rw.SetMaxOpenConns(4)
	d.rw.SetMaxIdleConns(4)
	d.ro.SetMaxOpenConns(4)
	d.ro.SetMaxIdleConns(0)

	if err := d.lockDown(ctx, BackupDir(path)); err != nil {
		d.Close()
		return nil, fmt.Errorf("duckdb: open %s: %w", path, err)
	}
	var version string
	if err := d.rw.QueryRowContext(ctx, `SELECT version(), current_database()`).Scan(&version, &d.catalog); err != nil {
		d.Close()
		return nil, fmt.Errorf("duckdb: open %s: %w", path, err)
	}
	d.stateTable = quoteIdent(d.catalog) + "." + quoteIdent(warehouse.StateSchema) + "." + quoteIdent(warehouse.StateTable)
	if err := d.init(ctx); err != nil {
		d.Close()
		return nil, fmt.Errorf("duckdb: open %s: %w", path, err)
	}
	logger.Info("warehouse opened", "engine", "duckdb", "version", version, "path", path)
	return d, nil
}

// lockDown applies lockDown's settings, unless the instance has them already:
// DuckDB shares one instance per file within a process, so a second Open of a
// file still open here finds it locked.
func (d *DB) lockDown(ctx context.Context, backupDir string) error {
	var locked bool
	if err := d.rw.QueryRowContext(ctx, `SELECT current_setting('lock_configuration')`).Scan(&locked); err != nil {
		return fmt.Errorf("read lock_configuration: %w", err)
	}
	if !locked {
		for _, stmt := range lockDown(backupDir) {
			if _, err := d.rw.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("lock the configuration: %w", err)
			}
		}
	}
	var external bool
	if err := d.rw.QueryRowContext(ctx, `SELECT current_setting('enable_external_access')`).Scan(&external); err != nil || external {
		return fmt.Errorf("external access is still enabled (%v); refusing to serve queries", err)
	}
	return nil
}

// sharedConnector lets a second sql.DB use the same DuckDB instance. It has no
// Close method, so closing that sql.DB leaves the instance to its owner (rw).
type sharedConnector struct{ c *duckdb.Connector }

func (s sharedConnector) Connect(ctx context.Context) (driver.Conn, error) { return s.c.Connect(ctx) }
func (s sharedConnector) Driver() driver.Driver                            { return s.c.Driver() }

// migrations create and change hookhouse's own tables, in order; each runs once,
// in its own transaction, recorded in _hookhouse.migrations. Never edit one that
// has shipped: add the next. The first is written so that it also fits a warehouse
// made before migrations were numbered (IF NOT EXISTS).
func (d *DB) migrations() []string {
	return []string{
		1: `CREATE TABLE IF NOT EXISTS ` + d.stateTable + ` (
			integration_id BIGINT PRIMARY KEY,
			position UBIGINT NOT NULL,
			sequence BIGINT NOT NULL,
			updated_at TIMESTAMPTZ NOT NULL)`,
		// The installation whose log positions the row counts; NULL for rows
		// written before installations had ids (the loader claims those).
		2: `ALTER TABLE ` + d.stateTable + ` ADD COLUMN IF NOT EXISTS installation_id VARCHAR`,
	}
}

func (d *DB) init(ctx context.Context) error {
	schema := quoteIdent(d.catalog) + "." + quoteIdent(warehouse.StateSchema)
	applied := schema + `."migrations"`
	for _, s := range []string{
		`CREATE SCHEMA IF NOT EXISTS ` + schema,
		`CREATE TABLE IF NOT EXISTS ` + applied + ` (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)`,
	} {
		if _, err := d.rw.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("create %s: %w", warehouse.StateSchema, err)
		}
	}
	var have int
	if err := d.rw.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM `+applied).Scan(&have); err != nil {
		return fmt.Errorf("read applied migrations: %w", err)
	}
	steps := d.migrations()
	latest := len(steps) - 1
	if have > latest {
		return fmt.Errorf("the warehouse's %s schema is at version %d, newer than this hookhouse knows (%d); run a newer hookhouse", warehouse.StateSchema, have, latest)
	}
	for v := have + 1; v <= latest; v++ {
		err := func() error {
			conn, err := d.rw.Conn(ctx)
			if err != nil {
				return err
			}
			defer conn.Close()
			if _, err := conn.ExecContext(ctx, `BEGIN TRANSACTION`); err != nil {
				return err
			}
			if _, err := conn.ExecContext(ctx, steps[v]); err != nil {
				conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`)
				return err
			}
			if _, err := conn.ExecContext(ctx, `INSERT INTO `+applied+` VALUES (?, ?)`, v, time.Now().UTC()); err != nil {
				conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`)
				return err
			}
			_, err = conn.ExecContext(ctx, `COMMIT`)
			return err
		}()
		if err != nil {
			return fmt.Errorf("migration %d of %s: %w", v, warehouse.StateSchema, err)
		}
	}
	return nil
}

// Invalidated reports whether err says the DuckDB instance stopped working for
// good: after a fatal or internal error (for example a checkpoint that found the
// disk full) DuckDB refuses every statement until the file is opened again.
// What was committed before is intact; closing and reopening recovers.
func Invalidated(err error) bool {
	// By type, not by message: a user query can raise any message (error('…')).
	var de *duckdb.Error
	return errors.As(err, &de) && (de.Type == duckdb.ErrorTypeFatal || de.Type == duckdb.ErrorTypeInternal)
}

// Ping runs a trivial query.
func (d *DB) Ping(ctx context.Context) error {
	var one int
	if err := d.rw.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("duckdb: ping: %w", err)
	}
	return nil
}

// Close closes the database and releases the file lock. Loads and queries still
// running fail.
func (d *DB) Close() error {
	d.closeOnce.Do(func() {
		d.closeErr = errors.Join(d.ro.Close(), d.rw.Close())
	})
	return d.closeErr
}

// LoadState returns the committed load state of every integration.
func (d *DB) LoadState(ctx context.Context) (map[int64]warehouse.State, error) {
	states := map[int64]warehouse.State{}
	exists, err := tableExists(ctx, d.rw, warehouse.StateSchema, warehouse.StateTable)
	if err != nil || !exists {
		return states, err
	}
	rows, err := d.rw.QueryContext(ctx, `SELECT integration_id, coalesce(installation_id, ''), position, sequence, updated_at FROM `+d.stateTable)
	if err != nil {
		return nil, fmt.Errorf("duckdb: read load state: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var s warehouse.State
		if err := rows.Scan(&id, &s.Installation, &s.Position, &s.Sequence, &s.LoadedAt); err != nil {
			return nil, fmt.Errorf("duckdb: read load state: %w", err)
		}
		states[id] = s
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("duckdb: read load state: %w", err)
	}
	return states, nil
}

// Columns returns the columns of schema.table in order, nil if the table does not
// exist. A column of a type hookhouse does not create has Type 0 ("unknown").
func (d *DB) Columns(ctx context.Context, schema, table string) ([]warehouse.Column, error) {
	cols, err := columns(ctx, d.rw, schema, table)
	if err != nil {
		return nil, fmt.Errorf("duckdb: columns of %s.%s: %w", schema, table, err)
	}
	return cols, nil
}

// Tables returns the tables of schema with their columns.
func (d *DB) Tables(ctx context.Context, schema string) (map[string][]warehouse.Column, error) {
	rows, err := d.rw.QueryContext(ctx, `
		SELECT t.table_name, c.column_name, c.data_type
		FROM duckdb_tables() t
		LEFT JOIN duckdb_columns() c USING (database_oid, schema_oid, table_oid)
		WHERE t.database_name = current_database() AND lower(t.schema_name) = lower(?)
		ORDER BY t.table_name, c.column_index`, schema)
	if err != nil {
		return nil, fmt.Errorf("duckdb: tables of %s: %w", schema, err)
	}
	defer rows.Close()
	out := map[string][]warehouse.Column{}
	for rows.Next() {
		var table string
		var name, typ sql.NullString
		if err := rows.Scan(&table, &name, &typ); err != nil {
			return nil, fmt.Errorf("duckdb: tables of %s: %w", schema, err)
		}
		cols := out[table]
		if name.Valid {
			cols = append(cols, warehouse.Column{Name: name.String, Type: parseType(typ.String)})
		}
		if cols == nil {
			cols = []warehouse.Column{}
		}
		out[table] = cols
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("duckdb: tables of %s: %w", schema, err)
	}
	return out, nil
}

// CountRows counts the rows of schema.table; 0 when it does not exist.
func (d *DB) CountRows(ctx context.Context, schema, table string) (int64, error) {
	exists, err := tableExists(ctx, d.rw, schema, table)
	if err != nil || !exists {
		return 0, err
	}
	var n int64
	if err := d.rw.QueryRowContext(ctx, `SELECT count(*) FROM `+d.table(schema, table)).Scan(&n); err != nil {
		return 0, fmt.Errorf("duckdb: count rows of %s.%s: %w", schema, table, err)
	}
	return n, nil
}

// Recent returns the newest limit rows of schema.table by orderBy, read in a READ
// ONLY transaction like a user query.
func (d *DB) Recent(ctx context.Context, schema, table, orderBy string, limit int) (*warehouse.Result, error) {
	q := `SELECT * FROM ` + d.table(schema, table) + ` ORDER BY ` + quoteIdent(orderBy) + ` DESC LIMIT ` + strconv.Itoa(max(limit, 0))
	res, err := d.Query(ctx, q, limit)
	if err != nil {
		return nil, fmt.Errorf("duckdb: recent rows of %s.%s: %w", schema, table, err)
	}
	return res, nil
}

// table is the fully qualified, quoted name of schema.table in the file's catalog.
func (d *DB) table(schema, table string) string {
	return quoteIdent(d.catalog) + "." + quoteIdent(schema) + "." + quoteIdent(table)
}

// queryer is *sql.DB or *sql.Conn.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// columns reads the live catalog; inside a load it runs on the load's connection so
// that it sees the transaction's own changes. DuckDB matches names without regard to
// case, and so does this lookup.
func columns(ctx context.Context, q queryer, schema, table string) ([]warehouse.Column, error) {
	rows, err := q.QueryContext(ctx, `
		SELECT c.column_name, c.data_type
		FROM duckdb_columns() c
		JOIN duckdb_tables() t USING (database_oid, schema_oid, table_oid)
		WHERE c.database_name = current_database()
		  AND lower(c.schema_name) = lower(?) AND lower(c.table_name) = lower(?)
		ORDER BY c.column_index`, schema, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cols []warehouse.Column
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, err
		}
		cols = append(cols, warehouse.Column{Name: name, Type: parseType(typ)})
	}
	return cols, rows.Err()
}

func tableExists(ctx context.Context, q queryer, schema, table string) (bool, error) {
	rows, err := q.QueryContext(ctx, `
		SELECT 1 FROM duckdb_tables()
		WHERE database_name = current_database()
		  AND lower(schema_name) = lower(?) AND lower(table_name) = lower(?)`, schema, table)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	exists := rows.Next()
	return exists, rows.Err()
}

// sqlType is the DuckDB column type for a warehouse type.
func sqlType(t warehouse.Type) (string, error) {
	switch t {
	case warehouse.Text:
		return "VARCHAR", nil
	case warehouse.BigInt:
		return "BIGINT", nil
	case warehouse.Double:
		return "DOUBLE", nil
	case warehouse.Boolean:
		return "BOOLEAN", nil
	case warehouse.Numeric:
		return "DECIMAL(38,0)", nil
	case warehouse.Timestamp:
		return "TIMESTAMPTZ", nil
	}
	return "", fmt.Errorf("unknown column type %d", int(t))
}

// parseType maps a type name from DuckDB's catalog back to a warehouse type; 0 if
// hookhouse never creates that type.
func parseType(s string) warehouse.Type {
	switch strings.ToUpper(s) {
	case "VARCHAR":
		return warehouse.Text
	case "BIGINT":
		return warehouse.BigInt
	case "DOUBLE":
		return warehouse.Double
	case "BOOLEAN":
		return warehouse.Boolean
	case "DECIMAL(38,0)":
		return warehouse.Numeric
	case "TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ":
		return warehouse.Timestamp
	}
	return 0
}

// quoteString quotes a string literal for DuckDB.
func quoteString(s string) string {
	return `'` + strings.ReplaceAll(s, `'`, `''`) + `'`
}

// quoteIdent quotes a schema, table or column name for DuckDB.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// detached returns a context for cleanup (ROLLBACK) that still works after ctx is
// cancelled, bounded so a wedged database cannot hang the caller forever.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}
