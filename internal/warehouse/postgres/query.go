package postgres

import (
	"context"
	"database/sql/driver"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// queryTimeout bounds one read-only query (statement_timeout), unless ctx ends sooner.
const queryTimeout = 30 * time.Second

const cursorName = "hookhouse_query"

// Query runs sql and returns at most maxRows rows (all of them when maxRows <= 0).
//
// What keeps it to reading the integration schemas, in layers:
//   - it runs on connections of its own, logged in as a user that may only SELECT
//     the integration schemas (see queryAccess in role.go): not a superuser, a
//     member of no predefined role, no USAGE on _hookhouse. So pg_read_file,
//     pg_ls_dir, lo_import, COPY to or from files and programs, signalling other
//     sessions and SET ROLE / SET SESSION AUTHORIZATION to a stronger user fail
//     for want of privilege (SQLSTATE 42501), whatever the warehouse URL's user;
//   - in a transaction that is READ ONLY and always rolled back, so writes fail
//     (25006) even where the user has the privilege (a --query-dsn user with too
//     many grants);
//   - sql must be one statement: it is sent with the extended protocol, which
//     refuses several, so nothing can COMMIT its way out and then write;
//   - a statement PostgreSQL describes as returning no rows (SET, RESET, COMMIT,
//     DO, LOAD, COPY, LISTEN, PREPARE, CHECKPOINT, …) is refused before it runs:
//     the endpoint answers rows, and such statements only change the session.
//
// Refusals for want of privilege (42501), by the read-only transaction (25006)
// and of statements without rows wrap warehouse.ErrReadOnly; several statements
// fail as a syntax error. statement_timeout stops a query after queryTimeout.
func (db *DB) Query(ctx context.Context, sql string, maxRows int) (*warehouse.Result, error) {
	if maxRows <= 0 || maxRows >= math.MaxInt32 {
		maxRows = 0 // no limit
	}
	qpool, err := db.q.ready(ctx, db.pool)
	if err != nil {
		return nil, fmt.Errorf("postgres: query: %w", err)
	}
	var tx pgx.Tx
	conn, err := qpool.conn(ctx, func(c *pgx.Conn) (err error) {
		if err := db.q.syncGrants(ctx, c, db.pool); err != nil {
			return err
		}
		tx, err = begin(ctx, c)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: query: %w", db.q.loginHint(err))
	}
	// A connection left inside a transaction is closed, not reused, on release.
	defer qpool.release(conn)

	res, err := queryCursor(ctx, conn, tx, sql, maxRows)
	var pgErr *pgconn.PgError
	if err != nil && errors.As(err, &pgErr) && (pgErr.Code == "42601" || pgErr.Code == "0A000") {
		// Not something a cursor can hold (SHOW, EXPLAIN, a write, a syntax error):
		// run it as it is, for its own result or its own error message.
		if tx, err = begin(ctx, conn); err == nil {
			res, err = queryDirect(ctx, conn, tx, sql, maxRows)
		}
	}
	if err != nil {
		if errors.As(err, &pgErr) {
			switch pgErr.Code {
			case "25006": // read_only_sql_transaction
				return nil, fmt.Errorf("postgres: query: %w: %s", warehouse.ErrReadOnly, pgErr.Message)
			case "42501": // insufficient_privilege
				return nil, fmt.Errorf("postgres: query: %w: queries may only read the integration schemas: %s",
					warehouse.ErrReadOnly, pgErr.Message)
			}
		}
		return nil, fmt.Errorf("postgres: query: %w", err)
	}
	return res, nil
}

// errNoRows refuses a statement that returns no rows (see Query).
var errNoRows = fmt.Errorf("%w: only statements that return rows (SELECT, WITH, VALUES, TABLE, SHOW, EXPLAIN) can run here",
	warehouse.ErrReadOnly)

// begin starts the read-only transaction with its statement timeout.
func begin(ctx context.Context, conn *pgx.Conn) (pgx.Tx, error) {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	timeout := queryTimeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = max(time.Until(d), time.Millisecond)
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL statement_timeout = %d", timeout.Milliseconds())); err != nil {
		rollback(ctx, tx)
		return nil, err
	}
	return tx, nil
}

// end rolls back and drops any session-level advisory lock the query took, so that
// the pooled connection carries nothing over (session SETs are undone by the
// rollback itself).
func end(ctx context.Context, conn *pgx.Conn, tx pgx.Tx) {
	rollback(ctx, tx)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock_all()"); err != nil {
		conn.Close(ctx) // the pool drops it on release
	}
}

