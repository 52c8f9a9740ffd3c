package server

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hookhouse/hookhouse/internal/history"
	"github.com/hookhouse/hookhouse/internal/loader"
	"github.com/hookhouse/hookhouse/internal/verify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are hookhouse's Prometheus metrics, and the feed of the dashboard's
// history. Labels carry only status codes and integration ids: never a token or
// a payload value.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	accepted *prometheus.CounterVec
	// Every accepted request counts a 200 and its integration's records: their
	// counters are kept, not looked up by label each time.
	requestsOK      prometheus.Counter
	acceptedCounter sync.Map // integration id (int64) -> prometheus.Counter
	loaded          *prometheus.CounterVec
	rejected        *prometheus.CounterVec
	batchSize       prometheus.Histogram
	batchDur        prometheus.Histogram
	syncDur         prometheus.Histogram
	syncGroup       prometheus.Histogram
	sigFail         *prometheus.CounterVec
	dedup           *prometheus.CounterVec
	// signatures holds each integration's failures for its stats.
	sigMu      sync.Mutex
	signatures map[int64]SignatureStats
	// history, once set (before any request or load), gets the same outcomes.
	history *history.History
}

func newMetrics(stats func() map[int64]loader.Stats) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookhouse_webhook_requests_total", Help: "Webhook requests by HTTP status code.",
		}, []string{"code"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookhouse_records_accepted_total", Help: "Records durably accepted, by integration id.",
		}, []string{"integration"}),
		loaded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookhouse_records_loaded_total", Help: "Records loaded into the warehouse, by integration id.",
		}, []string{"integration"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookhouse_records_rejected_total", Help: "Records written to _sdc_rejected, by integration id.",
		}, []string{"integration"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hookhouse_load_batch_records", Help: "Records per committed load batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}),
		batchDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hookhouse_load_batch_seconds", Help: "Time to flatten and commit one load batch.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}),
		syncDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hookhouse_log_fsync_seconds", Help: "Duration of each group commit (write + fsync) of the log.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
		}),
		syncGroup: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hookhouse_log_group_requests", Help: "Requests sharing one fsync.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 9),
		}),
		sigFail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookhouse_signature_failures_total", Help: "Deliveries whose signature did not verify, by integration id and reason code.",
		}, []string{"integration", "reason"}),
		dedup: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookhouse_deliveries_deduplicated_total", Help: "Redeliveries answered without a new row, by integration id.",
		}, []string{"integration"}),
		signatures: map[int64]SignatureStats{},
	}
	m.requestsOK = m.requests.WithLabelValues(strconv.Itoa(http.StatusOK))
	m.reg.MustRegister(m.sigFail, m.dedup)
	m.reg.MustRegister(m.requests, m.accepted, m.loaded, m.rejected, m.batchSize, m.batchDur, m.syncDur, m.syncGroup,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&freshness{stats: stats,
			backlog: prometheus.NewDesc("hookhouse_backlog_records", "Accepted records not yet loaded.", []string{"integration"}, nil),
			lag:     prometheus.NewDesc("hookhouse_lag_seconds", "Age of the oldest record not yet loaded.", []string{"integration"}, nil),
		})
	return m
}

func (m *metrics) Request(status int) {
	if status == http.StatusOK {
		m.requestsOK.Inc()
		return
	}
	m.requests.WithLabelValues(strconv.Itoa(status)).Inc()
}

// SignatureStats are an integration's signature failures since the start.
type SignatureStats struct {
	Failures int64
	LastAt   time.Time
	Last     string // the reason: header names and numbers, never a secret
}

func (m *metrics) SignatureFailed(integration int64, code verify.Code, reason string) {
	m.sigFail.WithLabelValues(strconv.FormatInt(integration, 10), string(code)).Inc()
	m.sigMu.Lock()
	s := m.signatures[integration]
	s.Failures++
	s.LastAt, s.Last = time.Now().UTC(), reason
	m.signatures[integration] = s
	m.sigMu.Unlock()
	if m.history != nil {
		m.history.SignatureFailed(integration)
	}
}

func (m *metrics) Deduplicated(integration int64) {
	m.dedup.WithLabelValues(strconv.FormatInt(integration, 10)).Inc()
}

// Signatures returns integration's signature failures.
func (m *metrics) Signatures(integration int64) SignatureStats {
	m.sigMu.Lock()
	defer m.sigMu.Unlock()
	return m.signatures[integration]
}

func (m *metrics) Accepted(integration int64, records int) {
	c, ok := m.acceptedCounter.Load(integration)
	if !ok {
		c, _ = m.acceptedCounter.LoadOrStore(integration, m.accepted.WithLabelValues(strconv.FormatInt(integration, 10)))
	}
	c.(prometheus.Counter).Add(float64(records))
	if m.history != nil {
		m.history.Received(integration, records)
	}
}

func (m *metrics) Batch(integration int64, loaded, rejected int, took time.Duration) {
	id := strconv.FormatInt(integration, 10)
	m.loaded.WithLabelValues(id).Add(float64(loaded))
	m.rejected.WithLabelValues(id).Add(float64(rejected))
	m.batchSize.Observe(float64(loaded + rejected))
	m.batchDur.Observe(took.Seconds())
	if m.history != nil {
		m.history.Loaded(integration, loaded, rejected)
	}
}

func (m *metrics) Sync(took time.Duration, requests int) {
	m.syncDur.Observe(took.Seconds())
	m.syncGroup.Observe(float64(requests))
}

// freshness reports backlog and lag per integration at scrape time.
type freshness struct {
	stats        func() map[int64]loader.Stats
	backlog, lag *prometheus.Desc
}

func (f *freshness) Describe(ch chan<- *prometheus.Desc) { ch <- f.backlog; ch <- f.lag }

func (f *freshness) Collect(ch chan<- prometheus.Metric) {
	for id, s := range f.stats() {
		l := strconv.FormatInt(id, 10)
		ch <- prometheus.MustNewConstMetric(f.backlog, prometheus.GaugeValue, float64(s.Backlog), l)
		ch <- prometheus.MustNewConstMetric(f.lag, prometheus.GaugeValue, s.Lag.Seconds(), l)
	}
}
