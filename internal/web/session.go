package web

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"sync"
	"time"
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

// session is one logged-in browser. Sessions live in memory only: a restart logs
// everyone out, which is fine for an admin dashboard.
type session struct {
	csrf    string
	expires time.Time
	// once holds the nonces of secret-creating forms already submitted, so that a
	// resubmitted form (back button, reload of a POST) cannot mint another URL.
	once  map[string]struct{}
	order []string
}

// sessions is the in-memory session store, keyed by the SHA-256 of the cookie
// value so that map lookups never branch on the secret itself.
type sessions struct {
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	m  map[[32]byte]*session
}

func newSessions(ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{ttl: ttl, now: now, m: map[[32]byte]*session{}}
}

// create starts a session and returns its cookie value.
func (s *sessions) create() (string, *session) {
	id := randomToken()
	now := s.now()
	sess := &session{csrf: randomToken(), expires: now.Add(s.ttl), once: map[string]struct{}{}}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.m {
		if !now.Before(v.expires) {
			delete(s.m, k)
		}
	}
	if len(s.m) >= maxSessions {
		var oldest [32]byte
		var at time.Time
		for k, v := range s.m {
			if at.IsZero() || v.expires.Before(at) {
				oldest, at = k, v.expires
			}
		}
		delete(s.m, oldest)
	}
	s.m[sha256.Sum256([]byte(id))] = sess
	return id, sess
}

// get returns the live session of r, or nil.
func (s *sessions) get(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	key := sha256.Sum256([]byte(c.Value))
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.m[key]
	if sess == nil {
		return nil
	}
	if !s.now().Before(sess.expires) {
		delete(s.m, key)
		return nil
	}
	return sess
}

// end deletes the session of r.
func (s *sessions) end(r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.mu.Lock()
		delete(s.m, sha256.Sum256([]byte(c.Value)))
		s.mu.Unlock()
	}
}

// useOnce marks a form nonce used; it reports false if it was used before (or
// is empty), so the form's action must not run again.
func (s *sessions) useOnce(sess *session, nonce string) bool {
	if nonce == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, used := sess.once[nonce]; used {
		return false
	}
	sess.once[nonce] = struct{}{}
	sess.order = append(sess.order, nonce)
	if len(sess.order) > maxOnce {
		delete(sess.once, sess.order[0])
		sess.order = sess.order[1:]
	}
	return true
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
