package ingest

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestImportRecord(t *testing.T) {
	rec, at, err := ImportRecord([]byte("  {\"a\":1}\r\n"), "")
	if err != nil || string(rec) != `{"a":1}` || !at.IsZero() {
		t.Fatalf(`ImportRecord = %q, %v, %v; want {"a":1}`, rec, at, err)
	}
	bad := map[string]string{
		``:                  "empty line",
		`[{"a":1}]`:         "not a JSON object",
		`"x"`:               "not a JSON object",
		`42`:                "not a JSON object",
		`{"a":}`:            "invalid JSON",
		`{"a":1} x`:         "trailing data",
		"{\"a\":\"\xff\"}":  "invalid UTF-8",
		`{"a":1`:            "truncated",
		`nope`:              "invalid JSON",
		`{"a":1}{"b":2}`:    "trailing data",
		`{"a":"x` + "\n\"}": "control character",
	}
	for line, want := range bad {
		if _, _, err := ImportRecord([]byte(line), ""); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ImportRecord(%q) = %v, want an error with %q", line, err, want)
		}
	}
}

func TestImportRecordReceivedAt(t *testing.T) {
	want := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, line := range []string{
		`{"ts":"2025-03-01T12:00:00Z"}`,
		`{"ts":"2025-03-01T13:00:00+01:00"}`,
		`{"ts":1740830400}`,
		`{"ts":1740830400000}`,
		`{"x":{"ts":1},"ts":1740830400.0}`,
	} {
		_, at, err := ImportRecord([]byte(line), "ts")
		if err != nil || !at.Equal(want) || at.Location() != time.UTC {
			t.Errorf("ImportRecord(%s) time = %v, %v; want %v", line, at, err, want)
		}
	}
	_, at, err := ImportRecord([]byte(`{"ts":1740830400.25}`), "ts")
	if err != nil || !at.Equal(want.Add(250*time.Millisecond)) {
		t.Errorf("fractional seconds: %v, %v", at, err)
	}
	bad := map[string]string{
		`{"other":1}`:                   `no field "ts"`,
		`{"ts":"yesterday"}`:            "not an RFC 3339 time",
		`{"ts":"2025-03-01"}`:           "not an RFC 3339 time",
		`{"ts":null}`:                   "neither an RFC 3339 string nor a number",
		`{"ts":true}`:                   "neither",
		`{"ts":-5}`:                     "outside the years",
		`{"ts":1e300}`:                  "outside the years",
		`{"ts":{"s":1}}`:                "neither",
		`{"ts":"0001-01-01T00:00:00Z"}`: "outside the years",
		`{"ts":"2200-01-01T00:00:00Z"}`: "outside the years 1970 to 2199",
		`{"ts":7258118400}`:             "outside the years",
	}
	for line, want := range bad {
		if _, _, err := ImportRecord([]byte(line), "ts"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ImportRecord(%s) = %v, want an error with %q", line, err, want)
		}
	}
	for _, ok := range []string{`1700000000123`, `"2199-12-31T23:59:59Z"`, `0`, `"1970-01-01T00:00:00Z"`} {
		if _, err := ReceivedAt(json.RawMessage(ok)); err != nil {
			t.Errorf("ReceivedAt(%s): %v", ok, err)
		}
	}
}
