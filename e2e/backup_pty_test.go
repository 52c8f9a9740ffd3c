package e2e

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hookhouse/hookhouse/client"
)

// openBackupPTY opens a pseudo-terminal pair: the command gets tty, the test
// reads what it draws from pty.
func openBackupPTY(t *testing.T) (pty, tty *os.File) {
	t.Helper()
	pty, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(pty.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(pty.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open tty: %v", err)
	}
	if err := unix.IoctlSetWinsize(int(tty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 120}); err != nil {
		t.Fatalf("size tty: %v", err)
	}
	return pty, tty
}

// TestBackupProgressOnATerminal: on a terminal 'hookhouse backup' and
// 'hookhouse restore' draw a progress bar (redrawn in place, with the
// percentage), not the plain lines a pipe gets (TestBackupRestoreUnderLoad).
func TestBackupProgressOnATerminal(t *testing.T) {
	dir := t.TempDir()
	srv := startChild(t, dir, freePort(t))
	cl := client.New(srv.URL, adminKey(t, dir))
	id, hook := setupVeroClient(t, cl, srv.URL)
	for i := range 50 {
		if status, _ := post(t, hook, "application/json", []byte(fmt.Sprintf(`{"n":%d}`, i))); status != 200 {
			t.Fatal("POST")
		}
	}
	waitLoaded(t, cl, id, 50)

	run := func(args ...string) string {
		t.Helper()
		pty, tty := openBackupPTY(t)
		defer pty.Close()
		cmd := exec.Command(binPath, args...)
		cmd.Env = append(os.Environ(), "HOOKHOUSE_ADMIN_KEY=")
		var stdout bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, tty
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		tty.Close()
		drawn := make(chan []byte)
		go func() {
			b, _ := io.ReadAll(pty) // ends with EIO once the command exits
			drawn <- b
		}()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%v: %v\n%s", args, err, stdout.String())
			}
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("%v did not finish", args)
		}
		return string(<-drawn)
	}
	bdir := filepath.Join(t.TempDir(), "backup")
	for _, out := range []string{
		run("backup", bdir, "--server", srv.URL, "--data", dir),
		run("restore", bdir, "--data", filepath.Join(t.TempDir(), "restored")),
	} {
		t.Logf("terminal: %q", out)
		if !strings.Contains(out, "\r") || !strings.Contains(out, "100%") || !strings.Contains(out, "|") {
			t.Errorf("no progress bar drawn on the terminal: %q", out)
		}
		if strings.Contains(out, ": started\n") {
			t.Errorf("a terminal got the plain lines meant for a pipe: %q", out)
		}
	}
}

// setupVeroClient creates a Vero integration and a URL through cl.
func setupVeroClient(t *testing.T, cl *client.Client, base string) (int64, string) {
	t.Helper()
	in, err := cl.CreateIntegration(t.Context(), client.NewIntegration{Name: "Stitch Vero", Type: "vero"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := cl.GenerateURL(t.Context(), in.ID)
	if err != nil {
		t.Fatal(err)
	}
	return in.ID, rebase(u.URL, base)
}
