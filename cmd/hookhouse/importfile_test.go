package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
)

func gz(t testing.TB, s string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	io.WriteString(zw, s)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// readAllChunks reads input to its end.
func readAllChunks(t *testing.T, input, field string) ([]*chunk, string, error) {
	t.Helper()
	ir, err := openImport(strings.NewReader(input), field, "")
	if err != nil {
		return nil, "", err
	}
	defer ir.Close()
	var out []*chunk
	for {
		c, err := ir.nextChunk()
		if errors.Is(err, io.EOF) {
			return out, ir.format(), nil
		}
		if err != nil {
			return out, ir.format(), err
		}
		out = append(out, c)
	}
}

func TestImportFormatDetection(t *testing.T) {
	ndjson := "{\"n\":1}\n{\"n\":2,\"s\":\"a]b}\\\"c\"}\n\n{\"n\":3}"
	array := " \n[ {\"n\":1},\n  {\"n\":2,\"s\":\"a]b}\\\"c\"} ,{\"n\":3}\n]\n"
	wantBody := "{\"n\":1}\n{\"n\":2,\"s\":\"a]b}\\\"c\"}\n{\"n\":3}\n"
	cases := []struct{ name, input, format string }{
		{"ndjson", ndjson, "NDJSON"},
		{"ndjson with CRLF and a BOM", "\xef\xbb\xbf" + strings.ReplaceAll(ndjson, "\n", "\r\n"), "NDJSON"},
		{"array", array, "a JSON array"},
		{"gzip ndjson", gz(t, ndjson), "NDJSON, gzip'd"},
		{"gzip array", gz(t, array), "a JSON array, gzip'd"},
		{"ndjson in two gzip members", gz(t, "{\"n\":1}\n{\"n\":2,\"s\":\"a]b}\\\"c\"}\n") + gz(t, "\n{\"n\":3}"), "NDJSON, gzip'd"},
	}
	ids := map[string]string{}
	for _, c := range cases {
		chunks, format, err := readAllChunks(t, c.input, "")
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if format != c.format {
			t.Errorf("%s: format %q, want %q", c.name, format, c.format)
		}
		if len(chunks) != 1 || string(chunks[0].body) != wantBody || chunks[0].records != 3 || len(chunks[0].bad) != 0 {
			t.Errorf("%s: chunks %+v, want one with body %q", c.name, chunks, wantBody)
			continue
		}
		ids[c.name] = chunks[0].id
	}
	// The chunk id is of the content, not of its compression.
	if ids["ndjson"] != ids["gzip ndjson"] || ids["ndjson"] != ids["ndjson in two gzip members"] || ids["array"] != ids["gzip array"] {
		t.Errorf("chunk ids differ between plain and gzip'd input: %v", ids)
	}
	for _, empty := range []string{"", "  \n\n\t", gz(t, ""), gz(t, "\n \n")} {
		if _, _, err := readAllChunks(t, empty, ""); !errors.Is(err, errEmptyInput) {
			t.Errorf("input %q: %v, want the empty-input error", empty, err)
		}
	}
	if chunks, _, err := readAllChunks(t, " [ \n ] \n", ""); err != nil || len(chunks) != 0 {
		t.Errorf("empty array: %v, %v; want no chunks and no error", chunks, err)
	}
	full := gz(t, ndjson+"\n"+strings.Repeat("{\"pad\":\"xxxxxxxxxxxxxxxxxxxx\"}\n", 5000))
	refused := []struct{ name, input, want string }{
		{"garbage", "hello world\n", `first character is 'h'`},
		{"a scalar", "42\n", `first character is '4'`},
		{"binary", "\x00\x01\x02garbage", "not JSON text"},
		{"zstd", "\x28\xb5\x2f\xfd\x00\x00", "zstd-compressed"},
		{"bzip2", "BZh91AY&SY", "bzip2-compressed"},
		{"broken gzip header", "\x1f\x8bnot gzip at all", "not valid gzip"},
		{"truncated gzip", full[:len(full)/2], "gzip data is truncated or corrupt"},
		{"corrupt gzip checksum", full[:len(full)-8] + "\x00\x00\x00\x00" + full[len(full)-4:], "truncated or corrupt"},
		{"truncated array", `[{"n":1},{"n":2`, "ends inside the JSON array"},
		{"array without ]", "[{\"n\":1},\n", "ends inside the JSON array"},
		{"trailing comma", `[{"n":1},]`, "']' right after a ','"},
		{"missing comma", `[{"n":1} {"n":2}]`, "expected ',' or ']' after element 1"},
		{"data after the array", "[{\"n\":1}]\n[{\"n\":2}]\n", "data after the JSON array's closing ']' at line 2"},
	}
	for _, c := range refused {
		_, _, err := readAllChunks(t, c.input, "")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
}

func TestImportBadLineNumbers(t *testing.T) {
	input := strings.Join([]string{
		`{"n":1}`,
		``,
		`{"n":`,
		`[{"n":3}]`,
		`{"n":4}`,
		`"just a string"`,
		"{\"n\":\"\xff\"}",
		`{"n":7}`,
	}, "\n")
	chunks, _, err := readAllChunks(t, input, "")
	if err != nil || len(chunks) != 1 {
		t.Fatalf("%v, %v", chunks, err)
	}
	c := chunks[0]
	var got []string
	for _, b := range c.bad {
		got = append(got, fmt.Sprintf("%s: %v", b.where, b.err))
	}
	want := []string{"line 3: invalid JSON", "line 4: not a JSON object", "line 6: not a JSON object", "line 7: invalid JSON: invalid UTF-8"}
	if len(got) != len(want) {
		t.Fatalf("bad lines %q, want %q", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("bad line %d: %q, want %q…", i, got[i], want[i])
		}
	}
	if c.records != 3 || string(c.body) != "{\"n\":1}\n{\"n\":4}\n{\"n\":7}\n" || c.firstLine != 1 || c.lastLine != 8 {
		t.Errorf("chunk %+v", c)
	}
	// In an array, elements are counted and the line each starts on is given.
	chunks, _, err = readAllChunks(t, "[\n{\"n\":1},\n{\"n\":\n 2, },\n\"x\",\n{\"ts\":\"yesterday\"},{\"ts\":1700000000}]", "ts")
	if err != nil || len(chunks) != 1 {
		t.Fatalf("%v, %v", chunks, err)
	}
	got = got[:0]
	for _, b := range chunks[0].bad {
		got = append(got, fmt.Sprintf("%s: %v", b.where, b.err))
	}
	want = []string{`element 1 (line 2): no field "ts"`, "element 2 (line 3): invalid JSON", "element 3 (line 5): not a JSON object", "element 4 (line 6): field \"ts\": \"yesterday\" is not an RFC 3339 time"}
	if len(got) != len(want) {
		t.Fatalf("bad elements %q, want %q", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("bad element %d: %q, want %q…", i, got[i], want[i])
		}
	}
	if chunks[0].records != 1 {
		t.Errorf("%d records, want 1", chunks[0].records)
	}
	// A line too long for a record is a bad line; reading goes on after it.
	long := "{\"a\":\"" + strings.Repeat("x", maxItemBytes) + "\"}"
	chunks, _, err = readAllChunks(t, "{\"n\":1}\n"+long+"\n{\"n\":3}\n", "")
	// The long line closes its chunk by size.
	if err != nil || len(chunks) != 2 || chunks[0].records != 1 || chunks[1].records != 1 || chunks[1].firstLine != 3 ||
		len(chunks[0].bad) != 1 || chunks[0].bad[0].line != 2 || !strings.Contains(chunks[0].bad[0].err.Error(), "longer than 8.0 MiB") {
		t.Fatalf("long line: %v %+v", err, chunks)
	}
}

// Chunks are cut at the same places on every run, and a chunk's id depends on
// the content up to its end only.
func TestImportChunkBoundaries(t *testing.T) {
	lines := func(change int) string {
		var b strings.Builder
		for i := 1; i <= 25_000; i++ {
			if i == change {
				fmt.Fprintf(&b, "{\"n\":%d,\"changed\":true}\n", i)
				continue
			}
			fmt.Fprintf(&b, "{\"n\":%d}\n", i)
		}
		return b.String()
	}
	a, _, err := readAllChunks(t, lines(0), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 3 || a[0].records != 10_000 || a[1].records != 10_000 || a[2].records != 5_000 ||
		a[1].firstLine != 10_001 || a[2].lastLine != 25_000 {
		t.Fatalf("chunks of 25,000 lines: %d", len(a))
	}
	again, _, _ := readAllChunks(t, gz(t, lines(0)), "")
	changed, _, _ := readAllChunks(t, lines(15_000), "")
	for i := range a {
		if again[i].id != a[i].id {
			t.Errorf("chunk %d: id %s on the second read, %s on the first", i, again[i].id, a[i].id)
		}
	}
	if changed[0].id != a[0].id || changed[1].id == a[1].id || changed[2].id == a[2].id {
		t.Errorf("a change at line 15,000 must change the ids of chunks 2 and 3 only")
	}
	// Large records close a chunk by its bytes.
	var b strings.Builder
	for i := range 10 {
		fmt.Fprintf(&b, "{\"n\":%d,\"pad\":\"%s\"}\n", i, strings.Repeat("x", 1<<20))
	}
	big, _, err := readAllChunks(t, b.String(), "")
	if err != nil || len(big) != 3 || big[0].records != 4 || big[1].firstLine != 5 {
		t.Fatalf("1 MiB records: %v, %d chunks", err, len(big))
	}
}

// With a server's limits (a cluster), every chunk fits them exactly: the
// record that would overflow a chunk starts the next one, every record is in
// exactly one chunk, in order, and a chunk's id is still the SHA-256 of the
// input up to its end (so a rerun cuts the same chunks with the same ids).
func TestImportChunkServerLimits(t *testing.T) {
	var in strings.Builder
	var lines []string
	for i := range 3000 {
		l := fmt.Sprintf("{\"n\":%d,\"pad\":\"%s\"}", i, strings.Repeat("x", (i*37)%900))
		lines = append(lines, l)
		in.WriteString(l + "\n")
	}
	read := func() []*chunk {
		ir, err := openImport(strings.NewReader(in.String()), "", "")
		if err != nil {
			t.Fatal(err)
		}
		ir.maxBody, ir.maxItems = 20_000, 100
		var out []*chunk
		for {
			c, err := ir.nextChunk()
			if errors.Is(err, io.EOF) {
				return out
			}
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, c)
		}
	}
	chunks := read()
	var got []string
	full := 0
	for i, c := range chunks {
		if len(c.body) > 20_000 || c.records > 100 {
			t.Fatalf("chunk %d: %d bytes, %d records; want at most 20000 and 100", i, len(c.body), c.records)
		}
		if len(c.body) > 19_000 {
			full++
		}
		got = append(got, strings.Split(strings.TrimSuffix(string(c.body), "\n"), "\n")...)
		want := sha256.Sum256([]byte(strings.Join(lines[:c.lastLine], "\n") + "\n"))
		if c.id != hex.EncodeToString(want[:]) {
			t.Fatalf("chunk %d (lines %d to %d): id is not the SHA-256 of the input up to its end", i, c.firstLine, c.lastLine)
		}
		if i > 0 && c.firstLine != chunks[i-1].lastLine+1 {
			t.Fatalf("chunk %d starts at line %d after a chunk ending at %d", i, c.firstLine, chunks[i-1].lastLine)
		}
	}
	if !slices.Equal(got, lines) {
		t.Fatalf("the chunks hold %d records, want the %d lines in order, once each", len(got), len(lines))
	}
	if full == 0 {
		t.Fatal("no chunk was cut by its bytes; the test does not test the byte limit")
	}
	for i, c := range read() {
		if c.id != chunks[i].id {
			t.Fatalf("chunk %d: another id on a second read", i)
		}
	}
	t.Logf("%d lines in %d chunks", len(lines), len(chunks))
}
