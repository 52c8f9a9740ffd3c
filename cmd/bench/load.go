package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// okPrefix is how every accepted webhook answer starts (SPEC §4).
var okPrefix = []byte(`{"status":"ok"`)

// newTransport is a keep-alive transport with exactly conns connections to the one
// loopback host, no proxy and no compression.
func newTransport(conns int) *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

// loadResult is one closed-loop run: counts and latencies of the requests that
// finished inside the measured window, plus totals that include the warm-up.
type loadResult struct {
	window   time.Duration
	requests int64 // answered 200 in the window
	errors   int64 // anything else in the window
	lat      latencies
	okTotal  int64 // 200s including the warm-up: records acknowledged (one per request)
	errTotal int64
	errKinds map[string]int64
	cpu      cpuUse
}

func (r loadResult) rate() float64 { return float64(r.requests) / r.window.Seconds() }

func (r loadResult) errorSummary() string {
	if len(r.errKinds) == 0 {
		return "0"
	}
	kinds := make([]string, 0, len(r.errKinds))
	for k := range r.errKinds {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	s := strconv.FormatInt(r.errors, 10) + " ("
	for i, k := range kinds {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s ×%d", k, r.errKinds[k])
	}
	return s + ", warm-up included)"
}

// worker is one goroutine's share of a run; merged once all have stopped.
type worker struct {
	lat      []time.Duration
	ok, errs int64 // in the window
	okTotal  int64
	errTotal int64
	errKinds map[string]int64
}

// drive POSTs bodies to url from conns goroutines over keep-alive connections, each
// sending its next request as soon as the previous one is answered, for warmup then
// dur. A request counts in the window when its answer arrives inside it. serverPID,
// when not 0, is the process whose CPU time is read over the window.
func drive(ctx context.Context, url string, bodies [][]byte, conns int, warmup, dur time.Duration, serverPID int) (loadResult, error) {
	tr := newTransport(conns)
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	start := time.Now()
	from, until := start.Add(warmup), start.Add(warmup+dur)
	ctx, cancel := context.WithDeadline(ctx, until.Add(30*time.Second))
	defer cancel()

	// CPU is sampled at the window's edges by a goroutine of its own.
	var cpu cpuUse
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		cpu = cpuOver(ctx, from, until, serverPID)
	}()

	workers := make([]*worker, conns)
	for i := range workers {
		w := &worker{errKinds: map[string]int64{}, lat: make([]time.Duration, 0, 1<<14)}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 512)
			for n := i; ctx.Err() == nil; n++ {
				t0 := time.Now()
				if !t0.Before(until) {
					return
				}
				var kind string
				buf, kind = post(ctx, hc, url, bodies[n%len(bodies)], buf)
				t1 := time.Now()
				in := !t1.Before(from) && t1.Before(until)
				if kind == "" {
					w.okTotal++
					if in {
						w.ok++
						w.lat = append(w.lat, t1.Sub(t0))
					}
					continue
				}
				w.errTotal++
				w.errKinds[kind]++
				if in {
					w.errs++
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil && time.Now().Before(until) {
		return loadResult{}, fmt.Errorf("load run interrupted: %w", err)
	}

	res := loadResult{window: dur, errKinds: map[string]int64{}, cpu: cpu}
	var all []time.Duration
	for _, w := range workers {
		res.requests += w.ok
		res.errors += w.errs
		res.okTotal += w.okTotal
		res.errTotal += w.errTotal
		for k, v := range w.errKinds {
			res.errKinds[k] += v
		}
		all = append(all, w.lat...)
	}
	res.lat = summarize(all)
	return res, nil
}

// post sends one webhook and returns "" when it was accepted, or what went wrong
// ("503", "transport error", …). buf is reused for the answer.
func post(ctx context.Context, hc *http.Client, url string, body, buf []byte) ([]byte, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return buf, "bad request: " + err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return buf, "timeout"
		}
		return buf, "transport error"
	}
	buf, err = readAll(resp.Body, buf[:0])
	resp.Body.Close()
	switch {
	case resp.StatusCode != http.StatusOK:
		return buf, strconv.Itoa(resp.StatusCode)
	case err != nil:
		return buf, "answer cut off"
	case !bytes.HasPrefix(buf, okPrefix):
		return buf, "200 without status ok"
	}
	return buf, ""
}

// readAll is io.ReadAll into a reused buffer.
func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// floorServer is the trivial handler the ingest path is compared with: read the
// body, answer what hookhouse answers for one record.
type floorServer struct {
	srv *http.Server
	ln  net.Listener
	wg  sync.WaitGroup
}

