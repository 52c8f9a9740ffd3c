package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hookhouse/hookhouse/internal/verify"
)

// Signing secrets of integrations that verify deliveries (type webhooks with a
// verify config). Unlike URL tokens they must be retrievable to compute HMACs,
// so they are stored sealed (AES-GCM, see Sealer), decrypted once in memory,
// and never returned after the one-time reveal of a generated secret.

const keySecret = "secret/"

// DefaultDedupeWindow is how long a delivery id counts as seen, unless the
// integration says otherwise.
const DefaultDedupeWindow = 7 * 24 * time.Hour

// Sealer encrypts secrets at rest (secretbox.Box).
type Sealer interface {
	Seal(plaintext []byte) ([]byte, error)
	Open(sealed []byte) ([]byte, error)
}

// Secret describes one signing secret; the secret itself never leaves the store.
type Secret struct {
	ID          int64     `json:"id"`
	Integration int64     `json:"integration_id"`
	Hint        string    `json:"hint"` // last 4 characters
	CreatedAt   time.Time `json:"created_at"`
}

// storedSecret is a Secret as written: with its sealed value.
type storedSecret struct {
	Secret
	Sealed []byte `json:"sealed"`
}

func secretKeyName(intID, secretID int64) string {
	return keySecret + id(intID) + "/" + id(secretID)
}

// SetSealer gives the store the key that opens signing secrets, decrypts the
// stored ones and builds each verifying integration's Verifier. It must be
// called once after Open, before requests are served.
func (s *Store) SetSealer(b Sealer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sealer = b
	s.plain = map[int64][][]byte{}
	for intID, list := range s.secrets {
		for _, st := range list {
			p, err := b.Open(st.Sealed)
			if err != nil {
				return fmt.Errorf("control: cannot open the signing secrets of integration %d: %w; "+
					"start with the secret key they were sealed with (<data>/secret.key or HOOKHOUSE_SECRET_KEY)", intID, err)
			}
			s.plain[intID] = append(s.plain[intID], p)
		}
	}
	for intID := range s.integrations {
		if err := s.rebuild(intID); err != nil {
			s.logger.Error("integration cannot verify deliveries until its secrets are fixed; its deliveries are refused", "integration", intID, "err", err)
		}
	}
	return nil
}

// loadSecrets reads the sealed secrets (Open; they are opened by SetSealer).
func (s *Store) loadSecrets() error {
	s.secrets = map[int64][]*storedSecret{}
	return s.kv.Scan(keySecret, func(_ string, v []byte) error {
		var st storedSecret
		if err := json.Unmarshal(v, &st); err != nil {
			return fmt.Errorf("control: corrupt signing secret: %w", err)
		}
		s.secrets[st.Integration] = append(s.secrets[st.Integration], &st)
		return nil
	})
}

// rebuild makes integration intID's Verifier from its config and secrets; s.mu
// must be held for writing.
func (s *Store) rebuild(intID int64) error {
	delete(s.verifiers, intID)
	in := s.integrations[intID]
	if in == nil || in.Verify == nil {
		return nil
	}
	v, err := verify.New(*in.Verify, s.plain[intID])
	if err != nil {
		s.verifiers[intID] = nil // verifying, but broken: refuse rather than accept unverified
		return err
	}
	s.verifiers[intID] = v
	return nil
}

// Verifier returns integration intID's verifier. verifying is false for an
// integration that does not verify; a verifying integration whose verifier could
// not be built (no secret) returns nil with verifying true: refuse its deliveries.
func (s *Store) Verifier(intID int64) (v *verify.Verifier, verifying bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, verifying = s.verifiers[intID]
	return v, verifying
}

// Secrets lists integration intID's signing secrets, oldest first.
func (s *Store) Secrets(intID int64) ([]Secret, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, err := s.live(intID); err != nil {
		return nil, err
	}
	out := []Secret{}
	for _, st := range s.secrets[intID] {
		out = append(out, st.Secret)
	}
	return out, nil
}

