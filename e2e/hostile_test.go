package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/config"
	"github.com/hookhouse/hookhouse/internal/loader"
)

// procMem reads VmHWM (peak) and VmRSS of a process, in bytes.
func procMem(t testing.TB, pid int) (hwm, rss int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read memory of the server: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmHWM":
			hwm = n << 10
		case "VmRSS":
			rss = n << 10
		}
	}
	if hwm == 0 || rss == 0 {
		t.Fatalf("no VmHWM/VmRSS in /proc/%d/status", pid)
	}
	return hwm, rss
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

// hostile is the server under attack and the well-behaved client next to it.
type hostile struct {
	srv  *child
	addr string
	c    *client.Client

	goodID   int64
	goodHook string
	goodSent atomic.Int64 // records answered 200

	// maxText is the embedded DuckDB's text cap (config.Budget.DuckDBMaxText);
	// 0 with PostgreSQL.
	maxText int64
}

// hook creates an integration (schema from its name) and returns its id and
// webhook path.
func (h *hostile) hook(t *testing.T, name string) (int64, string) {
	t.Helper()
	ctx := context.Background()
	in, err := h.c.CreateIntegration(ctx, client.NewIntegration{Name: name, Type: "webhooks"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := h.c.GenerateURL(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	return in.ID, u.URL[strings.Index(u.URL, "/v1/"):]
}

// good is the well-behaved client: its small POSTs must get 200 whatever else
// is going on.
func (h *hostile) good(t *testing.T, what string) {
	t.Helper()
	for i := 0; i < 3; i++ {
		n := h.goodSent.Load()
		body := fmt.Sprintf(`{"seq":%d,"after":%q}`, n, what)
		status, resp := post(t, h.srv.URL+h.goodHook, "application/json", []byte(body))
		if status != 200 {
			t.Fatalf("%s: the well-behaved client got %d %s", what, status, resp)
		}
		h.goodSent.Add(1)
	}
}

// mem logs the server's memory after a case.
func (h *hostile) mem(t *testing.T, what string) int64 {
	t.Helper()
	if h.srv.Exited() {
		t.Fatalf("the server exited during %s; stderr:\n%s", what, tail(h.srv.Stderr.String(), 4000))
	}
	hwm, rss := procMem(t, h.srv.cmd.Process.Pid)
	t.Logf("memory after %s: VmRSS %s, VmHWM (peak so far) %s", what, mib(rss), mib(hwm))
	return hwm
}

// loadedWithin is waitLoaded with a longer wait, for large loads on a busy machine.
func loadedWithin(t testing.TB, c *client.Client, id, n int64, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("%d records loaded", n), func() (bool, string) {
		in, err := c.Integration(context.Background(), id)
		if err != nil {
			return false, err.Error()
		}
		s := in.Stats
		return s.RecordsLoaded+s.RecordsRejected == n && s.Backlog == 0, fmt.Sprintf("%+v", *s)
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// rawAnswer is what rawPost read back.
type rawAnswer struct {
	status int
	header http.Header
	body   string
}

// rawPost sends one request on its own connection and reads the answer while
// the body is still being written, so an early answer (413, 503) that comes
// before the server has read the whole body is seen even when the server then
// closes the connection under the writer.
func rawPost(addr, path string, hdr map[string]string, body io.Reader, length int64) (rawAnswer, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return rawAnswer{}, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Minute))
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		w := bufio.NewWriterSize(conn, 64<<10)
		fmt.Fprintf(w, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: close\r\n", path, addr, length)
		for k, v := range hdr {
			fmt.Fprintf(w, "%s: %s\r\n", k, v)
		}
		w.WriteString("\r\n")
		if _, err := io.Copy(w, body); err == nil {
			w.Flush()
		}
	}()
	defer func() { conn.Close(); <-wrote }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return rawAnswer{}, err
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return rawAnswer{resp.StatusCode, resp.Header, string(b)}, nil
}

// TestHostileRequests runs the hostile cases of issue 6 one after another
// against the built binary, with short read timeouts (2 s for headers, 5 s for
// the whole request), on each warehouse. After each case a well-behaved client
// still gets its 200s; at the end every one of its records is loaded exactly
// once and the server's peak RSS stayed within its --memory-limit + 10% (issue
// 14), the default 1 GiB on both. With the embedded DuckDB the big bodies' 1 MiB
// strings and the million-key object's 16 MB _sdc_extra are over its text cap
// (config.Budget.DuckDBMaxText, 64 KiB at 1 GiB): those records are rejected
// into _sdc_rejected with the reason, every one of them.
//
// Memory. The limit is split by config.Budget (logged at start): with the
// embedded DuckDB a share for its buffer pool and a reserve for what it
// allocates outside it, the loader's batches capped at 32 MiB of bodies, a few
// bodies over 1 MiB buffered at once (the others wait for a slot, holding at most
// 1 MiB each), and the rest for the Go heap's soft limit. The figures measured
// are in docs/performance.md ("Memory budget").
func TestHostileRequests(t *testing.T) {
	warehouses(t, func(t *testing.T, mod func(*config.Config)) {
		cfg := config.Default()
		if mod != nil {
			mod(&cfg)
		}
		extra := []string{"--read-header-timeout", "2s", "--read-timeout", "5s"}
		if cfg.Warehouse != "" {
			extra = append(extra, "--warehouse", cfg.Warehouse)
		}
		hostileCases(t, cfg, extra)
	})
}

func hostileCases(t *testing.T, cfg config.Config, extra []string) {
	embedded, limit := cfg.Warehouse == "", cfg.MemoryLimit
	dir := t.TempDir()
	addr := freePort(t)
	srv := startChild(t, dir, addr, extra...)
	h := &hostile{srv: srv, addr: addr, c: client.New(srv.URL, adminKey(t, dir)), maxText: cfg.Budget().DuckDBMaxText}
	ctx := context.Background()
	h.goodID, h.goodHook = h.hook(t, "Good")
	h.good(t, "start")
	base := h.mem(t, "start")
	t.Logf("idle server: VmHWM %s", mib(base))

	run := func(name string, fn func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			fn(t)
			h.good(t, name)
			h.mem(t, name)
		})
	}

	run("slow-loris headers", func(t *testing.T) { h.slowHeaders(t, 200) })
	run("slow bodies", func(t *testing.T) { h.slowBodies(t) })
	run("64 concurrent 19 MiB bodies", func(t *testing.T) { h.bigBodies(t, 64) })
	run("gzip bomb", func(t *testing.T) { h.gzipBomb(t) })
	run("10,000-deep nesting", func(t *testing.T) { h.deepNesting(t) })
	run("1-million-key object", func(t *testing.T) { h.millionKeys(t) })
	run("duplicate keys", func(t *testing.T) { h.duplicateKeys(t) })
	run("NUL bytes and lone surrogates", func(t *testing.T) { h.nulAndSurrogates(t) })
	run("SQL-looking keys", func(t *testing.T) { h.sqlKeys(t) })

	// Every 200 of the well-behaved client is loaded exactly once.
	n := h.goodSent.Load()
	waitFor(t, 5*time.Minute, "the good client's records loaded", func() (bool, string) {
		r, err := h.c.Query(ctx, "select count(*), count(distinct seq) from good.data")
		if err != nil {
			return false, err.Error()
		}
		got := fmt.Sprintf("%v %v", r.Rows[0]...)
		return got == fmt.Sprintf("%d %d", n, n), got
	})
	what := "all hostile cases, PostgreSQL"
	if embedded {
		what = "all hostile cases, DuckDB"
	}
	t.Logf("Go runtime memory (go_memstats_sys_bytes) %s", mib(h.goMemory(t)))
	checkPeak(t, h, what, limit)
	if strings.Contains(srv.Stderr.String(), "panic") {
		t.Errorf("the server logged a panic:\n%s", tail(srv.Stderr.String(), 4000))
	}
	srv.Term(t)
}

// goMemory is go_memstats_sys_bytes from the server's /metrics: all memory the
// Go runtime has obtained from the OS. It does not shrink, so at the end of the
// test it is the peak of the Go side.
func (h *hostile) goMemory(t *testing.T) int64 {
	t.Helper()
	resp, err := http.Get(h.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_sys_bytes "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return int64(f)
		}
	}
	t.Fatal("/metrics has no go_memstats_sys_bytes")
	return 0
}

