package control

import "time"

// Reset is an integration's reset: its tables dropped in the warehouse and
// every record still in the log reloaded. The loader records it here so that a
// reset survives a restart: one requested but not yet committed in the
// warehouse (CommittedAt nil) is redone at start, and a committed one keeps
// showing its progress until the reload reaches Target.
type Reset struct {
	RequestedAt   time.Time `json:"requested_at"`
	AcceptPartial bool      `json:"accept_partial,omitempty"`
	// From is the first log position reloaded (1 unless retention trimmed the
	// log's head); Target is the log's head when the reset was made: the
	// reload is done once the loader has loaded up to it.
	From   uint64 `json:"from"`
	Target uint64 `json:"target"`
	// CommittedAt is when the warehouse dropped the tables; FinishedAt when
	// the reload reached Target.
	CommittedAt *time.Time `json:"committed_at,omitempty"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
}

// SetReset records integration intID's reset (the loader calls it as a reset
// goes on); nil clears it. A deleted integration keeps loading what it
// accepted, so its reset is recorded too.
func (s *Store) SetReset(intID int64, r *Reset) (*Integration, error) {
	return s.UpdateReset(intID, func(*Reset) (*Reset, error) { return r, nil })
}

// UpdateReset records as integration intID's reset what fn returns given the
// recorded one (nil: none; nil returned clears it). On a cluster fn sees the
// stored value and is called again when another node changed it in between
// (compare-and-set), so fn decides on the latest record; an error from fn is
// returned and nothing is written.
func (s *Store) UpdateReset(intID int64, fn func(cur *Reset) (*Reset, error)) (*Integration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.integrations[intID]; !ok {
		return nil, fail(ErrNotFound, "integration %d not found", intID)
	}
	var out *Integration
	err := s.change([]string{integrationKey(intID)}, func(cur map[string][]byte) (map[string][]byte, error) {
		in, err := decodeIntegration(cur[integrationKey(intID)])
		if err != nil {
			return nil, err
		}
		if in == nil {
			return nil, fail(ErrNotFound, "integration %d not found", intID)
		}
		var was *Reset
		if in.Reset != nil {
			c := *in.Reset
			was = &c
		}
		r, err := fn(was)
		if err != nil {
			return nil, err
		}
		in.Reset = nil
		if r != nil {
			c := *r
			in.Reset = &c
		}
		out = in
		return jsonValues(map[string]any{integrationKey(intID): in})
	})
	if err != nil {
		return nil, err
	}
	c := *out
	return &c, nil
}