// newSecret seals secret (generating one when it is "" and the scheme allows)
// as the next secret of integration in; it returns the record to write and the
// generated text to reveal ("" when the caller gave the secret). s.mu must be
// held for writing.
func (s *Store) newSecret(in *Integration, secret string, now time.Time) (*storedSecret, []byte, string, error) {
	if s.sealer == nil {
		return nil, nil, "", errors.New("control: signing secrets cannot be stored: the server has no secret key")
	}
	revealed := ""
	if secret == "" {
		g, err := verify.GenerateSecret(in.Verify.Scheme)
		if err != nil {
			return nil, nil, "", fail(ErrInvalid, "secret is required for scheme %s: paste the signing secret the provider shows (%v)", in.Verify.Scheme, err)
		}
		secret, revealed = g, g
	}
	if err := verify.ValidateSecret(in.Verify.Scheme, []byte(secret)); err != nil {
		return nil, nil, "", fail(ErrInvalid, "%v", err)
	}
	sealed, err := s.sealer.Seal([]byte(secret))
	if err != nil {
		return nil, nil, "", fmt.Errorf("control: seal the signing secret: %w", err)
	}
	next := int64(1)
	for _, st := range s.secrets[in.ID] {
		next = max(next, st.ID+1)
	}
	hint := secret
	if len(hint) > 4 {
		hint = hint[len(hint)-4:]
	}
	st := &storedSecret{Secret: Secret{ID: next, Integration: in.ID, Hint: hint, CreatedAt: now.UTC().Truncate(time.Second)}, Sealed: sealed}
	return st, []byte(secret), revealed, nil
}

// AddSecret adds a signing secret to integration intID, for a rotation: while
// two exist, either verifies. A third is refused (ErrConflict). secret "" asks
// for a generated one where the scheme allows it, returned once as revealed.
func (s *Store) AddSecret(intID int64, secret string, now time.Time) (_ *Secret, revealed string, _ error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, err := s.live(intID)
	if err != nil {
		return nil, "", err
	}
	if in.Verify == nil {
		return nil, "", fail(ErrInvalid, "integration %d does not verify signatures: only integrations of type webhooks created with \"verify\" have secrets", intID)
	}
	if n := len(s.secrets[intID]); n >= verify.MaxSecrets {
		return nil, "", fail(ErrConflict, "integration %d already has %d secrets: remove the old one (DELETE …/secrets/{id}) before adding another", intID, n)
	}
	st, _, revealed, err := s.newSecret(in, secret, now)
	if err != nil {
		return nil, "", err
	}
	// The integration's record is expected unchanged (and written again), so
	// that secret changes of one integration on several nodes go one at a time.
	key := secretKeyName(intID, st.ID)
	err = s.change([]string{integrationKey(intID), key}, func(cur map[string][]byte) (map[string][]byte, error) {
		if in, err := decodeIntegration(cur[integrationKey(intID)]); err != nil || in == nil || in.DeletedAt != nil {
			return nil, fail(ErrNotFound, "integration %d not found", intID)
		}
		if cur[key] != nil {
			return nil, fail(ErrConflict, "another secret of integration %d was added at the same moment; list the secrets and try again", intID)
		}
		return jsonValues(map[string]any{key: st})
	})
	if err != nil {
		return nil, "", err
	}
	out := st.Secret
	return &out, revealed, nil
}

// RemoveSecret removes a signing secret, ending a rotation. The last secret of
// an integration cannot be removed (ErrConflict): every delivery would fail.
func (s *Store) RemoveSecret(intID, secretID int64, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.live(intID); err != nil {
		return err
	}
	list := s.secrets[intID]
	i := slices.IndexFunc(list, func(st *storedSecret) bool { return st.ID == secretID })
	if i < 0 {
		return fail(ErrNotFound, "integration %d has no secret %d", intID, secretID)
	}
	if len(list) == 1 {
		return fail(ErrConflict, "secret %d is integration %d's only secret: add the new one first, then remove this one", secretID, intID)
	}
	key := secretKeyName(intID, secretID)
	return s.change([]string{integrationKey(intID), key}, func(cur map[string][]byte) (map[string][]byte, error) {
		if cur[key] == nil {
			return nil, fail(ErrNotFound, "integration %d has no secret %d", intID, secretID)
		}
		return map[string][]byte{key: nil}, nil
	})
}

