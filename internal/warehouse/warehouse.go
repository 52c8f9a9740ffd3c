// Package warehouse holds the types the loader hands to a warehouse adapter and the
// small interface every adapter (duckdb, postgres) implements.
//
// The loader decides everything about names and types (see internal/loader); an
// adapter only creates what a Batch describes and writes its rows in ONE transaction,
// together with the integration's load position, so that a crash at any moment either
// keeps the whole batch and its position or neither.
package warehouse

import (
	"context"
	"errors"
	"time"
)

// Type is a warehouse column type, named after SPEC §5.
type Type int

const (
	Text      Type = iota + 1 // Go value: string
	BigInt                    // int64
	Double                    // float64
	Boolean                   // bool
	Numeric                   // string of decimal digits with optional '-', at most 38 digits
	Timestamp                 // time.Time, stored as UTC timestamp with time zone
)

func (t Type) String() string {
	switch t {
	case Text:
		return "text"
	case BigInt:
		return "bigint"
	case Double:
		return "double"
	case Boolean:
		return "boolean"
	case Numeric:
		return "numeric"
	case Timestamp:
		return "timestamp"
	}
	return "unknown"
}

// Column is one column of a table.
type Column struct {
	Name string
	Type Type
}

// Table is one table's part of a batch.
//
// Columns is the table's full column list in order as it must be after the batch:
// the columns that exist already, then new ones. The adapter creates the table with
// these columns if it is missing and adds, in order, any column it lacks.
// Each row holds one value per column in Columns order; a row may be shorter than
// Columns, and the missing tail is NULL. A nil value is NULL.
type Table struct {
	Name    string
	Columns []Column
	Rows    [][]any
}

// Batch is what one load transaction writes for one integration.
type Batch struct {
	Integration int64
	Schema      string
	// Key is the data table's upsert column for `webhooks` integrations with a
	// primary_key, "" for append-only. With a Key, the data table gets a primary key
	// on it (where the warehouse supports it), a data row replaces the row with the
	// same key, and every subtable's rows whose source key column (Table.Columns[0])
	// holds a key present in this batch's data rows are deleted before the new rows
	// are written. The loader already keeps only the last record per key in a batch.
	Key string
	// Tables: "data" first (if it has rows or new columns), then subtables, then
	// "_sdc_rejected". A Table with no rows is still created/evolved.
	Tables []Table
	// State is the integration's load state after this batch; written in the same
	// transaction.
	State State
}

// State is what the warehouse remembers per integration so that loading resumes
// exactly where the last committed batch ended.
type State struct {
	Position uint64 // last log position loaded (0: nothing yet)
	Sequence int64  // last _sdc_sequence handed out (0: none yet)
}

// Result is the answer of a read-only query. Values are JSON-friendly: string,
// int64, float64, bool, nil, or a string rendering for other types (timestamps as
// RFC 3339 with microseconds, UTC).
type Result struct {
	Columns []string `json:"columns"`
	Rows    [][]any  `json:"rows"`
	// Truncated is true when more rows existed than the limit allowed.
	Truncated bool `json:"truncated,omitempty"`
}

// Warehouse is what the loader and the query endpoint need from a warehouse.
type Warehouse interface {
	// LoadState returns the stored load state of every integration that has one.
	LoadState(ctx context.Context) (map[int64]State, error)
	// Columns returns the columns of schema.table in order, or nil if the table
	// does not exist.
	Columns(ctx context.Context, schema, table string) ([]Column, error)
	// Load writes b in one transaction (see Batch).
	Load(ctx context.Context, b *Batch) error
	// Query runs sql read-only (enforced by the database) and returns at most
	// maxRows rows.
	Query(ctx context.Context, sql string, maxRows int) (*Result, error)
	// Ping reports whether the warehouse is reachable.
	Ping(ctx context.Context) error
	Close() error
}

// ErrReadOnly is wrapped by Query errors caused by an attempt to write.
var ErrReadOnly = errors.New("warehouse: query must be read-only")

// StateTable is hookhouse's own bookkeeping table, in its own schema.
const (
	StateSchema = "_hookhouse"
	StateTable  = "load_state"
)

// Standard column names (SPEC §5).
const (
	ColPrimaryKey   = "__sdc_primary_key"
	ColReceivedAt   = "_sdc_received_at"
	ColBatchedAt    = "_sdc_batched_at"
	ColSequence     = "_sdc_sequence"
	ColTableVersion = "_sdc_table_version"
	ColExtra        = "_sdc_extra"
	RejectedTable   = "_sdc_rejected"
	DataTable       = "data"
)

// RejectedColumns are the columns of S._sdc_rejected.
var RejectedColumns = []Column{
	{"_sdc_rejected_at", Timestamp},
	{"table_name", Text},
	{"reason", Text},
	{"record", Text},
}

// UTC returns t in UTC truncated to microseconds, the precision both warehouses keep.
func UTC(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
