package ingest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hookhouse/hookhouse/internal/samples"
)

func TestSplit(t *testing.T) {
	deep := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	tests := []struct {
		name    string
		body    string
		records []string
		err     string // substring of the error, "" for success
	}{
		{"object", `{"a":1}`, []string{`{"a":1}`}, ""},
		{"object with spaces", " \n{\"a\": [1, {\"b\": null}]}\t", []string{`{"a": [1, {"b": null}]}`}, ""},
		{"array of objects", `[{"a":1}, {"b":2},{"c":"x"}]`, []string{`{"a":1}`, `{"b":2}`, `{"c":"x"}`}, ""},
		{"empty array", `[ ]`, nil, ""},
		{"empty object", `{}`, []string{`{}`}, ""},
		{"unicode", `{"ключ":"значение 😀","e":"\u00e9\ud83d\ude00"}`, []string{`{"ключ":"значение 😀","e":"\u00e9\ud83d\ude00"}`}, ""},
		{"numbers", `{"a":-0.5e+10,"b":0,"c":123456789012345678901234567890}`, []string{`{"a":-0.5e+10,"b":0,"c":123456789012345678901234567890}`}, ""},
		{"depth 64", deep(64), []string{deep(64)}, ""},
		{"depth 65", deep(65), nil, "nesting deeper than 64"},
		{"array counts as a level", "[" + deep(64) + "]", nil, "nesting deeper than 64"},
		{"depth 100", deep(100), nil, "nesting deeper than 64"},
		{"scalar string", `"x"`, nil, "scalar"},
		{"scalar number", `42`, nil, "scalar"},
		{"null", `null`, nil, "scalar"},
		{"array of numbers", `[1,2]`, nil, "element 0 is not an object"},
		{"array with non-object later", `[{"a":1},"x"]`, nil, "element 1 is not an object"},
		{"array of arrays", `[[{"a":1}]]`, nil, "element 0 is not an object"},
		{"truncated", `{"a":1`, nil, "truncated"},
		{"truncated string", `{"a":"bc`, nil, "unterminated"},
		{"truncated array", `[{"a":1},`, nil, "end of input"},
		{"trailing garbage", `{"a":1} xyz`, nil, "trailing data"},
		{"two objects", `{"a":1}{"b":2}`, nil, "trailing data"},
		{"invalid utf-8", "{\"a\":\"\xff\xfe\"}", nil, "invalid UTF-8"},
		{"invalid utf-8 in key", "{\"\xc3\":1}", nil, "invalid UTF-8"},
		{"raw control char", "{\"a\":\"x\ny\"}", nil, "control character"},
		{"bad escape", `{"a":"\x"}`, nil, "invalid escape"},
		{"bad unicode escape", `{"a":"\u12G4"}`, nil, "\\u escape"},
		{"single quotes", `{'a':1}`, nil, "expected a string key"},
		{"trailing comma", `{"a":1,}`, nil, "expected a string key"},
		{"leading zero", `{"a":01}`, nil, "expected ',' or '}'"},
		{"bare word", `{"a":tru}`, nil, "invalid literal"},
		{"empty body", ``, nil, "empty body"},
		{"whitespace body", "  \n", nil, "empty body"},
		{"NaN", `{"a":NaN}`, nil, "invalid character"},
		{"number dot", `{"a":1.}`, nil, "digit expected"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Split([]byte(tc.body))
			if tc.err != "" {
				if err == nil {
					t.Fatalf("Split(%q) = %d records, want error containing %q", tc.body, len(got), tc.err)
				}
				if !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Split(%q) error = %q, want it to contain %q", tc.body, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Split(%q): %v", tc.body, err)
			}
			if len(got) != len(tc.records) {
				t.Fatalf("Split(%q) = %d records, want %d", tc.body, len(got), len(tc.records))
			}
			for i := range got {
				if string(got[i]) != tc.records[i] {
					t.Errorf("record %d = %q, want %q", i, got[i], tc.records[i])
				}
			}
		})
	}
}

func TestSplitVeroSamples(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(samples.VeroDir(), "*.json"))
	if len(files) != 14 {
		t.Fatalf("found %d Vero samples, want 14", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := Split(b)
		if err != nil || len(recs) != 1 {
			t.Fatalf("%s: %d records, %v", f, len(recs), err)
		}
	}
}

func TestMaskPath(t *testing.T) {
	tok := strings.Repeat("ab", 30) + "cdef"
	if got := MaskPath("/v1/clients/7/token/" + tok); got != "/v1/clients/7/token/****cdef" {
		t.Fatalf("MaskPath = %q", got)
	}
	if got := MaskPath("/v1/clients/7/token/short"); strings.Contains(got, "short") {
		t.Fatalf("MaskPath leaks a malformed token: %q", got)
	}
	if got := MaskPath("/api/v1/integrations"); got != "/api/v1/integrations" {
		t.Fatalf("MaskPath changed another path: %q", got)
	}
}

// FuzzSplit checks Split against encoding/json: whatever Split accepts is valid
// JSON whose records are objects, and Split never panics.
func FuzzSplit(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(samples.VeroDir(), "*.json"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{`[]`, `[{"a":1},{"b":[1,2,{"c":null}]}]`, `{"a":"\ud800"}`, `{"a":1}x`, `[1]`, `"x"`, "{\"a\":\"\xff\"}", `{"a":1e999}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		recs, err := Split(body)
		if err != nil {
			return
		}
		if !json.Valid(body) {
			t.Fatalf("Split accepted invalid JSON %q", body)
		}
		for _, r := range recs {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(r, &m); err != nil {
				t.Fatalf("record %q is not an object: %v", r, err)
			}
		}
	})
}

func BenchmarkSplit(b *testing.B) {
	body, err := os.ReadFile(filepath.Join(samples.VeroDir(), "01-sent.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := Split(body); err != nil {
			b.Fatal(err)
		}
	}
}
