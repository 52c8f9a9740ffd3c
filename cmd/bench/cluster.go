package main

// The cluster benchmark (-cluster): three real nats-server processes on
// loopback (internal/natsproc, sync_interval: always) and, on them,
//
//  1. a bare JetStream publisher: -conns goroutines, each publishing 500-byte
//     messages synchronously with a unique Nats-Msg-Id to an R3 file stream,
//     over one connection per server;
//  2. the same without sync_interval: always (a second cluster), for the cost
//     of the fsync;
//  3. the JetStream state's Append (internal/state), one 500-byte record per
//     call, from one node and from two nodes (each on its own server) into the
//     same integration: what a hookhouse node's ingest adds on top of the
//     publisher, before HTTP;
//  4. hookhouse itself (cluster_hookhouse.go): two `serve --nats` nodes on the
//     sync_interval: always cluster, -conns HTTP clients split between them
//     posting one ~500-byte record per request, the loader running into a
//     throwaway PostgreSQL warehouse; and, for
//     comparison, one single-node `serve` (Pebble log) under the same load.
//     The summary gives the cluster's ratio to the bare publisher. Two more
//     runs show where the cluster's time goes: the two nodes each with an
//     integration of its own (sticky routing: no two nodes append to one
//     integration), and one node alone on the cluster.
//
// It prints a Markdown table; a failed check (an append lost from the log) is an
// error.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookhouse/hookhouse/internal/natsproc"
	"github.com/hookhouse/hookhouse/internal/state"
)

const clusterMsgBytes = 500

// clusterResult is one closed-loop run against the cluster.
type clusterResult struct {
	name   string
	ok     int64
	errs   int64
	window time.Duration
	lat    latencies
	err    error
	check  string // a correctness note, empty if none applies
}

func (r clusterResult) rate() float64 { return float64(r.ok) / r.window.Seconds() }

