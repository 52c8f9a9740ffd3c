package control_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/natstest"
	"github.com/hookhouse/hookhouse/internal/state"
	"github.com/nats-io/nats.go"
)

// twoNodes returns two control stores over one shared state: two JetStream
// states (each on its own connection) of one embedded cluster, and also two
// stores over one Pebble, which is what PutIf must make safe for two nodes.
func twoNodes(t *testing.T) map[string][2]control.KV {
	t.Helper()
	out := map[string][2]control.KV{}
	p, err := state.OpenPebble(filepath.Join(t.TempDir(), "state"), slog.New(slog.DiscardHandler), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	out["pebble"] = [2]control.KV{p, p}
	c := natstest.Start(t, 3)
	var js [2]control.KV
	for i := range js {
		nc, err := nats.Connect(c.URL(i), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		j, err := state.OpenJetStream(ctx, nc, slog.New(slog.DiscardHandler), state.JetStreamOptions{Name: "cas"})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { j.Close(); nc.Close() })
		js[i] = j
	}
	out["jetstream"] = js
	return out
}

func openStore(t *testing.T, kv control.KV) *control.Store {
	t.Helper()
	s, err := control.Open(kv, state.ErrNotFound, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSharedStateCompareAndSet: two stores over one state, as two nodes of a
// cluster, each with a cache the other's changes do not reach: the admin key
// is minted once, concurrent creates and URL generations get distinct ids, a
// schema goes to one integration, and a stale cache never writes an old value
// back (a last-use flush does not un-revoke a URL; a pause made from a stale
// cache keeps the other node's reset).
func TestSharedStateCompareAndSet(t *testing.T) {
	for name, kvs := range twoNodes(t) {
		t.Run(name, func(t *testing.T) {
			a, b := openStore(t, kvs[0]), openStore(t, kvs[1])
			if a.Installation() != b.Installation() {
				t.Fatalf("installation ids %s and %s", a.Installation(), b.Installation())
			}
			var keys [2]string
			var wg sync.WaitGroup
			for i, s := range []*control.Store{a, b} {
				wg.Go(func() {
					k, err := s.EnsureAdminKey()
					if err != nil {
						t.Error(err)
					}
					keys[i] = k
				})
			}
			wg.Wait()
			if (keys[0] == "") == (keys[1] == "") {
				t.Fatalf("admin keys minted: %v and %v, want exactly one", keys[0] != "", keys[1] != "")
			}
			key := keys[0] + keys[1]
			// The node that lost the race uses the winner's hash.
			if !a.CheckAdminKey(key) || !b.CheckAdminKey(key) {
				t.Fatal("a node refuses the admin key the other minted")
			}

			now := time.Now()
			ids := make(chan int64, 40)
			for i := range 20 {
				for n, s := range []*control.Store{a, b} {
					wg.Go(func() {
						in, err := s.Create(control.NewIntegration{Name: fmt.Sprintf("n%d-%d", n, i), Type: control.TypeVero}, now)
						if err != nil {
							t.Errorf("create: %v", err)
							return
						}
						ids <- in.ID
					})
				}
			}
			wg.Wait()
			close(ids)
			seen := map[int64]bool{}
			for id := range ids {
				if seen[id] {
					t.Errorf("integration id %d handed out twice", id)
				}
				seen[id] = true
			}
			if len(seen) != 40 {
				t.Fatalf("%d distinct integration ids from 40 creates", len(seen))
			}

			errs := make(chan error, 2)
			for _, s := range []*control.Store{a, b} {
				wg.Go(func() {
					_, err := s.Create(control.NewIntegration{Name: "Same", Type: control.TypeVero}, now)
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			won := 0
			for err := range errs {
				switch {
				case err == nil:
					won++
				case !errors.Is(err, control.ErrConflict):
					t.Errorf("second create of schema same: %v, want a conflict", err)
				}
			}
			if won != 1 {
				t.Fatalf("%d integrations got schema same", won)
			}

			// URLs: one integration made on a, URLs made on both at once.
			in, err := a.Create(control.NewIntegration{Name: "Hooks", Type: control.TypeWebhooks}, now)
			if err != nil {
				t.Fatal(err)
			}
			b2 := openStore(t, kvs[1]) // b's cache has not seen it: a fresh one has
			var urlIDs [2]int64
			var tokens [2]string
			for i, s := range []*control.Store{a, b2} {
				wg.Go(func() {
					u, tok, err := s.GenerateURL(in.ID, now)
					if err != nil {
						t.Errorf("generate: %v", err)
						return
					}
					urlIDs[i], tokens[i] = u.ID, tok
				})
			}
			wg.Wait()
			if urlIDs[0] == urlIDs[1] || urlIDs[0] == 0 || urlIDs[1] == 0 {
				t.Fatalf("URL ids %d and %d", urlIDs[0], urlIDs[1])
			}
			tok := tokens[1] // b2's

			// b2 uses a URL; a revokes it; b2's last-use flush, from its stale
			// cache, must not make it active again.
			if !b2.Authenticate(in.ID, tok, now) {
				t.Fatal("b2 refuses its URL")
			}
			a = openStore(t, kvs[0]) // a restarted: it has seen b2's URL
			urls, err := a.URLs(in.ID)
			if err != nil {
				t.Fatal(err)
			}
			var revoked int64
			for _, u := range urls {
				if u.Hint == tok[len(tok)-4:] {
					revoked = u.ID
				}
			}
			if revoked == 0 {
				t.Fatalf("a does not list the URL b2 made: %+v", urls)
			}
			if err := a.RevokeURL(in.ID, revoked, now); err != nil {
				t.Fatal(err)
			}
			if err := b2.FlushLastUsed(); err != nil {
				t.Fatal(err)
			}
			if fresh := openStore(t, kvs[0]); fresh.Authenticate(in.ID, tok, now) {
				t.Fatal("b2's last-use flush un-revoked the URL")
			}
			// A stale node told its cache may be behind checks the stored record.
			b2.Follow(func() bool { return false })
			if ok, err := b2.Authorize(in.ID, tok, now); ok || err != nil {
				t.Fatalf("stale b2 authorizes the revoked URL: %v, %v", ok, err)
			}
			if ok, err := b2.Authorize(in.ID, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", now); ok || !errors.Is(err, control.ErrUnavailable) {
				t.Fatalf("stale b2 and a token it does not know: %v, %v; want ErrUnavailable (503)", ok, err)
			}
			if b2.CheckAdminKey("hhk_wrong") || !b2.CheckAdminKey(key) {
				t.Fatal("stale b2 checks the admin key wrongly")
			}

			// a resets, then b2 (not having seen it) pauses: the reset stays.
			if _, err := a.SetReset(in.ID, &control.Reset{RequestedAt: now, From: 1, Target: 5}); err != nil {
				t.Fatal(err)
			}
			p, err := b2.SetPaused(in.ID, true, now)
			if err != nil {
				t.Fatal(err)
			}
			if p.Reset == nil || p.PausedAt == nil {
				t.Fatalf("pause from a stale cache: %+v, want the reset kept and paused", p)
			}
			// a's cache, told of the change, follows it.
			fresh := openStore(t, kvs[0])
			got, err := fresh.Integration(in.ID)
			if err != nil || got.Reset == nil || got.PausedAt == nil {
				t.Fatalf("stored integration %+v, %v", got, err)
			}
		})
	}
}

// TestApplyFollowsOtherNodes: changes another node stored reach a store
// through Apply (what the KV watch calls), including a revocation, a deletion
// and a new admin key; a value this node just wrote is not overturned by an
// older one the watch delivers late.
func TestApplyFollowsOtherNodes(t *testing.T) {
	p, err := state.OpenPebble(filepath.Join(t.TempDir(), "state"), slog.New(slog.DiscardHandler), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a, b := openStore(t, p), openStore(t, p)
	b.Follow(func() bool { return true })
	now := time.Now()
	in, err := a.Create(control.NewIntegration{Name: "Hooks", Type: control.TypeWebhooks}, now)
	if err != nil {
		t.Fatal(err)
	}
	u, tok, err := a.GenerateURL(in.ID, now)
	if err != nil {
		t.Fatal(err)
	}
	replay := func(prefix string) {
		p.Scan(prefix, func(k string, v []byte) error {
			b.Apply(k, v)
			return nil
		})
	}
	if b.Authenticate(in.ID, tok, now) {
		t.Fatal("b knew the URL before any Apply")
	}
	replay("")
	if !b.Authenticate(in.ID, tok, now) || len(b.Integrations()) != 1 {
		t.Fatal("b does not know the integration and URL after Apply")
	}
	if err := a.RevokeURL(in.ID, u.ID, now); err != nil {
		t.Fatal(err)
	}
	replay("url/")
	if b.Authenticate(in.ID, tok, now) {
		t.Fatal("b accepts a URL a revoked after Apply")
	}
	// b writes (a pause); the watch then delivers an older value late, then
	// b's own: the cache ends at the newest.
	ikey := "integration/" + fmt.Sprintf("%020d", in.ID)
	before, err := p.Get(ikey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.SetPaused(in.ID, true, now); err != nil {
		t.Fatal(err)
	}
	b.Apply(ikey, before)
	if got, err := b.Integration(in.ID); err != nil || got.PausedAt != nil {
		t.Fatalf("an older value delivered late: %+v, %v; want it applied (the watch brings the newer one next)", got, err)
	}
	replay("integration/")
	if got, err := b.Integration(in.ID); err != nil || got.PausedAt == nil {
		t.Fatalf("b's own pause, delivered again: %+v, %v", got, err)
	}
	key, err := a.ResetAdminKey()
	if err != nil {
		t.Fatal(err)
	}
	replay("meta/")
	if !b.CheckAdminKey(key) {
		t.Fatal("b refuses the admin key a reset, after Apply")
	}
	if err := a.Delete(in.ID, now); err != nil {
		t.Fatal(err)
	}
	replay("integration/")
	if len(b.Integrations()) != 0 {
		t.Fatal("b still lists the integration a deleted")
	}
}

// TestFlushLastUsedKeepsRevocations: the last-use flush writes each URL's
// stored record (not the cached one) and takes it into the cache, and a
// revocation written meanwhile by another node stays in the store.
func TestFlushLastUsedKeepsRevocations(t *testing.T) {
	p, err := state.OpenPebble(filepath.Join(t.TempDir(), "state"), slog.New(slog.DiscardHandler), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a := openStore(t, p)
	now := time.Now().Truncate(time.Second)
	in, err := a.Create(control.NewIntegration{Name: "Hooks", Type: control.TypeWebhooks}, now)
	if err != nil {
		t.Fatal(err)
	}
	u1, tok1, _ := a.GenerateURL(in.ID, now)
	u2, tok2, _ := a.GenerateURL(in.ID, now)
	b := openStore(t, p) // the other node
	if !a.Authenticate(in.ID, tok1, now) || !a.Authenticate(in.ID, tok2, now) {
		t.Fatal("a refuses its URLs")
	}
	if err := b.RevokeURL(in.ID, u2.ID, now); err != nil {
		t.Fatal(err)
	}
	if err := a.FlushLastUsed(); err != nil {
		t.Fatal(err)
	}
	urls, _ := a.URLs(in.ID)
	if len(urls) != 2 || urls[0].ID != u1.ID || urls[0].LastUsedAt == nil {
		t.Fatalf("a's URLs after the flush: %+v", urls)
	}
	c := openStore(t, p)
	if !c.Authenticate(in.ID, tok1, now) || c.Authenticate(in.ID, tok2, now) {
		t.Fatal("after a's flush the stored URLs are not u1 active, u2 revoked")
	}
	stored, _ := c.URLs(in.ID)
	if stored[0].LastUsedAt == nil || stored[1].LastUsedAt == nil || stored[1].RevokedAt == nil {
		t.Fatalf("stored URLs: %+v", stored)
	}
}
