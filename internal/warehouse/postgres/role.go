package postgres

// User SQL (Query) never runs on hookhouse's own connections. The warehouse URL
// often names a superuser, and a read-only transaction does not stop a superuser
// from reading server files (pg_read_file, COPY FROM), running programs (COPY TO
// PROGRAM) or signalling other sessions; SET LOCAL ROLE would not help either, as
// set_config('role', …) or RESET ROLE undo it. So queries log in as a user that
// cannot do any of that: either one the operator gives (--query-dsn), or one
// hookhouse creates and keeps least-privileged, here.

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// Options are the adapter's settings beyond the warehouse URL.
type Options struct {
	// QueryDSN is the URL (or key=value string) Query logs in with. The operator
	// manages that user's grants, and hookhouse creates no role; it must not be a
	// superuser or able to read files or run programs, else queries are refused.
	// Empty: hookhouse creates and manages a role of its own (see queryAccess).
	QueryDSN string
}

const (
	// queryConns is the size of the query pool: queries are few (one admin
	// key), and every one holds a connection only while it runs. A smaller
	// pool_max_conns in the URL lowers it.
	queryConns = 4
	// queryRoleConnLimit is the managed role's CONNECTION LIMIT: room for several
	// hookhouse processes on one database, each with queryConns connections.
	queryRoleConnLimit = 32
	// queryRolePrefix starts the managed role's name; the rest is a hash of the
	// database name, since roles are shared by all databases of a cluster.
	queryRolePrefix = "hookhouse_query_"
)

// dangerousRoles are the predefined roles that reach past the database's tables:
// files, programs, other sessions, server settings and statistics, or all data.
// A query login that is a member of any is refused; the managed role is a member
// of nothing at all.
var dangerousRoles = []string{
	"pg_read_server_files", "pg_write_server_files", "pg_execute_server_program",
	"pg_signal_backend", "pg_signal_autovacuum_worker", "pg_monitor", "pg_read_all_settings",
	"pg_read_all_stats", "pg_stat_scan_tables", "pg_read_all_data", "pg_write_all_data",
	"pg_checkpoint", "pg_maintain", "pg_create_subscription", "pg_use_reserved_connections",
}

// queryAccess is how Query reaches the warehouse: a pool of its own, logged in as
// a user that can read only the integration schemas.
//
// Managed (no QueryDSN): the role hookhouse_query_<hash of the database name>
// logs in with a password derived from the warehouse URL's password (so every
// hookhouse process with the same URL agrees on it without storing it; none when
// that URL has none: the same pg_hba.conf rule must then let it in), has LOGIN
// and NOINHERIT but no other attribute and no membership, may CONNECT, and gets
// USAGE and SELECT on each integration schema (ungrantedSQL, syncGrants).
// Schemas are granted one by one, not through ALTER DEFAULT PRIVILEGES: those
// would also open every table the warehouse user creates later in public or for
// another application sharing that user.
type queryAccess struct {
	main    *pgx.ConnConfig // the warehouse URL's config, for deriving the role's login
	managed bool
	conns   int // size of the query pool

	mu sync.Mutex
	// pool: managed, nil until the role is set up; with --query-dsn, made at
	// once but handed out only after checkLogin passed (role set).
	pool     *pool
	role     string // the managed role, or the --query-dsn user once checked
	mainUser string // managed: the user that owns the integration schemas
	closed   bool
}

// errNoCreateRole says why queries are refused when hookhouse may not create its
// role; loading is unaffected.
type errNoCreateRole struct{ user string }

func (e errNoCreateRole) Error() string {
	return fmt.Sprintf("queries are disabled: the warehouse user %q lacks the CREATEROLE privilege that hookhouse needs "+
		"to create its read-only query role; grant it (ALTER ROLE %s CREATEROLE), or create a user that may only "+
		"SELECT the integration schemas and pass it as --query-dsn (HOOKHOUSE_QUERY_DSN)", e.user, pgx.Identifier{e.user}.Sanitize())
}

