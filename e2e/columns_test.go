package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/config"
)

// wideRecord is record rec of a batch whose keys are k<from>…k<from+n-1>, with
// values of three types. It returns the body and the value of every key as JSON.
func wideRecord(rec, from, n int) ([]byte, map[string]string) {
	want := make(map[string]string, n+1)
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"rec":%d`, rec)
	want["rec"] = strconv.Itoa(rec)
	for i := from; i < from+n; i++ {
		k := fmt.Sprintf("k%05d", i)
		var v string
		switch i % 3 {
		case 0:
			v = strconv.Itoa(i*10 + rec)
		case 1:
			v = strconv.Quote(fmt.Sprintf("v%d-%d \"q\" é", i, rec))
		default:
			v = strconv.FormatBool((i+rec)%2 == 0)
		}
		fmt.Fprintf(&b, `,%q:%s`, k, v)
		want[k] = v
	}
	b.WriteByte('}')
	return b.Bytes(), want
}

// jsonText is a warehouse value (as the query API decodes it, numbers kept as
// json.Number) written as JSON, so values from columns and from _sdc_extra compare.
func jsonText(v any) string {
	switch v := v.(type) {
	case json.Number:
		return v.String()
	case string:
		b, _ := json.Marshal(v)
		return string(b)
	case bool:
		return strconv.FormatBool(v)
	}
	return fmt.Sprintf("?%T(%v)", v, v)
}

// reconstruct gives a record's fields from a data row: every non-null field
// column, and the members of _sdc_extra. A key found in both fails the test.
func reconstruct(t *testing.T, cols []string, row []any) (fromCols, fromExtra int, got map[string]string) {
	t.Helper()
	got = map[string]string{}
	for i, c := range cols {
		v := row[i]
		if v == nil || strings.HasPrefix(c, "_sdc") || strings.HasPrefix(c, "__sdc") {
			continue
		}
		got[c] = jsonText(v)
		fromCols++
	}
	for i, c := range cols {
		if c != "_sdc_extra" || row[i] == nil {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(row[i].(string)))
		dec.UseNumber()
		var extra map[string]any
		if err := dec.Decode(&extra); err != nil {
			t.Fatalf("_sdc_extra is not a JSON object: %v", err)
		}
		for k, v := range extra {
			if _, dup := got[k]; dup {
				t.Fatalf("field %s is both in a column and in _sdc_extra", k)
			}
			got[k] = jsonText(v)
			fromExtra++
		}
	}
	return fromCols, fromExtra, got
}

// TestColumnExplosion: records of 5,000 distinct keys load into at most
// --max-columns (1000) columns, the rest kept as JSON in _sdc_extra, with no
// value lost; a second batch of 5,000 new keys goes entirely to _sdc_extra.
func TestColumnExplosion(t *testing.T) {
	warehouses(t, func(t *testing.T, mod func(*config.Config)) {
		if mod == nil {
			// The embedded DuckDB takes text values of up to a 4,096th of its
			// pool: 64 KiB at the default 1 GiB, less than the ~100 KB of
			// _sdc_extra of batch 2 (such a record is rejected, with the
			// reason: loader/TestTextLimit). At 2 GiB its cap is 256 KiB.
			mod = func(c *config.Config) { c.MemoryLimit = 2 << 30 }
		}
		in := startServer(t, mod)
		ctx := context.Background()
		integ, err := in.Client.CreateIntegration(ctx, client.NewIntegration{Name: "Wide", Type: "webhooks"})
		if err != nil {
			t.Fatal(err)
		}
		u, err := in.Client.GenerateURL(ctx, integ.ID)
		if err != nil {
			t.Fatal(err)
		}
		hook := in.hookURL(u.URL)
		maxCols := config.Default().MaxColumns

		// Batch 1: three records with keys rec, k00000…k04998 (5,000 keys), in
		// one request. Batch 2, once batch 1 is loaded: two records of 5,000
		// keys never seen before.
		want := map[int]map[string]string{}
		send := func(recs []int, from int) {
			t.Helper()
			var body bytes.Buffer
			body.WriteByte('[')
			for i, r := range recs {
				b, w := wideRecord(r, from, 4999)
				want[r] = w
				if i > 0 {
					body.WriteByte(',')
				}
				body.Write(b)
			}
			body.WriteByte(']')
			if status, resp := post(t, hook, "application/json", body.Bytes()); status != 200 {
				t.Fatalf("POST = %d %s", status, resp)
			}
		}
		send([]int{1, 2, 3}, 0)
		waitLoaded(t, in.Client, integ.ID, 3)
		send([]int{4, 5}, 5000)
		waitLoaded(t, in.Client, integ.ID, 5)

		got, err := in.Client.Integration(ctx, integ.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Stats.RecordsRejected != 0 {
			r, _ := in.Client.Query(ctx, "select reason from wide._sdc_rejected")
			t.Fatalf("%d records rejected: %v", got.Stats.RecordsRejected, r.Rows)
		}
		n, err := in.Client.Query(ctx, `select count(*) from information_schema.columns
			where table_schema = 'wide' and table_name = 'data'`)
		if err != nil {
			t.Fatal(err)
		}
		ncols, _ := strconv.Atoi(jsonText(n.Rows[0][0]))
		if ncols > maxCols || ncols < maxCols-10 {
			t.Fatalf("wide.data has %d columns, want at most --max-columns = %d (and close to it)", ncols, maxCols)
		}
		res, err := in.Client.Query(ctx, `select * from wide.data order by rec`)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Rows) != 5 || len(res.Columns) != ncols {
			t.Fatalf("%d rows of %d columns, want 5 of %d", len(res.Rows), len(res.Columns), ncols)
		}
		for i, row := range res.Rows {
			rec := i + 1
			fromCols, fromExtra, fields := reconstruct(t, res.Columns, row)
			w := want[rec]
			if len(fields) != len(w) {
				t.Fatalf("record %d: %d fields back (%d from columns, %d from _sdc_extra), sent %d", rec, len(fields), fromCols, fromExtra, len(w))
			}
			for k, v := range w {
				if fields[k] != v {
					t.Fatalf("record %d: field %s = %s, sent %s", rec, k, fields[k], v)
				}
			}
			if fromExtra == 0 {
				t.Fatalf("record %d: nothing in _sdc_extra", rec)
			}
			t.Logf("record %d: %d fields from columns + %d from _sdc_extra = %d sent", rec, fromCols, fromExtra, len(w))
		}
	})
}
