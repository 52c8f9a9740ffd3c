// Package state is hookhouse's durable state: the log of accepted records and the
// control data (integrations, webhook URL hashes, the admin key hash).
//
// The embedded engine is Pebble (pebble.go). Records are appended by one writer
// goroutine that group-commits: every request waiting while the previous fsync ran
// goes into the next batch, so concurrent requests share syncs, the log stays in
// append order, and an Append returns only after its records are on disk.
package state

import (
	"context"
	"errors"
	"time"
)

// Record is one accepted record in the log of its integration.
type Record struct {
	Integration int64
	Position    uint64 // 1, 2, 3, … within the integration, without gaps
	ReceivedAt  time.Time
	ID          [16]byte // UUID, becomes __sdc_primary_key
	Body        []byte   // one JSON object
}

// Head is what the log knows of one integration.
type Head struct {
	Position       uint64    // last appended position = records received so far
	LastReceivedAt time.Time // receipt time of the last append, zero if none
}

// DefaultDedupeWindow is how long a delivery id stays claimed unless the
// integration sets its own window. It is longer than providers' automatic
// retries and equals the log's default retention (168h).
const DefaultDedupeWindow = 7 * 24 * time.Hour

// Deduper appends a delivery's records unless its integration has already
// accepted the same delivery id, so that a provider's redeliveries add no rows.
// The ingest handler uses it for sources whose deliveries carry an id.
//
// AppendOnce claims deliveryID for integration and appends bodies (as Append
// does: one atomic write, in log order, returning the first position) in ONE
// durable write, or does neither:
//   - duplicate=false, err=nil: the claim and the records are durable (fsync'd,
//     or in cluster mode acknowledged by a quorum); answer 200 with the records.
//   - duplicate=true, err=nil: a claim on deliveryID made by this integration
//     within the window already exists and is durable; nothing was appended
//     (first is 0). Answer 200 with records 0, duplicates 1.
//   - err != nil: the outcome is as for a failed Append; nothing is known to be
//     stored (ErrNoSpace, ErrClosed, ctx.Err() before queuing, or a write
//     error). Answer 503 so the provider retries: its retry is then either the
//     first delivery or a duplicate, never a second row.
//
// Concurrent calls with the same integration and id are decided in the order
// the store serialises them: exactly one appends, the others are duplicates,
// and a duplicate is reported only once the claim it collides with is durable.
// Ids are compared exactly (any length, any bytes; the store keeps a SHA-256 of
// them) and only within one integration. deliveryID must not be empty and
// window must be positive.
//
// The window: a claim made at receivedAt counts for later deliveries received
// before receivedAt+window, judged with the window of the later call, so a
// shorter window takes effect at once. A claim is kept only for the window it
// was made with, so a longer window applies to claims made after the change.
// Expired claims stop counting at once and are removed by the store later.
//
// Deduplicated returns how many deliveries of integration were refused as
// duplicates since it was created; the count survives restarts.
//
// On NATS JetStream the claim is the message itself: publish the delivery's
// records as one message (or one atomic batch) with Nats-Msg-Id set to the
// integration and the id's hash, and the stream's duplicate window set to the
// dedupe window; a PubAck with Duplicate=true is duplicate=true. That window is
// per stream and kept in the server's memory, so integrations with different
// windows need different streams.
type Deduper interface {
	AppendOnce(ctx context.Context, integration int64, receivedAt time.Time, deliveryID string, window time.Duration, bodies [][]byte) (first uint64, duplicate bool, err error)
	Deduplicated(integration int64) int64
}

// Importer appends a chunk of a backfill import once (hookhouse import): it is
// Deduper's AppendOnce with a receipt time per record. The claim on importID is
// judged at now, exactly as AppendOnce judges deliveryID at receivedAt, and is
// made in the same durable write as the records; record i is stored with
// receivedAt[i] (len(receivedAt) == len(bodies)). The head's LastReceivedAt
// becomes now. A duplicate is not counted in Deduplicated.
type Importer interface {
	AppendOnceAt(ctx context.Context, integration int64, now time.Time, receivedAt []time.Time, importID string, window time.Duration, bodies [][]byte) (first uint64, duplicate bool, err error)
}

var (
	// ErrClosed is returned by every call that needs the store (Append, Read,
	// Trim, Get, Put, Scan, Writable) once Close has begun, instead of a panic.
	ErrClosed = errors.New("state: log is closed")
	// ErrNoSpace is returned by Append when the disk is too full to promise durability.
	ErrNoSpace = errors.New("state: not enough free disk space")
	// ErrNotFound is returned by Get for a missing key.
	ErrNotFound = errors.New("state: not found")
)