// queryCursor fetches through a cursor so that truncation stops the query instead of
// reading the rest of a large result only to discard it.
func queryCursor(ctx context.Context, conn *pgx.Conn, tx pgx.Tx, sql string, maxRows int) (*warehouse.Result, error) {
	defer end(ctx, conn, tx)
	// Exec with no arguments would use the simple protocol, which runs several
	// statements; ExecParams is the extended protocol: exactly one.
	declare := "DECLARE " + cursorName + " NO SCROLL CURSOR FOR\n" + sql
	if _, err := tx.Conn().PgConn().ExecParams(ctx, declare, nil, nil, nil, nil).Close(); err != nil {
		return nil, err
	}
	fetch := "FETCH ALL FROM " + cursorName
	if maxRows > 0 {
		fetch = fmt.Sprintf("FETCH FORWARD %d FROM %s", maxRows+1, cursorName)
	}
	rows, err := tx.Query(ctx, fetch)
	if err != nil {
		return nil, err
	}
	return collect(rows, maxRows)
}

func queryDirect(ctx context.Context, conn *pgx.Conn, tx pgx.Tx, sql string, maxRows int) (*warehouse.Result, error) {
	defer end(ctx, conn, tx)
	// Parse and describe without running: a statement without a result
	// description only changes the session or the server (see Query).
	sd, err := conn.PgConn().Prepare(ctx, "", sql, nil)
	if err != nil {
		return nil, err
	}
	if len(sd.Fields) == 0 {
		return nil, errNoRows
	}
	// DescribeExec: extended protocol with an unnamed statement, never cached.
	rows, err := tx.Query(ctx, sql, pgx.QueryExecModeDescribeExec)
	if err != nil {
		return nil, err
	}
	return collect(rows, maxRows)
}

// collect reads at most maxRows rows (0: all), noting whether there were more.
func collect(rows pgx.Rows, maxRows int) (*warehouse.Result, error) {
	defer rows.Close()
	fields := rows.FieldDescriptions()
	res := &warehouse.Result{Columns: make([]string, len(fields)), Rows: [][]any{}}
	for i, f := range fields {
		res.Columns[i] = f.Name
	}
	for rows.Next() {
		if maxRows > 0 && len(res.Rows) == maxRows {
			res.Truncated = true
			break
		}
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		row := make([]any, len(vals))
		for i, v := range vals {
			row[i] = jsonValue(fields[i].DataTypeOID, v)
		}
		res.Rows = append(res.Rows, row)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return res, nil
}

// timeLayout is RFC 3339 in UTC with microseconds, PostgreSQL's precision.
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

// jsonValue turns a decoded PostgreSQL value into string, int64, float64, bool, nil,
// or a string rendering (SPEC §6: the query endpoint answers JSON).
func jsonValue(oid uint32, v any) any {
	switch x := v.(type) {
	case nil, string, int64, bool:
		return x
	case int32:
		return int64(x)
	case int16:
		return int64(x)
	case int8:
		return int64(x)
	case uint32:
		return int64(x)
	case float64:
		return jsonFloat(x, 64)
	case float32:
		return jsonFloat(float64(x), 32)
	case time.Time:
		if oid == pgtype.DateOID {
			return x.Format("2006-01-02")
		}
		return x.UTC().Format(timeLayout)
	case pgtype.InfinityModifier:
		return x.String()
	case pgtype.Numeric:
		if s, err := x.Value(); err == nil {
			return s
		}
	case []byte:
		if oid == pgtype.JSONOID || oid == pgtype.JSONBOID {
			return string(x)
		}
		return `\x` + hex.EncodeToString(x)
	case [16]byte: // uuid
		return fmt.Sprintf("%x-%x-%x-%x-%x", x[0:4], x[4:6], x[6:8], x[8:10], x[10:16])
	}
	if oid == pgtype.JSONOID || oid == pgtype.JSONBOID {
		if b, err := json.Marshal(v); err == nil {
			return string(b)
		}
	}
	switch x := v.(type) {
	case driver.Valuer:
		if dv, err := x.Value(); err == nil {
			if s, ok := dv.(string); ok {
				return s
			}
			if dv != nil {
				return fmt.Sprint(dv)
			}
			return nil
		}
	case fmt.Stringer:
		return x.String()
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonValue(0, e)
		}
		if b, err := json.Marshal(out); err == nil {
			return string(b)
		}
	}
	return fmt.Sprint(v)
}

// jsonFloat keeps finite floats as numbers; JSON has no NaN or infinity, so those
// become PostgreSQL's spelling of them.
func jsonFloat(f float64, bits int) any {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	if bits == 32 {
		// 0.1::real is 0.1, not 0.10000000149011612.
		f, _ = strconv.ParseFloat(strconv.FormatFloat(f, 'g', -1, 32), 64)
	}
	return f
}