// newQueryAccess prepares query access for Open. A bad QueryDSN fails Open; a
// role that cannot be set up now only disables queries (logged once, at warn),
// and the next query tries again, so loading never waits for it.
func newQueryAccess(ctx context.Context, main *pgx.ConnConfig, mainPool *pool, opts Options, logger *slog.Logger) (*queryAccess, error) {
	q := &queryAccess{main: main, managed: opts.QueryDSN == "", conns: min(queryConns, cap(mainPool.slots))}
	if !q.managed {
		cfg, err := parseDSN(opts.QueryDSN)
		if err != nil {
			// pgx's message may echo the DSN, password included.
			return nil, errors.New("postgres: cannot parse --query-dsn; expected postgres://user:password@host:port/database")
		}
		if v, ok := cfg.RuntimeParams["pool_max_conns"]; ok {
			delete(cfg.RuntimeParams, "pool_max_conns")
			if q.conns, err = strconv.Atoi(v); err != nil || q.conns < 1 {
				return nil, fmt.Errorf("postgres: pool_max_conns=%q in --query-dsn must be a positive integer", v)
			}
		}
		q.pool = newPool(cfg, q.conns)
	}
	if _, err := q.ready(ctx, mainPool); err != nil {
		logger.Warn("queries (/api/v1/query) are refused until this is fixed; loading is not affected", "err", err)
	}
	return q, nil
}

// ready returns the query pool once the query login is known to be safe: the
// managed role set up, or the --query-dsn user checked. Until then each call
// tries again, so a fix (a grant, a server back up) needs no restart.
func (q *queryAccess) ready(ctx context.Context, mainPool *pool) (*pool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, errPoolClosed
	}
	if q.managed {
		if q.pool != nil {
			return q.pool, nil
		}
		if err := q.setupRole(ctx, mainPool); err != nil {
			return nil, err
		}
		return q.pool, nil
	}
	if q.role == "" { // the --query-dsn user, checked once
		user, err := checkLogin(ctx, q.pool)
		if err != nil {
			return nil, err
		}
		q.role = user
	}
	return q.pool, nil
}

func (q *queryAccess) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	if q.pool != nil {
		q.pool.close()
	}
}

// parseDSN parses a warehouse URL with the adapter's defaults (see Open).
func parseDSN(dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(dsn, "default_query_exec_mode") {
		cfg.DefaultQueryExecMode = pgx.QueryExecModeDescribeExec
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = defaultConnectTimeout
	}
	// Defence in depth: even a statement that ended Query's READ ONLY
	// transaction would find the session read-only.
	cfg.RuntimeParams["default_transaction_read_only"] = "on"
	return cfg, nil
}

// checkLogin refuses a --query-dsn user that is a superuser, a member of a
// dangerous predefined role, or can read hookhouse's own schema: the operator
// asked for a reader, and such a user would reopen what the separate login
// closes. It returns the user's name.
func checkLogin(ctx context.Context, p *pool) (string, error) {
	var user string
	var super bool
	var member []string
	var bookkeeping bool
	conn, err := p.conn(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `
SELECT current_user, r.rolsuper,
       ARRAY(SELECT d.rolname FROM pg_catalog.pg_roles d
             WHERE d.rolname = ANY($1) AND pg_catalog.pg_has_role(r.oid, d.oid, 'MEMBER') ORDER BY 1),
       coalesce(pg_catalog.has_schema_privilege(r.oid, n.oid, 'USAGE'), false)
FROM pg_catalog.pg_roles r
LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = $2
WHERE r.rolname = current_user`, dangerousRoles, warehouse.StateSchema).Scan(&user, &super, &member, &bookkeeping)
	})
	if err != nil {
		return "", fmt.Errorf("connect with --query-dsn: %w", err)
	}
	p.release(conn)
	switch {
	case super:
		return "", fmt.Errorf("queries are disabled: the --query-dsn user %q is a superuser; give it a user that may only SELECT the integration schemas", user)
	case len(member) > 0:
		return "", fmt.Errorf("queries are disabled: the --query-dsn user %q is a member of %s, which reach past the integration schemas; revoke that", user, strings.Join(member, ", "))
	case bookkeeping:
		return "", fmt.Errorf("queries are disabled: the --query-dsn user %q may use hookhouse's own schema %s; REVOKE USAGE ON SCHEMA %s FROM %s",
			user, warehouse.StateSchema, warehouse.StateSchema, pgx.Identifier{user}.Sanitize())
	}
	return user, nil
}

