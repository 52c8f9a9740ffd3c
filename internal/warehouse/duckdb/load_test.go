package duckdb

import (
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// TestToDriverTimestamp: a timestamp reaches the Appender in UTC and truncated
// to microseconds; one that already is passes through as the same value.
func TestToDriverTimestamp(t *testing.T) {
	east := time.FixedZone("UTC+2", 2*3600)
	tests := []struct {
		in   time.Time
		want time.Time
	}{
		{time.Date(2026, 12, 2, 6, 0, 0, 123456000, east), time.Date(2026, 12, 2, 4, 0, 0, 123456000, time.UTC)},
		{time.Date(2026, 12, 2, 4, 0, 0, 123456789, time.UTC), time.Date(2026, 12, 2, 4, 0, 0, 123456000, time.UTC)},
		{time.Date(2026, 12, 2, 4, 0, 0, 123456000, time.UTC), time.Date(2026, 12, 2, 4, 0, 0, 123456000, time.UTC)},
	}
	for _, tt := range tests {
		got, err := toDriver(tt.in, warehouse.Timestamp)
		if err != nil {
			t.Fatal(err)
		}
		ts, ok := got.(time.Time)
		if !ok || !ts.Equal(tt.want) || ts.Location() != time.UTC || ts.Nanosecond() != tt.want.Nanosecond() {
			t.Errorf("toDriver(%v) = %v, want %v in UTC", tt.in, got, tt.want)
		}
	}
	if _, err := toDriver("2026-12-02", warehouse.Timestamp); err == nil {
		t.Error("a string for a timestamp column: want an error")
	}
}
