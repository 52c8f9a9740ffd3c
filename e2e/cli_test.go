package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestCLIAgainstServer runs the built binary's commands against a real server,
// with the admin key taken from <data>/admin.key as on the server's machine.
func TestCLIAgainstServer(t *testing.T) {
	dir := t.TempDir()
	addr := freePort(t)
	srv := startChild(t, dir, addr)
	cli := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(binPath, append(args, "--server", srv.URL, "--data", dir)...)
		cmd.Env = append(os.Environ(), "HOOKHOUSE_ADMIN_KEY=")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}
	out, errs, code := cli("integrations", "add", "--name", "Stitch Vero", "--type", "vero")
	if code != 0 || !strings.Contains(out, "stitch_vero") {
		t.Fatalf("integrations add: %d %s %s", code, out, errs)
	}
	out, errs, code = cli("urls", "generate", "1", "--json")
	var u struct{ URL string }
	if code != 0 || json.Unmarshal([]byte(out), &u) != nil || !strings.Contains(u.URL, "/v1/clients/1/token/") {
		t.Fatalf("urls generate: %d %s %s", code, out, errs)
	}
	hook := srv.URL + u.URL[strings.Index(u.URL, "/v1/"):]
	for _, f := range veroFiles(t) {
		if status, _ := post(t, hook, "application/json", mustRead(t, f)); status != 200 {
			t.Fatalf("POST %s = %d", f, status)
		}
	}
	waitFor(t, 30*time.Second, "rows via hookhouse sql", func() (bool, string) {
		out, errs, code := cli("sql", "select type, count(*) as n from stitch_vero.data group by 1 order by 1", "--csv")
		return code == 0 && strings.Contains(out, "type,n\n") && strings.Contains(out, "bounced,2\n"), out + errs
	})
	out, _, code = cli("urls", "list", "1")
	if code != 0 || !strings.Contains(out, "****"+u.URL[len(u.URL)-4:]) || strings.Contains(out, u.URL[len(u.URL)-64:]) {
		t.Fatalf("urls list: %d %s", code, out)
	}
	out, _, code = cli("integrations", "show", "1", "--json")
	if code != 0 || !strings.Contains(out, `"records_received": 14`) && !strings.Contains(out, `"records_received":14`) {
		t.Fatalf("integrations show: %d %s", code, out)
	}
	_, errs, code = cli("sql", "drop table stitch_vero.data")
	if code == 0 || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		t.Fatalf("a write through hookhouse sql: exit %d, stderr %q; want a failure with a one-line reason", code, errs)
	}
	out, _, code = cli("status")
	if code != 0 || !strings.Contains(out, "warehouse") {
		t.Fatalf("status: %d %s", code, out)
	}
	_, errs, code = cli("integrations", "show", "99")
	if code == 0 || !strings.Contains(errs, "404") {
		t.Fatalf("show of a missing integration: %d %s", code, errs)
	}
	srv.Term(t)
}