// trickler is a connection that sends what it is given one byte at a time and
// notes when the server closes it.
type trickler struct {
	conn   net.Conn
	closed chan struct{} // closed when a read from the server ends
	got    bytes.Buffer  // what the server sent before closing
}

func dialTrickler(t *testing.T, addr, head string) *trickler {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tr := &trickler{conn: conn, closed: make(chan struct{})}
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(tr.closed)
		io.Copy(&tr.got, conn)
	}()
	return tr
}

func (tr *trickler) isClosed() bool {
	select {
	case <-tr.closed:
		return true
	default:
		return false
	}
}

// trickle sends one byte of more (cycling) every 250 ms until the server closes
// the connection or stop is closed.
func trickle(trs []*trickler, more string, stop <-chan struct{}, wg *sync.WaitGroup) {
	for _, tr := range trs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(250 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tr.closed:
					return
				case <-tick.C:
				}
				if _, err := tr.conn.Write([]byte{more[i%len(more)]}); err != nil {
					return
				}
			}
		}()
	}
}

// closeAll waits until the server has closed every connection, then releases them.
func closeAll(t *testing.T, what string, trs []*trickler, stop chan struct{}, wg *sync.WaitGroup) {
	t.Helper()
	defer func() {
		close(stop)
		for _, tr := range trs {
			tr.conn.Close()
		}
		wg.Wait()
	}()
	waitFor(t, 90*time.Second, what+" closed by the server", func() (bool, string) {
		open := 0
		for _, tr := range trs {
			if !tr.isClosed() {
				open++
			}
		}
		return open == 0, fmt.Sprintf("%d of %d still open", open, len(trs))
	})
}

