package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestPauseResume: while an integration's loading is paused (CLI), webhooks
// are still accepted, nothing loads, and the stats and /status say it is paused
// with its backlog; resuming loads every waiting record once.
func TestPauseResume(t *testing.T) {
	ctx := context.Background()
	in := startServer(t, nil)
	id, hook := setupVero(t, in)
	env := []string{"HOOKHOUSE_ADMIN_KEY=" + in.Key}
	out, errOut, code := runCLI(t, in.URL, env, "integrations", "pause", fmt.Sprint(id))
	if code != 0 || !strings.Contains(out, "Paused loading of integration") {
		t.Fatalf("pause: exit %d\n%s%s", code, out, errOut)
	}
	for _, f := range veroFiles(t)[:3] {
		if status, body := post(t, hook, "application/json", mustRead(t, f)); status != 200 {
			t.Fatalf("POST while paused = %d %s", status, body)
		}
	}
	time.Sleep(2 * time.Second) // ten batch-wait periods: a running loader would have loaded them
	integ, err := in.Client.Integration(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if s := integ.Stats; !s.Paused || s.RecordsLoaded != 0 || s.Backlog != 3 {
		t.Fatalf("while paused: stats %+v, want paused, 0 loaded, 3 waiting", *s)
	}
	st, err := in.Client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Integrations) != 1 || !st.Integrations[0].Paused {
		t.Fatalf("/status.json integrations %+v: want it shown paused", st.Integrations)
	}
	out, errOut, code = runCLI(t, in.URL, env, "integrations", "resume", fmt.Sprint(id))
	if code != 0 || !strings.Contains(out, "Resumed loading") {
		t.Fatalf("resume: exit %d\n%s%s", code, out, errOut)
	}
	waitLoaded(t, in.Client, id, 3)
	if n := rows(t, in.Client, "stitch_vero.data"); n != 3 {
		t.Fatalf("stitch_vero.data has %d rows, want 3", n)
	}
}
