package duckdb

// What a user query may run and read, beyond what the READ ONLY transaction and
// the locked instance already refuse (see Query).

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// checkStatement lets through a SELECT that reads only what checkReads allows,
// and an EXPLAIN of such a SELECT.
//
// EXPLAIN needs its own look: DuckDB classifies every EXPLAIN as EXPLAIN, and
// EXPLAIN ANALYZE executes the statement it explains: EXPLAIN ANALYZE CHECKPOINT
// checkpoints, EXPLAIN ANALYZE COMMIT ends the read-only transaction, EXPLAIN
// ANALYZE CREATE TEMP TABLE creates one. So the explained statement is prepared on
// its own and held to the SELECT rule; an EXPLAIN whose prefix explainedStatement
// cannot take apart is refused rather than guessed at.
func checkStatement(ctx context.Context, c *duckdb.Conn, stmt *duckdb.Stmt, query string) error {
	typ, err := stmt.StatementType()
	if err != nil {
		return err
	}
	switch typ {
	case duckdb.STATEMENT_TYPE_SELECT:
		return checkReads(ctx, c, query)
	case duckdb.STATEMENT_TYPE_EXPLAIN:
		inner, ok := explainedStatement(query)
		if !ok {
			return fmt.Errorf("%w: write EXPLAIN [ANALYZE] SELECT … or EXPLAIN (option, …) SELECT …, without comments before the SELECT",
				warehouse.ErrReadOnly)
		}
		st, err := prepareOne(c, inner)
		if err != nil {
			return fmt.Errorf("EXPLAIN: %w", err)
		}
		defer st.Close()
		if typ, err := st.StatementType(); err != nil {
			return err
		} else if typ != duckdb.STATEMENT_TYPE_SELECT {
			return fmt.Errorf("%w: EXPLAIN runs only for a SELECT here (this explains a %s statement)",
				warehouse.ErrReadOnly, statementTypeName(typ))
		}
		return checkReads(ctx, c, inner)
	}
	return fmt.Errorf("%w: only SELECT and EXPLAIN statements can run here (this is a %s statement)",
		warehouse.ErrReadOnly, statementTypeName(typ))
}

// explainPrefix matches the EXPLAIN forms DuckDB accepts, strictly enough that
// what follows is exactly the statement DuckDB explains: EXPLAIN, then either
// ANALYZE (or ANALYSE) or one parenthesised option list of bare words, numbers and
// quoted words (EXPLAIN (ANALYZE, FORMAT json)). Comments, quotes holding anything
// but letters, and nested parentheses do not match; since "EXPLAIN (…)" can also be
// a parenthesised SELECT, such text is refused rather than split in the wrong place.
var explainPrefix = regexp.MustCompile(`(?is)^\s*explain(?:\s+analy[sz]e\b|\s*\(\s*` + explainOption + `(?:\s*,\s*` + explainOption + `)*\s*\))?`)

const explainOption = `[a-z_]+(?:\s+(?:[a-z0-9_]+|'[a-z0-9_]*'))?`

// explainedStatement returns the statement an EXPLAIN explains.
func explainedStatement(query string) (string, bool) {
	m := explainPrefix.FindStringIndex(query)
	if m == nil {
		return "", false
	}
	inner := query[m[1]:]
	// The remainder must be a separate token: "EXPLAIN(SELECT 1)" splits fine,
	// "EXPLAINSELECT" never matched above.
	if strings.TrimSpace(inner) == "" {
		return "", false
	}
	return inner, true
}

// readableFunctions are the table functions a query may call: row generators and
// catalog metadata (names and types, never rows). Everything else is refused,
// notably checkpoint() and force_checkpoint() (a SELECT that checkpoints, even in
// a READ ONLY transaction), duckdb_table_sample() and pragma_storage_info() (rows
// and min/max values of any table, hookhouse's own included), the logging and
// profiling switches, and the file readers (refused by DuckDB anyway).
var readableFunctions = map[string]bool{
	"range": true, "generate_series": true, "unnest": true, "repeat": true, "repeat_row": true,
	"json_each": true, "json_tree": true, "summary": true,
	"test_all_types": true, "test_vector_types": true, "pg_timezone_names": true, "icu_calendar_names": true,
	"pragma_table_info": true, "pragma_show": true, "pragma_version": true, "pragma_platform": true,
	"pragma_collations": true, "pragma_database_size": true, "pragma_user_agent": true,
	"duckdb_columns": true, "duckdb_constraints": true, "duckdb_databases": true, "duckdb_dependencies": true,
	"duckdb_extensions": true, "duckdb_functions": true, "duckdb_indexes": true, "duckdb_keywords": true,
	"duckdb_optimizers": true, "duckdb_schemas": true, "duckdb_sequences": true, "duckdb_settings": true,
	"duckdb_tables": true, "duckdb_types": true, "duckdb_views": true, "duckdb_memory": true,
	"duckdb_temporary_files": true, "duckdb_approx_database_count": true,
}

