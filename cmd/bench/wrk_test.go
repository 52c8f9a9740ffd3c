package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// wrk 4.1.0's summary with --latency, as the bench reads it.
const wrkOutput = `Running 10s test @ http://127.0.0.1:40000/v1/clients/1/token/x
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.91ms    1.02ms  31.20ms   80.11%
    Req/Sec    11.05k     1.20k   13.90k    70.50%
  Latency Distribution
     50%  812.00us
     75%    3.20ms
     90%    4.01ms
     99%    1.02s
  219945 requests in 10.01s, 28.52MB read
  Socket errors: connect 0, read 0, write 0, timeout 3
  Non-2xx or 3xx responses: 17
Requests/sec:  21972.03
Transfer/sec:      2.85MB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(strings.NewReader(wrkOutput))
	if err != nil {
		t.Fatal(err)
	}
	if r.requests != 219945 || r.took != 10010*time.Millisecond || r.rate != 21972.03 || r.non2xx != 17 || r.ok() != 219928 {
		t.Errorf("parsed %+v", r)
	}
	if r.p50 != 812*time.Microsecond || r.p99 != 1020*time.Millisecond {
		t.Errorf("p50 %v p99 %v, want 812µs and 1.02s", r.p50, r.p99)
	}
	if r.sockErrors != "connect 0, read 0, write 0, timeout 3" {
		t.Errorf("socket errors %q", r.sockErrors)
	}
	if _, err := parseWrk(strings.NewReader("unable to connect to 127.0.0.1:1 Connection refused\n")); err == nil {
		t.Error("no summary: want an error")
	}
}

// TestWrkScript runs the generated script through wrk against the trivial
// handler when wrk is installed: every answer a 200, bodies with quotes,
// backslashes and non-ASCII bytes intact.
func TestWrkScript(t *testing.T) {
	if got := luaString([]byte("a\"\\\né")); got != `"a\034\092\010\195\169"` {
		t.Errorf("luaString = %s", got)
	}
	bin, err := exec.LookPath("wrk")
	if err != nil {
		t.Skip("wrk is not installed (apt-get install wrk); the script's syntax is not checked")
	}
	dir := t.TempDir()
	_, bodies, err := loadVero("")
	if err != nil {
		t.Fatal(err)
	}
	bodies = append(bodies, []byte(`{"quote":"\"","path":"C:\\x","name":"Zoë ]] ]=]"}`))
	script, err := wrkScript(dir, bodies)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bench.lua")); err != nil {
		t.Fatal(err)
	}
	f, err := startFloor()
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	wr := wrkRun{bin: bin, script: script, threads: 1, conns: 2, duration: time.Second}
	res, _, err := wr.run(t.Context(), f.url(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.requests == 0 || res.non2xx != 0 || res.sockErrors != "" {
		t.Errorf("wrk against the trivial handler: %+v", res)
	}
}
