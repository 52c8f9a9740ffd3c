package state_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/natstest"
	"github.com/hookhouse/hookhouse/internal/state"
	"github.com/hookhouse/hookhouse/internal/state/statetest"
)

// jsNode is a JetStream state on a connection of its own, as a hookhouse node
// has; Close closes both.
type jsNode struct {
	*state.JetStream
	nc *nats.Conn
}

func (n jsNode) Close() error {
	err := n.JetStream.Close()
	n.nc.Close()
	return err
}

func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		// Stopped servers make the client report broken pipes; the tests look at results.
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	return nc
}

func openJS(t testing.TB, url string, opts state.JetStreamOptions) jsNode {
	t.Helper()
	nc := connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := state.OpenJetStream(ctx, nc, slog.New(slog.DiscardHandler), opts)
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	return jsNode{j, nc}
}

func TestJetStreamConformance(t *testing.T) {
	c := natstest.Start(t, 3)
	var places, nodes atomic.Int64
	statetest.Run(t, statetest.Options{Shared: true}, func(t *testing.T) func() state.Store {
		name := fmt.Sprintf("hh%d", places.Add(1))
		return func() state.Store {
			// Each node talks to another server of the cluster.
			return openJS(t, c.URL(int(nodes.Add(1))%3), state.JetStreamOptions{Name: name})
		}
	})
}

// appendAll appends one record per body and returns the bodies whose Append
// succeeded; errs collects the failures.
func appendAll(ctx context.Context, s state.Store, integration int64, from, n int) (acked []string, errs []error) {
	for i := from; i < from+n; i++ {
		b := fmt.Sprintf(`{"i":%d}`, i)
		if _, err := s.Append(ctx, integration, time.Now(), [][]byte{[]byte(b)}); err != nil {
			errs = append(errs, err)
			continue
		}
		acked = append(acked, b)
	}
	return acked, errs
}

