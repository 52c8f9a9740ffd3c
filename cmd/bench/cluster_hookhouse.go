package main

// The hookhouse runs of the cluster benchmark (-cluster): hookhouse nodes as
// child processes (bin/hookhouse), driven over HTTP by -conns closed-loop
// clients posting one ~500-byte record per request, into a PostgreSQL
// warehouse with the loader running; the rows are counted against the 200s.
//
//   - "hookhouse cluster": two `serve --nats` nodes on the 3-server cluster
//     (sync_interval: always), the clients split evenly between them;
//   - "hookhouse single node": one `serve` on its own Pebble log (fsync'd
//     group commits), the same load, for comparison.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/natsproc"
	"github.com/hookhouse/hookhouse/internal/pgtest"
)

// clusterBody is a Vero-like record of about clusterMsgBytes bytes.
func clusterBody(w, k int) []byte {
	head := fmt.Sprintf(`{"type":"sent","sent_at":1767225600,"user":{"id":%d,"email":"user%d@example.com"},"campaign":{"id":4411,"name":"Welcome series"},"message_id":"w%d-%d@veromail.com","pad":"`, w, w, w, k)
	pad := max(clusterMsgBytes-len(head)-2, 0)
	return []byte(head + strings.Repeat("x", pad) + `"}`)
}

// benchWarehouse starts a throwaway PostgreSQL (internal/pgtest; or the
// server HOOKHOUSE_TEST_PG names) for the hookhouse runs. Each run gets a
// database of its own (newDB): two installations must not share one, since
// each keeps its integrations' load positions there.
func benchWarehouse(ctx context.Context) (newDB func(context.Context) (string, error), close func(), err error) {
	pg, err := pgtest.Start(ctx)
	if err != nil {
		return nil, nil, err
	}
	return pg.NewDatabase, func() { pg.Close() }, nil
}

// startClusterNodes starts n `serve --nats` nodes on c, the first alone (it
// mints the admin key and secret.key, which the others get a copy of).
func startClusterNodes(ctx context.Context, c *natsproc.Cluster, o options, bin, dsn, stream string, n int) ([]*child, error) {
	var nodes []*child
	key := ""
	var secret []byte
	for i := range n {
		args := []string{"--nats", c.URLs(), "--node-name", fmt.Sprintf("bench-%d", i+1), "--nats-stream", stream}
		ch, err := startChildKey(ctx, bin, dsn, o.batchWait, append(args, strings.Fields(o.extra)...), key, secret)
		if err != nil {
			for _, s := range nodes {
				s.kill()
			}
			return nil, err
		}
		nodes = append(nodes, ch)
		if i == 0 {
			b, err := os.ReadFile(filepath.Join(ch.dir, "admin.key"))
			if err != nil {
				ch.kill()
				return nil, fmt.Errorf("the first cluster node's admin key: %w", err)
			}
			key = strings.TrimSpace(string(b))
			if secret, err = os.ReadFile(filepath.Join(ch.dir, "secret.key")); err != nil {
				ch.kill()
				return nil, fmt.Errorf("the first cluster node's secret.key: %w", err)
			}
		}
	}
	return nodes, nil
}

