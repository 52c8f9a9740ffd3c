package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/faults"
	"github.com/hookhouse/hookhouse/internal/pgtest"
)

// resetSite is one Vero integration on a hookhouse child process.
type resetSite struct {
	dir, addr string
	args      []string // extra serve flags
	srv       *child
	c         *client.Client
	id        int64
	hook      string
	next      int // the next record number to post
}

func newResetSite(t *testing.T, args ...string) *resetSite {
	t.Helper()
	s := &resetSite{dir: t.TempDir(), addr: freePort(t), args: args}
	s.start(t, nil)
	ctx := context.Background()
	integ, err := s.c.CreateIntegration(ctx, client.NewIntegration{Name: "Stitch Vero", Type: "vero"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.c.GenerateURL(ctx, integ.ID)
	if err != nil {
		t.Fatal(err)
	}
	s.id, s.hook = integ.ID, s.srv.URL+u.URL[strings.Index(u.URL, "/v1/"):]
	return s
}

// start runs the server (with extra environment, e.g. armed faults) and waits
// until it is ready.
func (s *resetSite) start(t *testing.T, env []string) {
	t.Helper()
	s.srv = launchChild(t, env, s.dir, s.addr, s.args...)
	if !s.srv.waitReady(t) {
		t.Fatalf("server exited before it was ready:\n%s", s.srv.Stderr.String())
	}
	s.c = client.New(s.srv.URL, adminKey(t, s.dir))
}

// postBatch posts records numbered s.next… in one request of n and reports
// whether it was acknowledged.
func (s *resetSite) postBatch(hc *http.Client, n int) ([]int, bool) {
	var b strings.Builder
	nums := make([]int, n)
	b.WriteByte('[')
	for i := range n {
		nums[i] = s.next + i
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"n":%d,"event":"sent","items":[%d]}`, s.next+i, i)
	}
	b.WriteByte(']')
	s.next += n
	resp, err := hc.Post(s.hook, "application/json", strings.NewReader(b.String()))
	if err != nil {
		return nums, false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return nums, resp.StatusCode == 200
}

func (s *resetSite) post(t *testing.T, records int) {
	t.Helper()
	for records > 0 {
		n := min(records, 50)
		if _, ok := s.postBatch(http.DefaultClient, n); !ok {
			t.Fatal("a POST was not acknowledged")
		}
		records -= n
	}
}

func (s *resetSite) waitReset(t *testing.T) {
	t.Helper()
	waitFor(t, 120*time.Second, "the reset's reload to finish", func() (bool, string) {
		in, err := s.c.Integration(context.Background(), s.id)
		if err != nil {
			return false, err.Error()
		}
		r := in.Stats.Reset
		return r != nil && r.Done, fmt.Sprintf("%+v", r)
	})
}

// fingerprint is the count and a hash of every data row with a sequence up to
// maxSeq (0: all): key, receipt time and sequence, in sequence order.
func (s *resetSite) fingerprint(t *testing.T, maxSeq int64) (string, int64) {
	t.Helper()
	where := ""
	if maxSeq > 0 {
		where = fmt.Sprintf(" WHERE _sdc_sequence <= %d", maxSeq)
	}
	res, err := s.c.Query(context.Background(), `SELECT count(*), md5(string_agg(__sdc_primary_key || '|' || CAST(_sdc_received_at AS TEXT) || '|' || CAST(_sdc_sequence AS TEXT), ',' ORDER BY _sdc_sequence)), CAST(max(_sdc_sequence) AS TEXT) FROM stitch_vero.data`+where)
	if err != nil {
		t.Fatal(err)
	}
	row := res.Rows[0]
	var seq int64
	if _, err := fmt.Sscan(fmt.Sprint(row[2]), &seq); err != nil {
		t.Fatalf("max(_sdc_sequence) = %v: %v", row[2], err)
	}
	return fmt.Sprint(row[0], " ", row[1]), seq
}

// exactlyOnce checks that every acknowledged record is in the data table once
// (records whose request was cut by a kill may be there, never twice), with one
// child row each.
func (s *resetSite) exactlyOnce(t *testing.T, acked []int) {
	t.Helper()
	res, err := s.c.Query(context.Background(), `SELECT n FROM stitch_vero.data ORDER BY n`)
	if err != nil {
		t.Fatal(err)
	}
	if res.Truncated {
		t.Fatal("too many rows for one query")
	}
	seen := map[int64]bool{}
	for _, r := range res.Rows {
		var n int64
		fmt.Sscan(fmt.Sprint(r[0]), &n)
		if seen[n] {
			t.Fatalf("record %d is in the table twice", n)
		}
		seen[n] = true
	}
	for _, n := range acked {
		if !seen[int64(n)] {
			t.Fatalf("acknowledged record %d is missing (%d rows)", n, len(res.Rows))
		}
	}
	if items := rows(t, s.c, "stitch_vero.data__items"); items != int64(len(res.Rows)) {
		t.Fatalf("data__items has %d rows for %d records", items, len(res.Rows))
	}
}

// TestResetSurvivesKills: a reset reloads every record with its original
// __sdc_primary_key, _sdc_received_at and _sdc_sequence, also when the server
// is SIGKILLed inside the reset's warehouse transaction, between its commit and
// recording it, and in the middle of the reload while webhooks keep arriving
// and being acknowledged; each time the reset resumes after the restart and
// every acknowledged record is there exactly once.
func TestResetSurvivesKills(t *testing.T) {
	t.Run("duckdb", func(t *testing.T) { testResetSurvivesKills(t) })
	t.Run("postgres", func(t *testing.T) {
		dsn, err := pgtest.Shared(t).NewDatabase(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		testResetSurvivesKills(t, "--warehouse", dsn)
	})
}

func testResetSurvivesKills(t *testing.T, args ...string) {
	ctx := context.Background()
	s := newResetSite(t, append([]string{"--batch-size", "100"}, args...)...)
	s.post(t, 4000)
	acked := make([]int, 4000)
	for i := range acked {
		acked[i] = i
	}
	waitLoaded(t, s.c, s.id, 4000)
	base, baseSeq := s.fingerprint(t, 0)

	// Killed inside the reset transaction, then between its commit and the
	// control state learning of it: the next start redoes the reset.
	for _, point := range []string{faults.WarehouseResetBeforeCommit, faults.LoaderResetAfterCommit} {
		s.srv.Term(t)
		s.start(t, []string{"HOOKHOUSE_FAULTS=" + point + "=1"})
		if _, err := s.c.Reset(ctx, s.id, false); err == nil {
			t.Fatalf("%s: the reset answered although the server was killed", point)
		}
		<-s.srv.done
		if !strings.Contains(s.srv.Stderr.String(), "SIGKILL at "+point) {
			t.Fatalf("%s: the server did not die there:\n%s", point, s.srv.Stderr.String())
		}
		s.start(t, nil)
		s.waitReset(t)
		waitLoaded(t, s.c, s.id, 4000)
		if got, _ := s.fingerprint(t, 0); got != base {
			t.Fatalf("after a kill at %s the table is %s, was %s", point, got, base)
		}
		if !strings.Contains(s.srv.Stderr.String(), "redoing the reset") {
			t.Fatalf("%s: the restart did not redo the reset:\n%s", point, s.srv.Stderr.String())
		}
	}

	// Killed in the middle of the reload while webhooks keep arriving.
	var (
		mu      sync.Mutex
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		posting = s.next
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		hc := &http.Client{Timeout: 10 * time.Second}
		for s.next < posting+2000 {
			select {
			case <-stop:
				return
			default:
			}
			nums, ok := s.postBatch(hc, 10)
			if ok {
				mu.Lock()
				acked = append(acked, nums...)
				mu.Unlock()
			} else {
				time.Sleep(50 * time.Millisecond) // the server is down: retry new records
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	if _, err := s.c.Reset(ctx, s.id, false); err != nil {
		t.Fatal(err)
	}
	var at *client.ResetProgress
	for {
		in, err := s.c.Integration(ctx, s.id)
		if err != nil {
			t.Fatal(err)
		}
		at = in.Stats.Reset
		if at.Done || at.RecordsReloaded > 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.srv.Kill()
	t.Logf("SIGKILL with %d of %d records reloaded (done: %v)", at.RecordsReloaded, at.RecordsTotal, at.Done)
	s.start(t, nil)
	s.waitReset(t)
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	in, err := s.c.Integration(ctx, s.id)
	if err != nil {
		t.Fatal(err)
	}
	waitLoaded(t, s.c, s.id, in.Stats.RecordsReceived)
	if got, _ := s.fingerprint(t, baseSeq); got != base {
		t.Fatalf("after a kill mid-reload the original rows are %s, were %s", got, base)
	}
	s.exactlyOnce(t, acked)
	if len(acked) <= 4000 {
		t.Fatal("no record was acknowledged during the reset")
	}
	t.Logf("%d records acknowledged, %d during the reset", len(acked), len(acked)-4000)
	s.srv.Term(t)
}

// TestResetRefusedAfterTrim: once retention has removed the integration's
// first records from the log, 'integrations reset' refuses and says how much
// is gone, changes nothing, and with --accept-partial reloads what is left,
// printing plain progress lines on a pipe.
func TestResetRefusedAfterTrim(t *testing.T) {
	s := newResetSite(t, "--retention", "1s")
	s.post(t, 5)
	waitLoaded(t, s.c, s.id, 5)
	time.Sleep(1100 * time.Millisecond) // older than the retention
	// The loader trims at its first commit after a start.
	s.srv.Term(t)
	s.start(t, nil)
	s.post(t, 3)
	waitLoaded(t, s.c, s.id, 8)
	env := []string{"HOOKHOUSE_ADMIN_KEY=" + adminKey(t, s.dir)}
	id := fmt.Sprint(s.id)
	var out, errOut string
	var code int
	waitFor(t, 30*time.Second, "the trim of the log's head", func() (bool, string) {
		out, errOut, code = runCLI(t, s.srv.URL, env, "integrations", "reset", id, "--yes")
		return code != 0, out + errOut
	})
	for _, want := range []string{"refused", "first 5 records", "positions 1–5", "--accept-partial"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, errOut)
		}
	}
	if n := rows(t, s.c, "stitch_vero.data"); n != 8 {
		t.Fatalf("a refused reset changed the table: %d rows", n)
	}
	// Without --yes and without a terminal: refused, naming the schema.
	if _, e, code := runCLI(t, s.srv.URL, env, "integrations", "reset", id, "--accept-partial"); code == 0 || !strings.Contains(e, "schema stitch_vero") {
		t.Fatalf("reset without --yes: exit %d: %s", code, e)
	}
	out, errOut, code = runCLI(t, s.srv.URL, env, "integrations", "reset", id, "--yes", "--accept-partial")
	if code != 0 {
		t.Fatalf("partial reset: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "reloading 3 records from the log (positions 6–8)") || !strings.Contains(out, "3 records reloaded") {
		t.Fatalf("partial reset output:\n%s", out)
	}
	// Plain lines on a pipe: a start line and a last line with the count, no bar.
	if !strings.Contains(errOut, "reset of stitch_vero: started") || !strings.Contains(errOut, "reloaded 3 of 3 records (100%)") ||
		strings.ContainsAny(errOut, "\r\x1b") {
		t.Fatalf("progress on a pipe:\n%q", errOut)
	}
	if n := rows(t, s.c, "stitch_vero.data"); n != 3 {
		t.Fatalf("after the partial reset the table has %d rows, want 3", n)
	}
	show, _, _ := runCLI(t, s.srv.URL, env, "integrations", "show", id)
	if !strings.Contains(show, "Last reset") || !strings.Contains(show, "partial: the log held positions 6 on") {
		t.Fatalf("integrations show:\n%s", show)
	}
	s.srv.Term(t)
}

// TestResetProgressOnATerminal: on a pseudo-terminal, 'integrations reset'
// asks for the schema name, then draws a progress bar.
func TestResetProgressOnATerminal(t *testing.T) {
	s := newResetSite(t, "--batch-size", "50")
	s.post(t, 2000)
	waitLoaded(t, s.c, s.id, 2000)
	master, slave := openPTY(t)
	cmd := exec.Command(binPath, "integrations", "reset", fmt.Sprint(s.id), "--server", s.srv.URL)
	cmd.Env = append(os.Environ(), "HOOKHOUSE_ADMIN_KEY="+adminKey(t, s.dir))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var (
		mu  sync.Mutex
		buf []byte
	)
	read := make(chan struct{})
	go func() {
		defer close(read)
		b := make([]byte, 4096)
		for {
			n, err := master.Read(b)
			mu.Lock()
			buf = append(buf, b[:n]...)
			mu.Unlock()
			if err != nil {
				return // EIO once the command has exited
			}
		}
	}()
	waitFor(t, 30*time.Second, "the confirmation prompt", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(string(buf), "Type the schema name (stitch_vero) to confirm"), string(buf)
	})
	if _, err := master.Write([]byte("stitch_vero\n")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("reset on a terminal: %v\n%s", err, buf)
		}
	case <-time.After(120 * time.Second):
		cmd.Process.Kill()
		t.Fatal("reset on a terminal did not finish")
	}
	<-read
	got := string(buf)
	for _, want := range []string{"reset of stitch_vero", "100%", "2000/2000", "\r", "Reset of stitch_vero done: 2,000 records reloaded"} {
		if !strings.Contains(got, want) {
			t.Errorf("terminal output lacks %q:\n%q", want, got)
		}
	}
	if strings.Contains(got, ": started") {
		t.Errorf("a terminal got plain lines:\n%q", got)
	}
	if n := rows(t, s.c, "stitch_vero.data"); n != 2000 {
		t.Fatalf("after the reset: %d rows", n)
	}
}

// TestDashboardResetInBrowser: in headless Chromium, the integration page's
// Reset tables… opens a confirmation naming the schema; typing it and
// confirming resets, and the page's live part shows the finished reload.
func TestDashboardResetInBrowser(t *testing.T) {
	in := startServer(t, nil)
	id, hook := setupVero(t, in)
	for _, f := range veroFiles(t) {
		if status, body := post(t, hook, "application/json", mustRead(t, f)); status != 200 {
			t.Fatalf("POST = %d %s", status, body)
		}
	}
	waitLoaded(t, in.Client, id, 14)
	ctx := browser(t)
	consoleErrs := consoleErrors(ctx)
	navigate(t, ctx, "open /", chromedp.Navigate(in.URL+"/"))
	do(t, ctx, "type the admin key", chromedp.SendKeys(chromedp.CSS("#key"), in.Key))
	navigate(t, ctx, "log in", click("main form button[type=submit]"))
	navigate(t, ctx, "open the integration", chromedp.Navigate(fmt.Sprintf("%s/integrations/%d", in.URL, id)))
	navigate(t, ctx, "reset tables…", click("#reset"))
	if h := run(t, ctx, "heading", text("main h1")); h != "Reset Stitch Vero?" {
		t.Fatalf("confirmation heading %q", h)
	}
	do(t, ctx, "type the schema", chromedp.SendKeys(chromedp.CSS("#confirm-schema"), "stitch_vero"))
	navigate(t, ctx, "confirm", click("#confirm"))
	if flash := run(t, ctx, "flash", text("p.flash")); !strings.Contains(flash, "The tables of schema stitch_vero were dropped") {
		t.Fatalf("flash %q", flash)
	}
	// The live part (polled by app.js) reaches the finished reload.
	run(t, ctx, "the finished reset", chromedp.Poll[bool](`(document.querySelector("#reset-status") || {}).textContent?.includes("14 records reloaded")`,
		chromedp.WithPollingTimeout(60*time.Second)))
	if n := rows(t, in.Client, "stitch_vero.data"); n != 14 {
		t.Fatalf("after the reset: %d rows", n)
	}
	for _, e := range consoleErrs() {
		t.Errorf("browser console: %s", e)
	}
}