// checkOnce checks that the log of integration is gapless and holds every
// acked body exactly once.
func checkOnce(t *testing.T, s state.Store, integration int64, acked []string) {
	t.Helper()
	recs, err := s.Read(context.Background(), integration, 0, 1<<30, 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for i, r := range recs {
		if r.Position != uint64(i+1) {
			t.Fatalf("record %d has position %d: a gap", i, r.Position)
		}
		seen[string(r.Body)]++
	}
	for _, b := range acked {
		if seen[b] != 1 {
			t.Fatalf("acknowledged record %s is in the log %d times", b, seen[b])
		}
	}
	for b, n := range seen {
		if n > 1 {
			t.Fatalf("record %s is in the log %d times", b, n)
		}
	}
}

// TestJetStreamNodeLoss: with one of three servers down appends succeed (a
// quorum of 2); with two down an append fails within 5 s with ErrUnavailable,
// never hangs and never succeeds; once the servers are back appends succeed
// again, and every acknowledged record is in the log exactly once.
func TestJetStreamNodeLoss(t *testing.T) {
	c := natstest.Start(t, 3)
	n := openJS(t, c.URLs(), state.JetStreamOptions{Name: "loss"})
	defer n.Close()
	ctx := context.Background()
	acked, errs := appendAll(ctx, n, 1, 0, 20)
	if len(errs) > 0 {
		t.Fatal(errs[0])
	}
	// Stop a server that neither leads the stream nor serves this node's
	// connection, so that neither an election nor a reconnection is needed
	// (TestJetStreamLeaderLoss has those): every append must succeed.
	leader := c.StreamLeader("loss")
	if leader < 0 {
		t.Fatal("the stream has no leader")
	}
	down1 := -1
	for i := range 3 {
		if i != leader && c.URL(i) != n.nc.ConnectedUrl() {
			down1 = i
			break
		}
	}
	c.Stop(down1)
	a, errs := appendAll(ctx, n, 1, 20, 20)
	if len(errs) > 0 {
		t.Fatalf("with one server of three down an append failed: %v", errs[0])
	}
	time.Sleep(1100 * time.Millisecond) // Writable answers from a probe up to a second old
	if err := n.Writable(); err != nil {
		t.Fatalf("Writable with two servers of three: %v", err)
	}
	acked = append(acked, a...)

	// Two of three down: no quorum.
	down2 := 3 - leader - down1
	c.Stop(down2)
	var wg sync.WaitGroup
	for i := range 4 { // at once, to two integrations: each may take its whole timeout
		wg.Go(func() {
			start := time.Now()
			_, err := n.Append(ctx, int64(1+i%2), time.Now(), [][]byte{[]byte(fmt.Sprintf(`{"noquorum":%d}`, i))})
			took := time.Since(start)
			if !errors.Is(err, state.ErrUnavailable) {
				t.Errorf("append without a quorum = %v, want ErrUnavailable", err)
			}
			if took > 5*time.Second {
				t.Errorf("append without a quorum took %s to fail, want under 5s", took)
			}
		})
	}
	wg.Wait()
	if err := n.Writable(); err == nil {
		t.Fatal("Writable says yes without a quorum")
	}

	// Back to three: appends succeed again (after elections).
	c.Restart(down1)
	c.Restart(down2)
	deadline := time.Now().Add(60 * time.Second)
	for {
		a, errs := appendAll(ctx, n, 1, 1000, 1)
		if len(errs) == 0 {
			acked = append(acked, a...)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("appends still fail a minute after the servers came back: %v", errs[0])
		}
	}
	a, errs = appendAll(ctx, n, 1, 2000, 10)
	if len(errs) > 0 {
		t.Fatal(errs[0])
	}
	acked = append(acked, a...)
	checkOnce(t, n, 1, acked)
}

// TestJetStreamLeaderLoss: appends from several goroutines while the stream's
// leader is stopped and restarted. Appends may fail (503) while a new leader
// is elected, but none hangs past 5 s, and every acknowledged record is in the
// log exactly once, without gaps.
func TestJetStreamLeaderLoss(t *testing.T) {
	c := natstest.Start(t, 3)
	n := openJS(t, c.URLs(), state.JetStreamOptions{Name: "leader"})
	defer n.Close()
	ctx := context.Background()
	var mu sync.Mutex
	var acked []string
	var failed int
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				b := fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)
				start := time.Now()
				_, err := n.Append(ctx, 1, time.Now(), [][]byte{[]byte(b)})
				if took := time.Since(start); took > 5*time.Second {
					t.Errorf("an append took %s", took)
				}
				mu.Lock()
				if err == nil {
					acked = append(acked, b)
				} else {
					failed++
				}
				mu.Unlock()
			}
		})
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	waitMore := func(than int) {
		deadline := time.Now().Add(60 * time.Second)
		for count() < than+20 {
			if time.Now().After(deadline) {
				t.Fatalf("appends did not resume within a minute (%d acked)", count())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitMore(0)
	leader := c.StreamLeader("leader")
	if leader < 0 {
		t.Fatal("the stream has no leader")
	}
	c.Stop(leader)
	waitMore(count())
	c.Restart(leader)
	waitMore(count())
	close(stop)
	wg.Wait()
	t.Logf("%d appends acknowledged, %d failed during the election", len(acked), failed)
	checkOnce(t, n, 1, acked)
}

// TestJetStreamFull: a stream at its byte limit refuses appends with
// ErrNoSpace (the ingest answers 503) and keeps what it has.
func TestJetStreamFull(t *testing.T) {
	c := natstest.Start(t, 3)
	n := openJS(t, c.URLs(), state.JetStreamOptions{Name: "full", MaxBytes: 64 << 10})
	defer n.Close()
	ctx := context.Background()
	body := []byte(fmt.Sprintf(`{"pad":"%01000d"}`, 0))
	var err error
	appended := 0
	for appended < 1000 {
		if _, err = n.Append(ctx, 1, time.Now(), [][]byte{body}); err != nil {
			break
		}
		appended++
	}
	if !errors.Is(err, state.ErrNoSpace) {
		t.Fatalf("after %d appends to a 64 KiB stream: %v, want ErrNoSpace", appended, err)
	}
	if appended == 0 {
		t.Fatal("the stream refused the first append")
	}
	recs, err := n.Read(ctx, 1, 0, 10000, 1<<30)
	if err != nil || len(recs) != appended {
		t.Fatalf("read %d records, %v; want the %d appended", len(recs), err, appended)
	}
	// Trimming what was loaded makes room again.
	if _, err := n.Trim(1, uint64(appended), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Append(ctx, 1, time.Now(), [][]byte{body}); err != nil {
		t.Fatalf("append after trimming: %v", err)
	}
}

// TestJetStreamUnreachable: with every server gone, appends and control
// reads and writes fail within 5 s.
func TestJetStreamUnreachable(t *testing.T) {
	c := natstest.Start(t, 3)
	n := openJS(t, c.URLs(), state.JetStreamOptions{Name: "gone"})
	defer n.Close()
	ctx := context.Background()
	if _, err := n.Append(ctx, 1, time.Now(), [][]byte{[]byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		c.Stop(i)
	}
	// The calls run at once: each may take its whole timeout.
	var wg sync.WaitGroup
	defer wg.Wait()
	check := func(what string, f func() error) {
		wg.Go(func() {
			start := time.Now()
			err := f()
			if err == nil {
				t.Errorf("%s succeeded with no server", what)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("%s took %s to fail, want under 5s", what, took)
			}
		})
	}
	check("Append", func() error {
		_, err := n.Append(ctx, 1, time.Now(), [][]byte{[]byte(`{}`)})
		if !errors.Is(err, state.ErrUnavailable) {
			t.Errorf("Append: %v, want ErrUnavailable", err)
		}
		return err
	})
	check("AppendOnce", func() error {
		_, _, err := n.AppendOnce(ctx, 1, time.Now(), "id", time.Hour, [][]byte{[]byte(`{}`)})
		return err
	})
	check("Get", func() error { _, err := n.Get("k"); return err })
	check("Put", func() error { return n.Put(map[string][]byte{"k": []byte("v")}) })
	check("Read", func() error { _, err := n.Read(ctx, 1, 0, 10, 1<<20); return err })
}

// BenchmarkJetStream compares, on one embedded 3-server cluster with
// SyncAlways, hookhouse's Append (64 concurrent callers, 500-byte records,
// one integration and eight) with a bare JetStream publisher (64 concurrent
// synchronous publishes of 500 bytes with a Nats-Msg-Id), the figure the
// cluster's ingest is measured against. Everything shares one machine.
func BenchmarkJetStream(b *testing.B) {
	c := natstest.Start(b, 3)
	body := make([]byte, 500)
	for i := range body {
		body[i] = 'x'
	}
	run := func(b *testing.B, op func(i int) error) {
		var mu sync.Mutex
		var lat []time.Duration
		var n atomic.Int64
		b.SetParallelism(64 / max(1, runtime.GOMAXPROCS(0)))
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var mine []time.Duration
			for pb.Next() {
				start := time.Now()
				if err := op(int(n.Add(1))); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
		b.StopTimer()
		slices.Sort(lat)
		if len(lat) > 0 {
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	}
	b.Run("Append1", func(b *testing.B) {
		n := openJS(b, c.URLs(), state.JetStreamOptions{Name: fmt.Sprintf("bench1_%d", b.N)})
		defer n.Close()
		run(b, func(int) error {
			_, err := n.Append(context.Background(), 1, time.Now(), [][]byte{body})
			return err
		})
	})
	b.Run("Append8", func(b *testing.B) {
		n := openJS(b, c.URLs(), state.JetStreamOptions{Name: fmt.Sprintf("bench8_%d", b.N)})
		defer n.Close()
		run(b, func(i int) error {
			_, err := n.Append(context.Background(), int64(1+i%8), time.Now(), [][]byte{body})
			return err
		})
	})
	b.Run("AppendOnce8", func(b *testing.B) {
		n := openJS(b, c.URLs(), state.JetStreamOptions{Name: fmt.Sprintf("bencho_%d", b.N)})
		defer n.Close()
		run(b, func(i int) error {
			_, _, err := n.AppendOnce(context.Background(), int64(1+i%8), time.Now(), fmt.Sprint("evt-", i), time.Hour, [][]byte{body})
			return err
		})
	})
	b.Run("BarePublish", func(b *testing.B) {
		nc := connect(b, c.URLs())
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			b.Fatal(err)
		}
		name := fmt.Sprintf("bare_%d", b.N)
		if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
			Name: name, Subjects: []string{name + ".>"}, Replicas: 3, Storage: jetstream.FileStorage,
		}); err != nil {
			b.Fatal(err)
		}
		run(b, func(i int) error {
			_, err := js.Publish(context.Background(), name+".x", body, jetstream.WithMsgID(fmt.Sprint(i)))
			return err
		})
	})
}

// TestJetStreamControl: the control store works unchanged on the JetStream
// state: what one node creates, another node opening the cluster finds (the
// integration, its URL's hash, the admin key's hash, which is minted once).
// Keeping a running node's caches current is not part of the state seam.
func TestJetStreamControl(t *testing.T) {
	c := natstest.Start(t, 3)
	logger := slog.New(slog.DiscardHandler)
	a := openJS(t, c.URL(0), state.JetStreamOptions{Name: "ctl"})
	defer a.Close()
	ca, err := control.Open(a, state.ErrNotFound, logger)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ca.EnsureAdminKey()
	if err != nil || key == "" {
		t.Fatalf("EnsureAdminKey on the first node = %q, %v", key, err)
	}
	now := time.Now()
	in, err := ca.Create(control.NewIntegration{Name: "Vero", Type: "vero"}, now)
	if err != nil {
		t.Fatal(err)
	}
	_, token, err := ca.GenerateURL(in.ID, now)
	if err != nil {
		t.Fatal(err)
	}

	b := openJS(t, c.URL(1), state.JetStreamOptions{Name: "ctl"})
	defer b.Close()
	cb, err := control.Open(b, state.ErrNotFound, logger)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := cb.EnsureAdminKey(); err != nil || again != "" {
		t.Fatalf("EnsureAdminKey on the second node = %q, %v; want the first node's key kept", again, err)
	}
	if !cb.CheckAdminKey(key) {
		t.Fatal("the second node refuses the admin key the first minted")
	}
	if !cb.Authenticate(in.ID, token, now) {
		t.Fatal("the second node refuses a webhook URL the first generated")
	}
	if all := cb.AllIntegrations(); len(all) != 1 || all[0].Name != "Vero" {
		t.Fatalf("the second node sees integrations %+v", all)
	}
}

// TestJetStreamTooLarge: a request larger than one NATS message holds is
// refused with an error saying so, stores nothing, and does not hold up the
// requests after it; requests that fit together share messages.
func TestJetStreamTooLarge(t *testing.T) {
	c := natstest.Start(t, 3)
	n := openJS(t, c.URLs(), state.JetStreamOptions{Name: "large", MaxMessageBytes: 4 << 10})
	defer n.Close()
	ctx := context.Background()
	big := []byte(fmt.Sprintf(`{"pad":"%05000d"}`, 0))
	_, err := n.Append(ctx, 1, time.Now(), [][]byte{big})
	if err == nil || !strings.Contains(err.Error(), "more than a NATS message holds") {
		t.Fatalf("an append larger than a message: %v", err)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if _, err := n.Append(ctx, 1, time.Now(), [][]byte{[]byte(fmt.Sprintf(`{"i":%d,"pad":"%0900d"}`, i, 0))}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if h := n.Head(1); h.Position != 20 {
		t.Fatalf("head %d after 20 appends", h.Position)
	}
	recs, err := n.Read(ctx, 1, 0, 100, 1<<20)
	if err != nil || len(recs) != 20 {
		t.Fatalf("read %d, %v", len(recs), err)
	}
}
