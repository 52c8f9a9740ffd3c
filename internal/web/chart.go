package web

import (
	"fmt"
	"html/template"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hookhouse/hookhouse/internal/history"
)

// The charts are drawn here, on the server, as inline SVG: no script library,
// nothing for the CSP to allow, and they show without JavaScript. Colours come
// from classes in style.css (a style attribute would be inline style, which the
// CSP refuses). Every chart is a pure function of its points, so it is tested
// without a server.

// windowView is what a page needs to know about the window it charts.
type windowView struct {
	W      history.Window
	Param  string // the ?window= value
	Label  string // "Last hour"
	Span   string // "in the last hour"
	Bucket string // the unit of one bucket: "min"
	ticks  [3]string
}

var windows = []windowView{
	{history.Hour, "hour", "Last hour", "in the last hour", "min", [3]string{"60 min ago", "30 min ago", "now"}},
	{history.Day, "day", "Last day", "in the last 24 hours", "10 min", [3]string{"24 h ago", "12 h ago", "now"}},
	{history.Week, "week", "Last week", "in the last 7 days", "h", [3]string{"7 days ago", "3.5 days ago", "now"}},
}

// windowOf reads ?window=hour|day|week; anything else is the last hour.
func windowOf(param string) windowView {
	for _, w := range windows {
		if w.Param == param {
			return w
		}
	}
	return windows[0]
}

// Geometry of a chart in SVG user units; the SVG scales to its box in CSS.
const (
	chartW      = 320.0 // three side by side on a wide screen, one on a phone
	chartH      = 170.0
	chartLeft   = 54.0 // y tick labels and the rotated unit label
	chartRight  = 8.0
	chartTop    = 10.0
	chartBottom = 24.0 // x tick labels
	plotW       = chartW - chartLeft - chartRight
	plotH       = chartH - chartTop - chartBottom
)

// chartSpec is one chart before drawing.
type chartSpec struct {
	ID      string // unique in the page; prefixes the title and desc ids
	Title   string
	Unit    string // y axis label, with the unit
	Summary string // the text alternative: shown under the chart and in <desc>
	Empty   string // said in the plot when every value is zero
	Win     windowView
	At      []time.Time // start of each bucket
	Stacks  []stack     // drawn in order, each a bar per bucket
	Line    *stack      // drawn over the bars, through the bucket centres
	Counts  bool        // whole numbers: the scale's middle tick must be one too
	Format  func(float64) string
	Tooltip func(i int) string // hover text of bucket i
}

// stack is one series: its bars stack on the series before it when Stacked.
type stack struct {
	Name    string
	Class   string // CSS class, which gives the colour
	Values  []float64
	Stacked bool
}

// recordsChart: received, loaded and rejected per bucket.
func recordsChart(id string, win windowView, pts []history.Point) template.HTML {
	c := chartSpec{ID: id, Title: "Records", Unit: "records / " + win.Bucket, Win: win, Counts: true, Format: countLabel}
	var rec, load, rej stack
	rec = stack{Name: "received", Class: "received"}
	load = stack{Name: "loaded", Class: "loaded"}
	rej = stack{Name: "rejected", Class: "rejected"}
	var sr, sl, sj int64
	peak, peakAt := int64(0), time.Time{}
	for _, p := range pts {
		c.At = append(c.At, p.At)
		rec.Values = append(rec.Values, float64(p.Received))
		load.Values = append(load.Values, float64(p.Loaded))
		rej.Values = append(rej.Values, float64(p.Rejected))
		sr, sl, sj = sr+p.Received, sl+p.Loaded, sj+p.Rejected
		if p.Received > peak {
			peak, peakAt = p.Received, p.At
		}
	}
	// Rejected bars are drawn over the received ones from the baseline: a
	// rejected record was received too, so stacking would count it twice.
	c.Stacks = []stack{rec, rej}
	c.Line = &load
	c.Summary = fmt.Sprintf("%s received, %s loaded and %s rejected %s.", groupDigits(sr), groupDigits(sl), groupDigits(sj), win.Span)
	if peak > 0 {
		c.Summary += fmt.Sprintf(" The busiest %s had %s received (%s).", bucketName(win), groupDigits(peak), bucketTime(peakAt))
	}
	c.Empty = "No records " + win.Span
	c.Tooltip = func(i int) string {
		p := pts[i]
		return fmt.Sprintf("%s: %s received, %s loaded, %s rejected", bucketTime(p.At), groupDigits(p.Received), groupDigits(p.Loaded), groupDigits(p.Rejected))
	}
	return drawChart(c)
}