// benchHookhouse drives the nodes (worker w posts to node w%len(nodes)) into
// integrations integrations (1, or one per node: node i's clients post to
// integration i, as sticky routing would) and checks that the warehouse ends
// up with one row per 200. The check column also gives the CPU used in the
// measured window, in cores: load generator / hookhouse nodes / the rest
// (NATS servers, PostgreSQL, interrupts).
func benchHookhouse(ctx context.Context, o options, name string, nodes []*child, schema string, integrations int) clusterResult {
	admin := nodes[0].admin
	type target struct {
		id     int64
		schema string
		urls   []string // per node
	}
	var targets []target
	for i := range integrations {
		sch := schema
		if integrations > 1 {
			sch = fmt.Sprintf("%s_%d", schema, i+1)
		}
		integ, err := admin.CreateIntegration(ctx, client.NewIntegration{Name: sch, Type: client.TypeVero, Schema: sch})
		if err != nil {
			return clusterResult{name: name, err: fmt.Errorf("create integration: %w", err)}
		}
		u, err := admin.GenerateURL(ctx, integ.ID)
		if err != nil {
			return clusterResult{name: name, err: fmt.Errorf("generate URL: %w", err)}
		}
		tg := target{id: integ.ID, schema: sch}
		for _, n := range nodes {
			url, err := n.hookURL(u.URL)
			if err != nil {
				return clusterResult{name: name, err: err}
			}
			tg.urls = append(tg.urls, url)
		}
		targets = append(targets, tg)
	}
	acked := make([]atomic.Int64, len(targets))
	// The URLs reach the other nodes within a second (KV watch).
	deadline := time.Now().Add(10 * time.Second)
	for i, tg := range targets {
		for _, url := range tg.urls {
			for {
				if err := postOne(ctx, http.DefaultClient, url, clusterBody(-1, 0)); err == nil {
					acked[i].Add(1)
					break
				} else if time.Now().After(deadline) {
					return clusterResult{name: name, err: fmt.Errorf("the new URL is not accepted: %w", err)}
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	tr := newTransport(o.conns)
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var pids []int
	for _, n := range nodes {
		pids = append(pids, n.pid())
	}
	start := time.Now()
	cpu := make(chan string, 1)
	go func() { cpu <- cpuCores(ctx, start.Add(o.warmup), start.Add(o.warmup+o.duration), pids) }()
	r := closedLoop(ctx, o.conns, o.warmup, o.duration, func(ctx context.Context, w, k int) error {
		node := w % len(nodes)
		t := node % len(targets)
		err := postOne(ctx, hc, targets[t].urls[node], clusterBody(w, k))
		if err == nil {
			acked[t].Add(1)
		}
		return err
	})
	r.name = name
	notes := []string{"CPU " + <-cpu}
	if r.check != "" {
		notes = append(notes, r.check)
	}
	if r.err != nil {
		return r
	}
	var rows, all int64
	var slowest time.Duration
	for i, tg := range targets {
		l, err := waitLoaded(ctx, nodes[0], tg.id, tg.schema, acked[i].Load(), o.drain)
		switch {
		case err != nil:
			r.err = err
		case l.err != nil:
			r.err = l.err
		case l.rows != acked[i].Load() || l.rejected != 0:
			r.err = fmt.Errorf("%s: %d rows (%d rejected) for %d records answered 200", tg.schema, l.rows, l.rejected, acked[i].Load())
		}
		if r.err != nil {
			return r
		}
		rows, all, slowest = rows+l.rows, all+acked[i].Load(), max(slowest, l.caughtUpAfter)
	}
	r.check = strings.Join(append(notes, fmt.Sprintf("rows = 200s: %s = %s, loaded %s after the run", thousands(rows), thousands(all), ms(slowest))), "; ")
	return r
}

// cpuCores is the CPU used between from and until, in cores: this process /
// the processes pids / everything else on the machine.
func cpuCores(ctx context.Context, from, until time.Time, pids []int) string {
	sample := func() (self, procs, busy time.Duration, err error) {
		if self, err = selfCPU(); err != nil {
			return
		}
		for _, pid := range pids {
			c, perr := pidCPU(pid)
			if perr != nil {
				return 0, 0, 0, perr
			}
			procs += c
		}
		busy, _, err = machineCPU()
		return
	}
	if sleepUntil(ctx, from) != nil {
		return "n/a"
	}
	s0, p0, b0, err := sample()
	if err != nil || sleepUntil(ctx, until) != nil {
		return "n/a"
	}
	s1, p1, b1, err := sample()
	if err != nil {
		return "n/a"
	}
	over := until.Sub(from)
	rest := max(0, (b1-b0)-(s1-s0)-(p1-p0))
	return fmt.Sprintf("%s / %s / %s", cores(s1-s0, over), cores(p1-p0, over), cores(rest, over))
}

// postOne POSTs body and wants 200.
func postOne(ctx context.Context, hc *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return nil
}
