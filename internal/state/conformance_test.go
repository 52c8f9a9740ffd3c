package state_test

import (
	"log/slog"
	"testing"

	"github.com/hookhouse/hookhouse/internal/state"
	"github.com/hookhouse/hookhouse/internal/state/statetest"
)

func TestPebbleConformance(t *testing.T) {
	statetest.Run(t, statetest.Options{}, func(t *testing.T) func() state.Store {
		dir := t.TempDir()
		return func() state.Store {
			p, err := state.OpenPebble(dir, slog.New(slog.DiscardHandler), state.Options{MinFreeBytes: 1})
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
	})
}