// lagChart: the largest lag seen in each bucket, drawn in seconds, minutes or
// hours by its size, so that the scale's ticks are round numbers.
func lagChart(id string, win windowView, pts []history.Point) template.HTML {
	worst, worstAt := 0.0, time.Time{}
	for _, p := range pts {
		if p.Lag > worst {
			worst, worstAt = p.Lag, p.At
		}
	}
	div, unit := 1.0, "seconds"
	switch {
	case worst >= 2*3600:
		div, unit = 3600, "hours"
	case worst >= 2*60:
		div, unit = 60, "minutes"
	}
	c := chartSpec{ID: id, Title: "Lag", Unit: "lag, " + unit, Win: win,
		Format: func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }}
	lag := stack{Name: "largest lag", Class: "lag"}
	for _, p := range pts {
		c.At = append(c.At, p.At)
		lag.Values = append(lag.Values, p.Lag/div)
	}
	c.Stacks = []stack{lag}
	if worst > 0 {
		c.Summary = fmt.Sprintf("The largest lag %s was %s (%s); in the newest %s it was %s.",
			win.Span, seconds(worst), bucketTime(worstAt), bucketName(win), seconds(last(lag.Values)*div))
	} else {
		c.Summary = fmt.Sprintf("No lag %s: records were loaded as they arrived, or none arrived.", win.Span)
	}
	c.Empty = "No lag " + win.Span
	c.Tooltip = func(i int) string {
		return fmt.Sprintf("%s: largest lag %s", bucketTime(pts[i].At), seconds(pts[i].Lag))
	}
	return drawChart(c)
}

// refusedChart: answers other than 200, stacked by status code.
func refusedChart(id string, win windowView, pts []history.Point) template.HTML {
	c := chartSpec{ID: id, Title: "Refused requests", Unit: "answers / " + win.Bucket, Win: win, Counts: true, Format: countLabel}
	totals := map[int]int64{}
	for _, p := range pts {
		c.At = append(c.At, p.At)
		for code, n := range p.Refused {
			totals[code] += n
		}
	}
	codes := make([]int, 0, len(totals))
	for code, n := range totals {
		if n > 0 {
			codes = append(codes, code)
		}
	}
	slices.Sort(codes)
	var parts []string
	var all int64
	for _, code := range codes {
		s := stack{Name: strconv.Itoa(code), Class: codeClass(code), Stacked: true}
		for _, p := range pts {
			s.Values = append(s.Values, float64(p.Refused[code]))
		}
		c.Stacks = append(c.Stacks, s)
		parts = append(parts, fmt.Sprintf("%s × %d", groupDigits(totals[code]), code))
		all += totals[code]
	}
	if all == 0 {
		c.Summary = fmt.Sprintf("No refused requests %s.", win.Span)
	} else {
		c.Summary = fmt.Sprintf("%s %s refused %s: %s.", groupDigits(all), plural(all, "request", "requests"), win.Span, strings.Join(parts, ", "))
	}
	c.Empty = "No refused requests " + win.Span
	c.Tooltip = func(i int) string {
		var b []string
		for _, code := range codes {
			if n := pts[i].Refused[code]; n > 0 {
				b = append(b, fmt.Sprintf("%s × %d", groupDigits(n), code))
			}
		}
		if len(b) == 0 {
			return bucketTime(pts[i].At) + ": none refused"
		}
		return bucketTime(pts[i].At) + ": " + strings.Join(b, ", ")
	}
	return drawChart(c)
}

// signatureChart: deliveries whose signature did not verify, per bucket.
func signatureChart(id string, win windowView, pts []history.Point) template.HTML {
	c := chartSpec{ID: id, Title: "Signature failures", Unit: "failures / " + win.Bucket, Win: win, Counts: true, Format: countLabel}
	s := stack{Name: "signature failures", Class: "sigfail"}
	var total, peak int64
	var peakAt time.Time
	for _, p := range pts {
		c.At = append(c.At, p.At)
		s.Values = append(s.Values, float64(p.SignatureFailures))
		total += p.SignatureFailures
		if p.SignatureFailures > peak {
			peak, peakAt = p.SignatureFailures, p.At
		}
	}
	c.Stacks = []stack{s}
	if total == 0 {
		c.Summary = fmt.Sprintf("No signature failures %s.", win.Span)
	} else {
		c.Summary = fmt.Sprintf("%s %s %s; the most in one %s: %s (%s).", groupDigits(total),
			plural(total, "signature failure", "signature failures"), win.Span, bucketName(win), groupDigits(peak), bucketTime(peakAt))
	}
	c.Empty = "No signature failures " + win.Span
	c.Tooltip = func(i int) string {
		return fmt.Sprintf("%s: %s %s", bucketTime(pts[i].At), groupDigits(pts[i].SignatureFailures),
			plural(pts[i].SignatureFailures, "signature failure", "signature failures"))
	}
	return drawChart(c)
}

