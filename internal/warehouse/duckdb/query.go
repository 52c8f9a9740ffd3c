package duckdb

import (
	"context"
	"database/sql/driver"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"
	"github.com/google/uuid"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// queryTimeout bounds one user query, as statement_timeout does on PostgreSQL, so
// a runaway query cannot hold a connection and DuckDB's threads for ever. A
// variable for tests.
var queryTimeout = 30 * time.Second

// errQueryTimeout is the cause of a query's own deadline.
var errQueryTimeout = errors.New("query timeout")

// Query runs one SQL statement read-only and returns at most maxRows rows
// (maxRows <= 0: no limit), within queryTimeout unless ctx ends sooner.
//
// Read-only is enforced by DuckDB, in layers:
//   - the statement runs inside BEGIN TRANSACTION READ ONLY, where DuckDB refuses any
//     write to the warehouse (INSERT, UPDATE, DELETE, CREATE, ALTER, DROP, sequences);
//   - DuckDB prepares the text and must find exactly one statement, so a "COMMIT;"
//     cannot end that transaction before a second statement runs;
//   - DuckDB classifies the prepared statement and only SELECT (incl. WITH, VALUES,
//     SHOW, DESCRIBE, PRAGMA of table functions) and EXPLAIN of a SELECT run:
//     statements that act outside the transaction (ATTACH of an in-memory
//     database, CHECKPOINT, VACUUM, SET, USE, CREATE TEMP, transaction control)
//     never execute, not even under EXPLAIN ANALYZE, which runs what it explains;
//   - DuckDB's binder says what a SELECT reads (checkReads): only tables outside
//     hookhouse's own schema, and only table functions that read metadata or
//     generate rows, so neither _hookhouse nor checkpoint() is reachable;
//   - the instance is opened without external access and with its configuration
//     locked (see instanceConfig), so no statement reads or writes files or loads
//     extensions, and no SET can undo that.
//
// The query runs on its own fresh connection; DuckDB's MVCC lets it read a snapshot
// while loads commit. Cancelling ctx interrupts it. With maxRows > 0 a SELECT runs
// under a LIMIT (see limitedStmt), so a query over a big table costs what it returns.
func (d *DB) Query(ctx context.Context, query string, maxRows int) (*warehouse.Result, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, queryTimeout, errQueryTimeout)
	defer cancel()
	conn, err := d.ro.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("duckdb: query: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN TRANSACTION READ ONLY`); err != nil {
		return nil, fmt.Errorf("duckdb: query: %w", err)
	}
	var res *warehouse.Result
	err = conn.Raw(func(dc any) error {
		var err error
		res, err = runReadOnly(ctx, dc.(*duckdb.Conn), query, maxRows, true)
		return err
	})
	rctx, rcancel := detached(ctx)
	defer rcancel()
	// Fails harmlessly if the statement ended the transaction; the connection is
	// discarded either way.
	_, _ = conn.ExecContext(rctx, `ROLLBACK`)
	if err != nil {
		if context.Cause(ctx) == errQueryTimeout {
			err = fmt.Errorf("%w: queries stop after %s", err, queryTimeout)
		}
		return nil, fmt.Errorf("duckdb: query: %w", classify(err))
	}
	return res, nil
}

// runReadOnly prepares and runs one statement on c, whose READ ONLY transaction the
// caller has begun. checkType false skips the statement checks (tests use it to
// show that the transaction alone refuses writes).
func runReadOnly(ctx context.Context, c *duckdb.Conn, query string, maxRows int, checkType bool) (*warehouse.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// DuckDB's C API ends the text at a NUL; what runs must be what was checked.
	if strings.ContainsRune(query, 0) {
		return nil, errors.New("the SQL text contains a NUL character")
	}
	stmt, err := prepareOne(c, query)
	if err != nil {
		return nil, err
	}
	defer stmt.Close()
	if checkType {
		if err := checkStatement(ctx, c, stmt, query); err != nil {
			return nil, err
		}
	}
	if maxRows > 0 && checkType {
		if limited := limitedStmt(c, stmt, query, maxRows); limited != nil {
			defer limited.Close()
			stmt = limited
		}
	}
	rows, err := stmt.QueryContext(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer rows.Close()

	cols := rows.Columns()
	typeNames := make([]string, len(cols))
	if tn, ok := rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		for i := range cols {
			typeNames[i] = tn.ColumnTypeDatabaseTypeName(i)
		}
	}
	res := &warehouse.Result{Columns: append([]string{}, cols...), Rows: [][]any{}}
	vals := make([]driver.Value, len(cols))
	for {
		if err := rows.Next(vals); err != nil {
			if err == io.EOF {
				break
			}
			return nil, err
		}
		if maxRows > 0 && len(res.Rows) == maxRows {
			res.Truncated = true
			break
		}
		row := make([]any, len(cols))
		for i, v := range vals {
			row[i] = jsonValue(v, typeNames[i])
		}
		res.Rows = append(res.Rows, row)
	}
	return res, nil
}

