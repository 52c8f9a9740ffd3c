package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// ImportRecord checks one line of a backfill import (hookhouse import) by the
// rules of webhook records: it must be one JSON object, valid as Split checks
// it. It returns the object without surrounding white space. With field set it
// also returns the record's receipt time taken from that top-level field (see
// ReceivedAt); otherwise the time is zero.
func ImportRecord(line []byte, field string) ([]byte, time.Time, error) {
	rec := bytes.TrimSpace(line)
	if len(rec) == 0 {
		return nil, time.Time{}, errors.New("empty line")
	}
	if rec[0] != '{' {
		if json.Valid(rec) {
			return nil, time.Time{}, errors.New("not a JSON object: each record must be one JSON object")
		}
		_, err := Split(rec)
		return nil, time.Time{}, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := Split(rec); err != nil {
		return nil, time.Time{}, fmt.Errorf("invalid JSON: %w", err)
	}
	if field == "" {
		return rec, time.Time{}, nil
	}
	at, err := fieldTime(rec, field)
	return rec, at, err
}

// fieldTime reads the top-level field of a valid JSON object as a receipt time.
func fieldTime(rec []byte, field string) (time.Time, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(rec, &obj); err != nil {
		return time.Time{}, fmt.Errorf("invalid JSON: %w", err)
	}
	raw, ok := obj[field]
	if !ok {
		return time.Time{}, fmt.Errorf("no field %q for the receipt time (--received-at)", field)
	}
	at, err := ReceivedAt(raw)
	if err != nil {
		return time.Time{}, fmt.Errorf("field %q: %w", field, err)
	}
	return at, nil
}

// maxReceivedAt is the first receipt time an import cannot give.
var maxReceivedAt = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)

// ReceivedAt parses a JSON value given as a record's receipt time: an RFC 3339
// string ("2025-03-01T12:00:00Z", fractions and offsets allowed) or a number of
// Unix seconds (fractions allowed), or of Unix milliseconds when it is 10^11 or
// more (10^11 seconds would be the year 5138). The time must fall in the years
// 1970 to 2199: _sdc_sequence, nanoseconds since 1970 in 64 bits, ends in 2262.
func ReceivedAt(raw json.RawMessage) (time.Time, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return time.Time{}, errors.New("empty value")
	}
	var t time.Time
	switch c := raw[0]; {
	case c == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return time.Time{}, fmt.Errorf("invalid string: %w", err)
		}
		var err error
		if t, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time such as 2025-03-01T12:00:00Z", s)
		}
	case c == '-' || c >= '0' && c <= '9':
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil || math.IsInf(f, 0) {
			return time.Time{}, fmt.Errorf("%s is not a number of Unix seconds or milliseconds", raw)
		}
		if f >= 1e11 { // milliseconds
			f /= 1000
		}
		if f < 0 || f >= float64(maxReceivedAt.Unix()) {
			return time.Time{}, fmt.Errorf("%s is outside the years 1970 to 2199", raw)
		}
		sec, frac := math.Modf(f)
		t = time.Unix(int64(sec), int64(math.Round(frac*1e6))*1000)
	default:
		return time.Time{}, fmt.Errorf("%s is neither an RFC 3339 string nor a number of Unix seconds or milliseconds", raw)
	}
	if t.Before(time.Unix(0, 0)) || !t.Before(maxReceivedAt) {
		return time.Time{}, fmt.Errorf("%s is outside the years 1970 to 2199", raw)
	}
	return t.UTC(), nil
}
