package loader

import (
	"regexp"
	"strings"
	"testing"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

var validName = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

func TestColumnName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"type", "type"},
		{"trigger-event", "trigger_event"},
		{"userId", "userid"},
		{"User ID", "user_id"},
		{"_tags", "_tags"},
		{"a.b", "a_b"},
		{"42", "_42"},
		{"9lives", "_9lives"},
		{"", "_"},
		{"Ünïcödé", "_n_c_d_"},    // lower-cased first, then every non-[a-z0-9_] rune is one '_'
		{"ÄBC", "_bc"},            // Ä lower-cases to ä, which is outside [a-z]
		{"\u212Aelvin", "kelvin"}, // the Kelvin sign lower-cases to ASCII k
		{"日本語", "___"},
		{"emoji😀x", "emoji_x"},
		{"tab\there", "tab_here"},
		{"a__b", "a__b"},
		{"MiXeD_Case_09", "mixed_case_09"},
		{"\xff\xfe", "__"}, // invalid UTF-8: one '_' per bad byte
	} {
		if got := ColumnName(tc.in); got != tc.want {
			t.Errorf("ColumnName(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := ColumnName(tc.in); !validName.MatchString(got) {
			t.Errorf("ColumnName(%q) = %q, not a valid name", tc.in, got)
		}
	}
}

func TestNameShortening(t *testing.T) {
	at59 := strings.Repeat("a", 59)
	if got := ColumnName(at59); got != at59 {
		t.Errorf("59-byte name changed: %q", got)
	}
	at63 := strings.Repeat("t", 63)
	if got := TableName(at63); got != at63 {
		t.Errorf("63-byte table name changed: %q", got)
	}
	long1 := strings.Repeat("x", 70) + "_one"
	long2 := strings.Repeat("x", 70) + "_two"
	c1, c2 := ColumnName(long1), ColumnName(long2)
	if len(c1) != 59 || len(c2) != 59 {
		t.Fatalf("shortened column names have lengths %d, %d; want 59", len(c1), len(c2))
	}
	if c1 == c2 {
		t.Errorf("two long names meet: %q", c1)
	}
	if !strings.HasPrefix(c1, strings.Repeat("x", 50)+"_") {
		t.Errorf("shortened name %q does not keep the start of the name", c1)
	}
	if again := ColumnName(long1); again != c1 {
		t.Errorf("shortening is not deterministic: %q then %q", c1, again)
	}
	// The hash is of the full normalized name: case does not matter, as for
	// short names.
	if up := ColumnName(strings.ToUpper(long1)); up != c1 {
		t.Errorf("ColumnName(upper) = %q, want %q", up, c1)
	}
	t1, t2 := TableName("data__"+long1), TableName("data__"+long2)
	if len(t1) != 63 || t1 == t2 {
		t.Errorf("table names %q, %q: want 63 bytes and different", t1, t2)
	}
	// A type suffix still fits in 63 bytes, and a shortened name is never
	// mistaken for a split column.
	if n := len(c1 + typeSuffixes[warehouse.Text]); n != 63 {
		t.Errorf("split column of a shortened name has %d bytes", n)
	}
	if _, _, ok := splitColumn(c1); ok {
		t.Errorf("shortened name %q reads as a split column", c1)
	}
	// Many long names, all distinct after shortening.
	seen := map[string]string{}
	for i := 0; i < 20000; i++ {
		name := strings.Repeat("field_", 12) + strings.Repeat("z", i%7) + string(rune('a'+i%26)) + strings.Repeat("q", i/26)
		c := ColumnName(name)
		if prev, ok := seen[c]; ok && prev != name {
			t.Fatalf("%q and %q both shorten to %q", prev, name, c)
		}
		seen[c] = name
		if len(c) > 59 || !validName.MatchString(c) {
			t.Fatalf("bad shortened name %q", c)
		}
	}
}

func TestReservedKey(t *testing.T) {
	for _, tc := range []struct {
		seg      string
		reserved bool
	}{
		{"amount", false},
		{"amount__bi", true},
		{"x__st", true},
		{"x__do", true},
		{"x__bo", true},
		{"x__de", true},
		{"__st", true},
		{"x_st", false},
		{"de", false},
		{"st", false},
		{"_sdc", true},
		{"_sdc_sequence", true},
		{"__sdc_primary_key", true},
		{"_sd", false},
		{"sdc_x", false},
	} {
		if got := reservedKey(tc.seg) != ""; got != tc.reserved {
			t.Errorf("reservedKey(%q) reserved = %v, want %v", tc.seg, got, tc.reserved)
		}
	}
}

func TestSplitColumn(t *testing.T) {
	for _, tc := range []struct {
		name string
		base string
		typ  warehouse.Type
		ok   bool
	}{
		{"bounce_code__bi", "bounce_code", warehouse.BigInt, true},
		{"a__st", "a", warehouse.Text, true},
		{"a__de", "a", warehouse.Numeric, true},
		{"__st", "", 0, false},
		{"a_bi", "", 0, false},
		{"value", "", 0, false},
	} {
		base, typ, ok := splitColumn(tc.name)
		if base != tc.base || typ != tc.typ || ok != tc.ok {
			t.Errorf("splitColumn(%q) = %q, %v, %v; want %q, %v, %v", tc.name, base, typ, ok, tc.base, tc.typ, tc.ok)
		}
	}
}

func TestSourceKeyColumn(t *testing.T) {
	if got := sourceKeyColumn(""); got != "_sdc_source_key___sdc_primary_key" {
		t.Errorf("append-only source key column = %q", got)
	}
	if got := sourceKeyColumn("id"); got != "_sdc_source_key_id" {
		t.Errorf("source key column of id = %q", got)
	}
	long := sourceKeyColumn(ColumnName(strings.Repeat("k", 50)))
	if len(long) > 63 || !validName.MatchString(long) {
		t.Errorf("source key column of a 50-byte key = %q", long)
	}
}