func openCount(trs []*trickler) int {
	n := 0
	for _, tr := range trs {
		if !tr.isClosed() {
			n++
		}
	}
	return n
}

// slowHeaders opens n connections that send their headers one byte at a time:
// the server closes them after --read-header-timeout and serves others meanwhile.
func (h *hostile) slowHeaders(t *testing.T, n int) {
	id, path := h.hook(t, "Loris")
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nX-Slow: ", path, h.addr)
	trs := make([]*trickler, n)
	for i := range trs {
		trs[i] = dialTrickler(t, h.addr, head)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	trickle(trs, "abcdefgh", stop, &wg)
	h.good(t, "slow-loris connections open")
	t.Logf("the good client was served while %d of %d slow-loris connections were open", openCount(trs), n)
	closeAll(t, "slow-loris connections", trs, stop, &wg)
	for _, tr := range trs {
		if s := tr.got.String(); s != "" && !strings.HasPrefix(s, "HTTP/1.1 4") {
			t.Fatalf("a slow-loris connection got %q", tail(s, 200))
		}
	}
	if got, _ := h.c.Integration(context.Background(), id); got.Stats.RecordsReceived != 0 {
		t.Fatalf("slow-loris requests stored %d records", got.Stats.RecordsReceived)
	}
}

// slowBodies sends complete headers and then bodies one byte at a time: 50 small
// bodies, and 12 that send 1.5 MiB quickly (taking the large-body slots, 8 of
// them) and then trickle. The server cuts them off after --read-timeout, stores
// nothing of them, and frees the slots.
func (h *hostile) slowBodies(t *testing.T) {
	id, path := h.hook(t, "Slow Bodies")
	head := func(length int) string {
		return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, h.addr, length)
	}
	var trs []*trickler
	for i := 0; i < 50; i++ {
		trs = append(trs, dialTrickler(t, h.addr, head(100_000)+`[{"a":"`))
	}
	big := `[{"a":"` + strings.Repeat("x", 3<<19)
	for i := 0; i < 12; i++ {
		trs = append(trs, dialTrickler(t, h.addr, head(4<<20)+big))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	trickle(trs, "xyz", stop, &wg)
	h.good(t, "slow bodies open")
	t.Logf("the good client was served while %d of %d slow-body connections were open", openCount(trs), len(trs))
	closeAll(t, "slow-body connections", trs, stop, &wg)
	statuses := map[string]int{}
	for _, tr := range trs {
		s, _, _ := strings.Cut(tr.got.String(), "\r\n")
		statuses[s]++
		if s != "" && !strings.HasPrefix(s, "HTTP/1.1 4") {
			t.Fatalf("a slow body got %q", s)
		}
	}
	t.Logf("slow bodies were answered %v", statuses)
	if got, _ := h.c.Integration(context.Background(), id); got.Stats.RecordsReceived != 0 {
		t.Fatalf("slow bodies stored %d records", got.Stats.RecordsReceived)
	}
	// The large-body slots were freed: a large body from a good client is
	// taken. 2 MiB in 128 records of 16 KiB, which load on both warehouses (the
	// embedded DuckDB rejects text values over a 4,096th of its pool).
	var b strings.Builder
	b.WriteByte('[')
	const records = 128
	for k := int64(0); k < records; k++ {
		if k > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"seq":%d,"after":"slow bodies","pad":"%s"}`, h.goodSent.Load()+k, strings.Repeat("y", 16<<10))
	}
	b.WriteByte(']')
	body := b.String()
	a, err := rawPost(h.addr, h.goodHook, map[string]string{"Content-Type": "application/json"}, strings.NewReader(body), int64(len(body)))
	if err != nil || a.status != 200 {
		t.Fatalf("a 2 MiB body after the slow bodies: %d %s %v", a.status, a.body, err)
	}
	h.goodSent.Add(records)
}

// bigBody streams body number n: an array of 19 records with a 1 MiB string each.
const bigRecords = 19

var bigPad = bytes.Repeat([]byte("0123456789abcdef"), (1<<20-64)/16)

func bigBody(n int) (io.Reader, int64) {
	parts := []io.Reader{strings.NewReader("[")}
	size := int64(1)
	for i := 0; i < bigRecords; i++ {
		head := fmt.Sprintf(`{"body":%d,"i":%d,"pad":"`, n, i)
		tailS := `"}`
		if i < bigRecords-1 {
			tailS += ","
		}
		parts = append(parts, strings.NewReader(head), bytes.NewReader(bigPad), strings.NewReader(tailS))
		size += int64(len(head) + len(bigPad) + len(tailS))
	}
	parts = append(parts, strings.NewReader("]"))
	return io.MultiReader(parts...), size + 1
}

// bigBodies sends n bodies of 19 MiB at once. Each must get 200, or 503 with
// Retry-After and then 200 on a retry; in the end every record is loaded once.
func (h *hostile) bigBodies(t *testing.T, n int) {
	id, path := h.hook(t, "Big")
	var wg sync.WaitGroup
	var busy, other atomic.Int64
	errs := make(chan error, n)
	for b := 0; b < n; b++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for attempt := 1; ; attempt++ {
				body, size := bigBody(b)
				a, err := rawPost(h.addr, path, map[string]string{"Content-Type": "application/json"}, body, size)
				switch {
				case err != nil:
					errs <- fmt.Errorf("body %d: no answer: %v", b, err)
					return
				case a.status == 200:
					return
				case a.status == 503 && a.header.Get("Retry-After") != "" && attempt < 20:
					busy.Add(1)
					s, _ := strconv.Atoi(a.header.Get("Retry-After"))
					time.Sleep(time.Duration(max(s, 1)) * time.Second)
				default:
					other.Add(1)
					errs <- fmt.Errorf("body %d attempt %d: %d %s", b, attempt, a.status, strings.TrimSpace(a.body))
					return
				}
			}
		}()
	}
	// The good client is served while the big bodies are in flight.
	h.good(t, "big bodies in flight")
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d big bodies: %d answers 503 + Retry-After (retried), %d other failures", n, busy.Load(), other.Load())
	hwm := h.mem(t, "big bodies accepted")
	if t.Failed() {
		return
	}
	want := int64(n * bigRecords)
	loadedWithin(t, h.c, id, want, 10*time.Minute)
	h.checkBig(t, id, "big", n)
	t.Logf("big bodies: peak RSS %s while accepting, all %d records loaded once", mib(hwm), want)
}

