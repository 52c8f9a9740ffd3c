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
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/hookhouse/hookhouse/internal/state"
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
)

// change writes a change of the stored values of keys: it reads them (nil:
// absent), calls fn with what it read, and writes what fn returns with PutIf,
// expecting keys to hold what was read. When another node changed one of them
// in between (state.ErrConflict) it reads again and calls fn again. fn may
// return errNoChange to write nothing. The caches are updated from what was
// written. s.mu must be held for writing.
func (s *Store) change(keys []string, fn func(cur map[string][]byte) (map[string][]byte, error)) error {
	cur, kvs, err := s.cas(keys, fn)
	if err != nil {
		return err
	}
	for k, v := range cur {
		if _, ok := kvs[k]; !ok {
			s.applyLocked(k, v) // PutIf writes the expected keys again
		}
	}
	for k, v := range kvs {
		s.applyLocked(k, v)
	}
	return nil
}

// cas is change's read-modify-write without the caches: it returns what was
// read and what was written (both nil when fn returned errNoChange).
func (s *Store) cas(keys []string, fn func(cur map[string][]byte) (map[string][]byte, error)) (cur, kvs map[string][]byte, _ error) {
	for try := 0; ; try++ {
		cur = map[string][]byte{}
		for _, k := range keys {
			v, err := s.kv.Get(k)
			switch {
			case errors.Is(err, s.notFound):
				cur[k] = nil
			case err != nil:
				return nil, nil, fmt.Errorf("control: %w", err)
			default:
				cur[k] = v
			}
		}
		kvs, err := fn(cur)
		if errors.Is(err, errNoChange) {
			return nil, nil, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if err = s.kv.PutIf(cur, kvs); err == nil {
			return cur, kvs, nil
		}
		if !errors.Is(err, state.ErrConflict) {
			return nil, nil, fmt.Errorf("control: %w", err)
		}
		if try == casTries {
			return nil, nil, fmt.Errorf("control: %d changes by other nodes came first in a row; try again: %w", casTries, err)
		}
		backoff(try)
	}
}

// backoff waits a little longer after each conflict, so that nodes changing
// the same keys at once do not keep colliding.
func backoff(try int) {
	time.Sleep(time.Duration(1+rand.IntN(5*min(try+1, 10))) * time.Millisecond)
}

// errNoChange tells change to write nothing.
var errNoChange = errors.New("no change")

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
}

// isFresh reports whether the caches can be trusted; s.mu held.
func (s *Store) isFresh() bool { return s.fresh == nil || s.fresh() }

// Apply takes a change of a stored control value made by any node (value nil:
// deleted) into the caches. A value seen before is fine to apply again. The
// watch delivers changes in the order the cluster stored them, so a value this
// node just wrote may for a moment be followed by an older one still on its
// way, and then by its own again.
func (s *Store) Apply(key string, value []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applyLocked(key, value)
}

// applyLocked: see Apply; s.mu held.
func (s *Store) applyLocked(key string, value []byte) {
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

// quickGetter reads a value waiting at most d (state.JetStream).
type quickGetter interface {
	GetWithin(d time.Duration, key string) ([]byte, error)
}

// authReadWait bounds Authorize's read of a stored URL, so that the append
// after it still has its whole time (4 s) within the 5 s a webhook may wait.
const authReadWait = 750 * time.Millisecond

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
	get := s.kv.Get
	if q, ok := s.kv.(quickGetter); ok {
		get = func(key string) ([]byte, error) { return q.GetWithin(authReadWait, key) }
	}
	v, err := get(keyURL + id(uid))
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
		err = s.kv.PutIf(map[string][]byte{keySealCheck: nil}, map[string][]byte{keySealCheck: sealed})
		if err == nil {
			return nil
		}
		if !errors.Is(err, state.ErrConflict) {
			return fmt.Errorf("control: store the signing-secret key's check value: %w", err)
		}
		backoff(0) // another node was first: read its value
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
