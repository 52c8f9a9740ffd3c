package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// ErrInUse is returned by OpenPebbleReadOnly when another process holds the
// store's lock: a hookhouse server still runs on the data dir.
var ErrInUse = errors.New("state: the store is in use by another process")

// PebbleReader reads the state of a stopped node without changing it (for
// hookhouse migrate): Pebble opened read-only, under its lock, so that a
// server cannot start on the data dir while it is read.
type PebbleReader struct {
	db   *pebble.DB
	lock *pebble.Lock
}

// OpenPebbleReadOnly opens the store in dir for reading. It returns ErrInUse
// (wrapped) when a server holds it, and an error naming dir when dir holds no
// store.
func OpenPebbleReadOnly(dir string, logger *slog.Logger) (*PebbleReader, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*")); len(m) == 0 {
		return nil, fmt.Errorf("state: %s holds no hookhouse state (no Pebble store in it)", dir)
	}
	lock, err := pebble.LockDirectory(dir, vfs.Default)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot lock %s: %v", ErrInUse, dir, err)
	}
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true, Lock: lock, Logger: pebbleLogger{logger}})
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("state: open %s read-only: %w", dir, err)
	}
	return &PebbleReader{db: db, lock: lock}, nil
}

// Close closes the store and releases its lock.
func (r *PebbleReader) Close() error {
	err := r.db.Close()
	if lerr := r.lock.Close(); err == nil {
		err = lerr
	}
	return err
}

// Heads returns every integration's head.
func (r *PebbleReader) Heads() (map[int64]Head, error) {
	out := map[int64]Head{}
	err := r.each([]byte{prefixHead}, []byte{prefixHead + 1}, func(k, v []byte) error {
		if len(k) != 9 || len(v) != 16 {
			return fmt.Errorf("state: corrupt head entry %x", k)
		}
		out[int64(binary.BigEndian.Uint64(k[1:]))] = Head{
			Position:       binary.BigEndian.Uint64(v),
			LastReceivedAt: time.UnixMicro(int64(binary.BigEndian.Uint64(v[8:]))).UTC(),
		}
		return nil
	})
	return out, err
}

// First returns the position of integration's first record still in the log
// (retention removes the oldest loaded ones), 0 if the log holds none.
func (r *PebbleReader) First(integration int64) (uint64, error) {
	it, err := r.db.NewIter(&pebble.IterOptions{LowerBound: logKey(integration, 0), UpperBound: logKey(integration+1, 0)})
	if err != nil {
		return 0, fmt.Errorf("state: read log: %w", err)
	}
	defer it.Close()
	if !it.First() {
		return 0, it.Error()
	}
	return binary.BigEndian.Uint64(it.Key()[9:]), nil
}

// Read returns up to max records of integration after position after, in
// order, stopping once maxBytes of bodies are read (at least one record).
func (r *PebbleReader) Read(integration int64, after uint64, max, maxBytes int) ([]Record, error) {
	var out []Record
	size := 0
	err := r.each(logKey(integration, after+1), logKey(integration+1, 0), func(k, v []byte) error {
		if len(out) >= max || (len(out) > 0 && size >= maxBytes) {
			return errStop
		}
		if len(v) < 24 {
			return fmt.Errorf("state: corrupt log entry %x", k)
		}
		rec := Record{
			Integration: integration,
			Position:    binary.BigEndian.Uint64(k[9:]),
			ReceivedAt:  time.UnixMicro(int64(binary.BigEndian.Uint64(v))).UTC(),
			Body:        bytes.Clone(v[24:]),
		}
		copy(rec.ID[:], v[8:24])
		out = append(out, rec)
		size += len(rec.Body)
		return nil
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return out, err
}

// Duplicates returns the count of records refused as parts of duplicate
// deliveries, per integration (Deduplicated).
func (r *PebbleReader) Duplicates() (map[int64]int64, error) {
	out := map[int64]int64{}
	err := r.each([]byte{prefixDupCount}, []byte{prefixDupCount + 1}, func(k, v []byte) error {
		if len(k) != 9 || len(v) != 8 {
			return fmt.Errorf("state: corrupt duplicate count %x", k)
		}
		out[int64(binary.BigEndian.Uint64(k[1:]))] = int64(binary.BigEndian.Uint64(v))
		return nil
	})
	return out, err
}

// Claims calls fn for every delivery-id claim of integration that counts at
// now (see Deduper): the SHA-256 of the id, when it was made and when it
// expires.
func (r *PebbleReader) Claims(integration int64, now time.Time, fn func(sum [32]byte, claimedAt, expiresAt time.Time) error) error {
	lo := make([]byte, 9)
	lo[0] = prefixClaim
	binary.BigEndian.PutUint64(lo[1:], uint64(integration))
	hi := bytes.Clone(lo)
	binary.BigEndian.PutUint64(hi[1:], uint64(integration+1))
	us := now.UnixMicro()
	return r.each(lo, hi, func(k, v []byte) error {
		if len(k) != claimKeyLen || len(v) != 16 {
			return fmt.Errorf("state: corrupt delivery claim %x", k)
		}
		at, exp := int64(binary.BigEndian.Uint64(v)), int64(binary.BigEndian.Uint64(v[8:]))
		if exp <= us {
			return nil // expired; the sweep removes it later
		}
		return fn([32]byte(k[9:]), time.UnixMicro(at).UTC(), time.UnixMicro(exp).UTC())
	})
}

// Get reads a control value (ErrNotFound if missing).
func (r *PebbleReader) Get(key string) ([]byte, error) {
	v, c, err := r.db.Get(controlKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("state: get %s: %w", key, err)
	}
	defer c.Close()
	return bytes.Clone(v), nil
}

// Scan calls fn for every control key with the prefix, in key order.
func (r *PebbleReader) Scan(prefix string, fn func(key string, value []byte) error) error {
	lo := controlKey(prefix)
	hi := append(bytes.Clone(lo), 0xff)
	return r.each(lo, hi, func(k, v []byte) error { return fn(string(k[1:]), bytes.Clone(v)) })
}

var errStop = errors.New("stop")

func (r *PebbleReader) each(lo, hi []byte, fn func(k, v []byte) error) error {
	it, err := r.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("state: read: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Error(); err != nil {
		it.Close()
		return err
	}
	return it.Close()
}
