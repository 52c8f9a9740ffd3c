package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/natstest"
	"github.com/hookhouse/hookhouse/internal/secretbox"
	"github.com/hookhouse/hookhouse/internal/state"
	"github.com/hookhouse/hookhouse/internal/verify"
)

// singleNode makes a real single node's data dir through the state and
// control packages, as 'hookhouse serve' leaves it: an integration with a
// webhook URL, 26 records and a redelivery claim, and a secret.key beside the state. It returns
// the dir and the URL's token.
func singleNode(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	p, err := state.OpenPebble(filepath.Join(dir, "state"), quiet, state.Options{MinFreeBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctl, err := control.Open(p, state.ErrNotFound, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.EnsureAdminKey(); err != nil {
		t.Fatal(err)
	}
	in, err := ctl.Create(control.NewIntegration{Name: "Vero", Type: control.TypeVero}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, token, err := ctl.GenerateURL(in.ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 25 {
		if _, err := p.Append(context.Background(), in.ID, time.Now(), [][]byte{[]byte(fmt.Sprintf(`{"i":%d}`, i))}); err != nil {
			t.Fatal(err)
		}
	}
	// A delivery with an id: its claim counts for an hour.
	if _, _, err := p.AppendOnce(context.Background(), in.ID, time.Now(), "evt-1", time.Hour, [][]byte{[]byte(`{"i":25}`)}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secret.key"), []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, token
}

func runMigrate(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(context.Background(), append([]string{"migrate"}, args...), strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestMigrateCommand runs 'hookhouse migrate' on a real data dir into an
// embedded cluster: refused while the server runs and without --yes off a
// terminal; then copied with a summary and the next steps; a node of the
// cluster has every record and the webhook URL; a second run copies nothing.
func TestMigrateCommand(t *testing.T) {
	c := natstest.Start(t, 3)
	dir, token := singleNode(t)
	// A password in a NATS URL never shows in the output.
	natsArg := strings.Replace(c.URLs(), "nats://", "nats://hh:s3cret-pw@", 1)
	args := []string{"--from", dir, "--nats", natsArg, "--nats-stream", "cli"}

	// A server still running on the data dir holds its lock.
	p, err := state.OpenPebble(filepath.Join(dir, "state"), slog.New(slog.DiscardHandler), state.Options{MinFreeBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runMigrate(append(args, "--yes")...)
	p.Close()
	if code != 1 || !strings.Contains(stderr, "a hookhouse server still runs on it") || !strings.Contains(stderr, "Stop it first") {
		t.Fatalf("migrate of a running node: exit %d, %s", code, stderr)
	}

	code, stdout, stderr := runMigrate(args...)
	if code != 1 || !strings.Contains(stderr, "not migrating without --yes") || !strings.Contains(stdout, "integration 1 (vero): 26 records, positions 1–26") {
		t.Fatalf("migrate without --yes: exit %d\n%s\n%s", code, stdout, stderr)
	}

	code, stdout, stderr = runMigrate(append(args, "--yes")...)
	if code != 0 {
		t.Fatalf("migrate: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if strings.Contains(stdout+stderr, "s3cret-pw") {
		t.Errorf("the NATS password is in the output:\n%s\n%s", stdout, stderr)
	}
	for _, want := range []string{"Done: 26 records of 1 integration and ", "Next steps", filepath.Join(dir, "secret.key"), "--nats nats://hh:xxxxx@127.0.0.1:", "keep\n     working"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the output lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stdout, "with 1 redelivery claims") || !strings.Contains(stderr, "copied 1 of 1 claims") {
		t.Errorf("the claim is not in the output:\n%s\n%s", stdout, stderr)
	}
	if !strings.Contains(stderr, "copied 26 of 26 records") {
		t.Errorf("no progress on stderr:\n%s", stderr)
	}

	// A node of the cluster.
	nc, err := nats.Connect(c.URL(1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := state.OpenJetStream(ctx, nc, slog.New(slog.DiscardHandler), state.JetStreamOptions{Name: "cli"})
	if err != nil {
		t.Fatal(err)
	}
	defer js.Close()
	ctl, err := control.Open(js, state.ErrNotFound, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if !ctl.Authenticate(1, token, time.Now()) {
		t.Fatal("the webhook URL does not authenticate on the cluster")
	}
	recs, err := js.Read(ctx, 1, 0, 100, 1<<20)
	if err != nil || len(recs) != 26 || string(recs[25].Body) != `{"i":25}` || recs[25].Position != 26 {
		t.Fatalf("the cluster's log: %d records, %v", len(recs), err)
	}
	if _, dup, err := js.AppendOnce(ctx, 1, time.Now(), "evt-1", time.Hour, [][]byte{[]byte(`{}`)}); err != nil || !dup {
		t.Fatalf("a redelivery of evt-1 on the cluster: duplicate %v, %v", dup, err)
	}

	code, stdout, _ = runMigrate(append(args, "--json")...)
	var out struct {
		State  string `json:"state"`
		Copied int    `json:"records_copied"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); code != 0 || err != nil || out.State != "done" || out.Copied != 0 {
		t.Fatalf("second run: exit %d, %+v, %v\n%s", code, out, err, stdout)
	}
}

// TestMigrateCommandRefusesDirs: a dir that is not a data dir, or the state
// dir itself, is refused with the fix.
func TestMigrateCommandRefusesDirs(t *testing.T) {
	dir, _ := singleNode(t)
	for _, c := range []struct{ from, want string }{
		{t.TempDir(), "is not a hookhouse data dir"},
		{filepath.Join(dir, "state"), "is the state dir itself"},
		{filepath.Join(dir, "nope"), "no such file"},
	} {
		code, _, stderr := runMigrate("--from", c.from, "--nats", "nats://127.0.0.1:1", "--yes")
		if code != 1 || !strings.Contains(stderr, c.want) {
			t.Errorf("--from %s: exit %d, %s", c.from, code, stderr)
		}
	}
	if code, _, stderr := runMigrate("--nats", "nats://127.0.0.1:1"); code != 2 || !strings.Contains(stderr, "--from DIR is required") {
		t.Errorf("no --from: exit %d, %s", code, stderr)
	}
}

// TestMigrateSecretKeyWarning: the key the next steps name must open the
// node's sealed signing secrets; a wrong or missing one is said before
// copying.
func TestMigrateSecretKeyWarning(t *testing.T) {
	t.Setenv("HOOKHOUSE_SECRET_KEY", "")
	dir := t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	p, err := state.OpenPebble(filepath.Join(dir, "state"), quiet, state.Options{MinFreeBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := control.Open(p, state.ErrNotFound, quiet)
	if err != nil {
		t.Fatal(err)
	}
	box, err := secretbox.Load(dir, "") // writes dir/secret.key
	if err != nil {
		t.Fatal(err)
	}
	if err := ctl.SetSealer(box); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Create(control.NewIntegration{Name: "gh", Type: control.TypeWebhooks,
		Verify: &verify.Config{Scheme: verify.GitHub}, Secret: "it-is-a-secret"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	p.Close()
	src, err := state.OpenPebbleReadOnly(filepath.Join(dir, "state"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if w := secretKeyWarning(src, dir); w != "" {
		t.Fatalf("the right key: %s", w)
	}
	if err := os.WriteFile(filepath.Join(dir, "secret.key"), []byte(strings.Repeat("cd", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	if w := secretKeyWarning(src, dir); !strings.Contains(w, "does not open") || strings.Contains(w, strings.Repeat("cd", 32)) {
		t.Fatalf("another key: %q", w)
	}
	os.Remove(filepath.Join(dir, "secret.key"))
	if w := secretKeyWarning(src, dir); !strings.Contains(w, "neither in") {
		t.Fatalf("no key: %q", w)
	}
}
