package config

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
)

// TestMemoryLimitFlag: --memory-limit and its env twin take binary sizes
// (512MiB, 1GiB, 2G), default 1 GiB, and bad values are refused with a reason.
func TestMemoryLimitFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  string
		want int64
	}{
		{nil, "", 1 << 30},
		{[]string{"--memory-limit", "512MiB"}, "", 512 << 20},
		{[]string{"--memory-limit", "2G"}, "", 2 << 30},
		{[]string{"--memory-limit=1536M"}, "", 1536 << 20},
		{nil, "768MiB", 768 << 20},
		{[]string{"--memory-limit", "1GiB"}, "3G", 1 << 30}, // the flag wins
	} {
		env := func(k string) string {
			if k == "HOOKHOUSE_MEMORY_LIMIT" {
				return c.env
			}
			return ""
		}
		cfg, err := Parse(c.args, env, nil)
		if err != nil || cfg.MemoryLimit != c.want {
			t.Errorf("Parse(%q, env %q) = %d, %v; want %d", c.args, c.env, cfg.MemoryLimit, err, c.want)
		}
	}
	for args, want := range map[string]string{
		"--memory-limit 100MiB":                  "--memory-limit must be at least 384MiB",
		"--memory-limit lots":                    "not a size",
		"--memory-limit 512MiB --max-body 64MiB": "--max-body 64MiB is too large for --memory-limit 512MiB",
	} {
		_, err := Parse(strings.Fields(args), noEnv, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%s) = %v, want an error saying %q", args, err, want)
		}
	}
	var out bytes.Buffer
	if _, err := Parse([]string{"--help"}, noEnv, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
	help := strings.Join(strings.Fields(out.String()), " ")
	for _, want := range []string{"Memory: --memory-limit SIZE", "(default 1GiB; env HOOKHOUSE_MEMORY_LIMIT)", "At the default: limit=1GiB go-heap="} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

// TestBudget: the split adds up to the limit, gives DuckDB a quarter, and with
// PostgreSQL gives DuckDB's share to the Go side (bigger batches, more large
// bodies at once).
func TestBudget(t *testing.T) {
	for _, limit := range []int64{MinMemoryLimit, 512 << 20, 1 << 30, 2 << 30, 8 << 30} {
		for _, embedded := range []bool{true, false} {
			b := splitMemory(limit, 20<<20, embedded)
			t.Logf("%v embedded=%v", b, embedded)
			if sum := b.Fixed + b.DuckDB + b.DuckDBOutside + b.GoHeap; sum != limit && limit >= 512<<20 {
				t.Errorf("%s embedded=%v: the parts add up to %d MiB", b, embedded, sum>>20)
			}
			if b.LargeSlots < 1 || b.BatchBytes < 4<<20 || b.BatchBytes > 64<<20 || b.GoHeap < 64<<20 {
				t.Errorf("%s embedded=%v: out of range", b, embedded)
			}
			if embedded != (b.DuckDB > 0) || (embedded && (b.DuckDB < limit/4 || (limit >= 2<<30 && b.DuckDB != limit/2) || b.DuckDBThreads < 1)) {
				t.Errorf("%s embedded=%v: DuckDB's share is wrong", b, embedded)
			}
		}
		e, p := splitMemory(limit, 20<<20, true), splitMemory(limit, 20<<20, false)
		if (p.GoHeap <= e.GoHeap && limit >= 512<<20) || p.LargeSlots < e.LargeSlots || p.BatchBytes < e.BatchBytes {
			t.Errorf("PostgreSQL %s is not more generous than DuckDB %s", p, e)
		}
	}
	one := Default().Budget()
	if one.Limit != 1<<30 || one.DuckDB != 256<<20 || one.BatchBytes != 32<<20 || one.DuckDBMaxText != 64<<10 {
		t.Errorf("default budget %s", one)
	}
	if pg := splitMemory(1<<30, 20<<20, false); pg.DuckDBMaxText != 0 {
		t.Errorf("PostgreSQL budget %s caps text values", pg)
	}
	if half := splitMemory(512<<20, 20<<20, true); half.LargeSlots != 1 || half.BatchBytes != 16<<20 || half.DuckDB != 128<<20 || half.DuckDBMaxText != 32<<10 {
		t.Errorf("512MiB budget %s", half)
	}
}