// queryRoleName is the managed role's name for a database.
func queryRoleName(database string) string {
	h := fnv.New32a()
	h.Write([]byte(database))
	return fmt.Sprintf("%s%08x", queryRolePrefix, h.Sum32())
}

// queryRolePassword derives the managed role's password from the warehouse
// URL's password, "" when that is empty. Deterministic, so hookhouse processes
// sharing the URL agree; a changed URL password changes it at the next start.
func queryRolePassword(mainPassword, role string) string {
	if mainPassword == "" {
		return ""
	}
	mac := hmac.New(sha256.New, []byte(mainPassword))
	mac.Write([]byte("hookhouse query role password v1\x00" + role))
	return hex.EncodeToString(mac.Sum(nil))
}

// scramVerifier is what PostgreSQL stores for a SCRAM-SHA-256 password (RFC
// 5802, RFC 7677). Sending it instead of the password keeps the password out of
// the server's statement log (log_statement = ddl logs ALTER ROLE in full); the
// salt is derived too, so that every start writes the same value.
func scramVerifier(password, role string) string {
	const iterations = 4096
	mac := hmac.New(sha256.New, []byte(password))
	mac.Write([]byte("hookhouse query role salt v1\x00" + role))
	salt := mac.Sum(nil)[:16]
	storedKey, serverKey := scramKeys(password, salt, iterations)
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(storedKey), b64(serverKey))
}

// scramKeys returns SCRAM's StoredKey and ServerKey for password. The password
// is ASCII (hex), so SASLprep leaves it as it is.
func scramKeys(password string, salt []byte, iterations int) (storedKey, serverKey []byte) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		panic(err) // only for parameters outside FIPS limits, which these are not
	}
	hmacOf := func(key []byte, msg string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(msg))
		return m.Sum(nil)
	}
	clientKey := hmacOf(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	return stored[:], hmacOf(salted, "Server Key")
}

