package control

import "time"

// SetPaused pauses or resumes loading of integration intID. Receiving never
// pauses: webhooks are still accepted into the log, and loading resumes where
// it stopped. It returns the integration as changed (unchanged when it already
// was in that state).
func (s *Store) SetPaused(intID int64, paused bool, now time.Time) (*Integration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, err := s.live(intID)
	if err != nil {
		return nil, err
	}
	if (in.PausedAt != nil) == paused {
		out := *in
		return &out, nil
	}
	next := *in
	next.PausedAt = nil
	if paused {
		t := now.UTC().Truncate(time.Second)
		next.PausedAt = &t
	}
	if err := s.write(s.last, map[string]any{keyIntegration + id(intID): &next}); err != nil {
		return nil, err
	}
	s.integrations[intID] = &next
	out := next
	return &out, nil
}
