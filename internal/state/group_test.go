package state

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// groupProbe holds the writer inside each commit (the SyncObserver runs after
// the fsync, before the answers) until the test lets it go, and records each
// group's size.
type groupProbe struct {
	sizes   chan int
	release chan struct{}
}

func (g *groupProbe) observe(_ time.Duration, n int) {
	g.sizes <- n
	<-g.release
}

// TestGroupWaitUnderLoad: after a group of groupWaitMin requests or more, the
// writer holds the next group open until it has twice as many (or GroupWait
// passes); with GroupWait off it commits what is queued. A lone request after
// a small group does not wait, and Close commits a group being held open:
// those requests get their 200's answer (nil), not ErrClosed.
func TestGroupWaitUnderLoad(t *testing.T) {
	for _, tc := range []struct {
		name  string
		wait  time.Duration
		sizes []int // groups committed while queueing 1, 6, 5, 7 appends
	}{
		{"off", -1, []int{1, 6, 5, 7}},
		{"on", time.Hour, []int{1, 6, 12}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &groupProbe{sizes: make(chan int, 8), release: make(chan struct{})}
			p, err := OpenPebble(t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)),
				Options{MinFreeBytes: 1, SyncObserver: g.observe, GroupWait: tc.wait})
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make(chan error, 32)
			appendN := func(n int) {
				for range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						_, err := p.Append(context.Background(), 1, time.Now(), [][]byte{[]byte(`{"a":1}`)})
						errs <- err
					}()
				}
			}
			queued := func(n int) { // wait until n appends wait in the writer's queue
				deadline := time.Now().Add(10 * time.Second)
				for len(p.appends) < n {
					if time.Now().After(deadline) {
						t.Fatalf("%d appends queued, want %d", len(p.appends), n)
					}
					time.Sleep(time.Millisecond)
				}
			}
			var got []int
			next := func() int { // the next group's size; lets the writer go on
				select {
				case n := <-g.sizes:
					got = append(got, n)
					return n
				case <-time.After(30 * time.Second):
					t.Fatalf("no group committed in 30 s; groups so far %v, want %v", got, tc.sizes)
					return 0
				}
			}
			release := func() { g.release <- struct{}{} }

			appendN(1)
			next() // a lone request: committed at once, however long GroupWait is
			appendN(6)
			queued(6)
			release()
			next() // the 6 queued behind it: one group
			appendN(5)
			queued(5)
			release()
			if tc.wait < 0 {
				next() // off: the 5 go at once
				appendN(7)
				queued(7)
				release()
				next()
				release()
			} else {
				// on: 5 are not enough after a group of 6; 7 more make 12, one group.
				appendN(7)
				next()
			}
			// Close while the writer holds a group open: it is committed, not failed.
			closed := make(chan error, 1)
			if tc.wait > 0 {
				appendN(1)
				queued(1)
				release()
				for len(p.appends) > 0 { // the writer has taken it and holds it open
					time.Sleep(time.Millisecond)
				}
				go func() { closed <- p.Close() }()
				next()
				release()
			} else {
				closed <- p.Close()
			}
			if err := <-closed; err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatalf("append failed: %v", err)
				}
			}
			if tc.wait > 0 {
				tc.sizes = append(tc.sizes, 1)
			}
			if !slices.Equal(got, tc.sizes) {
				t.Fatalf("groups %v, want %v", got, tc.sizes)
			}
		})
	}
}
