package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/client"
)

// tmpfs mounts a tmpfs of size MiB on a new directory and unmounts it at the
// end of the test (after the server, whose cleanup is registered later, is gone).
func tmpfs(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs to fill needs root; run the e2e tests as root to check disk-full behaviour")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (no CAP_SYS_ADMIN in this container?): %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// fill writes a file that leaves about leave bytes free on dir's filesystem.
func fill(t *testing.T, dir string, leave int64) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for n := freeBytes(t, dir) - leave; n > 0; n -= int64(len(chunk)) {
		if _, err := f.Write(chunk[:min(n, int64(len(chunk)))]); err != nil {
			if leave == 0 && errors.Is(err, syscall.ENOSPC) {
				break // full, as asked
			}
			t.Fatalf("write filler: %v", err)
		}
	}
	if leave == 0 {
		// Take the last partial blocks too.
		for _, n := range []int{64 << 10, 4 << 10, 512, 1} {
			for {
				if _, err := f.Write(chunk[:n]); err != nil {
					break
				}
			}
		}
	}
	return path
}

// TestDiskFull puts the data dir (log and DuckDB) on a 512 MiB tmpfs and fills
// it while webhooks arrive: first to 100 MiB free, then, right after a burst of
// 200s that the loader is still writing to DuckDB, to the last byte. The
// receiver must answer 503 with Retry-After rather than give a 200 it cannot
// keep, and must not crash; once space is freed it takes webhooks again without
// a restart, loading resumes, and every record answered 200 is in the warehouse
// exactly once, also after a restart.
//
// Why 512 MiB: the log alone takes about 210 MiB within its first requests,
// whatever the data, because Pebble preallocates each WAL file to 110% of the
// 64 MiB memtable (70 MiB) and keeps up to three old ones for reuse. On 200 MiB
// that leaves less than the 64 MiB reserve, and the receiver refuses everything.
func TestDiskFull(t *testing.T) {
	mnt := tmpfs(t, 512)
	dir := filepath.Join(mnt, "data")
	addr := freePort(t)
	srv := startChild(t, dir, addr)
	ctx := context.Background()
	c := client.New(srv.URL, adminKey(t, dir))
	integ, err := c.CreateIntegration(ctx, client.NewIntegration{Name: "Disk Full", Type: "webhooks"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := c.GenerateURL(ctx, integ.ID)
	if err != nil {
		t.Fatal(err)
	}
	hook := srv.URL + u.URL[strings.Index(u.URL, "/v1/"):]

	// Each request is 50 records of 1 KB of incompressible text.
	const perRequest = 50
	hc := &http.Client{Timeout: 2 * time.Minute}
	acked := 0   // requests answered 200
	refused := 0 // requests answered 503
	send := func(n int) (int, http.Header) {
		t.Helper()
		var b strings.Builder
		b.WriteByte('[')
		pad := make([]byte, 512)
		for j := 0; j < perRequest; j++ {
			rand.Read(pad)
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"req":%d,"j":%d,"pad":"%s"}`, n, j, hex.EncodeToString(pad))
		}
		b.WriteByte(']')
		resp, err := hc.Post(hook, "application/json", strings.NewReader(b.String()))
		if err != nil {
			select {
			case <-srv.done:
			case <-time.After(2 * time.Second):
			}
			if srv.Exited() {
				t.Fatalf("the server exited with the disk full: %v\nstderr:\n%s", srv.cmd.ProcessState, tail(srv.Stderr.String(), 6000))
			}
			t.Fatalf("POST %d: %v", n, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	// acks lists the request numbers answered 200, in order.
	var acks []int
	next := 0
	postOne := func() int {
		t.Helper()
		n := next
		next++
		status, hdr := send(n)
		switch {
		case status == 200:
			acked++
			acks = append(acks, n)
		case status == 503 && hdr.Get("Retry-After") != "":
			refused++
		default:
			t.Fatalf("POST %d = %d, want 200 or 503 with Retry-After", n, status)
		}
		return status
	}
	for i := 0; i < 20; i++ {
		if postOne() != 200 {
			t.Fatal("503 before the disk was filled")
		}
	}

	alive := func(what string) {
		t.Helper()
		time.Sleep(100 * time.Millisecond)
		if srv.Exited() {
			t.Fatalf("the server exited %s: %v\nstderr:\n%s", what, srv.cmd.ProcessState, tail(srv.Stderr.String(), 8000))
		}
	}
	// refusing posts for d, all of which must be refused.
	refusing := func(what string, d time.Duration) {
		t.Helper()
		for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if s := postOne(); s != 503 {
				t.Fatalf("%s: POST = %d, want 503", what, s)
			}
		}
		alive(what)
	}
	// recover frees the fillers and waits for the receiver to take webhooks
	// again, without a restart.
	recoverSpace := func(what string, fillers ...string) {
		t.Helper()
		for _, f := range fillers {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
		for start := time.Now(); postOne() != 200; time.Sleep(100 * time.Millisecond) {
			if time.Since(start) > time.Minute {
				t.Fatalf("%s: still 503 a minute after freeing space (%d MiB free); server log:\n%s",
					what, freeBytes(t, mnt)>>20, tail(srv.Stderr.String(), 6000))
			}
		}
		for i := 0; i < 20; i++ {
			if s := postOne(); s != 200 {
				t.Fatalf("%s: POST after recovery = %d", what, s)
			}
		}
		alive(what)
	}

	// 1. Another program fills the disk to 100 MiB free: the receiver answers
	// 503 once less than its reserve (64 MiB) would be left.
	t.Logf("before filling: %d MiB free (the log preallocates its WAL files)", freeBytes(t, mnt)>>20)
	filler := fill(t, mnt, 100<<20)
	t.Logf("filled: %d MiB free", freeBytes(t, mnt)>>20)
	for first503 := -1; ; {
		if postOne() == 503 && first503 < 0 {
			first503 = next
			t.Logf("first 503 after %d requests (%d answered 200); %d MiB free", next, acked, freeBytes(t, mnt)>>20)
		}
		if first503 >= 0 && next-first503 >= 50 {
			break
		}
		if next > 20_000 {
			t.Fatalf("no 503 after %d requests; %d MiB free", next, freeBytes(t, mnt)>>20)
		}
	}
	refusing("below the reserve", 3*time.Second)
	ready, _ := http.Get(srv.URL + "/readyz")
	ready.Body.Close()
	t.Logf("below the reserve: %d answered 200, %d answered 503; %d MiB free; /readyz %d", acked, refused, freeBytes(t, mnt)>>20, ready.StatusCode)
	if ready.StatusCode != 503 {
		t.Errorf("/readyz = %d with the disk full, want 503", ready.StatusCode)
	}
	recoverSpace("after the reserve was reached", filler)

	// 2. The disk fills to the last byte right after a burst of 200s, while
	// the loader is writing them to DuckDB on the same disk.
	for i := 0; i < 40; i++ {
		if s := postOne(); s != 200 {
			t.Fatalf("burst: POST = %d", s)
		}
	}
	filler = fill(t, mnt, 0)
	t.Logf("disk filled to the last byte: %d KiB free", freeBytes(t, mnt)>>10)
	refusing("with no space at all", 8*time.Second)
	recoverSpace("after the disk was completely full", filler)

	// Every 200 is in the log and, once loading resumes, in the warehouse
	// exactly once; no 503 left a record behind.
	want := int64(acked * perRequest)
	check := func(what string) {
		t.Helper()
		got, err := c.Integration(ctx, integ.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Stats.RecordsReceived != want {
			t.Fatalf("%s: the log holds %d records, %d were answered 200", what, got.Stats.RecordsReceived, want)
		}
		loadedWithin(t, c, integ.ID, want, 5*time.Minute)
		r, err := c.Query(ctx, "select count(*), count(distinct req * 100 + j), count(distinct req), min(req), max(req) from disk_full.data")
		if err != nil {
			t.Fatal(err)
		}
		row := fmt.Sprintf("%v %v %v %v %v", r.Rows[0]...)
		exp := fmt.Sprintf("%d %d %d %d %d", want, want, acked, acks[0], acks[len(acks)-1])
		if row != exp {
			t.Fatalf("%s: disk_full.data count, distinct records, requests, first, last = %s, want %s", what, row, exp)
		}
		// The requests in the warehouse are exactly those answered 200.
		r, err = c.Query(ctx, "select distinct req from disk_full.data order by req")
		if err != nil {
			t.Fatal(err)
		}
		for i, row := range r.Rows {
			if fmt.Sprint(row[0]) != fmt.Sprint(acks[i]) {
				t.Fatalf("%s: request %v is in the warehouse, the %dth 200 was request %d", what, row[0], i+1, acks[i])
			}
		}
	}
	check("after recovery")
	if n := strings.Count(srv.Stderr.String(), "level=ERROR"); n > 0 {
		t.Logf("%d error lines in the server log while the disk was full, e.g.:\n%s", n, firstLines(srv.Stderr.String(), "level=ERROR", 5))
	}

	srv.Term(t)
	srv = startChild(t, dir, addr)
	check("after a restart")
	srv.Term(t)
}

// firstLines returns the first n lines of s containing sub.
func firstLines(s, sub string, n int) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, tail(l, 400))
			if len(out) == n {
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
