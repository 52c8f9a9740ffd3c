package web

import (
	"encoding/xml"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/history"
)

// hourPoints is a zero-filled hour window ending at 12:00 UTC, as History gives it.
func hourPoints() []history.Point {
	start := time.Date(2026, 1, 1, 11, 1, 0, 0, time.UTC)
	pts := make([]history.Point, 60)
	for i := range pts {
		pts[i].At = start.Add(time.Duration(i) * time.Minute)
	}
	return pts
}

// wellFormed fails unless html (a figure with an SVG in it) parses as XML: an
// unescaped value would break it.
func wellFormed(t *testing.T, html string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(html))
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("chart is not well-formed: %v\n%s", err, html)
		}
	}
}

var rectRe = regexp.MustCompile(`<rect class="bar ([a-z0-9-]+)" x="([0-9.]+)" y="([0-9.]+)" width="([0-9.]+)" height="([0-9.]+)"/>`)

type bar struct {
	class      string
	x, y, w, h float64
}

func bars(html string) []bar {
	var out []bar
	for _, m := range rectRe.FindAllStringSubmatch(html, -1) {
		b := bar{class: m[1]}
		b.x, _ = strconv.ParseFloat(m[2], 64)
		b.y, _ = strconv.ParseFloat(m[3], 64)
		b.w, _ = strconv.ParseFloat(m[4], 64)
		b.h, _ = strconv.ParseFloat(m[5], 64)
		out = append(out, b)
	}
	return out
}

func TestChartScaling(t *testing.T) {
	pts := hourPoints()
	pts[10].Received, pts[10].Loaded = 30, 30
	pts[20].Received, pts[20].Loaded, pts[20].Rejected = 15, 12, 3
	html := string(recordsChart("records", windowOf("hour"), pts))
	wellFormed(t, html)
	// 30 is the top of the scale (1, 2, 3 … × 10ⁿ), so its bar is the plot's full height.
	for _, want := range []string{">30</text>", ">15</text>", ">0</text>", "records / min", "60 min ago", "now",
		"45 received, 42 loaded and 3 rejected in the last hour.", "The busiest minute had 30 received (Jan 1 11:11 UTC)",
		`role="img"`, `aria-labelledby="records-title records-desc"`, `<desc id="records-desc">`} {
		if !strings.Contains(html, want) {
			t.Errorf("records chart lacks %q", want)
		}
	}
	bs := bars(html)
	if len(bs) != 3 {
		t.Fatalf("%d bars, want 3 (two received, one rejected): %+v", len(bs), bs)
	}
	byClass := map[string][]bar{}
	for _, b := range bs {
		byClass[b.class] = append(byClass[b.class], b)
	}
	full, half, rej := byClass["received"][0], byClass["received"][1], byClass["rejected"][0]
	if full.h != plotH || full.y != chartTop {
		t.Errorf("the 30 bar is %v high at y %v, want the full %v at %v", full.h, full.y, plotH, chartTop)
	}
	if half.h != plotH/2 || half.y+half.h != chartTop+plotH {
		t.Errorf("the 15 bar is %v high ending at %v, want %v on the baseline", half.h, half.y+half.h, plotH/2)
	}
	if rej.x != half.x || rej.h != plotH/10 {
		t.Errorf("the rejected bar is at x %v, %v high; want at %v, %v high", rej.x, rej.h, half.x, plotH/10)
	}
	if slot := plotW / 60; full.x < chartLeft+10*slot || full.x+full.w > chartLeft+11*slot {
		t.Errorf("bucket 10 is drawn at %v..%v, outside its slot", full.x, full.x+full.w)
	}
	if n := strings.Count(html, `class="hit"`); n != 60 {
		t.Errorf("%d hover targets, want one per bucket", n)
	}
	if !strings.Contains(html, "<title>Jan 1 11:21 UTC: 15 received, 12 loaded, 3 rejected</title>") {
		t.Error("the bucket tooltip is missing")
	}
	if !strings.Contains(html, `<polyline class="line loaded"`) {
		t.Error("no loaded line")
	}
}

func TestChartEmpty(t *testing.T) {
	for _, win := range windows {
		pts := make([]history.Point, map[history.Window]int{history.Hour: 60, history.Day: 144, history.Week: 168}[win.W])
		for name, html := range map[string]string{
			"records": string(recordsChart("r", win, pts)),
			"lag":     string(lagChart("l", win, pts)),
			"refused": string(refusedChart("f", win, pts)),
		} {
			wellFormed(t, html)
			if len(bars(html)) != 0 || strings.Contains(html, "<polyline") {
				t.Errorf("%s %s: empty data draws bars or a line", win.Param, name)
			}
			if !strings.Contains(html, `<text class="empty"`) || !strings.Contains(html, win.Span) {
				t.Errorf("%s %s: no empty message %q", win.Param, name, win.Span)
			}
		}
	}
	// No points at all (a history that has nothing yet) still draws a chart.
	wellFormed(t, string(recordsChart("r", windows[0], nil)))
	if !strings.Contains(string(recordsChart("r", windows[0], nil)), "0 received, 0 loaded and 0 rejected in the last hour") {
		t.Error("summary of no points")
	}
}

