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
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.integrations[intID]
	if !ok {
		return nil, fail(ErrNotFound, "integration %d not found", intID)
	}
	next := *in
	next.Reset = nil
	if r != nil {
		c := *r
		next.Reset = &c
	}
	if err := s.write(s.last, map[string]any{keyIntegration + id(intID): &next}); err != nil {
		return nil, err
	}
	s.integrations[intID] = &next
	out := next
	return &out, nil
}
