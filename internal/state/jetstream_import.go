package state

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"
)

var _ Importer = (*JetStream)(nil)

// AppendOnceAt appends a chunk of a backfill import once; see Importer. It is
// AppendOnce with a receipt time per record: one message whose Nats-Msg-Id is
// the claim on importID, its records stored with their own times, its Hh-At
// the import's time now (the claim is judged at now, and Trim keeps the
// message until now is older than the retention, as it keeps a delivery's),
// and the head's LastReceivedAt becomes now, as on Pebble.
//
// The window is bounded by the stream's duplicate window
// (JetStreamOptions.DedupeWindow, a week by default): the servers forget a
// claim older than that whatever window it was made with, so an import chunk
// sent again later than that is stored again. The claim is made with the
// smaller of the two windows, so that the message says what holds.
//
// A chunk must fit one NATS message (MaxMessageBytes): a larger one is
// refused with an error, and nothing is stored.
func (j *JetStream) AppendOnceAt(ctx context.Context, integration int64, now time.Time, receivedAt []time.Time, importID string, window time.Duration, bodies [][]byte) (uint64, bool, error) {
	if len(receivedAt) != len(bodies) {
		return 0, false, fmt.Errorf("state: %d receipt times for %d records", len(receivedAt), len(bodies))
	}
	if importID == "" {
		return 0, false, errors.New("state: AppendOnceAt needs an import id")
	}
	if window < time.Microsecond {
		return 0, false, fmt.Errorf("state: dedupe window %s must be positive", window)
	}
	sum := sha256.Sum256([]byte(importID))
	req := &jsAppend{receivedAt: now, times: receivedAt, bodies: bodies, err: make(chan error, 1),
		once: &jsOnce{msgID: strconv.FormatInt(integration, 10) + "." + hex.EncodeToString(sum[:]),
			window: min(window, j.opts.DedupeWindow), uncounted: true}}
	for _, b := range bodies {
		req.size += len(b) + recordOverhead
	}
	if err := j.do(ctx, integration, req); err != nil {
		return 0, false, err
	}
	if req.once.duplicate {
		return 0, true, nil
	}
	return req.first, false, nil
}

// MaxAppendBytes is the most bytes of records one call can store, framing
// included: a record takes its body's length and 28 bytes. It is the
// stream's MaxMessageBytes, set below the servers' max_payload.
func (j *JetStream) MaxAppendBytes() int { return j.opts.MaxMessageBytes }

// DedupeWindow is the stream's duplicate window: the longest a claim lasts.
func (j *JetStream) DedupeWindow() time.Duration { return j.opts.DedupeWindow }
