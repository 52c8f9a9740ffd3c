package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/hookhouse/hookhouse/client"
)

func sqlQuery(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	var asCSV bool
	fs.BoolVar(&asCSV, "csv", false, "print CSV with a header row")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	// Words after "sql" make up the query, so quoting it whole is optional.
	query := strings.TrimSpace(strings.Join(pos, " "))
	if query == "" {
		return c.usagef(fs, `missing query, e.g. hookhouse sql "select count(*) from stitch_vero.data"`)
	}
	if asCSV && c.json {
		return c.usagef(fs, "--csv and --json do not go together")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	if isShowTables(query) {
		fmt.Fprintf(c.stderr, "hookhouse: note: listing the tables of the integration schemas: %s\n", client.ListTablesSQL)
		query = client.ListTablesSQL
	}
	res, err := cl.Query(ctx, query)
	var apiErr *client.Error
	if errors.As(err, &apiErr) && isMissingTable(apiErr.Message) {
		return fmt.Errorf(`%w (hookhouse sql "show tables" lists the integration tables)`, err)
	}
	if err != nil {
		return err
	}

	switch {
	case c.json:
		if res.Columns == nil {
			res.Columns = []string{}
		}
		if res.Rows == nil {
			res.Rows = [][]any{}
		}
		return c.printJSON(res)
	case asCSV:
		return c.printCSV(res)
	}
	tw := c.table()
	fmt.Fprintln(tw, strings.Join(cells(res.Columns), "\t"))
	for _, row := range res.Rows {
		vals := make([]string, len(row))
		for i, v := range row {
			vals[i] = flatten(formatValue(v, "NULL")) // an empty string stays empty, unlike NULL
		}
		fmt.Fprintln(tw, strings.Join(vals, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "(%s%s)\n", plural(len(res.Rows), "row"), truncatedNote(res))
	return nil
}

// sqlDetails ends the help of 'hookhouse sql'.
const sqlDetails = `Only a single read-only SELECT (or EXPLAIN of one) on the integration schemas runs;
each integration's records are in <schema>.data. "show tables" lists the tables of
every integration schema, on either warehouse, by running:

  ` + client.ListTablesSQL + `
`

// isShowTables reports whether query is "show tables", which hookhouse answers with
// the tables of the integration schemas: the warehouse's own SHOW TABLES lists
// DuckDB's main schema, where no integration lives, and PostgreSQL has none.
func isShowTables(query string) bool {
	q := strings.ToLower(strings.Join(strings.Fields(strings.TrimRight(query, "; \t\r\n")), " "))
	return q == "show tables"
}

// isMissingTable reports whether a query failed on a table name, in the words of
// DuckDB ("Table with name x does not exist") or PostgreSQL (relation "x" does not exist).
func isMissingTable(msg string) bool {
	return strings.Contains(msg, "does not exist") &&
		(strings.Contains(msg, "Table with name") || strings.Contains(msg, "relation "))
}

func (c *cli) printCSV(res *client.QueryResult) error {
	w := csv.NewWriter(c.stdout)
	if err := w.Write(res.Columns); err != nil {
		return err
	}
	for _, row := range res.Rows {
		vals := make([]string, len(row))
		for i, v := range row {
			vals[i] = formatValue(v, "")
		}
		if err := w.Write(vals); err != nil {
			return err
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	// Keep the CSV itself clean: the note goes to stderr.
	if res.Truncated {
		fmt.Fprintf(c.stderr, "hookhouse: note: the result was truncated after %s\n", plural(len(res.Rows), "row"))
	}
	return nil
}

// formatValue prints a value of a query result; null stands for SQL NULL.
func formatValue(v any, null string) string {
	switch v := v.(type) {
	case nil:
		return null
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	default:
		// A nested value (a list or a struct column): show it as JSON.
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Sprint(v)
		}
		return string(b)
	}
}

func cells(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = cell(s)
	}
	return out
}

func truncatedNote(res *client.QueryResult) string {
	if res.Truncated {
		return ", truncated"
	}
	return ""
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
