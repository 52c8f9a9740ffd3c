// Package history keeps each integration's recent traffic and loading figures
// for the dashboard's charts: per-minute counts downsampled into fixed windows,
// bounded in size, persisted in hookhouse's own state so they survive a restart.
// Nodes of a cluster share one history: each writes its buckets only under its
// own name (history/<node>/…) and Points adds up the buckets of every node.
package history

import "time"

// Window is a span the dashboard charts.
type Window int

const (
	Hour Window = iota + 1 // 60 buckets of 1 minute
	Day                    // 144 buckets of 10 minutes
	Week                   // 168 buckets of 1 hour
)

// Point is one bucket of a window.
type Point struct {
	At       time.Time     // start of the bucket, UTC
	Received int64         // records acknowledged (200)
	Loaded   int64         // records loaded into the warehouse
	Rejected int64         // records loaded into _sdc_rejected
	Lag      float64       // the largest lag seen in the bucket, seconds
	Refused  map[int]int64 // answers other than 200, by status code; nil when none
	// SignatureFailures counts deliveries whose signature did not verify
	// (integrations that verify; refused with 401 in enforce mode, accepted
	// and only counted in monitor mode).
	SignatureFailures int64
}
