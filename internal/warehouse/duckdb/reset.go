package duckdb

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	"github.com/hookhouse/hookhouse/internal/faults"
	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// Reset drops every table of schema and moves the integration's load state from
// prev to next in one transaction (see warehouse.Warehouse.Reset). It takes the
// load slot like Load, so no batch commits in between.
func (d *DB) Reset(ctx context.Context, integration int64, schema string, prev, next warehouse.State) error {
	if next.Installation == "" || next.Position > prev.Position {
		return fmt.Errorf("duckdb: reset integration %d: the new state %+v must name an installation and not be ahead of %+v", integration, next, prev)
	}
	select {
	case d.loadSlot <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("duckdb: reset integration %d: %w", integration, ctx.Err())
	}
	defer func() { <-d.loadSlot }()
	start := time.Now()
	dropped, err := d.reset(ctx, &warehouse.Batch{Integration: integration, Schema: schema, Prev: prev, State: next})
	if err != nil {
		return fmt.Errorf("duckdb: reset integration %d (schema %s): %w", integration, schema, err)
	}
	d.logger.Info("integration reset: tables dropped, load position set back", "integration", integration, "schema", schema,
		"tables", dropped, "from_position", prev.Position, "to_position", next.Position, "duration", time.Since(start))
	return nil
}

func (d *DB) reset(ctx context.Context, b *warehouse.Batch) (dropped []string, err error) {
	conn, err := d.rw.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN TRANSACTION`); err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	committed := false
	defer func() {
		if committed {
			return
		}
		rctx, cancel := detached(ctx)
		defer cancel()
		if _, rerr := conn.ExecContext(rctx, `ROLLBACK`); rerr != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			err = errors.Join(err, fmt.Errorf("rollback: %w", rerr))
		}
	}()
	// The fence first, as in Load: the stored state must still be prev.
	if err := d.advanceState(ctx, conn, b); err != nil {
		return nil, err
	}
	rows, err := conn.QueryContext(ctx, `
		SELECT schema_name, table_name FROM duckdb_tables()
		WHERE database_name = current_database() AND lower(schema_name) = lower(?)
		ORDER BY table_name`, b.Schema)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	var names [][2]string
	for rows.Next() {
		var s, t string
		if err := rows.Scan(&s, &t); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list tables: %w", err)
		}
		names = append(names, [2]string{s, t})
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	for _, n := range names {
		if _, err := conn.ExecContext(ctx, `DROP TABLE `+d.table(n[0], n[1])); err != nil {
			return nil, fmt.Errorf("drop table %s.%s: %w", n[0], n[1], err)
		}
		dropped = append(dropped, n[1])
	}
	faults.Point(faults.WarehouseResetBeforeCommit)
	if _, err := conn.ExecContext(context.WithoutCancel(ctx), `COMMIT`); err != nil {
		committed = true
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		return nil, fmt.Errorf("commit: %w", err)
	}
	committed = true
	return dropped, nil
}