// readablePragmas are the PRAGMA statements a query may run: DuckDB rewrites each
// into a SELECT from one of readableFunctions (PRAGMA table_info('t') is
// SELECT * FROM pragma_table_info('t')), a step its plan serializer cannot
// repeat, so they are known by name.
var readablePragmas = map[string]bool{
	"table_info": true, "show": true, "version": true, "platform": true, "collations": true,
	"database_size": true, "user_agent": true, "show_tables": true, "show_tables_expanded": true,
	"show_databases": true, "database_list": true, "functions": true,
}

var pragmaName = regexp.MustCompile(`(?is)^\s*pragma\s+([a-z_]+)\s*(?:\(|;|$)`)

// checkReads asks DuckDB's binder what the SELECT query would read and refuses
// hookhouse's own schema (_hookhouse: load positions and migrations, not
// integration data) and any table function outside readableFunctions. It reads
// the bound logical plan (json_serialize_plan), in which views, macros such as
// histogram(), query() and query_table() already stand for the tables they scan:
// the database says what runs, no SQL is parsed here. A plan DuckDB cannot
// serialize is refused, except the PRAGMA forms of readablePragmas.
func checkReads(ctx context.Context, c *duckdb.Conn, query string) error {
	plan, err := serializedPlan(ctx, c, query)
	if err != nil {
		return err
	}
	var doc struct {
		Error        bool   `json:"error"`
		ErrorType    string `json:"error_type"`
		ErrorMessage string `json:"error_message"`
		Plans        []any  `json:"plans"`
	}
	if err := json.Unmarshal([]byte(plan), &doc); err != nil {
		return fmt.Errorf("read the plan DuckDB gave: %w", err)
	}
	if doc.Error {
		if m := pragmaName.FindStringSubmatch(query); m != nil && strings.Contains(doc.ErrorMessage, "PRAGMA") {
			if readablePragmas[strings.ToLower(m[1])] {
				return nil
			}
			return fmt.Errorf("%w: PRAGMA %s cannot run here", warehouse.ErrReadOnly, m[1])
		}
		return fmt.Errorf("%w: DuckDB cannot describe what this statement reads (%s: %s), so it does not run here",
			warehouse.ErrReadOnly, doc.ErrorType, doc.ErrorMessage)
	}
	if len(doc.Plans) == 0 {
		return fmt.Errorf("%w: DuckDB gave no plan for this statement", warehouse.ErrReadOnly)
	}
	return checkPlanNode(doc.Plans)
}

// checkPlanNode walks a serialized plan. Every read of stored data is a
// LOGICAL_GET node: a table scan (seq_scan, with the table's schema) or a table
// function call.
func checkPlanNode(v any) error {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			if err := checkPlanNode(e); err != nil {
				return err
			}
		}
	case map[string]any:
		if x["type"] == "LOGICAL_GET" {
			name, _ := x["name"].(string)
			if name == "seq_scan" {
				fd, _ := x["function_data"].(map[string]any)
				schema, ok := fd["schema"].(string)
				if !ok {
					return fmt.Errorf("%w: DuckDB's plan does not say which schema a table scan reads", warehouse.ErrReadOnly)
				}
				if strings.HasPrefix(strings.ToLower(schema), warehouse.StateSchema) {
					return fmt.Errorf("%w: %s is hookhouse's own schema; only the integration schemas can be read",
						warehouse.ErrReadOnly, schema)
				}
			} else if !readableFunctions[strings.ToLower(name)] {
				return fmt.Errorf("%w: the table function %s() cannot be used here", warehouse.ErrReadOnly, name)
			}
		}
		for _, e := range x {
			if err := checkPlanNode(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// serializedPlan returns DuckDB's JSON rendering of the bound logical plan of
// query, made on c so that it binds in the query's own READ ONLY transaction.
// Binding does not execute the statement.
func serializedPlan(ctx context.Context, c *duckdb.Conn, query string) (string, error) {
	st, err := c.Prepare(`SELECT CAST(json_serialize_plan(CAST(? AS VARCHAR)) AS VARCHAR)`)
	if err != nil {
		return "", fmt.Errorf("describe the plan: %w", err)
	}
	defer st.Close()
	rows, err := st.(*duckdb.Stmt).QueryContext(ctx, []driver.NamedValue{{Ordinal: 1, Value: query}})
	if err != nil {
		return "", fmt.Errorf("describe the plan: %w", err)
	}
	defer rows.Close()
	vals := make([]driver.Value, 1)
	if err := rows.Next(vals); err != nil {
		return "", fmt.Errorf("describe the plan: %w", err)
	}
	plan, ok := vals[0].(string)
	if !ok {
		return "", fmt.Errorf("describe the plan: got %T", vals[0])
	}
	return plan, nil
}
