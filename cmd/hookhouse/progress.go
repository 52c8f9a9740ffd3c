package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress reports a long command's work: done of total, rate and ETA. On a
// terminal it draws a bar (progressbar); otherwise (a pipe, a log file) it prints
// one plain line at most every interval, and a last line from Finish.
//
// It is used from the one goroutine that does the work; it owns no goroutine.
type progress struct {
	w        io.Writer
	what     string // "reloaded", "imported", "copied"
	unit     string // "records", "bytes"
	total    int64  // 0: unknown
	start    time.Time
	bar      *progressbar.ProgressBar // nil when w is not a terminal
	interval time.Duration
	last     time.Time // when the last plain line was printed
	done     int64
	finished bool
}

// newProgress starts reporting to w. title says what runs ("reset of
// stitch_vero"); what is the past participle for lines ("reloaded"); unit is
// "records" or "bytes"; total may be 0 when it is not known.
func newProgress(w io.Writer, title, what, unit string, total int64) *progress {
	p := &progress{w: w, what: what, unit: unit, total: total, start: time.Now(), interval: 2 * time.Second}
	if isTerminal(w) {
		max := total
		if max <= 0 {
			max = -1 // a spinner
		}
		opts := []progressbar.Option{
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(title),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100 * time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
		}
		if unit == "bytes" {
			opts = append(opts, progressbar.OptionShowBytes(true))
		} else {
			opts = append(opts, progressbar.OptionShowIts(), progressbar.OptionSetItsString(unit))
		}
		p.bar = progressbar.NewOptions64(max, opts...)
		return p
	}
	fmt.Fprintf(w, "%s: started\n", title)
	p.last = p.start
	return p
}

// isTerminal tells whether w is a terminal (a bar) or not (plain lines).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// SetTotal changes the total, for work whose size becomes known (or grows)
// while it runs.
func (p *progress) SetTotal(total int64) {
	if total == p.total {
		return
	}
	p.total = total
	if p.bar != nil && total > 0 {
		p.bar.ChangeMax64(total)
	}
}

// Set reports how much is done so far.
func (p *progress) Set(done int64) {
	p.done = done
	if p.bar != nil {
		_ = p.bar.Set64(done)
		return
	}
	if now := time.Now(); now.Sub(p.last) >= p.interval {
		p.last = now
		fmt.Fprintln(p.w, p.line(now))
	}
}

// Add reports n more done.
func (p *progress) Add(n int64) { p.Set(p.done + n) }

// Finish prints the last state once.
func (p *progress) Finish() {
	if p.finished {
		return
	}
	p.finished = true
	if p.bar != nil {
		if p.total > 0 && p.done >= p.total {
			_ = p.bar.Finish()
		} else {
			_ = p.bar.Exit()
			fmt.Fprintln(p.w)
		}
		return
	}
	fmt.Fprintln(p.w, p.line(time.Now()))
}

// line is one plain progress line: "reloaded 12,000 of 50,000 records (24%),
// 5,210 records/s, ETA 7s".
func (p *progress) line(now time.Time) string {
	elapsed := now.Sub(p.start)
	rate := 0.0
	if elapsed > 0 {
		rate = float64(p.done) / elapsed.Seconds()
	}
	var s string
	if p.total > 0 {
		pct := float64(p.done) * 100 / float64(p.total)
		if p.unit == "bytes" {
			s = fmt.Sprintf("%s %s of %s (%.0f%%)", p.what, p.amount(p.done), p.amount(p.total), pct)
		} else {
			s = fmt.Sprintf("%s %s of %s (%.0f%%)", p.what, thousands(p.done), p.amount(p.total), pct)
		}
	} else {
		s = fmt.Sprintf("%s %s", p.what, p.amount(p.done))
	}
	s += fmt.Sprintf(", %s/s", p.amount(int64(rate)))
	if p.total > 0 && rate > 0 && p.done < p.total {
		eta := time.Duration(float64(p.total-p.done) / rate * float64(time.Second))
		s += ", ETA " + eta.Round(time.Second).String()
	} else {
		s += ", " + elapsed.Round(100*time.Millisecond).String() + " elapsed"
	}
	return s
}

func (p *progress) amount(n int64) string {
	if p.unit == "bytes" {
		return humanBytes(n)
	}
	return thousands(n) + " " + p.unit
}

// thousands formats n with comma separators: 1234567 → "1,234,567".
func thousands(n int64) string {
	s := fmt.Sprint(n)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// humanBytes formats a byte count: 1536 → "1.5 KiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
