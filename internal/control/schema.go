package control

import (
	"strings"
)

// SchemaName derives a warehouse schema from an integration name (SPEC §2):
// lower-case; spaces and hyphens become '_'; every other character outside
// [a-z0-9_] is dropped; a leading digit gets a '_' prefix; at most 63 bytes.
func SchemaName(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r == ' ' || r == '-':
			b.WriteByte('_')
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		}
	}
	s := b.String()
	if s != "" && s[0] >= '0' && s[0] <= '9' {
		s = "_" + s
	}
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}

// checkSchema returns why a schema name cannot be used, or "".
func checkSchema(s string) string {
	switch {
	case s == "":
		return "the name gives an empty schema name; use letters or digits"
	case len(s) > 63:
		return "schema name is longer than 63 bytes"
	case strings.HasPrefix(s, "_sdc"), strings.HasPrefix(s, "pg_"), strings.HasPrefix(s, "information_schema"),
		strings.HasPrefix(s, "_hookhouse"):
		return "schema name " + s + " is reserved (it starts with _sdc, pg_, _hookhouse or information_schema)"
	case s == "main" || s == "public" || s == "temp" || s == "system" || s == "pg_catalog":
		return "schema name " + s + " is reserved by the warehouse"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return "schema name may hold only a-z, 0-9 and _"
		}
	}
	if s[0] >= '0' && s[0] <= '9' {
		return "schema name may not start with a digit"
	}
	return ""
}
