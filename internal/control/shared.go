package control

// Control data shared by the nodes of a cluster. Every change is a
// read-modify-write of the stored values with compare-and-set (KV.PutIf), so
// that nodes changing the same thing at once never lose a change or hand out
// an id twice, and a node whose cache is behind never writes an old value back
// (un-revoking a URL, say). The caches follow other nodes' changes through
// Apply (a KV watch calls it); while the watch is not known to be caught up
// (Follow's fresh), decisions a change elsewhere could overturn read the stored
// value instead of the cache.

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// casTries bounds how often one change is tried again after another node
// changed the same keys first.
const casTries = 50

// ErrUnavailable is what Authorize returns when it cannot tell: its cache may be
// behind the cluster and the stored record cannot be read. Answer 503.
var ErrUnavailable = errors.New("control: the cluster's control data cannot be read now")

const (
	// keySchema claims a schema name for one integration (compare-and-set), so
	// that two nodes cannot give two integrations one schema.
	keySchema = "schema/"
	// keySealCheck is a value sealed with the cluster's signing-secret key
	// (see CheckSealer): never the key itself.
	keySealCheck  = "meta/secret_key_check"
	sealCheckText = "hookhouse: this value opens with the cluster's signing-secret key"
	// pendingFor is how long a value this node wrote masks older values the
	// watch may still deliver for the same key.
	pendingFor = 2 * time.Second
)

// change writes a change of the stored values of keys: it reads them (nil:
// absent), calls fn with what it read, and writes what fn returns with PutIf,
// expecting keys to hold what was read. When another node changed one of them
// in between it reads again and calls fn again. fn may return ErrNoChange to
// write nothing. The caches are updated from what was written. s.mu must be
// held for writing.
func (s *Store) change(keys []string, fn func(cur map[string][]byte) (map[string][]byte, error)) error {
	var last map[string][]byte
	var lastErr error
	for try := 0; ; try++ {
		cur := map[string][]byte{}
		for _, k := range keys {
			v, err := s.kv.Get(k)
			switch {
			case errors.Is(err, s.notFound):
				cur[k] = nil
			case err != nil:
				return fmt.Errorf("control: %w", err)
			default:
				cur[k] = v
			}
		}
		if last != nil && sameValues(cur, last) {
			// The write failed, and not because another node changed a key.
			return fmt.Errorf("control: %w", lastErr)
		}
		kvs, err := fn(cur)
		if errors.Is(err, errNoChange) {
			return nil
		}
		if err != nil {
			return err
		}
		if err = s.kv.PutIf(cur, kvs); err == nil {
			written := map[string][]byte{}
			for k, v := range cur {
				written[k] = v // PutIf writes the expected keys again
			}
			for k, v := range kvs {
				written[k] = v
			}
			for k, v := range written {
				s.applyLocked(k, v, true)
			}
			return nil
		}
		if try == casTries {
			return fmt.Errorf("control: %d nodes' changes in a row came first; try again: %w", casTries, err)
		}
		last, lastErr = cur, err
	}
}

// errNoChange tells change to write nothing.
var errNoChange = errors.New("no change")

func sameValues(a, b map[string][]byte) bool {
	for k, v := range a {
		w, ok := b[k]
		if !ok || (v == nil) != (w == nil) || !bytes.Equal(v, w) {
			return false
		}
	}
	return len(a) == len(b)
}

// jsonValues encodes vals for change.
func jsonValues(vals map[string]any) (map[string][]byte, error) {
	out := map[string][]byte{}
	for k, v := range vals {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		out[k] = b
	}
	return out, nil
}

// Follow tells the store that other nodes change the control data too: Apply
// brings their changes, and fresh reports whether every change stored until a
// moment ago has been applied. While it has not, Authorize and CheckAdminKey
// read the stored values. Call it once, before requests are served.
func (s *Store) Follow(fresh func() bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fresh = fresh
	s.pending = map[string]pendingValue{}
}

type pendingValue struct {
	value []byte
	at    time.Time
}

