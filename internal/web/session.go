package web

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/hookhouse/hookhouse/internal/state"
)

const (
	sessionCookie = "hookhouse_session"
	// loginCookie carries the login form's CSRF value (double submit): before
	// login there is no session to hold it.
	loginCookie = "hookhouse_login"
	// maxSessions bounds memory; the oldest session goes first.
	maxSessions = 1000
	// maxOnce is how many used one-time form nonces a session remembers.
	maxOnce = 200
)

// SessionStore keeps dashboard sessions across restarts: the control keys of
// hookhouse's state (state.Pebble satisfies it).
type SessionStore interface {
	// Put writes the values durably and atomically before it returns; a nil
	// value deletes its key.
	Put(kvs map[string][]byte) error
	// Scan calls fn for every key with the prefix, in key order. fn must not
	// call the store.
	Scan(prefix string, fn func(key string, value []byte) error) error
}

// keySession prefixes a stored session; the rest of the key is the hex SHA-256
// of the cookie value. The cookie value itself is never stored, so reading the
// state does not let anyone log in.
const keySession = "session/"

// session is one logged-in browser. Sessions are kept in memory and written
// through to the SessionStore, so a restart does not log everyone out.
type session struct {
	key     string // keySession + hex SHA-256 of the cookie value
	csrf    string
	expires time.Time
	// once holds the nonces of secret-creating forms already submitted, so that a
	// resubmitted form (back button, reload of a POST) cannot mint another URL.
	// It is stored with the session, so this holds across a restart too.
	once  map[string]struct{}
	order []string
}

// storedSession is a session as the store keeps it.
type storedSession struct {
	CSRF    string    `json:"csrf"`
	Expires time.Time `json:"expires"`
	Once    []string  `json:"once,omitempty"`
}

func (s *session) encode() []byte {
	b, err := json.Marshal(storedSession{CSRF: s.csrf, Expires: s.expires, Once: s.order})
	if err != nil {
		panic("web: encode session: " + err.Error()) // strings and a time cannot fail
	}
	return b
}

// sessions is the session store, keyed by the SHA-256 of the cookie value so
// that map lookups never branch on the secret itself. Writes to the store
// happen under mu: they are rare (log in, log out, a form that creates a
// secret, expiry), and holding mu keeps them in order.
type sessions struct {
	ttl    time.Duration
	now    func() time.Time
	store  SessionStore // nil: memory only (tests)
	logger *slog.Logger

	mu sync.Mutex
	m  map[string]*session
	// shared: the store is shared by the nodes of a cluster (see share).
	shared sessionGetter
}

// sessionGetter reads one stored session (state.Store); a missing one is
// state.ErrNotFound.
type sessionGetter interface {
	Get(key string) ([]byte, error)
}

// share makes get check every session in the store, which other nodes of a
// cluster write too: a login on one node works on all, and a logout on one
// ends the session on all.
func (s *sessions) share(on bool) *sessions {
	if g, ok := s.store.(sessionGetter); ok && on {
		s.shared = g
	}
	return s
}

// refresh brings the session stored under key into the cache, or drops it
// from the cache when the store no longer has it; s.mu held. A store that
// cannot be read leaves the cache as it is.
func (s *sessions) refresh(key string) {
	v, err := s.shared.Get(key)
	if errors.Is(err, state.ErrNotFound) {
		delete(s.m, key)
		return
	}
	if err != nil {
		s.logger.Warn("could not read a dashboard session from the cluster; using this node's copy", "err", err)
		return
	}
	var st storedSession
	if err := json.Unmarshal(v, &st); err != nil || st.CSRF == "" {
		delete(s.m, key)
		return
	}
	sess := s.m[key]
	if sess == nil {
		sess = &session{key: key, once: map[string]struct{}{}}
		s.m[key] = sess
	}
	sess.csrf, sess.expires = st.CSRF, st.Expires
	for _, n := range st.Once {
		if _, ok := sess.once[n]; !ok {
			sess.once[n] = struct{}{}
			sess.order = append(sess.order, n)
		}
	}
}

