package server

import (
	"fmt"
	"time"

	"github.com/hookhouse/hookhouse/internal/history"
)

// openHistory opens the dashboard's chart history kept in the state and has
// the metrics observer (ingest and loader outcomes) feed it. Its goroutine,
// which samples lag and flushes, is started once the loader runs and closed
// after the loader and before the state.
func (s *Server) openHistory() error {
	opts := history.Options{Lag: s.historyLag}
	if s.cluster != nil {
		opts.Node = s.cfg.NodeName // each node keeps its own counts in the shared state
	}
	h, err := history.OpenWith(s.state, s.logger.With("component", "history"), time.Now, opts)
	if err != nil {
		return fmt.Errorf("server: open the dashboard's history: %w", err)
	}
	s.history = h
	s.metrics.history = h
	return nil
}

// historyLag is each integration's current lag, for the history's goroutine
// to sample every flush (a log read per integration with a backlog).
func (s *Server) historyLag() map[int64]time.Duration {
	out := map[int64]time.Duration{}
	for id, st := range s.allStats() {
		if st.Lag > 0 {
			out[id] = st.Lag
		}
	}
	return out
}