// codeClass gives the common refusals fixed colours, so that a code keeps its
// colour from one poll or window to the next; the rest share one.
func codeClass(code int) string {
	switch code {
	case 401:
		return "code-401"
	case 400, 415:
		return "code-400"
	case 413:
		return "code-413"
	case 429:
		return "code-429"
	case 503, 500:
		return "code-503"
	}
	return "code-other"
}

// drawChart renders a chart as a figure: the SVG, a legend and the summary.
// Every piece of text goes through template.HTMLEscapeString.
func drawChart(c chartSpec) template.HTML {
	esc := template.HTMLEscapeString
	n := len(c.At)
	// The scale: the tallest bar (stacks added up) or line point.
	top := 0.0
	for i := 0; i < n; i++ {
		sum := 0.0
		for _, s := range c.Stacks {
			v := at(s.Values, i)
			if s.Stacked {
				sum += v
			} else {
				sum = math.Max(sum, v)
			}
		}
		if c.Line != nil {
			sum = math.Max(sum, at(c.Line.Values, i))
		}
		top = math.Max(top, sum)
	}
	scale := niceMax(top, c.Counts)
	y := func(v float64) float64 { return chartTop + plotH - v/scale*plotH }
	slot := plotW / math.Max(float64(n), 1)
	barW := math.Max(slot*0.8, 1)

	var b strings.Builder
	fmt.Fprintf(&b, `<figure class="chart" id="%s">`, esc(c.ID))
	fmt.Fprintf(&b, `<figcaption><strong>%s</strong> <span class="muted small">%s</span></figcaption>`, esc(c.Title), esc(c.Win.Label))
	fmt.Fprintf(&b, `<svg viewBox="0 0 %g %g" role="img" aria-labelledby="%s-title %s-desc" preserveAspectRatio="xMidYMid meet">`,
		chartW, chartH, esc(c.ID), esc(c.ID))
	fmt.Fprintf(&b, `<title id="%s-title">%s, %s</title>`, esc(c.ID), esc(c.Title), esc(strings.ToLower(c.Win.Label)))
	fmt.Fprintf(&b, `<desc id="%s-desc">%s</desc>`, esc(c.ID), esc(c.Summary))

	// Grid and y axis: 0, half and the top of the scale.
	for _, v := range []float64{0, scale / 2, scale} {
		fmt.Fprintf(&b, `<line class="grid" x1="%s" x2="%s" y1="%s" y2="%s"/>`, f(chartLeft), f(chartLeft+plotW), f(y(v)), f(y(v)))
		fmt.Fprintf(&b, `<text class="tick" x="%s" y="%s" text-anchor="end" dominant-baseline="middle">%s</text>`,
			f(chartLeft-6), f(y(v)), esc(c.Format(v)))
	}
	fmt.Fprintf(&b, `<text class="unit" transform="translate(11 %s) rotate(-90)" text-anchor="middle">%s</text>`,
		f(chartTop+plotH/2), esc(c.Unit))
	// X axis: relative times, since the server does not know the reader's zone.
	for i, x := range []float64{chartLeft, chartLeft + plotW/2, chartLeft + plotW} {
		anchor := []string{"start", "middle", "end"}[i]
		fmt.Fprintf(&b, `<text class="tick" x="%s" y="%s" text-anchor="%s">%s</text>`, f(x), f(chartH-6), anchor, esc(c.Win.ticks[i]))
	}

	if top == 0 {
		fmt.Fprintf(&b, `<text class="empty" x="%s" y="%s" text-anchor="middle">%s</text>`, f(chartLeft+plotW/2), f(chartTop+plotH/2), esc(c.Empty))
	}
	// Bars: only the non-zero ones, to keep the page small.
	base := make([]float64, n)
	for _, s := range c.Stacks {
		for i := 0; i < n; i++ {
			v := at(s.Values, i)
			if v <= 0 {
				continue
			}
			from := 0.0
			if s.Stacked {
				from = base[i]
				base[i] += v
			}
			x := chartLeft + float64(i)*slot + (slot-barW)/2
			h := math.Max(v/scale*plotH, 1) // a single record still shows
			fmt.Fprintf(&b, `<rect class="bar %s" x="%s" y="%s" width="%s" height="%s"/>`,
				esc(s.Class), f(x), f(y(from)-h), f(barW), f(h))
		}
	}
	if c.Line != nil && top > 0 {
		pts := make([]string, n)
		for i := 0; i < n; i++ {
			pts[i] = f(chartLeft+(float64(i)+0.5)*slot) + "," + f(y(at(c.Line.Values, i)))
		}
		fmt.Fprintf(&b, `<polyline class="line %s" points="%s"/>`, esc(c.Line.Class), strings.Join(pts, " "))
	}
	// Hover targets, one per bucket, with its figures as a tooltip.
	if c.Tooltip != nil {
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, `<rect class="hit" x="%s" y="%s" width="%s" height="%s"><title>%s</title></rect>`,
				f(chartLeft+float64(i)*slot), f(chartTop), f(slot), f(plotH), esc(c.Tooltip(i)))
		}
	}
	b.WriteString(`</svg>`)

	// The legend, then the same summary the SVG's desc holds, for everyone.
	b.WriteString(`<ul class="legend">`)
	items := c.Stacks
	if c.Line != nil {
		items = append(slices.Clone(items), *c.Line)
	}
	for _, s := range items {
		fmt.Fprintf(&b, `<li><span class="swatch %s"></span>%s</li>`, esc(s.Class), esc(s.Name))
	}
	b.WriteString(`</ul>`)
	// aria-hidden: screen readers already have it as the SVG's description.
	fmt.Fprintf(&b, `<p class="summary small" aria-hidden="true">%s</p>`, esc(c.Summary))
	b.WriteString(`</figure>`)
	return template.HTML(b.String())
}

