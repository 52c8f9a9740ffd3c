package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestProgressOnAPipePrintsPlainLines(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, "reset of stitch_vero", "reloaded", "records", 50000)
	p.interval = 0 // a line per Set
	p.start = time.Now().Add(-2 * time.Second)
	p.Set(12000)
	p.Finish()
	p.Finish() // once only
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want started, one progress line and a last line, got %q", out.String())
	}
	if lines[0] != "reset of stitch_vero: started" {
		t.Errorf("first line %q", lines[0])
	}
	for _, want := range []string{"reloaded 12,000 of 50,000 records (24%)", "records/s", "ETA "} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("progress line %q lacks %q", lines[1], want)
		}
	}
	if strings.Contains(out.String(), "\r") || strings.Contains(out.String(), "\x1b") {
		t.Errorf("a pipe got terminal control characters: %q", out.String())
	}
}

func TestProgressBytesAndUnknownTotal(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, "import", "read", "bytes", 0)
	p.interval = 0
	p.Set(3 << 20)
	if got := out.String(); !strings.Contains(got, "read 3.0 MiB,") || strings.Contains(got, "ETA") {
		t.Errorf("unknown total: %q", got)
	}
	if thousands(1234567) != "1,234,567" || thousands(-1000) != "-1,000" || thousands(12) != "12" {
		t.Error("thousands")
	}
}
