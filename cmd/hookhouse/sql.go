package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
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
	res, err := cl.Query(ctx, query)
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
