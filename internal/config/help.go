package config

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// FlagGroup is a titled set of flags in help output. A group without Flags takes
// every flag that no other group names.
type FlagGroup struct {
	Title string
	Flags []string
}

// helpWidth is where help lines wrap.
const helpWidth = 100

// PrintFlags writes the flags of fs group by group, each as --name ARG, what it
// does, its default in human units (20MiB, 1s, 168h) and its env twin, env(name)
// ("" for none). ARG is the word in `backquotes` in the usage, else one named
// after the flag's type.
func PrintFlags(w io.Writer, fs *flag.FlagSet, groups []FlagGroup, env func(name string) string) {
	named := map[string]bool{}
	for _, g := range groups {
		for _, n := range g.Flags {
			named[n] = true
		}
	}
	type line struct{ left, right string }
	var sections [][]line
	var titles []string
	width := 0
	for _, g := range groups {
		var flags []*flag.Flag
		if g.Flags == nil {
			fs.VisitAll(func(f *flag.Flag) {
				if !named[f.Name] {
					flags = append(flags, f)
				}
			})
		}
		for _, n := range g.Flags {
			if f := fs.Lookup(n); f != nil {
				flags = append(flags, f)
			}
		}
		if len(flags) == 0 {
			continue
		}
		var lines []line
		for _, f := range flags {
			left, right := describeFlag(f, env)
			lines = append(lines, line{left, right})
			if len(left) <= 30 {
				width = max(width, len(left))
			}
		}
		sections, titles = append(sections, lines), append(titles, g.Title)
	}
	indent := strings.Repeat(" ", 2+width+3)
	for i, lines := range sections {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s:\n", titles[i])
		for _, l := range lines {
			text := wrap(l.right, helpWidth-len(indent))
			if len(l.left) > width {
				fmt.Fprintf(w, "  %s\n%s%s\n", l.left, indent, strings.Join(text, "\n"+indent))
				continue
			}
			fmt.Fprintf(w, "  %-*s   %s\n", width, l.left, strings.Join(text, "\n"+indent))
		}
	}
}

// describeFlag returns "--name ARG" and the text that explains the flag.
func describeFlag(f *flag.Flag, env func(string) string) (string, string) {
	arg, usage := flag.UnquoteUsage(f)
	switch arg {
	case "duration":
		arg = "TIME"
	case "int", "uint", "int64", "uint64":
		arg = "N"
	case "string":
		arg = "TEXT"
	}
	left := "--" + f.Name
	if arg != "" {
		left += " " + strings.ToUpper(arg)
	}
	var notes []string
	if def := humanDefault(f); def != "" {
		notes = append(notes, "default "+def)
	}
	if e := env(f.Name); e != "" {
		notes = append(notes, "env "+e)
	}
	switch {
	case len(notes) == 0:
	case strings.HasSuffix(usage, ")") && strings.Contains(usage, "(default"):
		// The usage explains the default itself: "(default: …; env X)".
		usage = strings.TrimSuffix(usage, ")") + "; " + strings.Join(notes, "; ") + ")"
	default:
		usage += " (" + strings.Join(notes, "; ") + ")"
	}
	return left, usage
}

// humanDefault is a flag's default as a user would write it, "" for none.
func humanDefault(f *flag.Flag) string {
	g, _ := f.Value.(flag.Getter)
	if g == nil {
		return f.DefValue
	}
	switch g.Get().(type) {
	case bool:
		return "" // a bool flag is off unless given
	case time.Duration:
		if d, err := time.ParseDuration(f.DefValue); err == nil {
			return humanDuration(d)
		}
	}
	return f.DefValue
}

// humanDuration drops the zero units time.Duration.String keeps: 168h, 1m, 1h30m.
func humanDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// wrap breaks text into lines of at most width characters, at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		switch {
		case line == "":
			line = word
		case len(line)+1+len(word) > width:
			lines = append(lines, line)
			line = word
		default:
			line += " " + word
		}
	}
	return append(lines, line)
}
