package web

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/api"
	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/history"
	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// fakeHistory answers History with a spike of received, loaded and rejected
// records in the newest bucket, and records which windows were asked for.
type fakeHistory struct {
	mu       sync.Mutex
	asked    []history.Window
	rejected int64
}

func (h *fakeHistory) Points(id int64, w history.Window) []history.Point {
	h.mu.Lock()
	h.asked = append(h.asked, w)
	rejected := h.rejected
	h.mu.Unlock()
	n := map[history.Window]int{history.Hour: 60, history.Day: 144, history.Week: 168}[w]
	pts := make([]history.Point, n)
	start := time.Date(2026, 1, 1, 11, 0, 0, 0, time.UTC)
	for i := range pts {
		pts[i].At = start.Add(time.Duration(i) * time.Minute)
	}
	pts[n-1] = history.Point{At: pts[n-1].At, Received: 6, Loaded: 3, Rejected: rejected, Lag: 2, Refused: map[int]int64{401: 4}}
	return pts
}

func (h *fakeHistory) windows() []history.Window {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]history.Window(nil), h.asked...)
}

// TestChartsAndRejections: with history, the list and the integration page
// show charts for the chosen window, the list a Rejected column, and the badge
// turns amber when records were rejected in the window.
func TestChartsAndRejections(t *testing.T) {
	h := &fakeHistory{rejected: 3}
	e := newEnv(t, func(o *Options) {
		o.History = h.Points
		o.Stats = func(int64) api.Stats { return api.Stats{RecordsReceived: 6, RecordsLoaded: 3, RecordsRejected: 3} }
	})
	in, err := e.ctl.Create(control.NewIntegration{Name: "Stitch Vero", Type: "vero"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b := e.client(t)
	b.login(e.key)

	_, page := b.do("GET", "/", nil)
	for _, want := range []string{
		`<th class="num">Rejected</th>`, `<td class="num rejected">3</td>`,
		`class="badge amber"`, ">records rejected<", "3 records were rejected in the last hour",
		`id="all-records"`, `id="all-lag"`, `id="all-refused"`, `<svg class="spark"`,
		"6 received, 3 loaded and 3 rejected in the last hour.", "4 requests refused in the last hour: 4 × 401.",
		`<a href="?window=hour" aria-current="page">Last hour</a>`, `<a href="?window=week">Last week</a>`,
		`id="live" data-live`, `data-live-note`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("list lacks %q", want)
		}
	}

	ipath := "/integrations/" + itoa(in.ID)
	_, page = b.do("GET", ipath+"?window=week", nil)
	for _, want := range []string{
		`id="records"`, `id="lag"`, `id="refused"`, "in the last 7 days", "records / h", "7 days ago",
		`id="badge" data-live class="badge amber"`, `<a href="?window=week" aria-current="page">Last week</a>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("integration page (week) lacks %q", want)
		}
	}
	if got := h.windows(); got[len(got)-1] != history.Week {
		t.Errorf("the week page asked for windows %v", got)
	}

	// No rejections in the window: green again, while the totals still say 3.
	h.mu.Lock()
	h.rejected = 0
	h.mu.Unlock()
	_, page = b.do("GET", "/", nil)
	if !strings.Contains(page, `class="badge green"`) || !strings.Contains(page, `<td class="num rejected">3</td>`) {
		t.Error("without rejections in the window the list is not green with 3 rejected so far")
	}

	// Without history: no charts, no switcher; amber goes by every rejection so far.
	e2 := newEnv(t, func(o *Options) {
		o.Stats = func(int64) api.Stats { return api.Stats{RecordsReceived: 6, RecordsLoaded: 3, RecordsRejected: 3} }
	})
	if _, err := e2.ctl.Create(control.NewIntegration{Name: "Stitch Vero", Type: "vero"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	b2 := e2.client(t)
	b2.login(e2.key)
	_, page = b2.do("GET", "/", nil)
	if strings.Contains(page, "<svg") || strings.Contains(page, "?window=") {
		t.Error("charts or a window switcher without history")
	}
	if !strings.Contains(page, `class="badge amber"`) || !strings.Contains(page, "3 records were rejected so far") {
		t.Error("without history, rejections so far do not make the badge amber")
	}
}

// TestFragment: ?fragment=1 answers only the live parts, for a session only.
func TestFragment(t *testing.T) {
	h := &fakeHistory{}
	received := int64(3)
	var mu sync.Mutex
	e := newEnv(t, func(o *Options) {
		o.History = h.Points
		o.Stats = func(int64) api.Stats {
			mu.Lock()
			defer mu.Unlock()
			return api.Stats{RecordsReceived: received, RecordsLoaded: received}
		}
	})
	in, err := e.ctl.Create(control.NewIntegration{Name: "Stitch Vero", Type: "vero"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ipath := "/integrations/" + itoa(in.ID)
	anon := e.client(t)
	for _, p := range []string{"/?fragment=1", ipath + "?fragment=1"} {
		if resp, body := anon.do("GET", p, nil); resp.StatusCode != http.StatusSeeOther || strings.Contains(body, "stat-received") {
			t.Errorf("GET %s without a session = %d, want 303 to /login", p, resp.StatusCode)
		}
	}
	b := e.client(t)
	b.login(e.key)
	mu.Lock()
	received = 12340
	mu.Unlock()
	resp, frag := b.do("GET", ipath+"?window=day&fragment=1", nil)
	if resp.StatusCode != 200 || strings.Contains(frag, "<html") || strings.Contains(frag, "Webhook URLs") ||
		!strings.Contains(frag, `<dd id="stat-received">12,340</dd>`) || !strings.Contains(frag, `id="badge" data-live`) ||
		!strings.Contains(frag, "in the last 24 hours") {
		t.Fatalf("integration fragment = %d:\n%s", resp.StatusCode, frag)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("fragment headers: CSP %q, Cache-Control %q", csp, resp.Header.Get("Cache-Control"))
	}
	resp, frag = b.do("GET", "/?fragment=1", nil)
	if resp.StatusCode != 200 || strings.Contains(frag, "<html") || !strings.Contains(frag, `<td class="num received">12,340</td>`) ||
		!strings.Contains(frag, `id="all-records"`) {
		t.Fatalf("list fragment = %d:\n%s", resp.StatusCode, frag)
	}
	// The page the fragment updates has the same ids, and app.js from /static.
	_, page := b.do("GET", ipath, nil)
	for _, want := range []string{`id="badge" data-live`, `id="live" data-live`, `<script src="/static/app.js" defer></script>`} {
		if !strings.Contains(page, want) {
			t.Errorf("integration page lacks %q", want)
		}
	}
}

func TestFieldsFirst(t *testing.T) {
	res := fieldsFirst(&warehouse.Result{
		Columns: []string{"_sdc_batched_at", "a", "_sdc_sequence", "_sdc_extra", "b", "_sdc_received_at", "_sdc_table_version"},
		Rows:    [][]any{{"bt", 1, int64(7), "x", 2, "rt", int64(0)}},
	})
	want := []string{"_sdc_received_at", "_sdc_sequence", "a", "b", "_sdc_batched_at", "_sdc_table_version", "_sdc_extra"}
	if strings.Join(res.Columns, ",") != strings.Join(want, ",") {
		t.Fatalf("columns %v, want %v", res.Columns, want)
	}
	if got := res.Rows[0]; got[0] != "rt" || got[1] != int64(7) || got[2] != 1 || got[6] != "x" {
		t.Fatalf("row %v does not follow its columns", got)
	}
}
