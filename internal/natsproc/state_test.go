package natsproc_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookhouse/hookhouse/internal/natsproc"
	"github.com/hookhouse/hookhouse/internal/state"
)

// openState opens the JetStream state on its own connection; the test closes
// both.
func openState(t *testing.T, urls string, name string, opts ...nats.Option) *state.JetStream {
	t.Helper()
	nc := connect(t, urls, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := state.OpenJetStream(ctx, nc, slog.New(slog.DiscardHandler), state.JetStreamOptions{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

// urlsFrom lists server i's URL first, then the others: a node that talks to
// server i and fails over to the others in order.
func urlsFrom(c *natsproc.Cluster, i int) string {
	urls := []string{c.URL(i)}
	for j := range c.Len() {
		if j != i {
			urls = append(urls, c.URL(j))
		}
	}
	return strings.Join(urls, ",")
}

// checkLog reads integration's log back by position and checks that it has
// no gap, that no body is in it twice, and that every acknowledged body is in
// it (so exactly once).
func checkLog(t *testing.T, s state.Store, integration int64, acked map[string]bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seen := map[string]int{}
	after := uint64(0)
	for {
		recs, err := s.Read(ctx, integration, after, 1000, 1<<30)
		if err != nil && ctx.Err() == nil {
			// Right after a heal the stream may answer "temporarily
			// unavailable" for a moment: read again.
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			if r.Position != after+1 {
				t.Fatalf("integration %d: position %d follows %d: a gap", integration, r.Position, after)
			}
			after = r.Position
			seen[string(r.Body)]++
			if seen[string(r.Body)] > 1 {
				t.Fatalf("integration %d: record %s is in the log twice", integration, r.Body)
			}
		}
	}
	for b := range acked {
		if seen[b] != 1 {
			t.Fatalf("integration %d: acknowledged record %s is in the log %d times", integration, b, seen[b])
		}
	}
	t.Logf("integration %d: %d records in the log, %d acknowledged", integration, after, len(acked))
}

// TestPartitionMinorityFails: a node whose only NATS server is cut off from
// the other two gets ErrUnavailable within 5 s and never a successful append,
// while a node on the majority side keeps appending; once the partition
// heals, appends through the cut-off server succeed again, and every
// acknowledged record is in the log exactly once.
func TestPartitionMinorityFails(t *testing.T) {
	c := natsproc.StartT(t, natsproc.Options{Partitionable: true})
	const cut, integration = 2, 1
	// The minority node talks to server 3 and nothing else.
	minority := openState(t, c.URL(cut), "part", nats.IgnoreDiscoveredServers())
	majority := openState(t, c.URL(0), "part", nats.IgnoreDiscoveredServers())
	ctx := context.Background()
	acked := map[string]bool{}
	appendOne := func(s state.Store, body string) error {
		_, err := s.Append(ctx, integration, time.Now(), [][]byte{[]byte(body)})
		if err == nil {
			acked[body] = true
		}
		return err
	}
	for i := range 5 {
		for _, s := range []state.Store{minority, majority} {
			if err := appendOne(s, fmt.Sprintf("before-%d-%p", i, s)); err != nil {
				t.Fatal(err)
			}
		}
	}

	c.Isolate(cut)
	for i := range 3 {
		body := fmt.Sprintf("cut-%d", i)
		start := time.Now()
		err := appendOne(minority, body)
		took := time.Since(start)
		if err == nil {
			t.Fatalf("an append through the cut-off server succeeded (%s)", body)
		}
		if !errors.Is(err, state.ErrUnavailable) {
			t.Fatalf("an append through the cut-off server failed with %v, want ErrUnavailable", err)
		}
		if took > 5*time.Second {
			t.Fatalf("an append through the cut-off server took %s to fail, want at most 5s", took)
		}
		t.Logf("cut off: append failed after %s: %v", took.Round(time.Millisecond), err)
		// The majority side still has a quorum (after an election if the
		// cut-off server led the stream).
		if err := retry(func() error { return appendOne(majority, fmt.Sprintf("majority-%d", i)) }); err != nil {
			t.Fatalf("the majority side cannot append: %v", err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for minority.Writable() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the cut-off node still reports itself writable after 10s")
		}
		time.Sleep(100 * time.Millisecond)
	}

	c.Heal()
	// Each try gets a body of its own: a try that failed (ErrUnavailable:
	// the outcome is unknown) may still have been stored, once, and a caller's
	// retry is a new append, as a provider's retry of a 503 is a new request.
	// So the check below stays strict: no body twice (no append stored twice),
	// every acknowledged body once.
	try := 0
	if err := retry(func() error {
		try++
		err := appendOne(minority, fmt.Sprintf("healed-0-try-%d", try))
		if err != nil {
			t.Logf("after healing, try %d: %v", try, err)
		}
		return err
	}); err != nil {
		t.Fatalf("after healing appends through the server still fail: %v", err)
	}
	for i := 1; i < 10; i++ {
		if err := appendOne(minority, fmt.Sprintf("healed-%d", i)); err != nil {
			t.Fatalf("after healing: %v", err)
		}
	}
	checkLog(t, majority, integration, acked)
	checkLog(t, minority, integration, acked)
}

// retry calls f until it succeeds, for at most 60 s.
func retry(f func() error) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestKillServerUnderLoad: three nodes, each on a different nats-server,
// append concurrently to two integrations while the stream's leader is
// SIGKILLed and restarted; every acknowledged append is in the log exactly
// once afterwards, read back by position, and appends were acknowledged
// while the server was down and after it came back.
func TestKillServerUnderLoad(t *testing.T) {
	c := natsproc.StartT(t, natsproc.Options{})
	const name = "kill"
	var nodes []*state.JetStream
	for i := range c.Len() {
		nodes = append(nodes, openState(t, urlsFrom(c, i), name, nats.DontRandomize()))
	}
	ctx := context.Background()
	var (
		mu     sync.Mutex
		acked  = map[int64]map[string]bool{1: {}, 2: {}}
		phase  = "before"
		counts = map[string]int{}
		failed int
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for n, node := range nodes {
		for w := range 4 {
			wg.Add(1)
			go func() { // owned by the test: ends at stop
				defer wg.Done()
				integration := int64(1 + w%2)
				for k := 0; ; k++ {
					select {
					case <-stop:
						return
					default:
					}
					body := fmt.Sprintf(`{"node":%d,"w":%d,"k":%d}`, n, w, k)
					_, err := node.Append(ctx, integration, time.Now(), [][]byte{[]byte(body)})
					mu.Lock()
					if err == nil {
						acked[integration][body] = true
						counts[phase]++
					} else {
						failed++
					}
					mu.Unlock()
					if err != nil {
						time.Sleep(50 * time.Millisecond)
					}
				}
			}()
		}
	}
	setPhase := func(p string) {
		mu.Lock()
		phase = p
		mu.Unlock()
	}
	// waitAcks waits until n appends were acknowledged in phase p (an
	// election after the kill takes the servers 4 to 9 s).
	waitAcks := func(p string, n int) error {
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			got := counts[p]
			mu.Unlock()
			if got >= n {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%d appends acknowledged %s after 30s, want %d", got, p, n)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	fail := func(err error) {
		t.Helper()
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	if err := waitAcks("before", 50); err != nil {
		fail(err)
	}
	leader := c.StreamLeader(ctx, connect(t, c.URLs()), name)
	if leader < 0 {
		fail(errors.New("the stream has no leader"))
	}
	c.Kill(leader)
	setPhase("down")
	if err := waitAcks("down", 50); err != nil {
		fail(fmt.Errorf("with %s killed: %w", c.Name(leader), err))
	}
	if err := c.Restart(ctx, leader); err != nil {
		fail(err)
	}
	setPhase("restarted")
	if err := waitAcks("restarted", 50); err != nil {
		fail(fmt.Errorf("with %s restarted: %w", c.Name(leader), err))
	}
	close(stop)
	wg.Wait()

	nc := connect(t, c.URLs())
	if err := c.WaitStreamCurrent(ctx, nc, name); err != nil {
		t.Fatal(err)
	}
	t.Logf("acknowledged before the kill %d, while %s was down %d, after its restart %d; failed appends %d",
		counts["before"], c.Name(leader), counts["down"], counts["restarted"], failed)
	for integration, a := range acked {
		checkLog(t, nodes[leader], integration, a)
	}
}
