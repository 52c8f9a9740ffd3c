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
	"fmt"
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
	// Prev is the integration's stored load state as the loader read it before this
	// batch (the zero State when none was stored). Load advances the stored state
	// to State only if it still equals Prev (installation and position), in the
	// same transaction as the rows; otherwise it writes nothing and returns an
	// error wrapping ErrStateMismatch. That fence keeps two loaders (two servers on
	// one warehouse, a fresh data directory on a loaded warehouse, a restored
	// backup) from skipping or repeating records.
	Prev State
	// State is the integration's load state after this batch; written in the same
	// transaction. State.Installation must be set.
	State State
}

// State is what the warehouse remembers per integration so that loading resumes
// exactly where the last committed batch ended.
type State struct {
	// Installation is the id of the hookhouse installation whose log positions
	// Position counts ("" for a state stored before installations had ids).
	Installation string
	Position     uint64 // last log position loaded (0: nothing yet)
	Sequence     int64  // last _sdc_sequence handed out (0: none yet)
	// LoadedAt is when the state was stored (LoadState sets it; Load ignores
	// it and stores the time of its commit).
	LoadedAt time.Time
}

// Same reports whether s and o are the same state, apart from LoadedAt.
func (s State) Same(o State) bool {
	return s.Installation == o.Installation && s.Position == o.Position && s.Sequence == o.Sequence
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

// Warehouse is what the loader, the dashboard and the query endpoint need from a
// warehouse. Every method but Query takes names, never SQL: the adapter quotes
// them, so a schema called "order" or "select" works like any other. Query is the
// only way user-written SQL reaches the warehouse, and hookhouse never sends its
// own SQL through it.
type Warehouse interface {
	// LoadState returns the stored load state of every integration that has one.
	LoadState(ctx context.Context) (map[int64]State, error)
	// Tables returns every table of schema with its columns in order; an empty
	// map (not an error) when the schema does not exist.
	Tables(ctx context.Context, schema string) (map[string][]Column, error)
	// Columns returns the columns of schema.table in order, or nil if the table
	// does not exist.
	Columns(ctx context.Context, schema, table string) ([]Column, error)
	// CountRows returns the number of rows of schema.table; 0 if it does not exist.
	CountRows(ctx context.Context, schema, table string) (int64, error)
	// Recent returns at most limit rows of schema.table, all columns, newest
	// first by the column orderBy (descending). The table must exist.
	Recent(ctx context.Context, schema, table, orderBy string, limit int) (*Result, error)
	// Load writes b in one transaction (see Batch). A stored state that no longer
	// matches b.Prev fails with an error wrapping ErrStateMismatch and writes
	// nothing.
	Load(ctx context.Context, b *Batch) error
	// Reset drops every table of schema (the integration's data table, its
	// subtables and _sdc_rejected; the schema itself stays) and moves the
	// integration's stored load state from prev to next, in ONE transaction, so
	// that the loader reloads the log from next.Position+1 into new tables. It is
	// fenced like Load: when the stored state is not prev (compared as
	// Batch.Prev is), it changes nothing and fails with an error wrapping
	// ErrStateMismatch. next.Installation must be set and next.Position must not
	// exceed prev.Position. A crash before the commit leaves the old tables and
	// position; after it, only the reload remains to do.
	Reset(ctx context.Context, integration int64, schema string, prev, next State) error
	// Query runs one user-written SQL statement read-only (enforced by the
	// database, see each adapter's Query) and returns at most maxRows rows.
	Query(ctx context.Context, sql string, maxRows int) (*Result, error)
	// Ping reports whether the warehouse is reachable.
	Ping(ctx context.Context) error
	Close() error
}

// ErrReadOnly is wrapped by Query errors caused by an attempt to write, or to
// reach beyond the integration schemas (files, programs, roles, hookhouse's own
// tables).
var ErrReadOnly = errors.New("warehouse: query must be read-only")

// ErrStateMismatch is wrapped by Load errors when the stored load state is not
// the batch's Prev: another loader or another installation moved it.
var ErrStateMismatch = errors.New("warehouse: the stored load state does not match")

// ErrOutOfMemory is wrapped by Load errors when the warehouse ran out of memory
// for the batch (DuckDB past its memory_limit, PostgreSQL's SQLSTATE 53200).
// Nothing of the batch was written; the loader splits it and tries again.
var ErrOutOfMemory = errors.New("warehouse: out of memory")

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

// Mismatch is the error Load returns when the stored state is not b.Prev: stored
// is what the warehouse holds (found false: no state stored). It wraps
// ErrStateMismatch and tells the operator what it means and what to do.
func Mismatch(b *Batch, stored State, found bool) error {
	prev := b.Prev
	switch {
	case found && stored.Installation != "" && stored.Installation != b.State.Installation:
		return fmt.Errorf("%w: integration %d's load position in this warehouse (%d) belongs to another hookhouse installation (%s), not to this one (%s); "+
			"loading is refused so that no record is skipped or loaded twice. Point this installation at its own warehouse, "+
			"or, if the other installation is gone for good and this one should take over schema %s, delete integration %d's row from %s.%s",
			ErrStateMismatch, b.Integration, stored.Position, stored.Installation, b.State.Installation,
			b.Schema, b.Integration, StateSchema, StateTable)
	case !found && prev.Position > 0:
		return fmt.Errorf("%w: integration %d's load position %d was removed from %s.%s while loading; loading is refused until the state is consistent",
			ErrStateMismatch, b.Integration, prev.Position, StateSchema, StateTable)
	case found && prev.Position == 0:
		return fmt.Errorf("%w: integration %d already has a load position (%d) that this loader did not read; another loader is loading it, so this one stops (it re-reads the state and resumes from there)",
			ErrStateMismatch, b.Integration, stored.Position)
	default:
		return fmt.Errorf("%w: integration %d's load position moved from %d to %d under this loader; another loader is loading it, so this one stops (it re-reads the state and resumes from there)",
			ErrStateMismatch, b.Integration, prev.Position, stored.Position)
	}
}
