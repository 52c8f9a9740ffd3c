package postgres

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hookhouse/hookhouse/internal/pgtest"
	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// asUser returns dsn logged in as user instead (pgtest trusts local logins).
func asUser(t testing.TB, dsn, user, password string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if password != "" {
		u.User = url.UserPassword(user, password)
	} else {
		u.User = url.User(user)
	}
	return u.String()
}

func databaseOf(t testing.TB, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

// dropRoles removes test roles when t ends, so that a server from
// HOOKHOUSE_TEST_PG does not collect them. Their database goes first.
func dropRoles(t *testing.T, admin string, roles ...string) {
	t.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		for _, r := range roles {
			conn.Exec(ctx, "DROP OWNED BY "+pgx.Identifier{r}.Sanitize()+" CASCADE")
			conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{r}.Sanitize())
		}
	})
}

func exec(t testing.TB, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// TestQueryRoleHasNoPowers logs in as the managed role directly, outside
// Query's read-only transaction and without its statement checks, and tries what
// a superuser could do: each must fail for want of privilege (42501), so the
// role itself, not the way Query runs it, is what stops them.
func TestQueryRoleHasNoPowers(t *testing.T) {
	db, dsn := openDB(t)
	ctx := t.Context()
	mustLoad(t, db, &warehouse.Batch{Integration: 1, Schema: "reach", State: warehouse.State{Installation: "i", Position: 1},
		Tables: []warehouse.Table{{Name: "data", Columns: []warehouse.Column{col("a", warehouse.Text)}, Rows: [][]any{{"x"}}}}})
	if _, err := db.Query(ctx, `SELECT a FROM reach.data`, 1); err != nil {
		t.Fatal(err)
	}
	role := db.q.role
	if role != queryRoleName(databaseOf(t, dsn)) {
		t.Fatalf("query role %q, want %q", role, queryRoleName(databaseOf(t, dsn)))
	}
	admin := rawConn(t, dsn)
	var adminPID int
	if err := admin.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&adminPID); err != nil {
		t.Fatal(err)
	}
	conn := rawConn(t, asUser(t, dsn, role, ""))
	for _, sql := range []string{
		`SELECT pg_read_file('/etc/passwd')`,
		`SELECT pg_read_binary_file('/etc/passwd')`,
		`SELECT pg_ls_dir('/')`,
		`SELECT pg_stat_file('/etc/passwd')`,
		`SELECT lo_import('/etc/passwd')`,
		`SELECT lo_export(lo_create(0), '/tmp/hookhouse-role-test')`,
		`COPY (SELECT 1) TO PROGRAM 'true'`,
		`COPY (SELECT 1) TO '/tmp/hookhouse-role-test'`,
		`COPY reach.data FROM '/etc/passwd'`,
		`SET ROLE postgres`,
		`SET SESSION AUTHORIZATION postgres`,
		`SELECT set_config('role', 'postgres', false)`,
		fmt.Sprintf(`SELECT pg_terminate_backend(%d)`, adminPID),
		fmt.Sprintf(`SELECT pg_cancel_backend(%d)`, adminPID),
		`CHECKPOINT`,
		`SELECT pg_reload_conf()`,
		`SELECT current_setting('data_directory')`,
		`SELECT rolpassword FROM pg_authid`,
		`SELECT * FROM _hookhouse.load_state`,
		`SELECT * FROM _hookhouse.migrations`,
		`INSERT INTO reach.data VALUES ('y')`,
		`DELETE FROM reach.data`,
		`CREATE TABLE reach.x (a int)`,
		`CREATE TABLE public.x (a int)`,
		`CREATE SCHEMA x`,
		`ALTER ROLE ` + pgx.Identifier{role}.Sanitize() + ` SUPERUSER`,
		`GRANT pg_read_server_files TO ` + pgx.Identifier{role}.Sanitize(),
		`CREATE ROLE hookhouse_role_test_other`,
	} {
		_, err := conn.Exec(ctx, sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("as %s, %s: %v; want insufficient_privilege (42501)", role, sql, err)
		}
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM reach.data`).Scan(&n); err != nil || n != 1 {
		t.Errorf("the role reads the integration schema: %d, %v", n, err)
	}
	if err := admin.Ping(ctx); err != nil {
		t.Errorf("the superuser session was ended: %v", err)
	}
}

// TestQueryReadsOnlyIntegrationSchemas: tables the warehouse user (here a
// superuser) creates outside the integration schemas, before or after the
// warehouse is opened, stay closed to queries.
func TestQueryReadsOnlyIntegrationSchemas(t *testing.T) {
	dsn, err := pgtest.Shared(t).NewDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	admin := rawConn(t, dsn)
	exec(t, admin, `CREATE SCHEMA before_open; CREATE TABLE before_open.t AS SELECT 'hidden-1' AS v;
CREATE TABLE public.t AS SELECT 'hidden-2' AS v`)
	db, err := Open(ctx, dsn, Options{}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mustLoad(t, db, &warehouse.Batch{Integration: 1, Schema: "open", State: warehouse.State{Installation: "i", Position: 1},
		Tables: []warehouse.Table{{Name: "data", Columns: []warehouse.Column{col("a", warehouse.Text)}, Rows: [][]any{{"x"}}}}})
	exec(t, admin, `CREATE SCHEMA after_open; CREATE TABLE after_open.t AS SELECT 'hidden-3' AS v;
CREATE TABLE public.u AS SELECT 'hidden-4' AS v; CREATE TABLE after_open.other AS SELECT 'hidden-5' AS v`)
	if res, err := db.Query(ctx, `SELECT a FROM open.data`, 10); err != nil || len(res.Rows) != 1 {
		t.Fatalf("the integration schema: %+v, %v", res, err)
	}
	for _, sql := range []string{
		`SELECT v FROM before_open.t`, `SELECT v FROM public.t`, `SELECT v FROM after_open.t`,
		`SELECT v FROM public.u`, `SELECT v FROM after_open.other`,
	} {
		res, err := db.Query(ctx, sql, 10)
		if !errors.Is(err, warehouse.ErrReadOnly) {
			t.Errorf("Query(%q) = %+v, %v; want an error wrapping ErrReadOnly", sql, res, err)
		}
		if err != nil && strings.Contains(err.Error(), "hidden-") {
			t.Errorf("Query(%q): the error shows the data: %v", sql, err)
		}
	}
	// The catalog views show only what the role may read.
	res, err := db.Query(ctx, `SELECT table_schema || '.' || table_name FROM information_schema.tables
WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`, 100)
	if err != nil || fmt.Sprint(res.Rows) != "[[open.data]]" {
		t.Errorf("information_schema.tables = %+v, %v; want only open.data", res, err)
	}
}

// TestQueryRoleRepaired: a role of that name left with powers (by hand, or by an
// older hookhouse) is brought back to none when the warehouse opens.
func TestQueryRoleRepaired(t *testing.T) {
	dsn, err := pgtest.Shared(t).NewDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	role := queryRoleName(databaseOf(t, dsn))
	ident := pgx.Identifier{role}.Sanitize()
	admin := rawConn(t, dsn)
	exec(t, admin, `CREATE SCHEMA IF NOT EXISTS _hookhouse; CREATE ROLE `+ident+` SUPERUSER CREATEDB CREATEROLE INHERIT NOLOGIN;
GRANT pg_read_server_files, pg_execute_server_program, pg_signal_backend TO `+ident+`;
GRANT USAGE ON SCHEMA _hookhouse TO `+ident)
	dropRoles(t, pgtest.Shared(t).URL(), role)
	db, err := Open(ctx, dsn, Options{}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var super, createRole, createDB, inherit, login bool
	var groups int
	var bookkeeping bool
	err = admin.QueryRow(ctx, `SELECT rolsuper, rolcreaterole, rolcreatedb, rolinherit, rolcanlogin,
  (SELECT count(*) FROM pg_auth_members WHERE member = r.oid), has_schema_privilege(r.oid, '_hookhouse', 'USAGE')
FROM pg_roles r WHERE rolname = $1`, role).Scan(&super, &createRole, &createDB, &inherit, &login, &groups, &bookkeeping)
	if err != nil {
		t.Fatal(err)
	}
	if super || createRole || createDB || inherit || !login || groups != 0 || bookkeeping {
		t.Errorf("role after Open: super %v createrole %v createdb %v inherit %v login %v memberships %d _hookhouse usage %v",
			super, createRole, createDB, inherit, login, groups, bookkeeping)
	}
	if _, err := db.Query(ctx, `SELECT pg_read_file('/etc/passwd')`, 1); !errors.Is(err, warehouse.ErrReadOnly) {
		t.Errorf("pg_read_file after the repair: %v", err)
	}
}

// TestQueryRoleSetupConcurrent opens one database from several processes' worth
// of adapters at once: the role is created once and every one can query.
func TestQueryRoleSetupConcurrent(t *testing.T) {
	dsn, err := pgtest.Shared(t).NewDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			db, err := Open(t.Context(), dsn, Options{}, testLogger(t))
			if err != nil {
				t.Errorf("Open %d: %v", i, err)
				return
			}
			defer db.Close()
			if _, err := db.Query(t.Context(), `SELECT 1`, 1); err != nil {
				t.Errorf("Query %d: %v", i, err)
			}
		})
	}
	wg.Wait()
}

// TestQueryWithoutCreateRole: a warehouse user that may not create roles still
// loads; queries are refused with what to do, said once in the log at start,
// and work as soon as the privilege is granted, without a restart.
func TestQueryWithoutCreateRole(t *testing.T) {
	dsn, err := pgtest.Shared(t).NewDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	db0 := databaseOf(t, dsn)
	loader := "hh_loader_" + strings.TrimPrefix(db0, "hookhouse_test_")
	admin := rawConn(t, dsn)
	exec(t, admin, `CREATE ROLE `+pgx.Identifier{loader}.Sanitize()+` LOGIN NOCREATEROLE;
GRANT CREATE ON DATABASE `+pgx.Identifier{db0}.Sanitize()+` TO `+pgx.Identifier{loader}.Sanitize())
	dropRoles(t, pgtest.Shared(t).URL(), queryRoleName(db0), loader)

	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	// The password is ignored by pgtest's trust rule; it must not be logged.
	db, err := Open(ctx, asUser(t, dsn, loader, "pw-s3cr3t"), Options{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mustLoad(t, db, &warehouse.Batch{Integration: 1, Schema: "noroles", State: warehouse.State{Installation: "i", Position: 1},
		Tables: []warehouse.Table{{Name: "data", Columns: []warehouse.Column{col("a", warehouse.Text)}, Rows: [][]any{{"x"}}}}})
	for range 2 {
		_, err = db.Query(ctx, `SELECT a FROM noroles.data`, 1)
		if err == nil || !strings.Contains(err.Error(), "--query-dsn") || !strings.Contains(err.Error(), "CREATEROLE") {
			t.Errorf("Query without CREATEROLE = %v; want a refusal naming CREATEROLE and --query-dsn", err)
		}
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if strings.Count(out, "level=WARN") != 1 || !strings.Contains(out, "CREATEROLE") {
		t.Errorf("want one warning naming CREATEROLE, logged:\n%s", out)
	}
	if strings.Contains(out, "s3cr3t") || strings.Contains(fmt.Sprint(err), "s3cr3t") {
		t.Errorf("the password reached the log or the error:\n%s\n%v", out, err)
	}

	exec(t, admin, `ALTER ROLE `+pgx.Identifier{loader}.Sanitize()+` CREATEROLE`)
	res, err := db.Query(ctx, `SELECT a FROM noroles.data`, 1)
	if err != nil || len(res.Rows) != 1 {
		t.Fatalf("Query after GRANT CREATEROLE = %+v, %v", res, err)
	}
	if _, err := db.Query(ctx, `SELECT pg_read_file('/etc/passwd')`, 1); !errors.Is(err, warehouse.ErrReadOnly) {
		t.Errorf("pg_read_file: %v", err)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestQueryDSN: with --query-dsn hookhouse creates no role and uses that login,
// unless it is a superuser or may reach files, which refuses queries.
func TestQueryDSN(t *testing.T) {
	dsn, err := pgtest.Shared(t).NewDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	db0 := databaseOf(t, dsn)
	suffix := strings.TrimPrefix(db0, "hookhouse_test_")
	reader, strong := "hh_reader_"+suffix, "hh_strong_"+suffix
	admin := rawConn(t, dsn)
	dropRoles(t, pgtest.Shared(t).URL(), reader, strong)
	exec(t, admin, `CREATE ROLE `+reader+` LOGIN; CREATE ROLE `+strong+` LOGIN IN ROLE pg_read_server_files`)

	if _, err := Open(ctx, dsn, Options{QueryDSN: "postgres://u:s3cr3t@h:bad/db"}, nil); err == nil ||
		!strings.Contains(err.Error(), "--query-dsn") || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("Open with an unparsable --query-dsn = %v", err)
	}

	for _, tc := range []struct{ user, refusal string }{
		{"postgres", "is a superuser"},
		{strong, "pg_read_server_files"},
	} {
		db, err := Open(ctx, dsn, Options{QueryDSN: asUser(t, dsn, tc.user, "")}, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		_, err = db.Query(ctx, `SELECT 1`, 1)
		if err == nil || !strings.Contains(err.Error(), tc.refusal) {
			t.Errorf("--query-dsn as %s: Query = %v; want a refusal saying %q", tc.user, err, tc.refusal)
		}
		db.Close()
	}

	db, err := Open(ctx, dsn, Options{QueryDSN: asUser(t, dsn, reader, "")}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mustLoad(t, db, &warehouse.Batch{Integration: 1, Schema: "given", State: warehouse.State{Installation: "i", Position: 1},
		Tables: []warehouse.Table{{Name: "data", Columns: []warehouse.Column{col("a", warehouse.Text)}, Rows: [][]any{{"x"}}}}})
	// The operator's grants, not hookhouse's: nothing until they are given.
	if _, err := db.Query(ctx, `SELECT a FROM given.data`, 1); !errors.Is(err, warehouse.ErrReadOnly) {
		t.Errorf("before the operator's GRANT: %v; want a privilege refusal", err)
	}
	exec(t, admin, `GRANT USAGE ON SCHEMA given TO `+reader+`; GRANT SELECT ON ALL TABLES IN SCHEMA given TO `+reader)
	if res, err := db.Query(ctx, `SELECT a, current_user FROM given.data`, 1); err != nil || fmt.Sprint(res.Rows) != "[[x "+reader+"]]" {
		t.Errorf("Query as the --query-dsn user = %+v, %v", res, err)
	}
	var roles int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE rolname = $1`, queryRoleName(db0)).Scan(&roles); err != nil || roles != 0 {
		t.Errorf("with --query-dsn hookhouse created its role anyway (%d, %v)", roles, err)
	}
}

