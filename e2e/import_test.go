package e2e

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/pgtest"
)

// cliProc is the CLI binary running as a child process, so that a test can
// interrupt it like Ctrl-C does.
type cliProc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{}
}

func startCLI(t *testing.T, server, key string, args ...string) *cliProc {
	t.Helper()
	cmd := exec.Command(binPath, append(args, "--server", server)...)
	cmd.Env = append(os.Environ(), "HOOKHOUSE_ADMIN_KEY="+key)
	p := &cliProc{cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if !p.exited() {
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *cliProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the CLI to exit and returns its exit status.
func (p *cliProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("the CLI did not finish within %s; stderr:\n%s", timeout, p.stderr.String())
		return -1
	}
}

// writeImportFile writes n NDJSON lines {"n":1…n,…}, gzip'd, fast (BestSpeed).
func writeImportFile(t *testing.T, n int) string {
	t.Helper()
	start := time.Now()
	path := filepath.Join(t.TempDir(), "backfill.ndjson.gz")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	w := bufio.NewWriterSize(zw, 1<<20)
	var line []byte
	for i := 1; i <= n; i++ {
		line = append(line[:0], `{"n":`...)
		line = strconv.AppendInt(line, int64(i), 10)
		line = append(line, `,"type":"backfill","note":"historical event number `...)
		line = strconv.AppendInt(line, int64(i), 10)
		line = append(line, "\"}\n"...)
		w.Write(line)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	t.Logf("wrote %d lines (%d bytes gzip'd) in %s", n, st.Size(), time.Since(start).Round(time.Millisecond))
	return path
}

// received is how many records the integration's log holds; -1 while the
// server does not answer.
func received(ctx context.Context, cl *client.Client, id int64) int64 {
	in, err := cl.Integration(ctx, id)
	if err != nil || in.Stats == nil {
		return -1
	}
	return in.Stats.RecordsReceived
}

// TestImportResumable imports a gzip'd NDJSON file through the CLI binary
// into a server running as a child process, with a Ctrl-C (SIGINT) of the
// CLI partway through the first run and a SIGKILL of the server partway
// through the second; the rerun skips what is stored, and the warehouse ends
// with every line exactly once: 1,000,000 lines on DuckDB, 300,000 on
// PostgreSQL. The kills come early enough (a fifth of the file, then a
// quarter of the rest) that many chunks of 10,000 lines remain after each.
func TestImportResumable(t *testing.T) {
	t.Run("duckdb", func(t *testing.T) { importResumable(t, 1_000_000, nil) })
	t.Run("postgres", func(t *testing.T) {
		dsn, err := pgtest.Shared(t).NewDatabase(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		importResumable(t, 300_000, []string{"--warehouse", dsn})
	})
}

func importResumable(t *testing.T, n int, extra []string) {
	start := time.Now()
	ctx := context.Background()
	path := writeImportFile(t, n)
	dir := t.TempDir()
	addr := freePort(t)
	srv := startChild(t, dir, addr, extra...)
	key := adminKey(t, dir)
	cl := client.New(srv.URL, key)
	in, err := cl.CreateIntegration(ctx, client.NewIntegration{Name: "Backfill", Type: "webhooks"})
	if err != nil {
		t.Fatal(err)
	}
	waitReceived := func(p *cliProc, atLeast int64) {
		t.Helper()
		waitFor(t, 5*time.Minute, fmt.Sprintf("%d records in the log", atLeast), func() (bool, string) {
			if p.exited() {
				t.Fatalf("the CLI ended before %d records were stored; stderr:\n%s", atLeast, p.stderr.String())
			}
			got := received(ctx, cl, in.ID)
			return got >= atLeast, fmt.Sprint(got)
		})
	}

	// Run 1: Ctrl-C partway.
	run1 := startCLI(t, srv.URL, key, "import", strconv.FormatInt(in.ID, 10), path)
	waitReceived(run1, int64(n)/5)
	run1.cmd.Process.Signal(os.Interrupt)
	if code := run1.wait(t, time.Minute); code != 1 || !strings.Contains(run1.stderr.String(), "interrupted") ||
		!strings.Contains(run1.stderr.String(), "run the same command again to go on") {
		t.Fatalf("run 1 after SIGINT: exit %d, stderr:\n%s", code, run1.stderr.String())
	}
	afterInterrupt := received(ctx, cl, in.ID)
	t.Logf("run 1 interrupted with %d records stored", afterInterrupt)

	// Run 2: the server is SIGKILLed partway and restarted; the CLI retries
	// the chunk in flight and goes on.
	run2 := startCLI(t, srv.URL, key, "import", strconv.FormatInt(in.ID, 10), path)
	killAt := afterInterrupt + (int64(n)-afterInterrupt)/4
	waitReceived(run2, killAt)
	srv.Kill()
	t.Logf("server killed with at least %d records stored", killAt)
	srv = startChild(t, dir, addr, extra...)
	if code := run2.wait(t, 10*time.Minute); code != 0 {
		t.Fatalf("run 2 across a server restart: exit %d, stderr:\n%s", code, run2.stderr.String())
	}
	if !strings.Contains(run2.stderr.String(), "retrying for up to") || !strings.Contains(run2.stdout.String(), "by an earlier run (skipped)") {
		t.Errorf("run 2 did not retry across the restart or skip run 1's chunks:\n%s\n%s", run2.stdout.String(), run2.stderr.String())
	}
	// Run 3, the same command once more: everything is skipped.
	run3 := startCLI(t, srv.URL, key, "import", strconv.FormatInt(in.ID, 10), path, "--json")
	if code := run3.wait(t, 5*time.Minute); code != 0 {
		t.Fatalf("run 3: exit %d, stderr:\n%s", code, run3.stderr.String())
	}
	var sum struct {
		Records         int64 `json:"records"`
		Stored          int64 `json:"stored"`
		AlreadyImported int64 `json:"already_imported"`
	}
	if err := json.Unmarshal([]byte(run3.stdout.String()), &sum); err != nil {
		t.Fatalf("run 3 --json: %v\n%s", err, run3.stdout.String())
	}
	if sum.Records != int64(n) || sum.Stored != 0 || sum.AlreadyImported != int64(n) {
		t.Errorf("run 3 summary %s, want all %d already imported", run3.stdout.String(), n)
	}
	// The pipe gets plain progress lines, no bar.
	if e := run3.stderr.String(); !strings.Contains(e, fmt.Sprintf("imported %s of %s records (100%%)", commas(n), commas(n))) || strings.Contains(e, "\r") {
		t.Errorf("run 3 progress on a pipe:\n%q", e)
	}
	if got := received(ctx, cl, in.ID); got != int64(n) {
		t.Fatalf("the log holds %d records, want %d", got, n)
	}
	// The warehouse: every line exactly once.
	q := fmt.Sprintf("select count(*) as c, count(distinct n) as d, min(n) as lo, max(n) as hi from %s.data", in.Schema)
	want := fmt.Sprintf("[%d %d 1 %d]", n, n, n)
	waitFor(t, 10*time.Minute, "every line in the warehouse", func() (bool, string) {
		res, err := cl.Query(ctx, q)
		if err != nil || len(res.Rows) != 1 {
			return false, fmt.Sprint(err)
		}
		got := fmt.Sprint(res.Rows[0])
		return got == want, got
	})
	t.Logf("%d lines imported across an interrupt and a kill, and loaded, in %s", n, time.Since(start).Round(time.Second))
}

func commas(n int) string {
	s := strconv.Itoa(n)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// TestImportBadLinesAndProgress runs the CLI binary on a file with bad lines
// (named by line number; --max-errors decides), and shows its progress as a
// bar on a pseudo-terminal.
func TestImportBadLinesAndProgress(t *testing.T) {
	ctx := context.Background()
	in := startServer(t, nil)
	integ, err := in.Client.CreateIntegration(ctx, client.NewIntegration{Name: "Bad Lines", Type: "webhooks"})
	if err != nil {
		t.Fatal(err)
	}
	id := strconv.FormatInt(integ.ID, 10)
	env := []string{"HOOKHOUSE_ADMIN_KEY=" + in.Key}
	var b strings.Builder
	for i := 1; i <= 30_000; i++ {
		switch i {
		case 7:
			b.WriteString("{\"n\":7,\n")
		case 12_345:
			b.WriteString("[\"not\", \"an object\"]\n")
		default:
			fmt.Fprintf(&b, "{\"n\":%d}\n", i)
		}
	}
	path := filepath.Join(t.TempDir(), "bad.ndjson")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errs, code := runCLI(t, in.URL, env, "import", id, path)
	if code != 1 || !strings.Contains(errs, "bad line 7: invalid JSON") || !strings.Contains(errs, "bad line 12345: not a JSON object") ||
		!strings.Contains(errs, "has 2 bad lines, more than --max-errors 0 allows: nothing was imported") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	if got := received(ctx, in.Client, integ.ID); got != 0 {
		t.Fatalf("%d records stored from a refused file", got)
	}

	// On a terminal: a bar, redrawn in place.
	ptmx, tty := openPTY(t)
	cmd := exec.Command(binPath, "import", id, path, "--max-errors", "2", "--server", in.URL)
	cmd.Env = append(os.Environ(), env...)
	var stdout syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	screen := make(chan string)
	go func() {
		all, _ := io.ReadAll(ptmx) // EIO once the CLI has exited
		screen <- string(all)
	}()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("import on a terminal: %v\n%s", err, stdout.String())
	}
	term := <-screen
	if !strings.Contains(term, "\r") || !strings.Contains(term, "import into bad_lines") || !strings.Contains(term, "29998/29998") ||
		!strings.Contains(term, "bad line 7") || strings.Contains(term, "imported 29,998 of") {
		t.Errorf("terminal output has no progress bar:\n%q", term)
	}
	if !strings.Contains(stdout.String(), "Imported 29,998 records") || !strings.Contains(stdout.String(), "2 bad lines were skipped") {
		t.Errorf("stdout: %s", stdout.String())
	}
	waitFor(t, time.Minute, "29,998 rows", func() (bool, string) {
		res, err := in.Client.Query(ctx, "select count(*) as c from bad_lines.data")
		if err != nil || len(res.Rows) != 1 {
			return false, fmt.Sprint(err)
		}
		return fmt.Sprint(res.Rows[0][0]) == "29998", fmt.Sprint(res.Rows[0])
	})
}