// isFresh reports whether the caches can be trusted; s.mu held.
func (s *Store) isFresh() bool { return s.fresh == nil || s.fresh() }

// Apply takes a change of a stored control value made by any node (value nil:
// deleted) into the caches. A value seen before is fine to apply again.
func (s *Store) Apply(key string, value []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applyLocked(key, value, false)
}

// applyLocked: see Apply. local says this node just wrote value: with a watch,
// older values of key it may still deliver are then skipped for a moment.
func (s *Store) applyLocked(key string, value []byte, local bool) {
	if s.pending != nil {
		if local {
			s.pending[key] = pendingValue{value: value, at: time.Now()}
		} else if p, ok := s.pending[key]; ok {
			if (p.value == nil) != (value == nil) || !bytes.Equal(p.value, value) {
				if time.Since(p.at) < pendingFor {
					return // older than what this node wrote
				}
			}
			delete(s.pending, key)
		}
	}
	switch {
	case strings.HasPrefix(key, keyIntegration):
		if value == nil {
			return // integrations are never removed
		}
		var in Integration
		if err := json.Unmarshal(value, &in); err != nil {
			s.logger.Error("skipping a corrupt integration record", "key", key, "err", err)
			return
		}
		s.integrations[in.ID] = &in
		s.last.integration = max(s.last.integration, in.ID)
		if err := s.rebuild(in.ID); err != nil && len(s.secrets[in.ID]) > 0 {
			s.logger.Error("integration cannot verify deliveries", "integration", in.ID, "err", err)
		}
	case strings.HasPrefix(key, keyURL):
		if value == nil {
			return // URLs are never removed, only revoked
		}
		var u WebhookURL
		if err := json.Unmarshal(value, &u); err != nil {
			s.logger.Error("skipping a corrupt webhook URL record", "key", key, "err", err)
			return
		}
		s.setURL(u.ID, &u)
		s.last.url = max(s.last.url, u.ID)
	case key == keyAdminHash:
		s.adminHash = value
	case key == keyLastIntegration || key == keyLastURL:
		n, err := strconv.ParseInt(string(value), 10, 64)
		if err != nil {
			return
		}
		if key == keyLastIntegration {
			s.last.integration = max(s.last.integration, n)
		} else {
			s.last.url = max(s.last.url, n)
		}
	case strings.HasPrefix(key, keySecret):
		s.applySecret(key, value)
	}
}

// applySecret takes a signing secret's change into the caches; s.mu held.
func (s *Store) applySecret(key string, value []byte) {
	parts := strings.Split(strings.TrimPrefix(key, keySecret), "/")
	if len(parts) != 2 {
		return
	}
	intID, err1 := strconv.ParseInt(parts[0], 10, 64)
	secretID, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return
	}
	var st *storedSecret
	var plain []byte
	if value != nil {
		st = &storedSecret{}
		if err := json.Unmarshal(value, st); err != nil {
			s.logger.Error("skipping a corrupt signing secret record", "key", key, "err", err)
			return
		}
		if s.sealer != nil {
			p, err := s.sealer.Open(st.Sealed)
			if err != nil {
				s.logger.Error("a signing secret does not open with this node's secret key; its integration refuses deliveries here", "integration", intID, "err", err)
			}
			plain = p
		}
	}
	list, plains := s.secrets[intID], s.plain[intID]
	var newList []*storedSecret
	var newPlain [][]byte
	for i, old := range list {
		if old.ID != secretID {
			newList = append(newList, old)
			if i < len(plains) {
				newPlain = append(newPlain, plains[i])
			}
		}
	}
	if st != nil {
		newList = append(newList, st)
		newPlain = append(newPlain, plain)
	}
	s.secrets[intID], s.plain[intID] = newList, newPlain
	if err := s.rebuild(intID); err != nil && len(newList) > 0 {
		s.logger.Error("integration cannot verify deliveries", "integration", intID, "err", err)
	}
}

