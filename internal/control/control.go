// Package control holds integrations, their webhook URLs and the admin key: the
// types, the rules (SPEC §2–3) and a store that keeps everything in memory and
// writes every change through to the durable state before answering.
package control

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hookhouse/hookhouse/internal/state"
	"github.com/hookhouse/hookhouse/internal/verify"
)

// Integration types.
const (
	TypeVero     = "vero"
	TypeWebhooks = "webhooks"
)

// MaxActiveURLs is how many unrevoked webhook URLs an integration may have.
const MaxActiveURLs = 2

// Integration is one source of webhooks.
type Integration struct {
	ID         int64  `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Schema     string `json:"schema"`
	PrimaryKey string `json:"primary_key,omitempty"`
	// Verify, for type webhooks, is how deliveries are signed; nil: the secret
	// URL alone authenticates. Its secrets are kept apart (secrets.go).
	Verify *verify.Config `json:"verify,omitempty"`
	// DedupeWindow is how long a delivery id counts as seen (0: 7 days).
	DedupeWindow verify.Duration `json:"dedupe_window,omitempty"`
	CreatedAt    time.Time       `json:"created_at"`
	DeletedAt    *time.Time      `json:"deleted_at,omitempty"`
	// PausedAt is set while loading is paused (receiving never pauses).
	PausedAt *time.Time `json:"paused_at,omitempty"`
	// Reset is the integration's last reset (reset.go), nil if it never had one.
	Reset *Reset `json:"reset,omitempty"`
}

// WebhookURL is one secret URL; only the hash of its token is kept.
type WebhookURL struct {
	ID          int64      `json:"id"`
	Integration int64      `json:"integration_id"`
	Hash        string     `json:"hash"` // hex SHA-256 of the token
	Hint        string     `json:"hint"` // last 4 characters of the token
	CreatedAt   time.Time  `json:"created_at"`
	LastUsedAt  *time.Time `json:"last_used_at"`
	RevokedAt   *time.Time `json:"revoked_at"`
}

// Errors the API maps to status codes.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrInvalid  = errors.New("invalid")
	// ErrAlreadyRevoked is what RevokeURL returns for a URL revoked before; it is
	// also an ErrConflict.
	ErrAlreadyRevoked = fmt.Errorf("%w: already revoked", ErrConflict)
)

// Error carries a kind (ErrNotFound, ErrConflict, ErrAlreadyRevoked, ErrInvalid) and a
// message for the user.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

func fail(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// KV is the durable storage the store writes through to (state.Store: Pebble,
// or JetStream shared by the nodes of a cluster). Every control key is written
// with PutIf (compare-and-set; see shared.go).
type KV interface {
	Get(key string) ([]byte, error)
	Put(kvs map[string][]byte) error
	Scan(prefix string, fn func(key string, value []byte) error) error
	// PutIf writes kvs only if every key of expect holds the value given
	// there (nil: absent); otherwise it writes nothing and fails.
	PutIf(expect, kvs map[string][]byte) error
}

const (
	keyIntegration     = "integration/"
	keyURL             = "url/"
	keyLastIntegration = "meta/last_integration_id"
	keyLastURL         = "meta/last_url_id"
	keyAdminHash       = "meta/admin_key_hash"
	keyInstall         = "meta/installation_id"
	// keySharedID is the last id of the one counter integrations and URLs drew
	// from before each had its own. A state without the two keys above continues
	// from it (see loadLastIDs), and every write still sets it to the larger of the two,
	// so that an older hookhouse opening this state never hands out a taken id.
	keySharedID = "meta/next_id"
)

// lastIDs are the last integration id and the last webhook URL id handed out.
// Ids are never reused: integrations and URLs are only ever marked deleted or
// revoked, never removed.
type lastIDs struct {
	integration, url int64
}

// Store is the control data, cached in memory.
type Store struct {
	kv       KV
	notFound error
	logger   *slog.Logger

	mu           sync.RWMutex
	last         lastIDs
	integrations map[int64]*Integration
	urls         map[int64]*WebhookURL
	byHash       map[[32]byte]*WebhookURL
	adminHash    []byte
	installation string
	// Signing secrets (secrets.go): sealed as stored, opened, and the
	// verifier each verifying integration uses.
	sealer    Sealer
	secrets   map[int64][]*storedSecret
	plain     map[int64][][]byte
	verifiers map[int64]*verify.Verifier
	usedMu    sync.Mutex
	used      map[int64]time.Time // url id -> last use not yet written
	// Cluster mode (shared.go): fresh says whether the caches have every
	// change other nodes stored until a moment ago (nil: one node, always).
	fresh func() bool
}

// Open loads the control data. notFound is the error kv.Get returns for a missing key.
func Open(kv KV, notFound error, logger *slog.Logger) (*Store, error) {
	s := &Store{
		kv: kv, notFound: notFound, logger: logger,
		integrations: map[int64]*Integration{},
		urls:         map[int64]*WebhookURL{},
		byHash:       map[[32]byte]*WebhookURL{},
		used:         map[int64]time.Time{},
		plain:        map[int64][][]byte{},
		verifiers:    map[int64]*verify.Verifier{},
	}
	if v, err := kv.Get(keyAdminHash); err == nil {
		s.adminHash = v
	} else if !errors.Is(err, notFound) {
		return nil, fmt.Errorf("control: %w", err)
	}
	if err := s.ensureInstallation(); err != nil {
		return nil, err
	}
	err := kv.Scan(keyIntegration, func(_ string, v []byte) error {
		var in Integration
		if err := json.Unmarshal(v, &in); err != nil {
			return fmt.Errorf("control: corrupt integration: %w", err)
		}
		s.integrations[in.ID] = &in
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = kv.Scan(keyURL, func(_ string, v []byte) error {
		var u WebhookURL
		if err := json.Unmarshal(v, &u); err != nil {
			return fmt.Errorf("control: corrupt webhook url: %w", err)
		}
		s.urls[u.ID] = &u
		if h, err := hex.DecodeString(u.Hash); err == nil && len(h) == 32 {
			s.byHash[[32]byte(h)] = &u
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.loadLastIDs(); err != nil {
		return nil, err
	}
	if err := s.loadSecrets(); err != nil {
		return nil, err
	}
	return s, nil
}

// loadLastIDs reads the id counters. A state written while integrations and URLs
// shared one counter has neither: integrations continue after the highest
// integration id, URLs after the shared counter, so every id stays what it was
// and none is handed out twice.
func (s *Store) loadLastIDs() error {
	var maxIntegration, maxURL int64
	for id := range s.integrations {
		maxIntegration = max(maxIntegration, id)
	}
	for id := range s.urls {
		maxURL = max(maxURL, id)
	}
	shared, _, err := s.counter(keySharedID)
	if err != nil {
		return err
	}
	last, ok, err := s.counter(keyLastIntegration)
	if err != nil {
		return err
	}
	if !ok {
		last = maxIntegration
	}
	s.last.integration = max(last, maxIntegration)
	last, ok, err = s.counter(keyLastURL)
	if err != nil {
		return err
	}
	if !ok {
		last = shared
	}
	s.last.url = max(last, maxURL)
	return nil
}

// counter reads a stored id counter; ok is false when there is none.
func (s *Store) counter(key string) (n int64, ok bool, err error) {
	v, err := s.kv.Get(key)
	if errors.Is(err, s.notFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("control: %w", err)
	}
	n, err = strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("control: corrupt %s: %w", key, err)
	}
	return n, true, nil
}

// ensureInstallation reads the installation id, creating it with the state on
// first start. The warehouse stores it with each load position, so that a load
// position is only ever used by the installation whose log it counts.
func (s *Store) ensureInstallation() error {
	v, err := s.kv.Get(keyInstall)
	switch {
	case err == nil:
		s.installation = string(v)
		return nil
	case !errors.Is(err, s.notFound):
		return fmt.Errorf("control: %w", err)
	}
	id := []byte(randomHex(16))
	v, err = s.create(keyInstall, id)
	if err != nil {
		return fmt.Errorf("control: create the installation id: %w", err)
	}
	s.installation = string(v)
	return nil
}

// create writes key with value unless it exists (another node of the cluster
// made it first), and returns the stored value.
func (s *Store) create(key string, value []byte) ([]byte, error) {
	for try := 0; ; try++ {
		err := s.kv.PutIf(map[string][]byte{key: nil}, map[string][]byte{key: value})
		if err == nil {
			return value, nil
		}
		if !errors.Is(err, state.ErrConflict) {
			return nil, err
		}
		v, gerr := s.kv.Get(key)
		if gerr == nil {
			return v, nil
		}
		if !errors.Is(gerr, s.notFound) {
			return nil, gerr
		}
		if try == casTries {
			return nil, err
		}
		backoff(try) // the other node's write is not visible yet
	}
}

// Installation is this installation's id, made when its state was created.
func (s *Store) Installation() string { return s.installation }

// EnsureAdminKey creates the admin key on first start. It returns the new key, or
// "" when one existed already. Of nodes of a cluster starting at once, exactly
// one creates it (compare-and-set); the others take its hash and return "".
func (s *Store) EnsureAdminKey() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.adminHash != nil {
		return "", nil
	}
	key := "hhk_" + randomHex(32)
	h := sha256.Sum256([]byte(key))
	v, err := s.create(keyAdminHash, h[:])
	if err != nil {
		return "", fmt.Errorf("control: %w", err)
	}
	s.adminHash = v
	if !bytes.Equal(v, h[:]) {
		return "", nil // another node made it first
	}
	return key, nil
}

// ResetAdminKey replaces the admin key and returns the new one.
func (s *Store) ResetAdminKey() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := "hhk_" + randomHex(32)
	h := sha256.Sum256([]byte(key))
	err := s.change([]string{keyAdminHash}, func(map[string][]byte) (map[string][]byte, error) {
		return map[string][]byte{keyAdminHash: h[:]}, nil
	})
	if err != nil {
		return "", err
	}
	return key, nil
}

// CheckAdminKey reports whether key is the admin key, in constant time. While
// the cache may be behind other nodes (Follow) it checks the stored hash.
func (s *Store) CheckAdminKey(key string) bool {
	h := sha256.Sum256([]byte(key))
	s.mu.RLock()
	fresh := s.isFresh()
	ok := len(s.adminHash) == 32 && subtle.ConstantTimeCompare(h[:], s.adminHash) == 1
	s.mu.RUnlock()
	if fresh {
		return ok
	}
	return s.checkAdminStored(key)
}

// NewIntegration is what a user asks for.
type NewIntegration struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Schema     string `json:"schema"`
	PrimaryKey string `json:"primary_key"`
	// Verify makes a webhooks integration check signatures; Secret is its
	// first signing secret ("" asks for a generated one where the scheme
	// allows it).
	Verify       *verify.Config  `json:"verify,omitempty"`
	Secret       string          `json:"-"`
	DedupeWindow verify.Duration `json:"dedupe_window,omitempty"`
}

// Create validates and stores a new integration. One that would get a generated
// signing secret must be made with CreateRevealing, which returns it.
func (s *Store) Create(req NewIntegration, now time.Time) (*Integration, error) {
	if req.Verify != nil && req.Secret == "" {
		if _, err := verify.GenerateSecret(req.Verify.Scheme); err == nil {
			return nil, fail(ErrInvalid, "a generated signing secret must be shown once: use CreateRevealing")
		}
	}
	in, _, err := s.CreateRevealing(req, now)
	return in, err
}

// CreateRevealing is Create, also returning the signing secret it generated
// (req.Verify set, req.Secret "") for the one-time reveal; "" otherwise.
func (s *Store) CreateRevealing(req NewIntegration, now time.Time) (_ *Integration, revealed string, _ error) {
	name := strings.TrimSpace(req.Name)
	switch {
	case name == "":
		return nil, "", fail(ErrInvalid, "name is required")
	case !utf8.ValidString(name) || utf8.RuneCountInString(name) > 100:
		return nil, "", fail(ErrInvalid, "name must be 1–100 characters")
	}
	switch req.Type {
	case TypeVero, TypeWebhooks:
	case "":
		return nil, "", fail(ErrInvalid, `type is required: "vero" or "webhooks"`)
	default:
		return nil, "", fail(ErrInvalid, `unknown type %q: use "vero" or "webhooks"`, req.Type)
	}
	if req.PrimaryKey != "" {
		if req.Type != TypeWebhooks {
			return nil, "", fail(ErrInvalid, "primary_key is only for integrations of type webhooks; vero is append-only")
		}
		if utf8.RuneCountInString(req.PrimaryKey) > 50 || strings.ContainsAny(req.PrimaryKey, "\x00") {
			return nil, "", fail(ErrInvalid, "primary_key must be one top-level field name of at most 50 characters")
		}
	}
	if err := checkVerify(&req); err != nil {
		return nil, "", err
	}
	schema := req.Schema
	if schema == "" {
		schema = SchemaName(name)
	}
	if why := checkSchema(schema); why != "" {
		return nil, "", fail(ErrInvalid, "%s", why)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, in := range s.integrations {
		if in.Schema == schema {
			return nil, "", fail(ErrConflict, "schema %s is already used by integration %d (%q); choose another name or schema", schema, in.ID, in.Name)
		}
	}
	in := &Integration{
		Name: name, Type: req.Type, Schema: schema,
		PrimaryKey: req.PrimaryKey, CreatedAt: now.UTC().Truncate(time.Second),
		DedupeWindow: req.DedupeWindow,
	}
	var secret *storedSecret
	if req.Verify != nil {
		cfg := req.Verify.WithDefaults()
		in.Verify = &cfg
		// A provider that issues the secret only once the endpoint exists
		// (Stripe, Slack, …) needs the URL first: such an integration starts
		// without a secret and refuses every delivery until one is added.
		if _, genErr := verify.GenerateSecret(cfg.Scheme); req.Secret != "" || genErr == nil {
			var err error
			if secret, _, revealed, err = s.newSecret(in, req.Secret, now); err != nil {
				return nil, "", err
			}
			secret.ID = 1
		}
	}
	schemaKey := keySchema + schema
	err := s.change([]string{keyLastIntegration, keyLastURL, schemaKey}, func(cur map[string][]byte) (map[string][]byte, error) {
		if v := cur[schemaKey]; v != nil {
			return nil, fail(ErrConflict, "schema %s is already used by integration %s; choose another name or schema", schema, v)
		}
		ids, err := s.storedIDs(cur)
		if err != nil {
			return nil, err
		}
		ids.integration++
		in.ID = ids.integration
		vals := map[string]any{integrationKey(in.ID): in}
		if secret != nil {
			secret.Integration = in.ID
			vals[secretKeyName(in.ID, secret.ID)] = secret
		}
		kvs, err := jsonValues(vals)
		if err != nil {
			return nil, err
		}
		ids.put(kvs)
		kvs[schemaKey] = []byte(strconv.FormatInt(in.ID, 10))
		return kvs, nil
	})
	if err != nil {
		return nil, "", err
	}
	return in, revealed, nil
}

// storedIDs reads the id counters from values read for change (a state
// without them continues from the cache, as loadLastIDs does).
func (s *Store) storedIDs(cur map[string][]byte) (lastIDs, error) {
	ids := s.last
	for _, c := range []struct {
		key string
		n   *int64
	}{{keyLastIntegration, &ids.integration}, {keyLastURL, &ids.url}} {
		if v := cur[c.key]; v != nil {
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				return ids, fmt.Errorf("control: corrupt %s: %w", c.key, err)
			}
			*c.n = max(*c.n, n)
		}
	}
	return ids, nil
}

// put adds the counters to a write.
func (ids lastIDs) put(kvs map[string][]byte) {
	kvs[keyLastIntegration] = []byte(strconv.FormatInt(ids.integration, 10))
	kvs[keyLastURL] = []byte(strconv.FormatInt(ids.url, 10))
	kvs[keySharedID] = []byte(strconv.FormatInt(max(ids.integration, ids.url), 10))
}

// Integrations lists live integrations by id.
func (s *Store) Integrations() []Integration {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Integration, 0, len(s.integrations))
	for _, in := range s.integrations {
		if in.DeletedAt == nil {
			out = append(out, *in)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// AllIntegrations lists every integration including deleted ones (the loader still
// drains what deleted integrations accepted).
func (s *Store) AllIntegrations() []Integration {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Integration, 0, len(s.integrations))
	for _, in := range s.integrations {
		out = append(out, *in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Integration returns a live integration.
func (s *Store) Integration(intID int64) (*Integration, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	in, ok := s.integrations[intID]
	if !ok || in.DeletedAt != nil {
		return nil, fail(ErrNotFound, "integration %d not found", intID)
	}
	c := *in
	return &c, nil
}

// Delete marks an integration deleted and revokes its URLs at once. Its id and
// schema stay taken (ids are never reused; the warehouse data stays).
func (s *Store) Delete(intID int64, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in, ok := s.integrations[intID]; !ok || in.DeletedAt != nil {
		return fail(ErrNotFound, "integration %d not found", intID)
	}
	t := now.UTC().Truncate(time.Second)
	keys := []string{integrationKey(intID)}
	for _, u := range s.urls {
		if u.Integration == intID {
			keys = append(keys, urlKey(u.ID))
		}
	}
	return s.change(keys, func(cur map[string][]byte) (map[string][]byte, error) {
		d, err := decodeIntegration(cur[integrationKey(intID)])
		if err != nil || d == nil || d.DeletedAt != nil {
			return nil, fail(ErrNotFound, "integration %d not found", intID)
		}
		d.DeletedAt = &t
		vals := map[string]any{integrationKey(intID): d}
		for k, v := range cur {
			if !strings.HasPrefix(k, keyURL) || v == nil {
				continue
			}
			var u WebhookURL
			if err := json.Unmarshal(v, &u); err != nil {
				return nil, fmt.Errorf("control: corrupt webhook url: %w", err)
			}
			if u.RevokedAt == nil {
				u.RevokedAt = &t
				vals[k] = &u
			}
		}
		return jsonValues(vals)
	})
}

// decodeIntegration decodes a stored integration (nil: absent).
func decodeIntegration(v []byte) (*Integration, error) {
	if v == nil {
		return nil, nil
	}
	var in Integration
	if err := json.Unmarshal(v, &in); err != nil {
		return nil, fmt.Errorf("control: corrupt integration: %w", err)
	}
	return &in, nil
}

// decodeURL decodes a stored webhook URL (nil: absent).
func decodeURL(v []byte) (*WebhookURL, error) {
	if v == nil {
		return nil, nil
	}
	var u WebhookURL
	if err := json.Unmarshal(v, &u); err != nil {
		return nil, fmt.Errorf("control: corrupt webhook url: %w", err)
	}
	return &u, nil
}

func (s *Store) setURL(uid int64, u *WebhookURL) {
	s.urls[uid] = u
	if h, err := hex.DecodeString(u.Hash); err == nil && len(h) == 32 {
		s.byHash[[32]byte(h)] = u
	}
}

// GenerateURL makes a new token for an integration and returns the URL record
// and the token. The token exists only in this return value.
func (s *Store) GenerateURL(intID int64, now time.Time) (*WebhookURL, string, error) {
	token := randomHex(32)
	h := sha256.Sum256([]byte(token))
	s.mu.Lock()
	defer s.mu.Unlock()
	if in, ok := s.integrations[intID]; !ok || in.DeletedAt != nil {
		return nil, "", fail(ErrNotFound, "integration %d not found", intID)
	}
	var u *WebhookURL
	err := s.change([]string{keyLastIntegration, keyLastURL, integrationKey(intID)}, func(cur map[string][]byte) (map[string][]byte, error) {
		in, err := decodeIntegration(cur[integrationKey(intID)])
		if err != nil || in == nil || in.DeletedAt != nil {
			return nil, fail(ErrNotFound, "integration %d not found", intID)
		}
		active := 0
		for _, u := range s.urls {
			if u.Integration == intID && u.RevokedAt == nil {
				active++
			}
		}
		if active >= MaxActiveURLs {
			return nil, fail(ErrConflict, "integration %d already has %d active webhook URLs; revoke one before generating another", intID, MaxActiveURLs)
		}
		ids, err := s.storedIDs(cur)
		if err != nil {
			return nil, err
		}
		ids.url++
		u = &WebhookURL{
			ID: ids.url, Integration: intID, Hash: hex.EncodeToString(h[:]),
			Hint: token[len(token)-4:], CreatedAt: now.UTC().Truncate(time.Second),
		}
		kvs, err := jsonValues(map[string]any{urlKey(u.ID): u})
		if err != nil {
			return nil, err
		}
		ids.put(kvs)
		return kvs, nil
	})
	if err != nil {
		return nil, "", err
	}
	return u, token, nil
}

// URLs lists an integration's webhook URLs (revoked ones too), oldest first.
func (s *Store) URLs(intID int64) ([]WebhookURL, error) {
	if _, err := s.Integration(intID); err != nil {
		return nil, err
	}
	s.mu.RLock()
	var out []WebhookURL
	for _, u := range s.urls {
		if u.Integration == intID {
			out = append(out, *u)
		}
	}
	s.mu.RUnlock()
	s.usedMu.Lock()
	for i := range out {
		if t, ok := s.used[out[i].ID]; ok {
			out[i].LastUsedAt = &t
		}
	}
	s.usedMu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// RevokeURL revokes a URL immediately. A URL revoked before is left as it is,
// with an error of kind ErrAlreadyRevoked that says when.
func (s *Store) RevokeURL(intID, urlID int64, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in, ok := s.integrations[intID]; !ok || in.DeletedAt != nil {
		return fail(ErrNotFound, "integration %d not found", intID)
	}
	t := now.UTC().Truncate(time.Second)
	return s.change([]string{urlKey(urlID)}, func(cur map[string][]byte) (map[string][]byte, error) {
		u, err := decodeURL(cur[urlKey(urlID)])
		if err != nil {
			return nil, err
		}
		if u == nil || u.Integration != intID {
			return nil, fail(ErrNotFound, "webhook URL %d not found in integration %d", urlID, intID)
		}
		if u.RevokedAt != nil {
			return nil, fail(ErrAlreadyRevoked, "webhook URL ****%s (id %d) of integration %d was already revoked at %s; nothing changed",
				u.Hint, u.ID, intID, u.RevokedAt.UTC().Format(time.RFC3339))
		}
		u.RevokedAt = &t
		return jsonValues(map[string]any{urlKey(urlID): u})
	})
}

// Authenticate reports whether token is an active token of integration intID.
// It hashes the token and looks the full hash up, so its time does not depend on
// how much of a token is right; the answer is the same for every kind of failure.
func (s *Store) Authenticate(intID int64, token string, now time.Time) bool {
	h := sha256.Sum256([]byte(token))
	s.mu.RLock()
	u, ok := s.byHash[h]
	valid := ok && u.Integration == intID && u.RevokedAt == nil
	if valid {
		in := s.integrations[intID]
		valid = in != nil && in.DeletedAt == nil
	}
	var uid int64
	if valid {
		uid = u.ID
	}
	s.mu.RUnlock()
	if valid {
		s.usedMu.Lock()
		s.used[uid] = now.UTC().Truncate(time.Second)
		s.usedMu.Unlock()
	}
	return valid
}

// FlushLastUsed writes the in-memory last-use times (called periodically and at
// shutdown, so last_used_at costs no disk write per request).
func (s *Store) FlushLastUsed() error {
	s.usedMu.Lock()
	used := s.used
	s.used = map[int64]time.Time{}
	s.usedMu.Unlock()
	if len(used) == 0 {
		return nil
	}
	keys := make([]string, 0, len(used))
	for uid := range used {
		keys = append(keys, urlKey(uid))
	}
	sort.Strings(keys)
	// Read, change and write each URL's stored record: a copy from the cache
	// could be older than a revocation another node just made. Without s.mu,
	// so that webhooks are checked meanwhile.
	cur, written, err := s.cas(keys, func(cur map[string][]byte) (map[string][]byte, error) {
		vals := map[string]any{}
		for uid, t := range used {
			u, err := decodeURL(cur[urlKey(uid)])
			if err != nil {
				return nil, err
			}
			if u == nil || (u.LastUsedAt != nil && !u.LastUsedAt.Before(t)) {
				continue
			}
			t := t
			u.LastUsedAt = &t
			vals[urlKey(uid)] = u
		}
		if len(vals) == 0 {
			return nil, errNoChange
		}
		return jsonValues(vals)
	})
	if err != nil {
		s.usedMu.Lock()
		for uid, t := range used {
			if _, newer := s.used[uid]; !newer {
				s.used[uid] = t
			}
		}
		s.usedMu.Unlock()
		return err
	}
	// Into the cache only where it still holds what was read: a revocation
	// made meanwhile (here or, through the watch, elsewhere) stays.
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range written {
		var uid int64
		if _, err := fmt.Sscanf(strings.TrimPrefix(k, keyURL), "%d", &uid); err != nil {
			continue
		}
		if u := s.urls[uid]; u != nil {
			if b, err := json.Marshal(u); err == nil && bytes.Equal(b, cur[k]) {
				s.applyLocked(k, v)
			}
		}
	}
	return nil
}

func id(n int64) string { return fmt.Sprintf("%020d", n) }

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}
