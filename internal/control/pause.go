package control

import "time"

// SetPaused pauses or resumes loading of integration intID. Receiving never
// pauses: webhooks are still accepted into the log, and loading resumes where
// it stopped. It returns the integration as changed (unchanged when it already
// was in that state).
func (s *Store) SetPaused(intID int64, paused bool, now time.Time) (*Integration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.live(intID); err != nil {
		return nil, err
	}
	var out *Integration
	err := s.change([]string{integrationKey(intID)}, func(cur map[string][]byte) (map[string][]byte, error) {
		in, err := decodeIntegration(cur[integrationKey(intID)])
		if err != nil {
			return nil, err
		}
		if in == nil || in.DeletedAt != nil {
			return nil, fail(ErrNotFound, "integration %d not found", intID)
		}
		out = in
		if (in.PausedAt != nil) == paused {
			return nil, errNoChange
		}
		in.PausedAt = nil
		if paused {
			t := now.UTC().Truncate(time.Second)
			in.PausedAt = &t
		}
		return jsonValues(map[string]any{integrationKey(intID): in})
	})
	if err != nil {
		return nil, err
	}
	c := *out
	return &c, nil
}