// Authorize reports whether token is an active token of integration intID, as
// Authenticate does. When the cache may be behind other nodes (Follow), it reads
// the URL's stored record instead; it returns ErrUnavailable when that cannot be
// read, or when the token is not in the cache (a URL just made on another node
// looks the same as a wrong one): answer 503 so the sender retries.
func (s *Store) Authorize(intID int64, token string, now time.Time) (bool, error) {
	h := sha256.Sum256([]byte(token))
	s.mu.RLock()
	fresh := s.isFresh()
	u, known := s.byHash[h]
	var uid, uInt int64
	if known {
		uid, uInt = u.ID, u.Integration
	}
	in := s.integrations[intID]
	deleted := in != nil && in.DeletedAt != nil
	s.mu.RUnlock()
	if fresh {
		return s.Authenticate(intID, token, now), nil
	}
	switch {
	case known && (uInt != intID || deleted):
		return false, nil // a URL never moves; a deletion is final
	case !known:
		return false, ErrUnavailable
	}
	v, err := s.kv.Get(keyURL + id(uid))
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	var rec WebhookURL
	if err := json.Unmarshal(v, &rec); err != nil {
		return false, fmt.Errorf("%w: corrupt webhook URL record %d", ErrUnavailable, uid)
	}
	if rec.RevokedAt != nil || rec.Integration != intID {
		return false, nil
	}
	s.usedMu.Lock()
	s.used[uid] = now.UTC().Truncate(time.Second)
	s.usedMu.Unlock()
	return true, nil
}

// CheckSealer makes sure b is the cluster's signing-secret key, before
// SetSealer: every node must seal and open signing secrets with the same key.
// The first node stores a value sealed with its key (never the key); a node
// whose key does not open it is refused with a message saying what to do.
func (s *Store) CheckSealer(b Sealer) error {
	wrong := errors.New("this node's signing-secret key is not the cluster's: copy secret.key from the data dir of a node " +
		"already in the cluster (the first one started) into this node's --data, or set HOOKHOUSE_SECRET_KEY to the same key " +
		"on every node, then start again")
	for range casTries {
		v, err := s.kv.Get(keySealCheck)
		switch {
		case err == nil:
			if p, err := b.Open(v); err != nil || string(p) != sealCheckText {
				return wrong
			}
			return nil
		case !errors.Is(err, s.notFound):
			return fmt.Errorf("control: %w", err)
		}
		// The first node: secrets migrated from a single node must open with it.
		s.mu.RLock()
		for _, list := range s.secrets {
			for _, st := range list {
				if _, err := b.Open(st.Sealed); err != nil {
					s.mu.RUnlock()
					return fmt.Errorf("%w (the stored signing secrets were sealed with another key)", wrong)
				}
			}
		}
		s.mu.RUnlock()
		sealed, err := b.Seal([]byte(sealCheckText))
		if err != nil {
			return fmt.Errorf("control: %w", err)
		}
		if err := s.kv.PutIf(map[string][]byte{keySealCheck: nil}, map[string][]byte{keySealCheck: sealed}); err == nil {
			return nil
		}
		// Another node was first, or the write failed: read again.
	}
	return errors.New("control: could not store or read the signing-secret key's check value")
}

// checkAdminStored is CheckAdminKey against the stored hash, for a cache that
// may be behind.
func (s *Store) checkAdminStored(key string) bool {
	v, err := s.kv.Get(keyAdminHash)
	if err != nil {
		return false
	}
	h := sha256.Sum256([]byte(key))
	return len(v) == 32 && subtle.ConstantTimeCompare(h[:], v) == 1
}

// urlKey is the stored key of URL uid.
func urlKey(uid int64) string { return keyURL + id(uid) }

// integrationKey is the stored key of integration intID.
func integrationKey(intID int64) string { return keyIntegration + id(intID) }

// hashOf decodes a URL's hex hash.
func hashOf(u *WebhookURL) ([32]byte, bool) {
	h, err := hex.DecodeString(u.Hash)
	if err != nil || len(h) != 32 {
		return [32]byte{}, false
	}
	return [32]byte(h), true
}