// benchCluster runs the cluster benchmark and prints its table to stdout.
func benchCluster(ctx context.Context, o options, stdout, progress io.Writer) error {
	say := func(format string, a ...any) { fmt.Fprintf(progress, "bench: cluster: "+format+"\n", a...) }
	var results []clusterResult
	bin, err := filepath.Abs(o.bin)
	if err == nil {
		_, err = os.Stat(bin)
	}
	if err != nil {
		return fmt.Errorf("%s: %w (build it with `make build`)", o.bin, err)
	}
	say("starting the PostgreSQL warehouse")
	newDB, closePG, err := benchWarehouse(ctx)
	if err != nil {
		return err
	}
	defer closePG()
	tag := time.Now().UTC().Format("20060102t150405")
	{
		const name = "hookhouse single node (Pebble, fsync'd group commits)"
		say("%s: %d HTTP clients, one %d B record per request", name, o.conns, clusterMsgBytes)
		dsn, err := newDB(ctx)
		var single *child
		if err == nil {
			single, err = startChild(ctx, bin, dsn, o.batchWait, strings.Fields(o.extra))
		}
		if err != nil {
			results = append(results, clusterResult{name: name, err: err})
		} else {
			results = append(results, benchHookhouse(ctx, o, name, []*child{single}, "bench_single_"+tag, 1))
			if _, err := single.stop(time.Minute); err != nil {
				say("single node: %v", err)
			}
		}
	}
	for _, sync := range []bool{true, false} {
		dir, err := os.MkdirTemp("", "hookhouse-bench-nats-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		say("starting 3 nats-server processes (sync_interval: always %v) in %s", sync, dir)
		c, err := natsproc.Start(ctx, natsproc.Options{Dir: dir, NoSync: !sync})
		if err != nil {
			return err
		}
		defer c.Close()
		label := "bare publisher, sync_interval: always"
		if !sync {
			label = "bare publisher, default fsync (2 min)"
		}
		say("%s: %d concurrent synchronous publishes of %d B", label, o.conns, clusterMsgBytes)
		r := benchPublisher(ctx, c, o)
		r.name = label
		results = append(results, r)
		if !sync {
			break
		}
		for _, run := range []struct{ nodes, integrations int }{{1, 1}, {2, 1}, {2, 8}} {
			if o.clusterQuick {
				break
			}
			say("state Append from %d node(s) into %d integration(s), %d concurrent appends of %d B", run.nodes, run.integrations, o.conns, clusterMsgBytes)
			r := benchStateAppend(ctx, c, o, run.nodes, run.integrations)
			results = append(results, r)
		}
		for _, run := range []struct {
			name                string
			nodes, integrations int
		}{
			{"hookhouse cluster: 2 nodes, 1 integration, sync_interval: always", 2, 1},
			{"hookhouse cluster: 2 nodes, 1 integration each (sticky), sync_interval: always", 2, 2},
			{"hookhouse cluster: 1 node, 1 integration, sync_interval: always", 1, 1},
		} {
			say("%s: %d HTTP clients split between the nodes, one %d B record per request", run.name, o.conns, clusterMsgBytes)
			if o.clusterQuick && run.nodes == 1 {
				continue
			}
			dsn, err := newDB(ctx)
			var nodes []*child
			if err == nil {
				nodes, err = startClusterNodes(ctx, c, o, bin, dsn, fmt.Sprintf("benchhh%d_%d", run.nodes, run.integrations), run.nodes)
			}
			if err != nil {
				results = append(results, clusterResult{name: run.name, err: err})
				continue
			}
			results = append(results, benchHookhouse(ctx, o, run.name, nodes, "bench_cluster_"+tag, run.integrations))
			for _, n := range nodes {
				if _, err := n.stop(time.Minute); err != nil {
					say("cluster node: %v", err)
				}
			}
		}
		c.Close()
		if o.clusterQuick {
			break
		}
	}
	printCluster(stdout, o, results)
	for _, r := range results {
		if r.err != nil {
			return fmt.Errorf("%s: %w", r.name, r.err)
		}
	}
	return nil
}

// closedLoop runs workers calls of op in a closed loop for warmup + dur and
// measures the calls that start after the warm-up.
func closedLoop(ctx context.Context, workers int, warmup, dur time.Duration, op func(ctx context.Context, worker, k int) error) clusterResult {
	start := time.Now()
	from, until := start.Add(warmup), start.Add(warmup+dur)
	var (
		mu      sync.Mutex
		lat     []time.Duration
		ok, bad int64
		lastErr error
	)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() { // owned by closedLoop: ends at until
			defer wg.Done()
			var mine []time.Duration
			var myOK, myBad int64
			for k := 0; ctx.Err() == nil; k++ {
				t0 := time.Now()
				if !t0.Before(until) {
					break
				}
				err := op(ctx, w, k)
				took := time.Since(t0)
				if t0.Before(from) {
					continue
				}
				if err != nil {
					myBad++
					mu.Lock()
					lastErr = err
					mu.Unlock()
					continue
				}
				myOK++
				mine = append(mine, took)
			}
			mu.Lock()
			lat = append(lat, mine...)
			ok += myOK
			bad += myBad
			mu.Unlock()
		}()
	}
	wg.Wait()
	r := clusterResult{ok: ok, errs: bad, window: dur, lat: summarize(lat)}
	if ctx.Err() != nil {
		r.err = ctx.Err()
	} else if bad > 0 {
		r.check = fmt.Sprintf("%d errors, last: %v", bad, lastErr)
	}
	return r
}

func benchPublisher(ctx context.Context, c *natsproc.Cluster, o options) clusterResult {
	var jss []jetstream.JetStream
	for i := range c.Len() {
		nc, err := nats.Connect(c.URL(i))
		if err != nil {
			return clusterResult{err: err}
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return clusterResult{err: err}
		}
		jss = append(jss, js)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err := jss[0].CreateStream(cctx, jetstream.StreamConfig{
		Name: "bare", Subjects: []string{"bare.>"}, Replicas: 3, Storage: jetstream.FileStorage,
		Discard: jetstream.DiscardNew, Duplicates: 2 * time.Minute,
	})
	cancel()
	if err != nil {
		return clusterResult{err: err}
	}
	payload := make([]byte, clusterMsgBytes)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	return closedLoop(ctx, o.conns, o.warmup, o.duration, func(ctx context.Context, w, k int) error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		id := strconv.Itoa(w) + "-" + strconv.Itoa(k)
		_, err := jss[w%len(jss)].Publish(ctx, "bare.x", payload, jetstream.WithMsgID(id))
		return err
	})
}

