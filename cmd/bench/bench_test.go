package main

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100) // 1..100 ms
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value", []time.Duration{7}, 99, 7},
		{"median of three", []time.Duration{1, 2, 3}, 50, 2},
		{"median of four is the lower middle", []time.Duration{1, 2, 3, 4}, 50, 2},
		{"p50 of 1..100", hundred, 50, 50 * time.Millisecond},
		{"p99 of 1..100", hundred, 99, 99 * time.Millisecond},
		{"p99.9 of 1..100 rounds up", hundred, 99.9, 100 * time.Millisecond},
		{"p100 is the max", hundred, 100, 100 * time.Millisecond},
		{"tiny p is the min", hundred, 0.001, time.Millisecond},
		{"p99 of ten is the max", hundred[:10], 99, 10 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%d values, %v) = %v, want %v", len(tt.sorted), tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarizeSorts(t *testing.T) {
	l := summarize([]time.Duration{5, 1, 4, 2, 3})
	if l.n != 5 || l.p50 != 3 || l.p99 != 5 || l.max != 5 {
		t.Errorf("summarize = %+v, want n=5 p50=3 p99=5 max=5", l)
	}
}

func TestWithMarker(t *testing.T) {
	sent := time.Date(2026, 11, 28, 4, 0, 0, 123456789, time.UTC)
	tests := []struct{ in, want string }{
		{` {"type":"sent"}`, `{"bench_marker":42,"bench_sent_at":"2026-11-28T04:00:00.123456789Z","type":"sent"}`},
		{"{ }", `{"bench_marker":42,"bench_sent_at":"2026-11-28T04:00:00.123456789Z"}`},
	}
	for _, tt := range tests {
		if got := string(withMarker([]byte(tt.in), 42, sent)); got != tt.want {
			t.Errorf("withMarker(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// TestLoadVeroByDefault: with no -vero, bench finds the 14 samples by itself,
// also in a fresh clone without ../shared (the repository's testdata/vero).
func TestLoadVeroByDefault(t *testing.T) {
	dir, bodies, err := loadVero("")
	if err != nil {
		t.Fatal(err)
	}
	if len(bodies) != 14 {
		t.Fatalf("%d Vero samples from %s, want 14", len(bodies), dir)
	}
}