func TestChartSpike(t *testing.T) {
	pts := hourPoints()
	for i := range pts {
		pts[i].Received = 1
		pts[i].Lag = 0.5
	}
	pts[59].Received = 12340
	pts[59].Lag = 4000
	html := string(recordsChart("r", windowOf("hour"), pts))
	wellFormed(t, html)
	if !strings.Contains(html, ">20k</text>") || !strings.Contains(html, ">10k</text>") {
		t.Error("the scale of a 12,340 spike is not 0 / 10k / 20k")
	}
	if !strings.Contains(html, "12,399 received") {
		t.Error("summary does not group digits")
	}
	// The small buckets still show as 1-unit bars under the spike.
	bs := bars(html)
	if len(bs) != 60 || bs[0].h != 1 {
		t.Fatalf("%d bars, first %v high; want 60 with the small ones 1 high", len(bs), bs[0].h)
	}
	lag := string(lagChart("l", windowOf("hour"), pts))
	wellFormed(t, lag)
	for _, want := range []string{">80</text>", ">40</text>", "lag, minutes", "The largest lag in the last hour was 1 h 6 min", "it was 1 h 6 min"} {
		if !strings.Contains(lag, want) {
			t.Errorf("lag chart lacks %q", want)
		}
	}
}

func TestRefusedChartStacksCodes(t *testing.T) {
	pts := hourPoints()
	pts[5].Refused = map[int]int64{401: 3, 413: 1}
	pts[6].Refused = map[int]int64{401: 1, 418: 2}
	html := string(refusedChart("f", windowOf("day"), pts))
	wellFormed(t, html)
	if !strings.Contains(html, "7 requests refused in the last 24 hours: 4 × 401, 1 × 413, 2 × 418.") {
		t.Errorf("refused summary:\n%s", html)
	}
	bs := bars(html)
	var at5 []bar
	for _, b := range bs {
		if b.x == bs[0].x {
			at5 = append(at5, b)
		}
	}
	// 401 (3) then 413 (1) stacked in bucket 5: the 413 bar sits on the 401 bar.
	if len(at5) != 2 || at5[0].class != "code-401" || at5[1].class != "code-413" || at5[1].y+at5[1].h != at5[0].y {
		t.Errorf("bucket 5 is not 401 with 413 on top: %+v", at5)
	}
	if !strings.Contains(html, `<span class="swatch code-other"></span>418`) {
		t.Error("an uncommon code has no legend entry")
	}
	if !strings.Contains(html, "answers / 10 min") || !strings.Contains(html, "24 h ago") {
		t.Error("day window axis labels")
	}
}

func TestChartEscapes(t *testing.T) {
	c := chartSpec{
		ID: `x" onload="alert(1)`, Title: "<script>alert(1)</script>", Unit: "a & b", Summary: `"quoted" <b>`,
		Empty: "<i>none</i>", Win: windowOf("week"), At: make([]time.Time, 3), Format: countLabel,
		Stacks:  []stack{{Name: "<em>", Class: `c" x="1`, Values: []float64{1, 2, 3}}},
		Tooltip: func(i int) string { return "</title><script>" },
	}
	html := string(drawChart(c))
	wellFormed(t, html)
	for _, bad := range []string{"<script>", `" onload=`, "<b>", "<em>", `c" x="1`, "</title><script>"} {
		if strings.Contains(html, bad) {
			t.Errorf("chart holds unescaped %q", bad)
		}
	}
	if !strings.Contains(html, "&lt;script&gt;alert(1)&lt;/script&gt;") || !strings.Contains(html, "a &amp; b") {
		t.Error("escaped text is missing")
	}
}

func TestSparkline(t *testing.T) {
	pts := hourPoints()
	pts[3].Received, pts[3].Rejected = 8, 2
	html := string(sparkline(windowOf("hour"), pts))
	wellFormed(t, html)
	if !strings.Contains(html, `aria-label="8 received and 2 rejected in the last hour"`) || len(bars(html)) != 2 {
		t.Errorf("sparkline:\n%s", html)
	}
	if html := string(sparkline(windowOf("hour"), make([]history.Point, 60))); len(bars(html)) != 0 {
		t.Error("an empty sparkline has bars")
	}
}

func TestNiceMax(t *testing.T) {
	for _, c := range []struct {
		v      float64
		counts bool
		want   float64
	}{
		{0, true, 2}, {0, false, 1}, {1, true, 2}, {3, true, 4}, {5, true, 6}, {9, true, 10}, {11, true, 20},
		{30, true, 30}, {31, true, 40}, {12340, true, 20000}, {0.3, false, 0.3}, {7, false, 8}, {81, false, 100},
	} {
		if got := niceMax(c.v, c.counts); got != c.want {
			t.Errorf("niceMax(%v, %v) = %v, want %v", c.v, c.counts, got, c.want)
		}
	}
}
