package state_test

import (
	"context"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/natstest"
	"github.com/hookhouse/hookhouse/internal/state"
)

// TestJetStreamRefreshHead: a node whose tracker lags does not see another
// node's appends in Head; RefreshHead asks the stream, moves the head to
// them and wakes Changed (the loader relies on it so that a lagging tracker
// never stops loading).
func TestJetStreamRefreshHead(t *testing.T) {
	c := natstest.Start(t, 3)
	a := openJS(t, c.URL(0), state.JetStreamOptions{Name: "refresh"})
	defer a.Close()
	b := openJS(t, c.URL(1), state.JetStreamOptions{Name: "refresh"})
	defer b.Close()
	ctx := context.Background()
	if _, err := a.Append(ctx, 7, time.Now(), [][]byte{[]byte(`{"n":1}`)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.Head(7).Position != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("b's tracker never saw a's first append: head %d", b.Head(7).Position)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.StopTracker()
	if _, err := a.Append(ctx, 7, time.Now(), [][]byte{[]byte(`{"n":2}`), []byte(`{"n":3}`)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if got := b.Head(7).Position; got != 1 {
		t.Fatalf("with its tracker stopped b's head is %d, want it still at 1 (the test would prove nothing)", got)
	}
	changed := b.Changed()
	h, err := b.RefreshHead(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	if h.Position != 3 || b.Head(7).Position != 3 {
		t.Fatalf("after RefreshHead: returned %d, Head %d; want 3", h.Position, b.Head(7).Position)
	}
	select {
	case <-changed:
	default:
		t.Fatal("RefreshHead moved the head but Changed did not fire")
	}
	if h, err := b.RefreshHead(ctx, 99); err != nil || h.Position != 0 {
		t.Fatalf("RefreshHead of an integration without records: %+v, %v", h, err)
	}
	// b's own append continues after a's records, never over them.
	first, err := b.Append(ctx, 7, time.Now(), [][]byte{[]byte(`{"n":4}`)})
	if err != nil || first != 4 {
		t.Fatalf("b's append after the refresh: position %d, %v; want 4", first, err)
	}
}