// setupRole creates or repairs the managed role in one transaction on the main
// pool, under an advisory lock so that hookhouse processes opening one database
// at once do not race, and on success opens the query pool. It checks the result
// rather than trusting the statements: any attribute, membership or grant that
// would let the role past the integration schemas fails it, and queries stay off.
func (q *queryAccess) setupRole(ctx context.Context, mainPool *pool) error {
	var tx pgx.Tx
	conn, err := mainPool.conn(ctx, func(c *pgx.Conn) (err error) {
		tx, err = c.Begin(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("set up the query role: %w", err)
	}
	defer mainPool.release(conn)
	defer rollback(ctx, tx)

	var database, user string
	var super, createRole bool
	err = tx.QueryRow(ctx, `SELECT current_database(), current_user, rolsuper, rolcreaterole
FROM pg_catalog.pg_roles WHERE rolname = current_user`).Scan(&database, &user, &super, &createRole)
	if err != nil {
		return fmt.Errorf("set up the query role: %w", err)
	}
	if !super && !createRole {
		return errNoCreateRole{user: user}
	}
	role := queryRoleName(database)
	ident := pgx.Identifier{role}.Sanitize()
	password := queryRolePassword(q.main.Password, role)
	secret := "NULL"
	if password != "" {
		secret = "'" + scramVerifier(password, role) + "'"
	}
	fail := func(step string, err error) error {
		return fmt.Errorf("set up the query role %s: %s: %w", role, step, err)
	}
	// The key is the role's name hashed like a schema's: it serialises this
	// setup only, and a collision would only make two setups take turns.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, lockClass, schemaLockKey(role)); err != nil {
		return fail("lock", err)
	}

	var exists, roleSuper, roleRepl, roleBypass bool
	err = tx.QueryRow(ctx, `SELECT true, rolsuper, rolreplication, rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = $1`,
		role).Scan(&exists, &roleSuper, &roleRepl, &roleBypass)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fail("read the role", err)
	}
	// Only what needs changing is named: PostgreSQL refuses a non-superuser
	// ALTER ROLE that mentions SUPERUSER, REPLICATION or BYPASSRLS at all.
	attrs := "LOGIN NOINHERIT NOCREATEDB NOCREATEROLE CONNECTION LIMIT " + strconv.Itoa(queryRoleConnLimit) + " PASSWORD " + secret
	var stmts []string
	if !exists {
		stmts = append(stmts, "CREATE ROLE "+ident+" "+attrs)
	} else {
		if roleSuper || roleRepl || roleBypass {
			if !super {
				return fail("repair", fmt.Errorf("it has SUPERUSER, REPLICATION or BYPASSRLS, which only a superuser can take away"))
			}
			stmts = append(stmts, "ALTER ROLE "+ident+" NOSUPERUSER NOREPLICATION NOBYPASSRLS")
		}
		stmts = append(stmts, "ALTER ROLE "+ident+" "+attrs)
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fail("create or alter", err)
		}
	}

	// Memberships: NOINHERIT alone would still let it SET ROLE to a role it is a
	// member of, e.g. pg_read_server_files.
	rows, err := tx.Query(ctx, `SELECT g.rolname FROM pg_catalog.pg_auth_members m
JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
JOIN pg_catalog.pg_roles r ON r.oid = m.member
WHERE r.rolname = $1`, role)
	if err != nil {
		return fail("read memberships", err)
	}
	groups, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fail("read memberships", err)
	}
	for _, g := range groups {
		if _, err := tx.Exec(ctx, "REVOKE "+pgx.Identifier{g}.Sanitize()+" FROM "+ident); err != nil {
			return fail("revoke membership in "+g, err)
		}
	}

	var canConnect bool
	if err := tx.QueryRow(ctx, `SELECT has_database_privilege($1, current_database(), 'CONNECT')`, role).Scan(&canConnect); err != nil {
		return fail("check CONNECT", err)
	}
	if !canConnect {
		if _, err := tx.Exec(ctx, "GRANT CONNECT ON DATABASE "+pgx.Identifier{database}.Sanitize()+" TO "+ident); err != nil {
			return fail("grant CONNECT", err)
		}
	}
	// Hookhouse's own schema: never readable, whatever was granted before.
	state := pgx.Identifier{warehouse.StateSchema}.Sanitize()
	if _, err := tx.Exec(ctx, "REVOKE ALL ON SCHEMA "+state+" FROM "+ident+
		"; REVOKE ALL ON ALL TABLES IN SCHEMA "+state+" FROM "+ident+
		"; REVOKE ALL ON ALL SEQUENCES IN SCHEMA "+state+" FROM "+ident); err != nil {
		return fail("revoke "+warehouse.StateSchema, err)
	}
	schemas, err := ungranted(ctx, tx, user, role)
	if err != nil {
		return fail("find integration schemas", err)
	}
	if err := grantSchemas(ctx, tx, role, schemas); err != nil {
		return fail("grant", err)
	}
	if err := verifyRole(ctx, tx, role); err != nil {
		return fail("check", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fail("commit", err)
	}

	cfg := q.main.Copy()
	cfg.User, cfg.Password, cfg.Database = role, password, database
	cfg.RuntimeParams = map[string]string{}
	for k, v := range q.main.RuntimeParams {
		cfg.RuntimeParams[k] = v
	}
	cfg.RuntimeParams["default_transaction_read_only"] = "on"
	q.role, q.mainUser, q.pool = role, user, newPool(cfg, q.conns)
	return nil
}

// verifyRole fails unless role is what setupRole means it to be.
func verifyRole(ctx context.Context, tx pgx.Tx, role string) error {
	var super, createRole, createDB, repl, bypass, inherit, login bool
	var memberships int
	var bookkeeping bool
	err := tx.QueryRow(ctx, `
SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls, r.rolinherit, r.rolcanlogin,
       (SELECT count(*) FROM pg_catalog.pg_auth_members m WHERE m.member = r.oid),
       coalesce(pg_catalog.has_schema_privilege(r.oid, n.oid, 'USAGE'), false)
FROM pg_catalog.pg_roles r
LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = $2
WHERE r.rolname = $1`, role, warehouse.StateSchema).Scan(
		&super, &createRole, &createDB, &repl, &bypass, &inherit, &login, &memberships, &bookkeeping)
	switch {
	case err != nil:
		return err
	case super || createRole || createDB || repl || bypass || inherit || !login:
		return errors.New("its attributes did not take")
	case memberships > 0:
		return errors.New("it is still a member of another role (granted by someone else?)")
	case bookkeeping:
		return fmt.Errorf("it may still use schema %s (granted to PUBLIC?); revoke that", warehouse.StateSchema)
	}
	return nil
}