// newSessions loads the stored sessions and deletes the expired ones. A store
// that cannot be read costs the logins, not the start: the error is logged.
func newSessions(ttl time.Duration, now func() time.Time, store SessionStore, logger *slog.Logger) *sessions {
	s := &sessions{ttl: ttl, now: now, store: store, logger: logger, m: map[string]*session{}}
	if store == nil {
		return s
	}
	expired := map[string][]byte{}
	err := store.Scan(keySession, func(key string, v []byte) error {
		var st storedSession
		if err := json.Unmarshal(v, &st); err != nil || !now().Before(st.Expires) || st.CSRF == "" {
			expired[key] = nil
			return nil
		}
		sess := &session{key: key, csrf: st.CSRF, expires: st.Expires, once: map[string]struct{}{}}
		for _, n := range st.Once {
			sess.once[n] = struct{}{}
			sess.order = append(sess.order, n)
		}
		s.m[key] = sess
		return nil
	})
	if err != nil {
		logger.Warn("could not read the stored dashboard sessions; everyone must log in again", "err", err)
		return s
	}
	if len(expired) > 0 {
		if err := store.Put(expired); err != nil {
			logger.Warn("could not delete expired dashboard sessions", "err", err)
		}
	}
	return s
}

// keyOf is the store key of a cookie value.
func keyOf(cookie string) string {
	h := sha256.Sum256([]byte(cookie))
	return keySession + hex.EncodeToString(h[:])
}

// create starts a session and returns its cookie value. The expired sessions
// are dropped in the same write. A store that fails only costs this session
// its survival of a restart: it is logged, and the login goes on.
func (s *sessions) create() (string, *session) {
	id := randomToken()
	now := s.now()
	sess := &session{key: keyOf(id), csrf: randomToken(), expires: now.Add(s.ttl), once: map[string]struct{}{}}
	s.mu.Lock()
	defer s.mu.Unlock()
	write := map[string][]byte{}
	for k, v := range s.m {
		if !now.Before(v.expires) {
			delete(s.m, k)
			write[k] = nil
		}
	}
	if len(s.m) >= maxSessions {
		var oldest string
		var at time.Time
		for k, v := range s.m {
			if at.IsZero() || v.expires.Before(at) {
				oldest, at = k, v.expires
			}
		}
		delete(s.m, oldest)
		write[oldest] = nil
	}
	s.m[sess.key] = sess
	write[sess.key] = sess.encode()
	if err := s.put(write); err != nil {
		s.logger.Warn("could not store the dashboard session; it ends at the next restart", "err", err)
	}
	return id, sess
}

// get returns the live session of r, or nil. An expired one is deleted.
func (s *sessions) get(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	key := keyOf(c.Value)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shared != nil {
		s.refresh(key)
	}
	sess := s.m[key]
	if sess == nil {
		return nil
	}
	if !s.now().Before(sess.expires) {
		delete(s.m, key)
		if err := s.put(map[string][]byte{key: nil}); err != nil {
			s.logger.Warn("could not delete an expired dashboard session", "err", err)
		}
		return nil
	}
	return sess
}

// end deletes the session of r, here and in the store. The error says that the
// store still has it, so it would be valid again after a restart.
func (s *sessions) end(r *http.Request) error {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	key := keyOf(c.Value)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[key]; !ok {
		return nil
	}
	delete(s.m, key)
	return s.put(map[string][]byte{key: nil})
}

// useOnce marks a form nonce used; it reports false if it was used before (or
// is empty), so the form's action must not run again. The nonce is stored with
// the session before the action runs, so a restart does not make it usable
// again. If that write fails the action still runs: it writes to the same
// store, so it fails too, with a message that says why.
func (s *sessions) useOnce(sess *session, nonce string) bool {
	if nonce == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shared != nil {
		s.refresh(sess.key) // a nonce used on another node
	}
	if _, used := sess.once[nonce]; used {
		return false
	}
	sess.once[nonce] = struct{}{}
	sess.order = append(sess.order, nonce)
	if len(sess.order) > maxOnce {
		delete(sess.once, sess.order[0])
		sess.order = sess.order[1:]
	}
	if _, live := s.m[sess.key]; !live {
		return true // logged out meanwhile: nothing to store
	}
	if err := s.put(map[string][]byte{sess.key: sess.encode()}); err != nil {
		s.logger.Warn("could not store a used form nonce", "err", err)
	}
	return true
}

func (s *sessions) put(kvs map[string][]byte) error {
	if s.store == nil {
		return nil
	}
	return s.store.Put(kvs)
}

// sameSecret compares two secrets in constant time.
func sameSecret(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// randomToken is 32 bytes of crypto/rand, hex encoded.
func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}
