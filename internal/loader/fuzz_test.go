package loader

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// fuzzSeeds are records that once broke something, or easily could.
var fuzzSeeds = []string{
	`{}`,
	`{"a":{"b":[{"c":[[1,null,[2]]]}]}}`,
	`{"a":1,"a":{"b":2},"A":[3]}`,
	`{"\u0061":1,"a":2}`,
	`{"x":"\ud83d\ude00\ud800\udc00\udfff\ud800"}`,
	`{"x":"\u0000"}`,
	`{"x__bi":1}`,
	`{"_sdc_sequence":1}`,
	`{"n":123456789012345678901234567890123456789}`,
	`{"n":-9223372036854775809,"m":1e400,"o":1.0}`,
	`{"":{"":[""]}}`,
	`{"id":null}`,
	`{"id":[],"id":5}`,
	`{"items":[{},{"a":null},[],[[]],null]}`,
	`{"a":"x","a__st":"y"}`,
	`{"a":{"st":"nested"},"a":5}`,
	`{"9":1,"_9":2}`,
	`{"Ünï":1,"__n_":2}`,
	`[{"a":1}]`,
	`{"a":1}}`,
	"{\"a\":\"\xff\"}",
	`{"a":[1,2,3,"x",true,1.5,12345678901234567890]}`,
	`{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":{"j":{"k":{"l":{"m":{"n":{"o":{"p":{"q":"deep and long name"}}}}}}}}}}}}}}}}}`,
}

// fuzzExisting is a warehouse with columns already, some split by type, one of
// a type JSON never makes.
var fuzzExisting = map[string][]warehouse.Column{
	"data": {
		{Name: "__sdc_primary_key", Type: warehouse.Text}, {Name: "_sdc_received_at", Type: warehouse.Timestamp},
		{Name: "type", Type: warehouse.Text}, {Name: "type__bi", Type: warehouse.BigInt},
		{Name: "a", Type: warehouse.BigInt}, {Name: "a__st", Type: warehouse.Boolean},
		{Name: "t", Type: warehouse.Timestamp},
	},
	"data__a":       {{Name: "_sdc_source_key___sdc_primary_key", Type: warehouse.Text}, {Name: "value", Type: warehouse.Double}},
	"_sdc_rejected": {{Name: "reason", Type: warehouse.Text}},
}

func FuzzFlatten(f *testing.F) {
	_, bodies := veroBodies(f)
	for _, b := range bodies {
		f.Add([]byte(b))
	}
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	first := []byte(bodies[0])
	f.Fuzz(func(t *testing.T, body []byte) {
		checkParser(t, body)
		// Append-only, after a record that made columns; and with a primary
		// key and a small column limit, the same record twice.
		for _, mode := range []struct {
			pk       string
			maxCols  int
			inputs   [][]byte
			existing map[string][]warehouse.Column
		}{
			{"", 0, [][]byte{first, body}, nil},
			{"id", 12, [][]byte{body, body}, nil},
			{"", 10, [][]byte{first, body}, fuzzExisting},
		} {
			fl := NewFlattener(mode.pk, mode.maxCols, mode.existing)
			for i, in := range mode.inputs {
				fl.Add(input(i, string(in)))
			}
			tables, loaded, rejected := fl.Take(batchTime)
			checkTables(t, tables)
			n := len(mode.inputs)
			if loaded+rejected != n {
				t.Fatalf("pk %q: loaded %d + rejected %d != %d records", mode.pk, loaded, rejected, n)
			}
			dataRows, rejRows := 0, 0
			var reasons []string
			for _, tb := range tables {
				switch tb.Name {
				case warehouse.DataTable:
					dataRows = len(tb.Rows)
				case warehouse.RejectedTable:
					rejRows = len(tb.Rows)
					for r := range tb.Rows {
						reasons = append(reasons, get(&tb, r, "reason").(string))
						rec := get(&tb, r, "record").(string)
						if !utf8.ValidString(rec) || strings.ContainsRune(rec, 0) {
							t.Fatalf("rejected record text cannot be stored: %q", rec)
						}
					}
				}
			}
			if rejRows != rejected {
				t.Fatalf("%d rejected rows, rejected = %d", rejRows, rejected)
			}
			if mode.pk == "" && dataRows != loaded {
				t.Fatalf("%d data rows, loaded = %d: each record is one data row or one rejected row", dataRows, loaded)
			}
			if mode.pk != "" && (dataRows > 1 || (loaded > 0) != (dataRows == 1)) {
				t.Fatalf("pk: %d data rows for loaded %d of the same record twice", dataRows, loaded)
			}
			// The parser agrees with encoding/json on what is a JSON object.
			syntaxOK := json.Valid(body) && utf8.Valid(body) && strings.HasPrefix(strings.TrimLeft(string(body), " \t\r\n"), "{")
			for _, r := range reasons {
				if strings.HasPrefix(r, internalError) {
					t.Fatalf("panic while flattening %q: %s", body, r)
				}
				isSyntax := strings.HasPrefix(r, "the record is not")
				if isSyntax && syntaxOK && !strings.Contains(r, "nested too deeply") {
					t.Fatalf("valid JSON object refused: %s", r)
				}
			}
			if fuzzed := n - boolInt(mode.pk == ""); !syntaxOK && rejected != fuzzed {
				t.Fatalf("invalid JSON loaded: %q (rejected %d of %d)", body, rejected, fuzzed)
			}
		}
	})
}

// checkParser compares the parser with encoding/json on a valid JSON object:
// same keys (duplicates: last wins), same decoded strings, same number literals.
func checkParser(t *testing.T, body []byte) {
	if !json.Valid(body) || !utf8.Valid(body) {
		return
	}
	var want any
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&want); err != nil {
		return
	}
	if _, ok := want.(map[string]any); !ok {
		return
	}
	var p parser
	if err := p.parse(string(body)); err != nil {
		if strings.Contains(err.Error(), "nested too deeply") {
			return
		}
		t.Fatalf("parser refuses a valid object: %v", err)
	}
	p.dedupe()
	if got := treeValue(&p, 0); !reflect.DeepEqual(got, want) {
		t.Fatalf("parser reads\n%#v\nencoding/json reads\n%#v", got, want)
	}
}

func treeValue(p *parser, i int32) any {
	n := &p.nodes[i]
	switch n.kind {
	case kindObject:
		m := map[string]any{}
		for c := n.first; c >= 0; c = p.nodes[c].next {
			if p.nodes[c].kind != kindGone {
				m[p.key(c)] = treeValue(p, c)
			}
		}
		return m
	case kindArray:
		a := []any{}
		for c := n.first; c >= 0; c = p.nodes[c].next {
			a = append(a, treeValue(p, c))
		}
		return a
	case kindString:
		if !n.esc {
			return p.s[n.vs:n.ve]
		}
		v, _ := unescape(p.s[n.vs:n.ve])
		return v
	case kindNumber:
		return json.Number(p.s[n.vs:n.ve])
	case kindTrue:
		return true
	case kindFalse:
		return false
	}
	return nil
}
