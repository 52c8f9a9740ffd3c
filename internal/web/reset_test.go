package web

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/api"
	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/loader"
)

// TestResetFromDashboard: the integration page has a reset button and shows
// the reload's progress (also in the live fragment); the confirmation names
// the schema and resets only when it is typed, with the CSRF token; a refusal
// (retention trimmed the log's head) is shown on the confirmation with the
// choice to accept a partial reset.
func TestResetFromDashboard(t *testing.T) {
	var (
		mu    sync.Mutex
		calls []bool // accept_partial of each reset
	)
	eta := 8.4
	e := newEnv(t, func(o *Options) {
		o.Stats = func(int64) api.Stats {
			return api.Stats{RecordsReceived: 4000, RecordsLoaded: 1200, Reset: &api.ResetStats{
				RequestedAt: time.Now(), CommittedAt: new(time.Now()), FromPosition: 1, TargetPosition: 4000,
				RecordsReloaded: 1200, RecordsTotal: 4000, RecordsPerSecond: 333.3, ETASeconds: &eta}}
		}
		o.Reset = func(ctx context.Context, id int64, accept bool) error {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, accept)
			if !accept {
				return fmt.Errorf("loader: reset integration %d (schema stitch_vero) refused, %w: the log no longer holds its first 12 records", id, loader.ErrPartial)
			}
			return nil
		}
	})
	b := e.client(t)
	b.login(e.key)
	in, err := e.ctl.Create(control.NewIntegration{Name: "Stitch Vero", Type: "vero"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ipath := "/integrations/" + itoa(in.ID)
	_, page := b.do("GET", ipath, nil)
	for _, want := range []string{`id="reset">Reset tables…</button>`, `action="/integrations/` + itoa(in.ID) + `/reset"`,
		"reloaded <span id=\"reset-reloaded\">1,200</span> of <span id=\"reset-total\">4,000</span> records (30%)", "333 records/s", "about 8 s left",
		`<progress id="reset-bar" max="4000" value="1200">`} {
		if !strings.Contains(page, want) {
			t.Errorf("the integration page lacks %q", want)
		}
	}
	if _, frag := b.do("GET", ipath+"?fragment=1", nil); !strings.Contains(frag, `id="reset-live" data-live`) || !strings.Contains(frag, "of <span id=\"reset-total\">4,000</span>") {
		t.Errorf("the live fragment lacks the reset's progress:\n%s", frag)
	}

	_, confirm := b.do("GET", ipath+"/reset", nil)
	if !strings.Contains(confirm, "Type the schema name, <code>stitch_vero</code>, to confirm") || !strings.Contains(confirm, "Drop the tables of stitch_vero and reload") {
		t.Fatalf("confirmation page:\n%s", confirm)
	}
	csrf := hidden(confirm, "csrf")
	reset := func(form url.Values) (*http.Response, string) { return b.do("POST", ipath+"/reset", form) }
	if resp, _ := reset(url.Values{"schema": {"stitch_vero"}}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("reset without CSRF = %d", resp.StatusCode)
	}
	if resp, body := reset(url.Values{"csrf": {csrf}, "schema": {"stitch"}}); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "Type the schema name, stitch_vero, to confirm the reset; nothing was reset.") {
		t.Fatalf("reset with the wrong name = %d:\n%s", resp.StatusCode, body)
	}
	if len(calls) != 0 {
		t.Fatalf("reset called %d times without a confirmation", len(calls))
	}
	resp, body := reset(url.Values{"csrf": {csrf}, "schema": {"stitch_vero"}})
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "the log no longer holds its first 12 records") || !strings.Contains(body, `id="accept-partial"`) {
		t.Fatalf("refused reset = %d:\n%s", resp.StatusCode, body)
	}
	resp, _ = reset(url.Values{"csrf": {csrf}, "schema": {"stitch_vero"}, "accept_partial": {"1"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != ipath+"?reset=1" {
		t.Fatalf("confirmed reset = %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if fmt.Sprint(calls) != "[false true]" {
		t.Fatalf("reset calls (accept_partial) %v, want [false true]", calls)
	}
	if _, page := b.do("GET", ipath+"?reset=1", nil); !strings.Contains(page, "The tables of schema stitch_vero were dropped") {
		t.Fatal("no flash after the reset")
	}
}

// TestResetDoneShown: a finished reset is one quiet line, partial ones say so.
func TestResetDoneShown(t *testing.T) {
	done := time.Date(2026, 1, 1, 12, 0, 5, 0, time.UTC)
	p := integrationPage{Stats: api.Stats{Reset: &api.ResetStats{RequestedAt: done.Add(-5 * time.Second), CommittedAt: &done, FinishedAt: &done,
		FromPosition: 13, TargetPosition: 17, RecordsReloaded: 5, RecordsTotal: 5, Done: true}}}
	v := p.ResetProgress()
	if v == nil || v.Percent != 100 || v.Rate != "" || v.ETA != "" {
		t.Fatalf("done reset view %+v", v)
	}
	if (integrationPage{}).ResetProgress() != nil {
		t.Fatal("a reset shown without one")
	}
	e := newEnv(t, func(o *Options) { o.Stats = func(int64) api.Stats { return p.Stats } })
	b := e.client(t)
	b.login(e.key)
	in, err := e.ctl.Create(control.NewIntegration{Name: "Stitch Vero", Type: "vero"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, page := b.do("GET", "/integrations/"+itoa(in.ID), nil)
	if !strings.Contains(page, "Last reset 2026-01-01 12:00:00 UTC: 5 records reloaded, done 2026-01-01 12:00:05 UTC. Partial: the log held positions 13 on.") ||
		strings.Contains(page, "<progress") {
		t.Fatalf("a finished reset on the page:\n%s", page)
	}
}
