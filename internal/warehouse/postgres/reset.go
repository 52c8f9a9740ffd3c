package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookhouse/hookhouse/internal/faults"
	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// Reset drops every table of schema and moves the integration's load state from
// prev to next in one transaction (see warehouse.Warehouse.Reset). The schema
// stays, with its owner and grants, so readers keep their access to the tables
// the reload creates.
func (db *DB) Reset(ctx context.Context, integration int64, schema string, prev, next warehouse.State) error {
	fail := func(err error, hint string) error {
		return &LoadError{Integration: integration, Schema: schema, Err: fmt.Errorf("reset: %w", err), Hint: hint}
	}
	if next.Installation == "" || next.Position > prev.Position {
		return fail(fmt.Errorf("the new state %+v must name an installation and not be ahead of %+v", next, prev), "this is a hookhouse bug, please report it")
	}
	start := time.Now()
	var tx pgx.Tx
	conn, err := db.pool.conn(ctx, func(c *pgx.Conn) (err error) {
		tx, err = c.Begin(ctx)
		return err
	})
	if err != nil {
		return fail(err, "cannot reach the warehouse; check that PostgreSQL is running and reachable, then reset again")
	}
	defer db.pool.release(conn)
	defer rollback(ctx, tx)

	// The fence first, as in Load: it locks the state row, so a loader of the
	// same integration waits, then finds the position moved.
	l := &load{db: db, tx: tx, b: &warehouse.Batch{Integration: integration, Schema: schema, Prev: prev, State: next}}
	if err := l.advanceState(ctx); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, lockClass, schemaLockKey(schema)); err != nil {
		return fail(fmt.Errorf("lock schema: %w", err), hintFor(err))
	}
	rows, err := tx.Query(ctx, `
SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY c.relname`, schema)
	if err != nil {
		return fail(fmt.Errorf("list tables: %w", err), hintFor(err))
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fail(fmt.Errorf("list tables: %w", err), hintFor(err))
	}
	if len(names) > 0 {
		quoted := make([]string, len(names))
		for i, n := range names {
			quoted[i] = pgx.Identifier{schema, n}.Sanitize()
		}
		// No CASCADE: a view someone built on these tables makes the reset fail
		// with PostgreSQL's message naming it, instead of vanishing silently.
		if _, err := tx.Exec(ctx, `DROP TABLE `+strings.Join(quoted, ", ")); err != nil {
			return fail(fmt.Errorf("drop tables: %w", err), "nothing was dropped; "+hintFor(err))
		}
	}
	faults.Point(faults.WarehouseResetBeforeCommit)
	if err := tx.Commit(ctx); err != nil {
		return fail(fmt.Errorf("commit: %w", err), "if the connection broke during COMMIT the reset may or may not be stored; the loader resumes from the stored position either way")
	}
	db.log.Info("integration reset: tables dropped, load position set back", "integration", integration, "schema", schema,
		"tables", names, "from_position", prev.Position, "to_position", next.Position, "duration", time.Since(start))
	return nil
}
