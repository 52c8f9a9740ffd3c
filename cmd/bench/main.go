// Command bench measures hookhouse on this machine and prints a Markdown summary:
//
//  1. the floor: a trivial net/http handler in this process, driven by 64 keep-alive
//     connections POSTing Vero samples;
//  2. durable ingest through the real binary (bin/hookhouse as a child process on a
//     temporary data dir), driven the same way, as a share of the floor;
//  3. freshness: a steady 1,000 records/s, each with a unique marker, and the time
//     from each 200 to the row being visible in the warehouse, with an exactly-once
//     count at the end.
//
// It only talks to 127.0.0.1 and stops by itself. `make bench` runs it as
// `go run ./cmd/bench -bin bin/hookhouse`; -warehouse postgres://… repeats 2 and 3
// against PostgreSQL. The exit status is 1 when a correctness check fails (rows ≠
// acknowledged records, a non-zero exit after SIGTERM); missed performance aims are
// reported, not failed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/samples"
)

// options are the flags.
type options struct {
	bin       string
	vero      string
	warehouse string
	conns     int
	warmup    time.Duration
	duration  time.Duration
	rate      int
	freshFor  time.Duration
	poll      time.Duration
	batchWait time.Duration
	drain     time.Duration
	extra     string
}

// floorResults are the two trivial-handler runs.
type floorResults struct {
	inProcess, separate loadResult
	separateErr         error
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/hookhouse", "hookhouse binary to start (build it with `make build`)")
	flag.StringVar(&o.vero, "vero", "", "directory of the Vero samples (default: the repository's testdata/vero, or ../shared/testdata/vero beside the checkout when present)")
	flag.StringVar(&o.warehouse, "warehouse", "", "also run ingest and freshness against this PostgreSQL warehouse (postgres://…); leaves schemas bench_* behind")
	flag.IntVar(&o.conns, "conns", 64, "keep-alive connections (and goroutines) of the closed-loop runs")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up before each closed-loop run, not measured")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured part of each closed-loop run (floor and ingest)")
	flag.IntVar(&o.rate, "fresh-rate", 1000, "records per second of the freshness run (one record per request)")
	flag.DurationVar(&o.freshFor, "fresh-duration", 20*time.Second, "length of the freshness run")
	flag.DurationVar(&o.poll, "poll", 50*time.Millisecond, "how often the freshness run asks the warehouse for new rows")
	flag.DurationVar(&o.batchWait, "batch-wait", time.Second, "--batch-wait given to the server")
	flag.DurationVar(&o.drain, "drain", 60*time.Second, "longest wait for the loader to catch up after a run")
	flag.StringVar(&o.extra, "server-args", "", "more flags for `hookhouse serve`, space-separated, e.g. \"--batch-size 20000\"")
	floorServer := flag.Bool("floor-server", false, "internal: serve the trivial handler as a separate process")
	cluster := flag.Bool("cluster", false, "run only the cluster benchmark (cluster.go): 3 nats-server processes with sync_interval: always, a bare JetStream publisher and the JetStream state's Append")
	flag.Parse()
	if *floorServer {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := serveFloorChild(ctx, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench -floor-server:", err)
			os.Exit(1)
		}
		return
	}
	if flag.NArg() > 0 || o.conns < 1 || o.rate < 1 || o.duration <= 0 || o.freshFor <= 0 || o.poll <= 0 {
		flag.Usage()
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *cluster {
		if err := benchCluster(ctx, o, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// serverRun is everything measured against one hookhouse child.
type serverRun struct {
	warehouse string // DuckDB or PostgreSQL
	startErr  error

	ingest    loadResult
	ingestErr error
	commit    serverMetrics
	// Loading of the ingest run's records, checked once the loader caught up.
	backlogAtEnd, loaded, rejected, rows int64
	caughtUpAfter                        time.Duration
	loadErr                              error

	fresh    freshResult
	freshErr error

	stopTook time.Duration
	stopErr  error
}

func (s serverRun) ingestExactlyOnce() bool {
	return s.loadErr == nil && s.rows == s.ingest.okTotal && s.rejected == 0
}

// run does every measurement, prints the summary and returns an error when a
// correctness check failed.
func run(ctx context.Context, o options, stdout, progress io.Writer) error {
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: %w (build it with `make build`)", o.bin, err)
	}
	dir, bodies, err := loadVero(o.vero)
	if err != nil {
		return err
	}
	say := func(format string, a ...any) { fmt.Fprintf(progress, "bench: "+format+"\n", a...) }
	say("%d Vero samples from %s; %d connections, %s warm-up + %s per closed-loop run", len(bodies), dir, o.conns, o.warmup, o.duration)

	say("floor: trivial net/http handler in this process")
	var floor floorResults
	floorSrv, err := startFloor()
	if err != nil {
		return err
	}
	floor.inProcess, err = drive(ctx, floorSrv.url(), bodies, o.conns, o.warmup, o.duration, 0)
	floorSrv.close()
	if err != nil {
		return err
	}
	say("floor: the same handler as a separate process")
	floor.separate, floor.separateErr = driveFloorProcess(ctx, o, bodies)

	tag := time.Now().UTC().Format("20060102t150405")
	runs := []*serverRun{{warehouse: "DuckDB"}}
	if o.warehouse != "" {
		runs = append(runs, &serverRun{warehouse: "PostgreSQL"})
	}
	for _, r := range runs {
		if ctx.Err() != nil {
			break
		}
		wh := ""
		if r.warehouse == "PostgreSQL" {
			wh = o.warehouse
		}
		benchServer(ctx, o, bin, wh, tag, bodies, r, say)
	}

	printSummary(stdout, o, dir, bodies, floor, runs)
	return verdict(runs)
}

func driveFloorProcess(ctx context.Context, o options, bodies [][]byte) (loadResult, error) {
	fp, err := startFloorProcess()
	if err != nil {
		return loadResult{}, err
	}
	res, err := drive(ctx, fp.url(), bodies, o.conns, o.warmup, o.duration, fp.cmd.Process.Pid)
	if cerr := fp.close(); err == nil && cerr != nil {
		err = fmt.Errorf("floor process: %w", cerr)
	}
	return res, err
}

// benchServer starts one child and runs ingest, loading check, freshness and stop.
func benchServer(ctx context.Context, o options, bin, warehouse, tag string, bodies [][]byte, r *serverRun, say func(string, ...any)) {
	say("%s: starting %s", r.warehouse, bin)
	c, err := startChild(ctx, bin, warehouse, o.batchWait, strings.Fields(o.extra))
	if err != nil {
		r.startErr = err
		return
	}
	defer func() {
		say("%s: SIGTERM", r.warehouse)
		r.stopTook, r.stopErr = c.stop(time.Minute)
	}()

	schema := "bench_ingest_" + tag
	say("%s: ingest, %d connections into %s.data", r.warehouse, o.conns, schema)
	r.ingestErr = ingest(ctx, o, c, schema, bodies, r)
	if r.ingestErr != nil || ctx.Err() != nil {
		return
	}

	schema = "bench_fresh_" + tag
	say("%s: freshness, %d records/s for %s into %s.data", r.warehouse, o.rate, o.freshFor, schema)
	r.fresh, r.freshErr = freshness(ctx, c, schema, bodies, o.rate, o.freshFor, o.poll, o.drain)
}

// ingest drives the webhook endpoint closed-loop, then waits for the loader to catch
// up and counts the rows.
func ingest(ctx context.Context, o options, c *child, schema string, bodies [][]byte, r *serverRun) error {
	integ, err := c.admin.CreateIntegration(ctx, client.NewIntegration{Name: schema, Type: client.TypeVero, Schema: schema})
	if err != nil {
		return fmt.Errorf("create integration: %w", err)
	}
	u, err := c.admin.GenerateURL(ctx, integ.ID)
	if err != nil {
		return fmt.Errorf("generate URL: %w", err)
	}
	url, err := c.hookURL(u.URL)
	if err != nil {
		return err
	}
	before, _ := c.metrics(ctx)
	r.ingest, err = drive(ctx, url, bodies, o.conns, o.warmup, o.duration, c.pid())
	if err != nil {
		return err
	}
	after, _ := c.metrics(ctx)
	r.commit = diffMetrics(before, after, o.warmup+o.duration)

	end := time.Now()
	deadline := end.Add(o.drain)
	for first := true; ; first = false {
		in, err := c.admin.Integration(ctx, integ.ID)
		if err != nil {
			r.loadErr = fmt.Errorf("integration stats: %w", err)
			return nil
		}
		if in.Stats == nil {
			r.loadErr = errors.New("integration stats missing from the answer")
			return nil
		}
		if first {
			r.backlogAtEnd = in.Stats.Backlog
		}
		r.loaded, r.rejected = in.Stats.RecordsLoaded, in.Stats.RecordsRejected
		if r.loaded+r.rejected >= r.ingest.okTotal && in.Stats.Backlog == 0 {
			r.caughtUpAfter = time.Since(end)
			break
		}
		if time.Now().After(deadline) {
			r.loadErr = fmt.Errorf("loader had not caught up %s after the run: %d of %d acknowledged records loaded", o.drain, r.loaded+r.rejected, r.ingest.okTotal)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	q, err := c.admin.Query(ctx, "select count(*) from "+schema+".data")
	if err != nil {
		r.loadErr = fmt.Errorf("count rows: %w", err)
		return nil
	}
	if len(q.Rows) == 1 && len(q.Rows[0]) == 1 {
		r.rows, _ = toInt64(q.Rows[0][0])
	}
	return nil
}

// serverMetrics is what the server's own histograms say about a closed-loop run.
type serverMetrics struct {
	ok                      bool
	fsyncsPerSec            float64
	requestsPerFsync        float64
	meanFsync               time.Duration
	batches                 float64
	meanBatch, meanBatchDur float64 // records, seconds
}

func diffMetrics(before, after map[string]float64, over time.Duration) serverMetrics {
	d := func(name string) float64 { return after[name] - before[name] }
	m := serverMetrics{ok: before != nil && after != nil}
	if n := d("hookhouse_log_fsync_seconds_count"); n > 0 {
		m.fsyncsPerSec = n / over.Seconds()
		m.meanFsync = time.Duration(d("hookhouse_log_fsync_seconds_sum") / n * float64(time.Second))
	}
	if n := d("hookhouse_log_group_requests_count"); n > 0 {
		m.requestsPerFsync = d("hookhouse_log_group_requests_sum") / n
	}
	if n := d("hookhouse_load_batch_records_count"); n > 0 {
		m.batches = n
		m.meanBatch = d("hookhouse_load_batch_records_sum") / n
		m.meanBatchDur = d("hookhouse_load_batch_seconds_sum") / n
	}
	return m
}

// verdict fails the run on broken promises: setup errors, rows ≠ acknowledged
// records, an unclean shutdown.
func verdict(runs []*serverRun) error {
	var errs []error
	for _, r := range runs {
		wrap := func(what string, err error) {
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %s: %w", r.warehouse, what, err))
			}
		}
		wrap("start", r.startErr)
		if r.startErr != nil {
			continue
		}
		wrap("ingest", r.ingestErr)
		wrap("loading", r.loadErr)
		if r.ingestErr == nil && r.loadErr == nil && !r.ingestExactlyOnce() {
			errs = append(errs, fmt.Errorf("%s: ingest: %d rows (and %d rejected) for %d acknowledged records", r.warehouse, r.rows, r.rejected, r.ingest.okTotal))
		}
		if r.ingestErr == nil {
			wrap("freshness", r.freshErr)
			if r.freshErr == nil && !r.fresh.exactlyOnce() {
				errs = append(errs, fmt.Errorf("%s: freshness: %d rows, %d distinct markers for %d acknowledged records (%d never seen, %d seen twice)",
					r.warehouse, r.fresh.rows, r.fresh.distinct, r.fresh.acked, r.fresh.unseen, r.fresh.dups))
			}
		}
		wrap("shutdown", r.stopErr)
	}
	return errors.Join(errs...)
}

// loadVero reads the Vero samples in name order; each must be one JSON object.
func loadVero(dir string) (string, [][]byte, error) {
	if dir == "" {
		dir = samples.VeroDir()
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		return dir, nil, fmt.Errorf("no Vero samples (*.json) in %s: pass -vero DIR", dir)
	}
	sort.Strings(files)
	var bodies [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return dir, nil, err
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(b, &obj); err != nil {
			return dir, nil, fmt.Errorf("%s: want one JSON object: %w", f, err)
		}
		bodies = append(bodies, b)
	}
	return dir, bodies, nil
}

func printSummary(w io.Writer, o options, dir string, bodies [][]byte, floors floorResults, runs []*serverRun) {
	floor := floors.inProcess
	minB, maxB, sum := len(bodies[0]), 0, 0
	for _, b := range bodies {
		minB, maxB, sum = min(minB, len(b)), max(maxB, len(b)), sum+len(b)
	}
	fmt.Fprintf(w, "\n## hookhouse bench: %s, %d CPUs, GOMAXPROCS %d, %s %s/%s\n\n",
		version(o.bin), runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if o.extra != "" {
		fmt.Fprintf(w, "Server flags added with -server-args: %s\n\n", o.extra)
	}
	fmt.Fprintf(w, "The load generator runs on the same %d cores as the server it measures, so every figure is\n", runtime.NumCPU())
	fmt.Fprintf(w, "client + server sharing this machine. Closed loop: %d keep-alive connections, %s warm-up, %s measured;\n", o.conns, o.warmup, o.duration)
	fmt.Fprintf(w, "bodies: the %d Vero samples of %s in rotation, %d–%d B (mean %d B), one record per request.\n\n",
		len(bodies), dir, minB, maxB, sum/len(bodies))

	fmt.Fprintln(w, "### Throughput: POST → 200")
	fmt.Fprintln(w)
	t := table{header: []string{"target", "req/s = records/s", "of floor", "p50", "p99", "max", "non-200", "CPU bench / server / irq / other"}}
	t.add("trivial net/http handler, in the bench process (floor)", thousands(int64(floor.rate())), "100%", ms(floor.lat.p50), ms(floor.lat.p99), ms(floor.lat.max),
		floor.errorSummary(), cpuCells(floor.cpu, o.duration))
	if sep := floors.separate; floors.separateErr != nil {
		t.add("trivial net/http handler, separate process", "failed: "+firstLine(floors.separateErr), "", "", "", "", "", "")
	} else {
		t.add("trivial net/http handler, separate process", thousands(int64(sep.rate())), fmt.Sprintf("%.0f%%", sep.rate()/floor.rate()*100),
			ms(sep.lat.p50), ms(sep.lat.p99), ms(sep.lat.max), sep.errorSummary(), cpuCells(sep.cpu, o.duration))
	}
	for _, r := range runs {
		name := "hookhouse ingest, fsync'd acks (" + r.warehouse + ")"
		switch {
		case r.startErr != nil:
			t.add(name, "did not start", "", "", "", "", "", "")
		case r.ingestErr != nil:
			t.add(name, "failed: "+r.ingestErr.Error(), "", "", "", "", "", "")
		default:
			share := r.ingest.rate() / floor.rate() * 100
			aim := "aim ≥ 70%: met"
			if share < 70 {
				aim = "aim ≥ 70%: MISSED"
			}
			if floors.separateErr == nil {
				aim += fmt.Sprintf("; %.0f%% of the separate-process one", r.ingest.rate()/floors.separate.rate()*100)
			}
			t.add(name, thousands(int64(r.ingest.rate())), fmt.Sprintf("%.0f%% (%s)", share, aim),
				ms(r.ingest.lat.p50), ms(r.ingest.lat.p99), ms(r.ingest.lat.max), r.ingest.errorSummary(),
				cpuCells(r.ingest.cpu, o.duration))
		}
	}
	t.print(w)
	fmt.Fprintf(w, "\nCPU is in cores busy over the measured window (%d.0 = the whole machine). \"bench\" is this process:\n", runtime.NumCPU())
	fmt.Fprintln(w, "the load generator, plus the trivial handler on the in-process floor row; \"irq\" is interrupt and softirq time (mostly")
	fmt.Fprintln(w, "loopback TCP, charged to no process); \"other\" is every other process and kernel thread (disk flushes too),")
	fmt.Fprintln(w, "the rest of /proc/stat's busy time: coarse, it flags other work on the box but reads 0 when that is small.")
	noisy := max(floor.cpu.others, floors.separate.cpu.others)
	for _, r := range runs {
		if r.startErr == nil && r.ingestErr == nil {
			noisy = max(noisy, r.ingest.cpu.others)
		}
	}
	if noisy.Seconds()/o.duration.Seconds() > 0.25 {
		fmt.Fprintf(w, "WARNING: other processes used up to %s cores during a measured window: the figures are disturbed;\nrerun on a quiet machine.\n", cores(noisy, o.duration))
	}

	fmt.Fprintln(w, "\n### Inside the server during the ingest run (its /metrics, warm-up included)")
	fmt.Fprintln(w)
	t = table{header: []string{"warehouse", "server CPU per request", "group commits/s", "requests per fsync", "mean commit+fsync", "load batches", "mean batch", "mean batch commit", "backlog at end", "caught up after", "rows = acked"}}
	for _, r := range runs {
		if r.startErr != nil || r.ingestErr != nil {
			continue
		}
		m := r.commit
		check := fmt.Sprintf("%s = %s: %s", thousands(r.rows), thousands(r.ingest.okTotal), yes(r.ingestExactlyOnce()))
		caught := ms(r.caughtUpAfter)
		if r.loadErr != nil {
			caught, check = "—", "FAILED: "+r.loadErr.Error()
		}
		if r.rejected > 0 {
			check += fmt.Sprintf(" (%d rejected)", r.rejected)
		}
		perReq := "n/a"
		if r.ingest.cpu.ok && r.ingest.requests > 0 {
			perReq = fmt.Sprintf("%.0f µs", float64(r.ingest.cpu.server.Microseconds())/float64(r.ingest.requests))
		}
		t.add(r.warehouse, perReq, fmt.Sprintf("%.0f", m.fsyncsPerSec), fmt.Sprintf("%.1f", m.requestsPerFsync), ms(m.meanFsync),
			fmt.Sprintf("%.0f", m.batches), fmt.Sprintf("%.0f records", m.meanBatch), ms(time.Duration(m.meanBatchDur*float64(time.Second))),
			thousands(r.backlogAtEnd), caught, check)
	}
	t.print(w)

	fmt.Fprintf(w, "\n### Freshness: 200 → row visible in the warehouse (%d records/s for %s, --batch-wait %s, poll every %s)\n\n",
		o.rate, o.freshFor, o.batchWait, o.poll)
	t = table{header: []string{"warehouse", "acked / sent", "rate", "ack p50", "ack p99", "visible p50", "visible p99", "visible max", "aim p99 ≤ 2 s", "rows = acked (distinct markers)"}}
	for _, r := range runs {
		if r.startErr != nil || r.ingestErr != nil {
			continue
		}
		f := r.fresh
		if r.freshErr != nil {
			t.add(r.warehouse, "failed: "+r.freshErr.Error(), "", "", "", "", "", "", "", "")
			continue
		}
		aim := yes(f.visible.p99 <= 2*time.Second && f.unseen == 0)
		if aim == "no" {
			aim = "MISSED"
		}
		check := fmt.Sprintf("%s = %s (%s): %s", thousands(f.rows), thousands(f.acked), thousands(f.distinct), yes(f.exactlyOnce()))
		if f.unseen > 0 || f.dups > 0 || f.unacked > 0 {
			check += fmt.Sprintf("; %d never seen, %d seen twice, %d seen without a 200", f.unseen, f.dups, f.unacked)
		}
		t.add(r.warehouse, fmt.Sprintf("%s / %s", thousands(f.acked), thousands(f.sent)),
			fmt.Sprintf("%.0f/s", float64(f.sent)/f.sendTook.Seconds()),
			ms(f.ack.p50), ms(f.ack.p99), ms(f.visible.p50), ms(f.visible.p99), ms(f.visible.max), aim, check)
	}
	t.print(w)
	fmt.Fprintln(w)
	for _, r := range runs {
		if r.startErr == nil && r.ingestErr == nil && r.freshErr == nil {
			f := r.fresh
			fmt.Fprintf(w, "%s: %d polls, query round trip p50 %s / max %s", r.warehouse, f.polls, ms(f.pollLat.p50), ms(f.pollLat.max))
			if f.errors > 0 {
				fmt.Fprintf(w, "; %d non-200 answers %v", f.errors, f.errKinds)
			}
			if f.pollErrs > 0 {
				fmt.Fprintf(w, "; %d failed polls (last: %s)", f.pollErrs, f.lastPollErr)
			}
			fmt.Fprintln(w, ".")
		}
	}
	fmt.Fprintln(w, "Visible is when the poll that first returned the row answered: an upper bound, at most one poll")
	fmt.Fprintln(w, "interval plus one query round trip late.")

	fmt.Fprintln(w, "\n### Shutdown")
	fmt.Fprintln(w)
	t = table{header: []string{"warehouse", "SIGTERM → exit", "exit status 0"}}
	for _, r := range runs {
		switch {
		case r.startErr != nil:
			t.add(r.warehouse, "did not start: "+firstLine(r.startErr), "—")
		case r.stopErr != nil:
			t.add(r.warehouse, ms(r.stopTook), "NO: "+firstLine(r.stopErr))
		default:
			t.add(r.warehouse, ms(r.stopTook), "yes")
		}
	}
	t.print(w)
	fmt.Fprintln(w)
}

// version asks the binary for its version, for the summary's heading.
func version(bin string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		return bin
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return bin + " (" + line + ")"
}

func cores(cpu, over time.Duration) string {
	return fmt.Sprintf("%.2f", cpu.Seconds()/over.Seconds())
}

func cpuCells(u cpuUse, over time.Duration) string {
	if !u.ok {
		return "n/a"
	}
	server := "—"
	if u.server > 0 {
		server = cores(u.server, over)
	}
	return cores(u.self, over) + " / " + server + " / " + cores(u.irq, over) + " / " + cores(u.others, over)
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
