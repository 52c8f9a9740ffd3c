package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/hookhouse/hookhouse/internal/backup"
)

const backupDetails = `The running server takes the backup while it keeps receiving and loading:
a copy of the DuckDB warehouse, then a checkpoint of its log and state, so
the log holds every record the warehouse copy has not loaded. The server
streams it here; every file is checked against its SHA-256 and fsync'd, and
manifest.json is written last. DIR must be empty or not exist. With a
PostgreSQL warehouse the backup holds the state and the load positions, not
the warehouse: pair it with pg_dump (see docs/history.md).

The backup holds secret.key and admin.key: keep it as private as the data dir.
`

const restoreDetails = `Every file is checked against the backup's manifest (SHA-256) as it is
copied and fsync'd; NEWDIR must be empty or not exist. Then
'hookhouse serve --data NEWDIR' resumes with the same integrations, webhook
URLs, admin key and warehouse rows; records accepted after the backup are not
there. Records the backup's warehouse had not loaded yet load on start.
`

// backupCmd is 'hookhouse backup DIR'.
func backupCmd(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	pos, err := c.parseArgs(fs, args, "DIR")
	if err != nil {
		return err
	}
	dir := pos[0]
	// Refused before the server does any work; Receive checks again.
	if err := backup.CheckEmpty(dir, "the backup directory"); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	start := time.Now()
	fmt.Fprintf(c.stderr, "Asking %s for a backup: it copies the warehouse and checkpoints the log first, then sends them.\n", c.server)
	body, size, err := cl.Backup(ctx)
	if err != nil {
		return err
	}
	defer body.Close()
	p := newProgress(c.stderr, "backup to "+dir, "received", "bytes", size)
	m, err := backup.Receive(ctx, body, dir, p.Add)
	p.Finish()
	if err != nil {
		return fmt.Errorf("backup failed, nothing kept in %s: %w", dir, err)
	}
	if c.json {
		return c.printJSON(m)
	}
	fmt.Fprintf(c.stdout, "Backup written to %s: %s in %d files, in %s.\n", dir, humanBytes(m.Bytes()), len(m.Files), time.Since(start).Round(100*time.Millisecond))
	printManifest(c.stdout, m)
	fmt.Fprintf(c.stdout, "It holds secret.key and admin.key: keep it private. Restore with: hookhouse restore %s --data NEWDIR\n", dir)
	return nil
}

// restoreCmd is 'hookhouse restore DIR --data NEWDIR'.
func restoreCmd(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	var data string
	fs.StringVar(&data, "data", "", "the new data `DIR` to create; it must be empty or not exist")
	pos, err := c.parseArgs(fs, args, "DIR")
	if err != nil {
		return err
	}
	if data == "" {
		return c.usagef(fs, "--data NEWDIR is required: the new data directory to restore into")
	}
	m, err := backup.ReadManifest(pos[0])
	if err != nil {
		return err
	}
	if err := backup.CheckEmpty(data, "the data directory"); err != nil {
		return err
	}
	p := newProgress(c.stderr, "restore into "+data, "restored", "bytes", m.Bytes())
	m, err = backup.Restore(ctx, pos[0], data, p.Add)
	p.Finish()
	if err != nil {
		return fmt.Errorf("restore failed, nothing kept in %s: %w", data, err)
	}
	if c.json {
		return c.printJSON(m)
	}
	fmt.Fprintf(c.stdout, "Restored the backup of %s into %s (%s, every file checked).\n", m.CreatedAt.Format(time.RFC3339), data, humanBytes(m.Bytes()))
	printManifest(c.stdout, m)
	fmt.Fprintf(c.stdout, "Start it with: hookhouse serve --data %s\n", data)
	return nil
}

// printManifest says what a backup holds and what the operator must add.
func printManifest(w io.Writer, m *backup.Manifest) {
	for _, in := range m.Integrations {
		line := fmt.Sprintf("  integration %d (%s): %s records in the log", in.ID, in.Schema, thousands(int64(in.Received)))
		if in.Loaded != nil {
			where := "in the warehouse copy"
			if m.Warehouse == backup.WarehousePostgres {
				where = "in PostgreSQL at backup time"
			}
			line += fmt.Sprintf(", loaded up to %s %s", thousands(int64(*in.Loaded)), where)
			if in.Received > *in.Loaded && m.Warehouse == backup.WarehouseDuckDB {
				line += fmt.Sprintf(" (%s load after a restore)", thousands(int64(in.Received-*in.Loaded)))
			}
		}
		if in.Deleted {
			line += ", deleted"
		}
		fmt.Fprintln(w, line)
	}
	if m.Warehouse == backup.WarehousePostgres {
		fmt.Fprintln(w, "The PostgreSQL warehouse is not in the backup: restore it from pg_dump, taken BEFORE this backup, and serve with --warehouse pointing at it (docs/history.md).")
	}
	if !m.SecretKeyIncluded {
		fmt.Fprintln(w, "secret.key is not in the backup (the server took it from HOOKHOUSE_SECRET_KEY): serve the restore with the same HOOKHOUSE_SECRET_KEY, or signing secrets cannot be read.")
	}
}