func TestQueryRolePassword(t *testing.T) {
	role := queryRoleName("wh")
	if !strings.HasPrefix(role, queryRolePrefix) || len(role) != len(queryRolePrefix)+8 || role == queryRoleName("wh2") {
		t.Errorf("queryRoleName: %q", role)
	}
	if p := queryRolePassword("", role); p != "" {
		t.Errorf("no warehouse password, yet a role password %q", p)
	}
	p := queryRolePassword("main-pw", role)
	if len(p) != 64 || p != queryRolePassword("main-pw", role) || p == queryRolePassword("main-pw2", role) ||
		p == queryRolePassword("main-pw", queryRoleName("other")) || strings.Contains(p, "main-pw") {
		t.Errorf("queryRolePassword is not a stable, keyed derivation: %q", p)
	}
	v := scramVerifier(p, role)
	if v != scramVerifier(p, role) || !strings.HasPrefix(v, "SCRAM-SHA-256$4096:") || strings.Contains(v, p) {
		t.Errorf("scramVerifier = %q", v)
	}

	// RFC 7677's exchange: the keys must reproduce its client proof and server
	// signature.
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	stored, server := scramKeys("pencil", salt, 4096)
	auth := "n=user,r=rOprNGfwEbeRWgbNEkqO," +
		"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096," +
		"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	mac := func(key []byte) []byte { m := hmac.New(sha256.New, key); m.Write([]byte(auth)); return m.Sum(nil) }
	proof, _ := base64.StdEncoding.DecodeString("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
	clientKey := make([]byte, len(proof))
	for i, s := range mac(stored) {
		clientKey[i] = proof[i] ^ s
	}
	if sum := sha256.Sum256(clientKey); !bytes.Equal(sum[:], stored) {
		t.Error("StoredKey does not match RFC 7677's client proof")
	}
	if got := base64.StdEncoding.EncodeToString(mac(server)); got != "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=" {
		t.Errorf("ServerSignature %s does not match RFC 7677's", got)
	}

	// PostgreSQL takes the verifier as one (it stores it as given, where it
	// would hash text it does not recognise).
	dsn, err := pgtest.Shared(t).NewDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	admin := rawConn(t, dsn)
	name := "hh_scram_" + strings.TrimPrefix(databaseOf(t, dsn), "hookhouse_test_")
	dropRoles(t, pgtest.Shared(t).URL(), name)
	exec(t, admin, `CREATE ROLE `+name+` LOGIN PASSWORD '`+v+`'`)
	var stored2 string
	if err := admin.QueryRow(t.Context(), `SELECT rolpassword FROM pg_authid WHERE rolname = $1`, name).Scan(&stored2); err != nil || stored2 != v {
		t.Errorf("PostgreSQL stored %q (%v), want the verifier %q", stored2, err, v)
	}
}

// TestOpenErrorsHideTheDSN: whatever form the password takes in the warehouse
// URL or --query-dsn, Open's errors, Query's errors and the log do not show it.
func TestOpenErrorsHideTheDSN(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, dsn := range []string{
		"postgres://u@127.0.0.1:1/db?password=s3cr3t&connect_timeout=1",
		"postgres://u@127.0.0.1:1/db?sslmode=disable&sslpassword=s3cr3t&connect_timeout=1",
		"host=127.0.0.1 port=1 user=u password=s3cr3t dbname=db connect_timeout=1",
		"host=127.0.0.1 port=1 user=u password='s3 cr3t' dbname=db connect_timeout=1",
		"host=127.0.0.1 port=1 password='s3cr3t", // unterminated
		"postgres://u:s3cr3t@127.0.0.1:1/db?connect_timeout=nope",
	} {
		if _, err := Open(ctx, dsn, Options{}, nil); err == nil || strings.Contains(err.Error(), "s3") {
			t.Errorf("Open(%q) = %v", dsn, err)
		}
	}

	main, err := pgtest.Shared(t).NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	for _, q := range []string{
		"postgres://reader@127.0.0.1:1/db?password=s3cr3t&connect_timeout=1",
		"host=127.0.0.1 port=1 user=reader password=s3cr3t connect_timeout=1",
	} {
		db, err := Open(ctx, main, Options{QueryDSN: q}, logger)
		if err != nil {
			t.Fatal(err)
		}
		_, err = db.Query(ctx, `SELECT 1`, 1)
		db.Close()
		if err == nil || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("Query with --query-dsn %q = %v", q, err)
		}
	}
	for _, q := range []string{"postgres://u:s3cr3t@h:bad/db", "host=h password='s3cr3t"} {
		if _, err := Open(ctx, main, Options{QueryDSN: q}, logger); err == nil || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("Open with --query-dsn %q = %v", q, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(logs.String(), "s3cr3t") {
		t.Errorf("the log shows a password:\n%s", logs.String())
	}
}
