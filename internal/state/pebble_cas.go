package state

import (
	"bytes"
	"errors"
	"sync"
)

// casMu serialises PutIf on Pebble: one process, so a lock makes the read and
// the write one step for every PutIf.
var casMu sync.Mutex

// PutIf writes kvs if every key of expect holds the expected value (nil:
// absent); otherwise ErrConflict. See Store.
func (p *Pebble) PutIf(expect, kvs map[string][]byte) error {
	casMu.Lock()
	defer casMu.Unlock()
	for k, want := range expect {
		v, err := p.Get(k)
		if errors.Is(err, ErrNotFound) {
			if want != nil {
				return ErrConflict
			}
			continue
		}
		if err != nil {
			return err
		}
		if want == nil || !bytes.Equal(v, want) {
			return ErrConflict
		}
	}
	return p.Put(kvs)
}