func startFloor() (*floorServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("floor: listen: %w", err)
	}
	answer := []byte(`{"status":"ok","records":1}` + "\n")
	f := &floorServer{ln: ln, srv: &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(answer)
		}),
	}}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		_ = f.srv.Serve(ln)
	}()
	return f, nil
}

func (f *floorServer) url() string {
	return "http://" + f.ln.Addr().String() + "/v1/clients/1/token/floor"
}

func (f *floorServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = f.srv.Shutdown(ctx)
	f.wg.Wait()
}

// cpuUse is CPU time spent during a measured window.
type cpuUse struct {
	self   time.Duration // this process: the load generator (and the floor server)
	server time.Duration // the hookhouse child; 0 for the floor
	irq    time.Duration // interrupts and softirqs, charged to no process: mostly loopback TCP
	others time.Duration // every other process (and kernel thread): noise, or disk work for us
	ok     bool
}

// cpuOver waits for from and then until, and returns the CPU time used in between.
func cpuOver(ctx context.Context, from, until time.Time, pid int) cpuUse {
	sample := func() (s, p, m, irq time.Duration, err error) {
		if s, err = selfCPU(); err != nil {
			return
		}
		if pid != 0 {
			if p, err = pidCPU(pid); err != nil {
				return
			}
		}
		m, irq, err = machineCPU()
		return
	}
	if sleepUntil(ctx, from) != nil {
		return cpuUse{}
	}
	s0, p0, m0, i0, err := sample()
	if err != nil || sleepUntil(ctx, until) != nil {
		return cpuUse{}
	}
	s1, p1, m1, i1, err := sample()
	if err != nil {
		return cpuUse{}
	}
	u := cpuUse{self: s1 - s0, server: p1 - p0, irq: i1 - i0, ok: true}
	u.others = max(0, m1-m0-u.self-u.server-u.irq)
	return u
}

func sleepUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// serveFloorChild is a floor as a process of its own (bench -floor-server): the
// trivial handler, or a durable floor (durable.go) keeping its files in dir. It
// prints its address and serves until stdin closes or a signal comes. Next to the
// in-process floor the trivial one shows what two processes sharing the cores
// cost by themselves.
func serveFloorChild(ctx context.Context, mode, dir string, stdin io.Reader, stdout io.Writer) error {
	var addr net.Addr
	switch mode {
	case floorTrivial:
		f, err := startFloor()
		if err != nil {
			return err
		}
		defer f.close()
		addr = f.ln.Addr()
	case floorDurable, floorLoading, floorRows:
		if dir == "" {
			return errors.New("-floor-mode " + mode + " needs -floor-dir")
		}
		f, err := startDurableFloor(dir, mode)
		if err != nil {
			return err
		}
		defer f.close()
		addr = f.ln.Addr()
	default:
		return fmt.Errorf("-floor-mode %q: want %s, %s, %s or %s", mode, floorTrivial, floorDurable, floorLoading, floorRows)
	}
	fmt.Fprintln(stdout, addr.String())
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		close(eof)
	}()
	select {
	case <-ctx.Done():
	case <-eof:
	}
	return nil
}

// floorProcess runs serveFloorChild in a child process of this same binary.
type floorProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
}

// startFloorProcess starts a floor child. The durable floors run with Go's
// default GOMAXPROCS + 2 from 2 CPUs up, as hookhouse serve does (spareProcs
// in cmd/hookhouse): it measured best for a durable ack there; the trivial
// handler keeps the default, which is best for it.
func startFloorProcess(mode, dir string) (*floorProcess, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-floor-server", "-floor-mode", mode, "-floor-dir", dir)
	if mode != floorTrivial && os.Getenv("GOMAXPROCS") == "" {
		if n := runtime.GOMAXPROCS(0); n >= 2 {
			cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(n+2))
		}
	}
	dieWithParent(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("floor process: %w", err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stdin.Close()
		_ = cmd.Wait()
		return nil, fmt.Errorf("floor process: no address: %w", err)
	}
	return &floorProcess{cmd: cmd, stdin: stdin, addr: strings.TrimSpace(line)}, nil
}

func (f *floorProcess) url() string { return "http://" + f.addr + "/v1/clients/1/token/floor" }

func (f *floorProcess) close() error {
	f.stdin.Close()
	return f.cmd.Wait()
}
