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
// Deduplicated returns how many records of integration were refused as parts
// of duplicate deliveries since it was created (the stats' records_deduplicated);
// the count survives restarts.
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
	// ErrConflict is returned by PutIf when a value is not the one expected:
	// another call (on this node or another) changed it first. Read again and retry.
	ErrConflict = errors.New("state: the value changed since it was read")
)

// Store is the state seam: everything hookhouse uses of its durable state. Pebble
// (one process) and JetStream (a cluster of nodes) implement it; the conformance
// suite in statetest holds both to this contract.
//
// The log, per integration:
//   - Append stores bodies as consecutive records, all or nothing, and returns
//     the first one's position only once they are durable (fsync'd, or stored
//     by a quorum). Positions are 1, 2, 3, … without gaps, in the order the
//     store serialised the appends; the records of one Append are consecutive.
//     An error means nothing is known to be stored: the caller answers 503.
//   - Head is the last position appended (0 if none) and the latest receipt
//     time; Heads is every integration's. On a cluster they may lag appends
//     made by other nodes by a moment, never appends made through this store.
//   - Changed returns a channel closed at the next append (made by any node).
//   - Read returns up to max records after position after, in position order,
//     stopping once maxBytes of bodies are read (at least one record if any).
//   - Trim removes records at or below upTo received before cutoff, oldest
//     first, stopping at the first record too new, and returns how many it
//     removed. It never removes a record above upTo; positions never change.
//     It may keep a record stored in one write with a record it must keep
//     (on JetStream a message holds a group commit) until a later Trim.
//
// Control data: Get (ErrNotFound for a missing key), Put (durable, all keys or
// none; a nil value deletes) and Scan (keys with a prefix, in key order; fn
// must not call the store). Keys are any non-empty strings.
//
// PutIf is Put on condition, the compare-and-set that keeps ids unique across
// nodes: it writes kvs only if every key of expect holds the value given there
// (nil: the key must not exist), and otherwise returns ErrConflict and writes
// nothing. A key whose value decides a PutIf must be written only with PutIf;
// a plain Put of it may go unnoticed on Pebble.
//
// Writable says whether appends can be taken now (for /readyz). After Close,
// every call that needs the store returns ErrClosed; Close may be called twice.
type Store interface {
	Append(ctx context.Context, integration int64, receivedAt time.Time, bodies [][]byte) (uint64, error)
	Head(integration int64) Head
	Heads() map[int64]Head
	Changed() <-chan struct{}
	Read(ctx context.Context, integration int64, after uint64, max, maxBytes int) ([]Record, error)
	Trim(integration int64, upTo uint64, cutoff time.Time) (uint64, error)
	Deduper
	Get(key string) ([]byte, error)
	Put(kvs map[string][]byte) error
	Scan(prefix string, fn func(key string, value []byte) error) error
	PutIf(expect, kvs map[string][]byte) error
	Writable() error
	Close() error
}

var _ Store = (*Pebble)(nil)
