package server

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/hookhouse/hookhouse/internal/loader"
)

// BenchmarkRequestMetrics is what every accepted webhook request costs the
// metrics: its status counted, its records counted for its integration.
func BenchmarkRequestMetrics(b *testing.B) {
	m := newMetrics(func() map[int64]loader.Stats { return nil })
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Request(200)
			m.Accepted(1234, 1)
		}
	})
}

// TestRequestMetricsCounted: the kept counters count into the same series as
// the labelled ones, per integration and per status.
func TestRequestMetricsCounted(t *testing.T) {
	m := newMetrics(func() map[int64]loader.Stats { return nil })
	for range 3 {
		m.Request(200)
		m.Accepted(1, 2)
	}
	m.Request(415)
	m.Accepted(2, 5)
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"200s", value(t, m.requests.WithLabelValues("200")), 3},
		{"415s", value(t, m.requests.WithLabelValues("415")), 1},
		{"integration 1", value(t, m.accepted.WithLabelValues("1")), 6},
		{"integration 2", value(t, m.accepted.WithLabelValues("2")), 5},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
}

func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var out dto.Metric
	if err := c.Write(&out); err != nil {
		t.Fatal(err)
	}
	return out.GetCounter().GetValue()
}