// prepareOne prepares query, which must be exactly one statement.
func prepareOne(c *duckdb.Conn, query string) (*duckdb.Stmt, error) {
	// Prepare (unlike PrepareContext) refuses text holding more than one statement.
	st, err := c.Prepare(query)
	if err != nil {
		if strings.Contains(err.Error(), "multi-statement") {
			return nil, errors.New("send exactly one SQL statement")
		}
		return nil, err
	}
	return st.(*duckdb.Stmt), nil
}

// limitedStmt returns the SELECT orig wrapped in a LIMIT of maxRows+1, or nil if
// that is not the same query. DuckDB materializes a result before the first row is
// fetched, so without the LIMIT "SELECT * FROM big" would build the whole table in
// the server's memory to return a screenful. The wrapped text is only used if DuckDB
// prepares it as one SELECT with the same column names (a subquery renames
// duplicate names, and SHOW/PRAGMA forms cannot be wrapped); it still runs in the
// READ ONLY transaction. DuckDB keeps a subquery's ORDER BY through the LIMIT.
func limitedStmt(c *duckdb.Conn, orig *duckdb.Stmt, query string, maxRows int) *duckdb.Stmt {
	query = strings.TrimRight(query, "; \t\r\n")
	st, err := c.Prepare("SELECT * FROM (\n" + query + "\n) AS hookhouse_query LIMIT " + strconv.Itoa(maxRows+1))
	if err != nil {
		return nil
	}
	limited := st.(*duckdb.Stmt)
	if !sameColumns(orig, limited) {
		limited.Close()
		return nil
	}
	return limited
}

func sameColumns(a, b *duckdb.Stmt) bool {
	if typ, err := b.StatementType(); err != nil || typ != duckdb.STATEMENT_TYPE_SELECT {
		return false
	}
	n, err := a.ColumnCount()
	if m, err2 := b.ColumnCount(); err != nil || err2 != nil || n != m {
		return false
	}
	for i := range n {
		an, err := a.ColumnName(i)
		bn, err2 := b.ColumnName(i)
		if err != nil || err2 != nil || an != bn {
			return false
		}
		at, err := a.ColumnType(i)
		bt, err2 := b.ColumnType(i)
		if err != nil || err2 != nil || at != bt {
			return false
		}
	}
	return true
}

// classify wraps DuckDB's refusals to write with warehouse.ErrReadOnly.
func classify(err error) error {
	if errors.Is(err, warehouse.ErrReadOnly) {
		return err
	}
	var de *duckdb.Error
	if !errors.As(err, &de) {
		return err
	}
	readOnly := false
	switch de.Type {
	case duckdb.ErrorTypeTransaction:
		readOnly = strings.Contains(de.Msg, "read-only")
	case duckdb.ErrorTypePermission:
		readOnly = true // file system access and extension loading are disabled
	case duckdb.ErrorTypeInvalidInput:
		readOnly = strings.Contains(de.Msg, "configuration has been locked")
	}
	if readOnly {
		return fmt.Errorf("%w: %w", warehouse.ErrReadOnly, err)
	}
	return err
}

func statementTypeName(t duckdb.StmtType) string {
	names := map[duckdb.StmtType]string{
		duckdb.STATEMENT_TYPE_INSERT:       "INSERT",
		duckdb.STATEMENT_TYPE_UPDATE:       "UPDATE",
		duckdb.STATEMENT_TYPE_DELETE:       "DELETE",
		duckdb.STATEMENT_TYPE_PREPARE:      "PREPARE",
		duckdb.STATEMENT_TYPE_CREATE:       "CREATE",
		duckdb.STATEMENT_TYPE_EXECUTE:      "EXECUTE",
		duckdb.STATEMENT_TYPE_ALTER:        "ALTER",
		duckdb.STATEMENT_TYPE_TRANSACTION:  "transaction control",
		duckdb.STATEMENT_TYPE_COPY:         "COPY",
		duckdb.STATEMENT_TYPE_ANALYZE:      "ANALYZE",
		duckdb.STATEMENT_TYPE_VARIABLE_SET: "SET/USE",
		duckdb.STATEMENT_TYPE_CREATE_FUNC:  "CREATE FUNCTION",
		duckdb.STATEMENT_TYPE_DROP:         "DROP",
		duckdb.STATEMENT_TYPE_EXPORT:       "EXPORT",
		duckdb.STATEMENT_TYPE_PRAGMA:       "PRAGMA",
		duckdb.STATEMENT_TYPE_VACUUM:       "VACUUM",
		duckdb.STATEMENT_TYPE_CALL:         "CALL/CHECKPOINT",
		duckdb.STATEMENT_TYPE_SET:          "SET",
		duckdb.STATEMENT_TYPE_LOAD:         "LOAD/INSTALL",
		duckdb.STATEMENT_TYPE_EXTENSION:    "extension",
		duckdb.STATEMENT_TYPE_ATTACH:       "ATTACH",
		duckdb.STATEMENT_TYPE_DETACH:       "DETACH",
		duckdb.STATEMENT_TYPE_MULTI:        "multi-statement",
	}
	if n, ok := names[t]; ok {
		return n
	}
	return "type " + strconv.Itoa(int(t))
}

