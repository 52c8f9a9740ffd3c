package state

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCheckpointWhileAppending: a checkpoint taken while appends run opens as a
// store of its own with every record up to its heads, in order and without
// gaps, and the heads it reports are those the copy holds.
func TestCheckpointWhileAppending(t *testing.T) {
	p := openTest(t, t.TempDir())
	defer p.Close()
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := p.Append(ctx, int64(1+w%2), time.Now(), [][]byte{fmt.Appendf(nil, `{"w":%d,"i":%d}`, w, i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for p.Head(1).Position < 200 || p.Head(2).Position < 200 {
		time.Sleep(time.Millisecond)
	}
	dir := filepath.Join(t.TempDir(), "state")
	if err := p.Checkpoint(dir); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if err := p.Checkpoint(dir); err == nil {
		t.Error("a checkpoint into an existing directory was allowed")
	}

	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	heads, err := CheckpointHeads(dir, logger, map[int64]uint64{1: 0, 2: 100})
	if err != nil {
		t.Fatal(err)
	}
	// A warehouse position past the copy's end, or one whose next record was
	// trimmed, is reported.
	if _, err := CheckpointHeads(dir, logger, map[int64]uint64{1: heads[1].Position + 1}); err == nil || !strings.Contains(err.Error(), "past the log's end") {
		t.Errorf("position past the end: %v", err)
	}
	cp := openTest(t, dir)
	defer cp.Close()
	for id := int64(1); id <= 2; id++ {
		h := heads[id]
		if h.Position < 200 || h.Position > p.Head(id).Position {
			t.Errorf("integration %d: checkpoint head %d, live head %d", id, h.Position, p.Head(id).Position)
		}
		if got := cp.Head(id); got != h {
			t.Errorf("integration %d: CheckpointHeads %v, opened copy %v", id, h, got)
		}
		recs, err := cp.Read(ctx, id, 0, 1<<20, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		if uint64(len(recs)) != h.Position {
			t.Errorf("integration %d: copy holds %d records, head %d", id, len(recs), h.Position)
		}
		for i, r := range recs {
			if r.Position != uint64(i+1) {
				t.Fatalf("integration %d: record %d has position %d", id, i, r.Position)
			}
		}
	}
}

// TestHoldTrims: while a backup holds trims Trim removes nothing; after the
// release it trims again; HoldTrims waits for nothing when no trim runs.
func TestHoldTrims(t *testing.T) {
	p := openTest(t, t.TempDir())
	defer p.Close()
	ctx := context.Background()
	old := time.Now().Add(-time.Hour)
	if _, err := p.Append(ctx, 1, old, [][]byte{[]byte(`{}`), []byte(`{}`), []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	release := p.HoldTrims()
	if n, err := p.Trim(1, 3, time.Now()); err != nil || n != 0 {
		t.Fatalf("Trim during a hold = %d, %v; want 0, nil", n, err)
	}
	if recs, _ := p.Read(ctx, 1, 0, 10, 1<<20); len(recs) != 3 {
		t.Fatalf("records after a held trim: %d", len(recs))
	}
	release()
	if n, err := p.Trim(1, 2, time.Now()); err != nil || n != 2 {
		t.Fatalf("Trim after the hold = %d, %v; want 2", n, err)
	}
	dir := filepath.Join(t.TempDir(), "state")
	if err := p.Checkpoint(dir); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := CheckpointHeads(dir, logger, map[int64]uint64{1: 2}); err != nil {
		t.Errorf("loading on from position 2: %v", err)
	}
	if _, err := CheckpointHeads(dir, logger, map[int64]uint64{1: 1}); err == nil || !strings.Contains(err.Error(), "is not in") {
		t.Errorf("loading on from position 1, whose next record was trimmed: %v", err)
	}
}
