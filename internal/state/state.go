// Package state is hookhouse's durable state: the log of accepted records and the
// control data (integrations, webhook URL hashes, the admin key hash).
//
// The embedded engine is Pebble (pebble.go). Records are appended by one writer
// goroutine that group-commits: every request waiting while the previous fsync ran
// goes into the next batch, so concurrent requests share syncs, the log stays in
// append order, and an Append returns only after its records are on disk.
package state

import (
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

var (
	// ErrClosed is returned by every call that needs the store (Append, Read,
	// Trim, Get, Put, Scan, Writable) once Close has begun, instead of a panic.
	ErrClosed = errors.New("state: log is closed")
	// ErrNoSpace is returned by Append when the disk is too full to promise durability.
	ErrNoSpace = errors.New("state: not enough free disk space")
	// ErrNotFound is returned by Get for a missing key.
	ErrNotFound = errors.New("state: not found")
)