// checkBig checks that the n big bodies sent to integration id (schema) are
// loaded once each: into data, or, over the embedded DuckDB's text cap, into
// _sdc_rejected with the reason and the record cut to half the cap.
func (h *hostile) checkBig(t *testing.T, id int64, schema string, n int) {
	t.Helper()
	ctx := context.Background()
	want := int64(n * bigRecords)
	in, err := h.c.Integration(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if h.maxText == 0 {
		r, err := h.c.Query(ctx, `select count(*), count(distinct body * 100 + i), count(distinct body),
			min(length(pad)), max(length(pad)) from `+schema+`.data`)
		if err != nil {
			t.Fatal(err)
		}
		got := fmt.Sprintf("%v %v %v %v %v", r.Rows[0]...)
		if exp := fmt.Sprintf("%d %d %d %d %d", want, want, n, len(bigPad), len(bigPad)); got != exp || in.Stats.RecordsLoaded != want {
			t.Fatalf("%s.data: count, distinct records, bodies, pad lengths = %s, want %s (stats %+v)", schema, got, exp, *in.Stats)
		}
		return
	}
	// The record text starts {"body":B,"i":I,"pad":"0123…: its first 30
	// characters tell the records apart.
	r, err := h.c.Query(ctx, `select count(*), count(distinct substr(record, 1, 30)), max(length(record)),
		count(*) filter (where table_name = 'data' and strpos(reason, 'the value of column pad is `+strconv.Itoa(len(bigPad))+
		` bytes; the embedded DuckDB warehouse takes text values of up to `+strconv.FormatInt(h.maxText, 10)+` bytes') > 0)
		from `+schema+`._sdc_rejected`)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%v %v %v %v", r.Rows[0]...)
	if exp := fmt.Sprintf("%d %d %d %d", want, want, h.maxText/2, want); got != exp || in.Stats.RecordsRejected != want || in.Stats.RecordsLoaded != 0 {
		t.Fatalf("%s._sdc_rejected: count, distinct records, longest record, with the reason = %s, want %s (stats %+v)", schema, got, exp, *in.Stats)
	}
}

// gzipBomb: compressed bodies that inflate past --max-body get 413 without the
// server inflating them whole. Deflate expands at most about 1,032:1, so with the
// 20 MiB limit the smallest body that passes it is about 20 KB; the second bomb is
// 1 MB that would inflate to 1 GiB.
func (h *hostile) gzipBomb(t *testing.T) {
	id, path := h.hook(t, "Bomb")
	member := func(n int) []byte {
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
		zw.Write(make([]byte, n))
		zw.Close()
		return b.Bytes()
	}
	var head bytes.Buffer
	zw := gzip.NewWriter(&head)
	zw.Write([]byte(`{"a":"`))
	zw.Close()
	mem := member(1 << 20)
	t.Logf("1 MiB of zeros gzips to %d bytes", len(mem))
	for _, inflated := range []int{21, 1024} { // MiB
		// Concatenated gzip members are one stream to a gzip reader.
		body := bytes.Clone(head.Bytes())
		for i := 0; i < inflated; i++ {
			body = append(body, mem...)
		}
		a, err := rawPost(h.addr, path, map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"}, bytes.NewReader(body), int64(len(body)))
		if err != nil {
			t.Fatalf("%d KB bomb: %v", len(body)>>10, err)
		}
		if a.status != 413 || !strings.Contains(a.body, "after gzip") {
			t.Fatalf("%d KB bomb inflating to %d MiB = %d %s, want 413", len(body)>>10, inflated, a.status, a.body)
		}
		t.Logf("%d KB bomb inflating to %d MiB: 413", len(body)>>10, inflated)
	}
	if got, _ := h.c.Integration(context.Background(), id); got.Stats.RecordsReceived != 0 {
		t.Fatalf("gzip bombs stored %d records", got.Stats.RecordsReceived)
	}
}

func (h *hostile) deepNesting(t *testing.T) {
	id, path := h.hook(t, "Deep")
	const depth = 10_000
	bodies := map[string]string{
		"objects":          strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth),
		"arrays":           `{"a":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + "}",
		"unclosed":         strings.Repeat(`[{"a":`, depth),
		"in array element": `[{"ok":1},` + strings.Repeat(`{"a":[`, depth/2) + strings.Repeat("]}", depth/2) + "]",
	}
	for name, body := range bodies {
		status, resp := post(t, h.srv.URL+path, "application/json", []byte(body))
		if status != 400 || !strings.Contains(resp, "deeper than 64") {
			t.Fatalf("%s nested %d deep = %d %s, want 400 deeper than 64", name, depth, status, resp)
		}
	}
	if got, _ := h.c.Integration(context.Background(), id); got.Stats.RecordsReceived != 0 {
		t.Fatalf("deep bodies stored %d records", got.Stats.RecordsReceived)
	}
}

// millionKeys: one object of 1,000,000 keys (k0000000: 0, …) is accepted and
// loads as one row: at most 1000 columns, the rest in _sdc_extra, every key back.
func (h *hostile) millionKeys(t *testing.T) {
	id, path := h.hook(t, "Million")
	const keys = 1_000_000
	var b bytes.Buffer
	b.WriteByte('{')
	for i := 0; i < keys; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%07d":%d`, i, i)
	}
	b.WriteByte('}')
	t.Logf("1-million-key object: %.1f MB", float64(b.Len())/1e6)
	status, resp := post(t, h.srv.URL+path, "application/json", b.Bytes())
	if status != 200 {
		t.Fatalf("POST = %d %s", status, resp)
	}
	loadedWithin(t, h.c, id, 1, 5*time.Minute)
	got, _ := h.c.Integration(context.Background(), id)
	if h.maxText > 0 {
		// The embedded DuckDB: the 16 MB of _sdc_extra are over its text cap.
		r, err := h.c.Query(context.Background(), "select reason, length(record) from million._sdc_rejected")
		if err != nil {
			t.Fatal(err)
		}
		if got.Stats.RecordsRejected != 1 || len(r.Rows) != 1 || !strings.Contains(fmt.Sprint(r.Rows[0][0]), "the value of column _sdc_extra is") ||
			fmt.Sprint(r.Rows[0][1]) != strconv.FormatInt(h.maxText/2, 10) {
			t.Fatalf("the record was not rejected for its _sdc_extra: %+v %v", *got.Stats, r.Rows)
		}
		t.Logf("1-million-key object rejected: %.300s", r.Rows[0][0])
		return
	}
	if got.Stats.RecordsLoaded != 1 {
		r, _ := h.c.Query(context.Background(), "select reason from million._sdc_rejected")
		t.Fatalf("the record was not loaded: %+v %v", *got.Stats, r)
	}
	r, err := h.c.Query(context.Background(), "select * from million.data")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rows) != 1 || len(r.Columns) > 1000 {
		t.Fatalf("million.data: %d rows, %d columns; want 1 row, at most 1000 columns", len(r.Rows), len(r.Columns))
	}
	fromCols, fromExtra, fields := reconstruct(t, r.Columns, r.Rows[0])
	if len(fields) != keys {
		t.Fatalf("%d keys back (%d columns + %d in _sdc_extra), sent %d", len(fields), fromCols, fromExtra, keys)
	}
	for i := 0; i < keys; i++ {
		if v := fields[fmt.Sprintf("k%07d", i)]; v != strconv.Itoa(i) {
			t.Fatalf("k%07d = %q, sent %d", i, v, i)
		}
	}
	t.Logf("1,000,000 keys back: %d from %d columns, %d from _sdc_extra", fromCols, len(r.Columns), fromExtra)
}

// duplicateKeys: the last value of a repeated key wins (flatten.go), at every
// level, and the earlier values leave no column behind.
func (h *hostile) duplicateKeys(t *testing.T) {
	id, path := h.hook(t, "Dups")
	body := `[{"m":1,"a":1,"a":2,"o":{"x":"first","x":"last"},"arr":[{"y":1,"y":2}]},
		{"m":2,"b":"text","b":5,"b":6}]`
	if status, resp := post(t, h.srv.URL+path, "application/json", []byte(body)); status != 200 {
		t.Fatalf("POST = %d %s", status, resp)
	}
	waitLoaded(t, h.c, id, 2)
	q := func(sql string) string {
		t.Helper()
		r, err := h.c.Query(context.Background(), sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		var out []string
		for _, row := range r.Rows {
			var f []string
			for _, v := range row {
				f = append(f, fmt.Sprint(v))
			}
			out = append(out, strings.Join(f, " "))
		}
		return strings.Join(out, "|")
	}
	if got := q(`select m, a, o__x, b from dups.data order by m`); got != "1 2 last <nil>|2 <nil> <nil> 6" {
		t.Fatalf("dups.data = %s", got)
	}
	if got := q(`select y from dups.data__arr`); got != "2" {
		t.Fatalf("dups.data__arr = %s", got)
	}
	cols := q(`select column_name from information_schema.columns where table_schema = 'dups' and table_name = 'data'
		and column_name not like '%sdc%' order by column_name`)
	if cols != "a|b|m|o__x" {
		t.Fatalf("dups.data columns = %s: an overwritten value left a column", cols)
	}
}

// nulAndSurrogates: a string with \u0000 sends its record to _sdc_rejected with
// the reason; lone surrogates load as U+FFFD; a raw NUL byte is invalid JSON.
func (h *hostile) nulAndSurrogates(t *testing.T) {
	id, path := h.hook(t, "Strs")
	url := h.srv.URL + path
	if status, resp := post(t, url, "application/json", []byte("{\"raw\":\"a\x00b\"}")); status != 400 {
		t.Fatalf("raw NUL byte = %d %s, want 400", status, resp)
	}
	body := `[{"m":"nul","s":"a\u0000b"},
		{"m":"surrogates","s":"x\ud800y","t":"\udc00","u":"\ud800\u0041","v":"\ud83d\ude00","w":"\udfff\ud800"},
		{"m":"nul key","k\u0000ey":1}]`
	if status, resp := post(t, url, "application/json", []byte(body)); status != 200 {
		t.Fatalf("POST = %d %s", status, resp)
	}
	waitLoaded(t, h.c, id, 3)
	ctx := context.Background()
	r, err := h.c.Query(ctx, `select s, t, u, v, w from strs.data where m = 'surrogates'`)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"x\uFFFDy", "\uFFFD", "\uFFFDA", "😀", "\uFFFD\uFFFD"}
	if len(r.Rows) != 1 || fmt.Sprintf("%q", r.Rows[0]) != fmt.Sprintf("%q", want) {
		t.Fatalf("surrogates loaded as %q, want %q", r.Rows, want)
	}
	r, err = h.c.Query(ctx, `select reason, record, table_name from strs._sdc_rejected`)
	if err != nil {
		t.Fatal(err)
	}
	var nul bool
	for _, row := range r.Rows {
		reason, record := row[0].(string), row[1].(string)
		if strings.Contains(record, `"m":"nul"`) {
			nul = true
			if !strings.Contains(reason, "NUL") || !strings.Contains(record, `a\u0000b`) {
				t.Fatalf("NUL record rejected with reason %q, record %q", reason, record)
			}
		}
	}
	if !nul {
		t.Fatalf("the record with \\u0000 is not in _sdc_rejected: %v", r.Rows)
	}
	// The NUL in a key: loaded or rejected, but accounted for.
	got, _ := h.c.Integration(ctx, id)
	rr, _ := h.c.Query(ctx, `select count(*) from strs.data where m = 'nul key'`)
	t.Logf("a NUL in a key: %v data rows, %d records rejected in all", rr.Rows[0][0], got.Stats.RecordsRejected)
	if got.Stats.RecordsLoaded+got.Stats.RecordsRejected != 3 {
		t.Fatalf("stats %+v", *got.Stats)
	}
}

// sqlKeys: keys that look like SQL load into sanitized columns; the schema they
// name still exists afterwards.
func (h *hostile) sqlKeys(t *testing.T) {
	ctx := context.Background()
	xID, xPath := h.hook(t, "x")
	if status, resp := post(t, h.srv.URL+xPath, "application/json", []byte(`{"keep":"me"}`)); status != 200 {
		t.Fatalf("POST x = %d %s", status, resp)
	}
	waitLoaded(t, h.c, xID, 1)

	id, path := h.hook(t, `Inj"; DROP SCHEMA x CASCADE; --`)
	in, _ := h.c.Integration(ctx, id)
	keys := []string{
		`a"; drop table x; --`,
		`); DROP SCHEMA x CASCADE; --`,
		`x.data`,
		`it's`,
		`"`,
		`a'); DELETE FROM x.data; --`,
	}
	rec := map[string]any{"m": 1}
	for i, k := range keys {
		rec[k] = i + 10
	}
	rec[`x; DROP TABLE x.data; --`] = []map[string]any{{`'; select 1; --`: "sub"}}
	body, _ := json.Marshal(rec)
	if status, resp := post(t, h.srv.URL+path, "application/json", body); status != 200 {
		t.Fatalf("POST = %d %s", status, resp)
	}
	waitLoaded(t, h.c, id, 1)
	got, _ := h.c.Integration(ctx, id)
	if got.Stats.RecordsLoaded != 1 {
		r, _ := h.c.Query(ctx, "select reason from "+in.Schema+"._sdc_rejected")
		t.Fatalf("the record was not loaded: %+v %v", *got.Stats, r)
	}
	for i, k := range keys {
		col := loader.ColumnName(k)
		r, err := h.c.Query(ctx, fmt.Sprintf(`select %s from %s.data`, col, in.Schema))
		if err != nil {
			t.Fatalf("key %q → column %s: %v", k, col, err)
		}
		if fmt.Sprint(r.Rows) != fmt.Sprintf("[[%d]]", i+10) {
			t.Fatalf("key %q → column %s = %v, want %d", k, col, r.Rows, i+10)
		}
	}
	sub := loader.TableName("data__" + loader.ColumnName(`x; DROP TABLE x.data; --`))
	col := loader.ColumnName(`'; select 1; --`)
	if r, err := h.c.Query(ctx, fmt.Sprintf(`select %s from %s.%s`, col, in.Schema, sub)); err != nil || fmt.Sprint(r.Rows) != "[[sub]]" {
		t.Fatalf("subtable %s.%s column %s: %v %v", in.Schema, sub, col, r, err)
	}
	// The schema the keys name, and its data, are still there.
	r, err := h.c.Query(ctx, `select keep from x.data`)
	if err != nil || fmt.Sprint(r.Rows) != "[[me]]" {
		t.Fatalf("x.data after SQL-looking keys: %v %v", r, err)
	}
	r, err = h.c.Query(ctx, `select table_schema, table_name from information_schema.tables
		where table_schema in ('x', '`+in.Schema+`') order by 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("schema %s for the integration named %q; tables %v", in.Schema, in.Name, r.Rows)
}