// ungrantedSQL finds the integration schemas role cannot fully read yet. An
// integration schema is one the warehouse user ($1) owns, holding a table the
// loader always creates (data or _sdc_rejected), with a name hookhouse never
// gives an integration (public, pg_*, information_schema, _hookhouse*): so a
// schema made directly in the database by anyone, even as the warehouse user,
// for anything else, stays closed to queries.
const ungrantedSQL = `
SELECT n.nspname
FROM pg_catalog.pg_namespace n
WHERE n.nspowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1)
  AND n.nspname NOT IN ('public', 'information_schema')
  AND left(n.nspname, 3) <> 'pg_' AND left(n.nspname, 10) <> '_hookhouse'
  AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c
              WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p') AND c.relname IN ('data', '_sdc_rejected'))
  AND (NOT pg_catalog.has_schema_privilege($2, n.oid, 'USAGE')
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                  WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                    AND NOT pg_catalog.has_table_privilege($2, c.oid, 'SELECT')))
ORDER BY 1`

func ungranted(ctx context.Context, q querier, mainUser, role string) ([]string, error) {
	rows, err := q.Query(ctx, ungrantedSQL, mainUser, role)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// grantSchemas lets role read every table of schemas. Each schema's DDL lock
// (the one Load takes before creating tables) is taken first: a GRANT racing a
// load's CREATE or ALTER TABLE of the same table fails with "tuple concurrently
// updated". Locks are taken in name order, and a load holds one at a time.
func grantSchemas(ctx context.Context, tx pgx.Tx, role string, schemas []string) error {
	ident := pgx.Identifier{role}.Sanitize()
	for _, s := range slices.Sorted(slices.Values(schemas)) {
		schema := pgx.Identifier{s}.Sanitize()
		sql := fmt.Sprintf("SELECT pg_advisory_xact_lock(%d, %d); GRANT USAGE ON SCHEMA %s TO %s; GRANT SELECT ON ALL TABLES IN SCHEMA %s TO %s",
			lockClass, schemaLockKey(s), schema, ident, schema, ident)
		if _, err := tx.Exec(ctx, sql); err != nil {
			return fmt.Errorf("schema %s: %w", schema, err)
		}
	}
	return nil
}

// syncGrants makes integration schemas and tables created since the role was set
// up readable, before a query runs, so that a new integration needs no restart.
// The check runs on the query's own connection c (one catalog read); only when
// something is missing does a short transaction on the main pool grant it.
func (q *queryAccess) syncGrants(ctx context.Context, c *pgx.Conn, mainPool *pool) error {
	if !q.managed {
		return nil // the operator manages the --query-dsn user's grants
	}
	schemas, err := ungranted(ctx, c, q.mainUser, q.role)
	if err != nil || len(schemas) == 0 {
		return err
	}
	var tx pgx.Tx
	conn, err := mainPool.conn(ctx, func(c *pgx.Conn) (err error) {
		tx, err = c.Begin(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("grant the query role new schemas: %w", err)
	}
	defer mainPool.release(conn)
	defer rollback(ctx, tx)
	if err := grantSchemas(ctx, tx, q.role, schemas); err != nil {
		return fmt.Errorf("grant the query role new schemas: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("grant the query role new schemas: %w", err)
	}
	return nil
}

// loginHint adds what to do when the query login itself is refused.
func (q *queryAccess) loginHint(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || (pgErr.Code != "28000" && pgErr.Code != "28P01") {
		return err
	}
	if !q.managed {
		return fmt.Errorf("%w; check the user and password in --query-dsn", err)
	}
	return fmt.Errorf("%w; hookhouse's query role %s logs in like the warehouse user, with a password derived from "+
		"the warehouse URL's (none when it has none); if pg_hba.conf asks for more (cert, peer, a per-user rule), "+
		"allow that role or pass --query-dsn", err, q.role)
}