// sparkline is the list's per-integration chart: received per bucket, with
// rejected in red, no axes; its label says the totals.
func sparkline(win windowView, pts []history.Point) template.HTML {
	const w, h = 120.0, 28.0
	var sr, sj int64
	top := 0.0
	for _, p := range pts {
		sr, sj = sr+p.Received, sj+p.Rejected
		top = math.Max(top, float64(max(p.Received, p.Rejected)))
	}
	label := fmt.Sprintf("%s received and %s rejected %s", groupDigits(sr), groupDigits(sj), win.Span)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="spark" viewBox="0 0 %g %g" role="img" aria-label="%s"><title>%s</title>`,
		w, h, template.HTMLEscapeString(label), template.HTMLEscapeString(label))
	fmt.Fprintf(&b, `<line class="grid" x1="0" x2="%g" y1="%g" y2="%g"/>`, w, h-0.5, h-0.5)
	if top > 0 {
		slot := w / float64(len(pts))
		for _, s := range []struct {
			class string
			v     func(history.Point) int64
		}{{"received", func(p history.Point) int64 { return p.Received }}, {"rejected", func(p history.Point) int64 { return p.Rejected }}} {
			for i, p := range pts {
				if v := s.v(p); v > 0 {
					bh := math.Max(float64(v)/top*(h-2), 1)
					fmt.Fprintf(&b, `<rect class="bar %s" x="%s" y="%s" width="%s" height="%s"/>`,
						s.class, f(float64(i)*slot), f(h-bh), f(math.Max(slot*0.85, 0.6)), f(bh))
				}
			}
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// niceMax is the top of the scale: the first of 1, 2, 3, 4, 5, 6, 8 × 10ⁿ at or
// above v, so the three tick labels are short. Counts need a whole middle tick.
func niceMax(v float64, counts bool) float64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		if counts {
			return 2
		}
		return 1
	}
	for e := math.Floor(math.Log10(v)); ; e++ {
		for _, m := range []float64{1, 2, 3, 4, 5, 6, 8, 10} {
			c := m * math.Pow(10, e)
			if e < 0 {
				c = m / math.Pow(10, -e) // 3/10 is 0.3; 3*0.1 is not
			}
			if c >= v && (!counts || c >= 2 && c/2 == math.Trunc(c/2)) {
				return c
			}
		}
	}
}

// countLabel is a tick label for a count: 950, 1.5k, 2M.
func countLabel(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	}
	return groupDigits(int64(math.Round(v)))
}

func bucketName(win windowView) string {
	switch win.W {
	case history.Day:
		return "10 minutes"
	case history.Week:
		return "hour"
	}
	return "minute"
}

// bucketTime names a bucket by its start, in UTC like the rest of the dashboard.
func bucketTime(t time.Time) string { return t.UTC().Format("Jan 2 15:04 UTC") }

// f formats a coordinate with at most 1 decimal.
func f(v float64) string { return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64) }

func at(v []float64, i int) float64 {
	if i < len(v) {
		return v[i]
	}
	return 0
}

func last(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return v[len(v)-1]
}
