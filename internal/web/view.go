package web

import (
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hookhouse/hookhouse/internal/api"
	"github.com/hookhouse/hookhouse/internal/verify"
)

// FreshLag is how old the oldest unloaded record may be while an integration
// still counts as fresh.
const FreshLag = 60 * time.Second

// Freshness is the badge of an integration: green, amber or red.
type Freshness struct {
	Color string // green, amber or red: the badge's CSS class
	Label string
	Why   string
}

// rejections is what the amber badge goes by: how many records were rejected
// in Span. With history that is the window the page shows, so the badge agrees
// with the charts beside it and turns green again once the rejections are
// older than the window; without history it is every rejection so far.
type rejections struct {
	N    int64
	Span string // "in the last hour", "so far"
}

// freshness is the badge rule. Red when loading has errors, or the oldest
// waiting record is FreshLag old or older. Amber when records were rejected:
// loading works, but some records are in _sdc_rejected instead of data, and
// received 6 / loaded 3 in green would look like data loss. Green otherwise:
// caught up (backlog 0), or the oldest waiting record is younger than FreshLag.
func freshness(st api.Stats, loadErr string, rej rejections) Freshness {
	switch {
	case st.Paused:
		// Paused by an operator: the lag is expected, so say so instead of red.
		return Freshness{Color: "amber", Label: "paused", Why: fmt.Sprintf("Loading is paused; receiving goes on and %d records wait (resume with hookhouse integrations resume)", st.Backlog)}
	case loadErr != "":
		return Freshness{Color: "red", Label: "failing", Why: capitalize(loadErr)}
	case st.Backlog > 0 && st.LagSeconds >= FreshLag.Seconds():
		return Freshness{Color: "red", Label: "behind", Why: fmt.Sprintf("%d records are waiting; the oldest for %s", st.Backlog, seconds(st.LagSeconds))}
	case rej.N > 0:
		return Freshness{Color: "amber", Label: "records rejected", Why: fmt.Sprintf("%s %s rejected %s: see Rejected records for the reasons; the others load as usual",
			groupDigits(rej.N), plural(rej.N, "record was", "records were"), rej.Span)}
	case st.RecordsReceived == 0:
		return Freshness{Color: "green", Label: "fresh", Why: "No events received yet"}
	case st.Backlog == 0:
		return Freshness{Color: "green", Label: "fresh", Why: "Every received record is loaded"}
	default:
		return Freshness{Color: "green", Label: "fresh", Why: fmt.Sprintf("%d records loading, the oldest is %s old", st.Backlog, seconds(st.LagSeconds))}
	}
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// loadError is why loading is unhealthy according to the status report, or "".
func loadError(st Status) string {
	for _, c := range st.Components {
		if (c.Name == "loader" || c.Name == "warehouse") && c.Status != Operational {
			if c.Message != "" {
				return c.Message
			}
			return "the " + c.Name + " is " + c.Status
		}
	}
	return ""
}

var funcs = template.FuncMap{
	"ts":         ts,
	"ago":        ago,
	"seconds":    seconds,
	"cell":       func(v any) string { return cellN(v, 80) },
	"cellN":      cellN,
	"capitalize": capitalize,
	"count":      func(n int64) string { return groupDigits(n) },
	// countp shows a count the stats may omit (nil: 0).
	"countp": func(n *int64) string {
		if n == nil {
			return "0"
		}
		return groupDigits(*n)
	},
	"schemeLabel": func(s verify.Scheme) string { return schemeOf(s).Label },
	"list":        func(s ...string) []string { return s },
	"duration":    func(d verify.Duration) string { return time.Duration(d).String() },
}

// ts shows a time in UTC, or "never".
func ts(t any) string {
	switch v := t.(type) {
	case time.Time:
		if v.IsZero() {
			return "never"
		}
		return v.UTC().Format("2006-01-02 15:04:05 UTC")
	case *time.Time:
		if v == nil || v.IsZero() {
			return "never"
		}
		return v.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	return ""
}

// ago is how long ago t was, e.g. "3 s ago", or "".
func ago(t any) string {
	var tt time.Time
	switch v := t.(type) {
	case time.Time:
		tt = v
	case *time.Time:
		if v != nil {
			tt = *v
		}
	}
	if tt.IsZero() {
		return ""
	}
	d := time.Since(tt)
	if d < 0 {
		d = 0
	}
	return seconds(d.Seconds()) + " ago"
}

// seconds shows a duration given in seconds: "0 s", "42 s", "3 min 5 s", "2 h 10 min".
func seconds(s float64) string {
	n := int64(math.Round(s))
	switch {
	case n < 60:
		return strconv.FormatInt(n, 10) + " s"
	case n < 3600:
		return fmt.Sprintf("%d min %d s", n/60, n%60)
	case n < 48*3600:
		return fmt.Sprintf("%d h %d min", n/3600, n%3600/60)
	}
	return fmt.Sprintf("%d days", n/86400)
}

// cellN shows a warehouse value, cut to max characters.
func cellN(v any, max int) string {
	if v == nil {
		return "NULL"
	}
	s, ok := v.(string)
	if !ok {
		s = fmt.Sprint(v)
	}
	if utf8.RuneCountInString(s) > max {
		r := []rune(s)
		s = string(r[:max]) + "…"
	}
	return s
}

// capitalize upper-cases the first letter of a message.
func capitalize(s string) string {
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n:]
}

func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