const (
	timestampLayout = "2006-01-02T15:04:05.000000Z07:00"
	dateLayout      = "2006-01-02"
	timeLayout      = "15:04:05.000000"
)

// jsonValue turns a DuckDB value into string, int64, float64, bool or nil (see
// warehouse.Result). typeName is DuckDB's name of the column type.
func jsonValue(v any, typeName string) any {
	switch x := v.(type) {
	case nil:
		return nil
	case bool, string:
		return x
	case int64:
		return x
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int:
		return int64(x)
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x)
		}
		return strconv.FormatUint(x, 10)
	case float64:
		return jsonFloat(x)
	case float32:
		// Via the shortest float32 text, so 0.1 stays 0.1 rather than 0.100000001.
		f, _ := strconv.ParseFloat(strconv.FormatFloat(float64(x), 'g', -1, 32), 64)
		return jsonFloat(f)
	case time.Time:
		switch strings.ToUpper(typeName) {
		case "DATE":
			return x.Format(dateLayout)
		case "TIME":
			return x.Format(timeLayout)
		case "TIMETZ", "TIME WITH TIME ZONE":
			return x.Format(timeLayout + "Z07:00")
		}
		return x.UTC().Truncate(time.Microsecond).Format(timestampLayout)
	case duckdb.Decimal:
		return x.String()
	case *big.Int:
		return x.String()
	case []byte:
		if strings.EqualFold(typeName, "UUID") && len(x) == 16 {
			return uuid.UUID(x).String()
		}
		return blobString(x)
	case duckdb.Interval:
		return intervalString(x)
	case duckdb.UUID:
		return uuid.UUID(x).String()
	}
	// Lists, structs, maps, unions, JSON: their JSON text.
	b, err := json.Marshal(nested(v))
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// jsonFloat keeps floats JSON-encodable: NaN and infinities become strings.
func jsonFloat(f float64) any {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return f
}

// nested converts the inside of a composite value to something encoding/json takes.
func nested(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = nested(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = nested(e)
		}
		return out
	case duckdb.OrderedMap:
		out := make([]any, 0, x.Len())
		keys, values := x.Keys(), x.Values()
		for i := range keys {
			out = append(out, map[string]any{"key": nested(keys[i]), "value": nested(values[i])})
		}
		return out
	case duckdb.Map:
		out := make([]any, 0, len(x))
		for k, e := range x {
			out = append(out, map[string]any{"key": nested(k), "value": nested(e)})
		}
		return out
	case duckdb.Union:
		return map[string]any{x.Tag: nested(x.Value)}
	case []byte:
		return blobString(x)
	}
	return jsonValue(v, "")
}

// blobString renders bytes the way DuckDB prints a BLOB: printable ASCII as is,
// everything else as \xHH.
func blobString(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		if c >= 0x20 && c < 0x7f && c != '\\' {
			sb.WriteByte(c)
			continue
		}
		sb.WriteString(`\x`)
		sb.WriteString(strings.ToUpper(hex.EncodeToString([]byte{c})))
	}
	return sb.String()
}

// intervalString renders an interval as an ISO 8601 duration, e.g. P1M2DT3H0.5S.
func intervalString(iv duckdb.Interval) string {
	var sb strings.Builder
	sb.WriteString("P")
	if iv.Months != 0 {
		fmt.Fprintf(&sb, "%dM", iv.Months)
	}
	if iv.Days != 0 {
		fmt.Fprintf(&sb, "%dD", iv.Days)
	}
	if iv.Micros != 0 {
		sb.WriteString("T")
		micros := iv.Micros
		if h := micros / 3_600_000_000; h != 0 {
			fmt.Fprintf(&sb, "%dH", h)
			micros -= h * 3_600_000_000
		}
		if m := micros / 60_000_000; m != 0 {
			fmt.Fprintf(&sb, "%dM", m)
			micros -= m * 60_000_000
		}
		if micros != 0 {
			sb.WriteString(strings.TrimRight(strings.TrimRight(
				strconv.FormatFloat(float64(micros)/1e6, 'f', 6, 64), "0"), "."))
			sb.WriteString("S")
		}
	}
	if sb.Len() == 1 {
		return "PT0S"
	}
	return sb.String()
}