func benchStateAppend(ctx context.Context, c *natsproc.Cluster, o options, nodes, integrations int) clusterResult {
	name := fmt.Sprintf("state Append, %d node(s), %d integration(s)", nodes, integrations)
	stream := fmt.Sprintf("bench%d_%d", nodes, integrations)
	var stores []*state.JetStream
	for i := range nodes {
		nc, err := nats.Connect(c.URL(i), nats.MaxReconnects(-1))
		if err != nil {
			return clusterResult{name: name, err: err}
		}
		defer nc.Close()
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		s, err := state.OpenJetStream(octx, nc, slog.New(slog.DiscardHandler), state.JetStreamOptions{Name: stream})
		cancel()
		if err != nil {
			return clusterResult{name: name, err: err}
		}
		defer s.Close()
		stores = append(stores, s)
	}
	body := make([]byte, clusterMsgBytes)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	type key struct {
		integration int64
		pos         uint64
	}
	var acked sync.Map
	r := closedLoop(ctx, o.conns, o.warmup, o.duration, func(ctx context.Context, w, k int) error {
		integration := int64(1 + w%integrations)
		pos, err := stores[w%len(stores)].Append(ctx, integration, time.Now(), [][]byte{body})
		if err == nil {
			if _, dup := acked.LoadOrStore(key{integration, pos}, true); dup {
				return fmt.Errorf("integration %d: position %d acknowledged twice", integration, pos)
			}
		}
		return err
	})
	r.name = name
	// Every acknowledged append has its own position, and the log holds as
	// many records as were acknowledged (measured or not).
	n := 0
	acked.Range(func(any, any) bool { n++; return true })
	if r.err == nil {
		hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		inLog := 0
		for i := range integrations {
			recs, err := stores[0].Read(hctx, int64(1+i), 0, n+1, 1<<40)
			if err != nil {
				r.err = err
				break
			}
			inLog += len(recs)
		}
		switch {
		case r.err != nil:
		case inLog != n && r.errs == 0:
			r.err = fmt.Errorf("%d appends acknowledged but the log holds %d records", n, inLog)
		case r.check == "":
			r.check = fmt.Sprintf("%d acknowledged, %d in the log", n, inLog)
		}
	}
	if r.errs > 0 && r.err == nil && r.check == "" {
		r.err = errors.New("appends failed")
	}
	return r
}

func printCluster(w io.Writer, o options, results []clusterResult) {
	fmt.Fprintf(w, "\n## Cluster (JetStream)\n\n3 nats-server processes on loopback (%s as pinned in go.mod), R3 file streams; %d concurrent synchronous calls of %d B, %s warm-up + %s measured.\n\n",
		natsproc.Module, o.conns, clusterMsgBytes, o.warmup, o.duration)
	t := table{header: []string{"run", "ok/s", "ack p50", "ack p99", "max", "errors", "check"}}
	for _, r := range results {
		if r.err != nil {
			t.add(r.name, "—", "—", "—", "—", "—", firstLine(r.err))
			continue
		}
		t.add(r.name, fmt.Sprintf("%.0f", r.rate()), ms(r.lat.p50), ms(r.lat.p99), ms(r.lat.max), thousands(r.errs), r.check)
	}
	t.print(w)
	var bare, cluster, single *clusterResult
	for i, r := range results {
		switch {
		case r.err != nil:
		case r.name == "bare publisher, sync_interval: always":
			bare = &results[i]
		case strings.HasPrefix(r.name, "hookhouse cluster: 2 nodes, 1 integration,"):
			cluster = &results[i]
		case strings.HasPrefix(r.name, "hookhouse single node"):
			single = &results[i]
		}
	}
	fmt.Fprintln(w)
	if bare != nil && cluster != nil {
		ratio := cluster.rate() / bare.rate()
		aim := "met"
		if ratio < 0.7 {
			aim = "MISSED"
		}
		fmt.Fprintf(w, "hookhouse cluster ingest / bare publisher (both sync_interval: always): %.2f (aim ≥ 0.70: %s)", ratio, aim)
		if single != nil {
			fmt.Fprintf(w, "; / single node: %.2f", cluster.rate()/single.rate())
		}
		fmt.Fprintln(w, ".")
	}
	fmt.Fprintln(w, "CPU (hookhouse runs) is in cores busy over the measured window: load generator / hookhouse nodes / the rest (NATS servers, PostgreSQL, interrupts).")
	fmt.Fprintln(w, "Everything (3 NATS servers, the hookhouse nodes, PostgreSQL and the load generator) shares this machine's cores.")
}
