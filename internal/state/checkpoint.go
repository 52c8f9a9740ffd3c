package state

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Checkpoints for backups (hookhouse backup): a consistent copy of the whole
// store (log, heads, control data) taken while it serves.

// HoldTrims keeps Trim from removing records until release is called: Trim
// waits for none, it removes nothing and returns 0 while held (the loader
// trims again a minute later). A backup holds trims from before it copies the
// warehouse until the log's checkpoint is taken, so that the checkpoint still
// holds every record the warehouse copy has not loaded. HoldTrims waits for a
// Trim in progress to finish.
func (p *Pebble) HoldTrims() (release func()) {
	p.trimHold.Lock()
	return p.trimHold.Unlock
}

// Checkpoint writes a consistent copy of the store into dir, which must not
// exist (its parent must), on the same filesystem to be cheap: immutable
// files are hard-linked, the rest copied. Everything committed before the
// call is in it (the WAL is flushed and synced first); appends go on meanwhile.
// Open the copy with OpenPebble, or read its heads with CheckpointHeads.
func (p *Pebble) Checkpoint(dir string) error {
	if err := p.enter(); err != nil {
		return err
	}
	defer p.leave()
	if err := p.db.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return fmt.Errorf("state: checkpoint into %s: %w", dir, err)
	}
	return nil
}

// CheckpointHeads opens the store in dir read-only (a checkpoint, or a data
// dir no process uses) and returns every integration's head. For each
// integration in loaded (a warehouse's load positions) it also checks that
// the store can load on from there: the position is not past the head, and
// the record after it is still in the log when the head is past it.
func CheckpointHeads(dir string, logger *slog.Logger, loaded map[int64]uint64) (map[int64]Head, error) {
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true, Logger: pebbleLogger{logger}})
	if err != nil {
		return nil, fmt.Errorf("state: open %s read-only: %w", dir, err)
	}
	defer db.Close()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixHead}, UpperBound: []byte{prefixHead + 1}})
	if err != nil {
		return nil, fmt.Errorf("state: read heads in %s: %w", dir, err)
	}
	defer it.Close()
	heads := map[int64]Head{}
	for it.First(); it.Valid(); it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) != 9 || len(v) != 16 {
			return nil, fmt.Errorf("state: corrupt head entry %x in %s", k, dir)
		}
		heads[int64(binary.BigEndian.Uint64(k[1:]))] = Head{
			Position:       binary.BigEndian.Uint64(v),
			LastReceivedAt: time.UnixMicro(int64(binary.BigEndian.Uint64(v[8:]))).UTC(),
		}
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	for id, pos := range loaded {
		head := heads[id].Position
		if pos > head {
			return nil, fmt.Errorf("state: integration %d: the warehouse is loaded up to position %d, past the log's end %d in %s", id, pos, head, dir)
		}
		if pos == head {
			continue
		}
		v, c, err := db.Get(logKey(id, pos+1))
		if err != nil {
			return nil, fmt.Errorf("state: integration %d: the record after the warehouse's position %d is not in %s: %w", id, pos, dir, err)
		}
		if len(v) < 24 {
			c.Close()
			return nil, fmt.Errorf("state: corrupt log entry %x in %s", logKey(id, pos+1), dir)
		}
		c.Close()
	}
	return heads, nil
}