// live returns a live integration; s.mu must be held.
func (s *Store) live(intID int64) (*Integration, error) {
	in, ok := s.integrations[intID]
	if !ok || in.DeletedAt != nil {
		return nil, fail(ErrNotFound, "integration %d not found", intID)
	}
	return in, nil
}

// checkVerify validates a new integration's verify settings.
func checkVerify(req *NewIntegration) error {
	if w := req.DedupeWindow; w < 0 || time.Duration(w) > 90*24*time.Hour {
		return fail(ErrInvalid, "dedupe_window must be between 0 (the default, %s) and 90 days", DefaultDedupeWindow)
	}
	if req.Verify == nil {
		if req.Secret != "" {
			return fail(ErrInvalid, `secret needs "verify": {"scheme": …}`)
		}
		return nil
	}
	if req.Type != TypeWebhooks {
		return fail(ErrInvalid, "verify is only for integrations of type webhooks; vero authenticates by its secret URL")
	}
	if err := req.Verify.Validate(); err != nil {
		return fail(ErrInvalid, "%v", err) // it says "verify: …"
	}
	return nil
}

// DedupeWindow is how long integration intID's delivery ids count as seen.
func (s *Store) DedupeWindow(intID int64) time.Duration {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if in := s.integrations[intID]; in != nil {
		return in.DedupeWindowOf()
	}
	return DefaultDedupeWindow
}

// DedupeWindowOf is how long in's delivery ids count as seen.
func (in *Integration) DedupeWindowOf() time.Duration {
	if in.DedupeWindow > 0 {
		return time.Duration(in.DedupeWindow)
	}
	return DefaultDedupeWindow
}

// VerifyChange is a change to a verifying integration's settings: nil fields
// stay as they are.
type VerifyChange struct {
	Mode      *verify.Mode
	Tolerance *verify.Duration
	// DedupeWindow applies to deliveries received from now on.
	DedupeWindow *verify.Duration
}

// UpdateVerify changes how integration intID verifies: the mode (monitor →
// enforce is how a rollout ends), the timestamp tolerance and the dedupe
// window. The scheme and its secrets stay.
func (s *Store) UpdateVerify(intID int64, ch VerifyChange) (*Integration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, err := s.live(intID)
	if err != nil {
		return nil, err
	}
	if in.Verify == nil {
		return nil, fail(ErrInvalid, "integration %d does not verify signatures; only integrations created with \"verify\" can change it", intID)
	}
	next := *in
	cfg := *in.Verify
	if ch.Mode != nil {
		cfg.Mode = *ch.Mode
	}
	if ch.Tolerance != nil {
		cfg.Tolerance = *ch.Tolerance
	}
	if err := cfg.Validate(); err != nil {
		return nil, fail(ErrInvalid, "%v", err)
	}
	cfg = cfg.WithDefaults()
	next.Verify = &cfg
	if ch.DedupeWindow != nil {
		next.DedupeWindow = *ch.DedupeWindow
		if err := checkVerify(&NewIntegration{Type: TypeWebhooks, DedupeWindow: next.DedupeWindow}); err != nil {
			return nil, err
		}
	}
	// Written over the stored record, expected to be the one cached: a change
	// made meanwhile on another node makes this one fail rather than be lost.
	cached, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	err = s.change([]string{integrationKey(intID)}, func(cur map[string][]byte) (map[string][]byte, error) {
		stored, err := decodeIntegration(cur[integrationKey(intID)])
		if err != nil {
			return nil, err
		}
		if b, _ := json.Marshal(stored); string(b) != string(cached) {
			return nil, fail(ErrConflict, "integration %d was changed at the same moment on another node; try again", intID)
		}
		return jsonValues(map[string]any{integrationKey(intID): &next})
	})
	if err != nil {
		return nil, err
	}
	out := next
	return &out, nil
}
