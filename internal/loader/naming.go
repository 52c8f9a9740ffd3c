package loader

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// Naming rules of SPEC §5. A name is normalized one key segment at a time
// (lower-case, every character outside [a-z0-9_] becomes '_', a leading digit gets
// a '_' prefix), segments are joined with "__", and a name that is too long is cut
// and given a hash of the full name, so it stays deterministic and two long names
// never meet.

const (
	// maxColumnName leaves room for a 4-byte type suffix ("__st") within the
	// 63-byte identifier limit of PostgreSQL.
	maxColumnName = 59
	maxTableName  = 63
	// hashSuffixLen is "_" + 8 hex digits.
	hashSuffixLen = 9
)

// typeSuffixes are the column name suffixes of values split by type, indexed by
// warehouse.Type. Timestamp never comes from JSON, so it has none.
var typeSuffixes = [...]string{
	warehouse.Text:    "__st",
	warehouse.BigInt:  "__bi",
	warehouse.Double:  "__do",
	warehouse.Boolean: "__bo",
	warehouse.Numeric: "__de",
}

// ColumnName is the column name of the source field name source (one key): the
// SPEC naming rules, at most 59 bytes.
func ColumnName(source string) string {
	return shorten(normalize(source), maxColumnName)
}

// TableName is the table name for name: the SPEC naming rules, at most 63 bytes.
func TableName(name string) string {
	return shorten(normalize(name), maxTableName)
}

// normalize applies the character rules to one segment. An empty key becomes "_"
// so that every field has a usable column name.
func normalize(s string) string {
	if s == "" {
		return "_"
	}
	clean, ascii := true, true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			ascii = false
			clean = false
			break
		}
		if !isNameByte(c) {
			clean = false
		}
	}
	if clean && !isDigit(s[0]) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 1)
	if ascii {
		if isDigit(s[0]) {
			b.WriteByte('_')
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			switch {
			case c >= 'A' && c <= 'Z':
				b.WriteByte(c + ('a' - 'A'))
			case isNameByte(c):
				b.WriteByte(c)
			default:
				b.WriteByte('_')
			}
		}
		return b.String()
	}
	lower := strings.ToLower(s)
	if lower != "" && isDigit(lower[0]) {
		b.WriteByte('_')
	}
	for _, r := range lower {
		if r < 0x80 && isNameByte(byte(r)) {
			b.WriteByte(byte(r))
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isNameByte(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'
}

// shorten cuts a normalized name longer than limit bytes and appends "_" and the
// first 8 hex digits of the SHA-256 of the full name. The result never ends in a
// type suffix, since it ends in 8 hex digits.
func shorten(name string, limit int) string {
	if len(name) <= limit {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:limit-hashSuffixLen] + "_" + hex.EncodeToString(sum[:4])
}

// reservedKey tells why a normalized key segment cannot be loaded: it would be
// mistaken for a type-split column, or for one of hookhouse's own columns.
// It returns "" for an ordinary key.
func reservedKey(seg string) string {
	if strings.HasPrefix(seg, "_sdc") || strings.HasPrefix(seg, "__sdc") {
		return "starts with the reserved prefix _sdc"
	}
	if len(seg) >= 4 {
		tail := seg[len(seg)-4:]
		for _, sfx := range typeSuffixes {
			if sfx != "" && tail == sfx {
				return "ends in the reserved suffix " + sfx + " (used for columns split by type)"
			}
		}
	}
	return ""
}

// splitColumn reports whether name is the type-split column of a base column:
// "<base>__bi" is the bigint column of base.
func splitColumn(name string) (base string, t warehouse.Type, ok bool) {
	if len(name) < 5 {
		return "", 0, false
	}
	tail := name[len(name)-4:]
	for i, sfx := range typeSuffixes {
		if sfx != "" && tail == sfx {
			return name[:len(name)-4], warehouse.Type(i), true
		}
	}
	return "", 0, false
}

// sourceKeyColumn is the first column of every subtable: the parent record's
// __sdc_primary_key, or its primary key column pkColumn.
func sourceKeyColumn(pkColumn string) string {
	if pkColumn == "" {
		return "_sdc_source_key_" + warehouse.ColPrimaryKey
	}
	return shorten("_sdc_source_key_"+pkColumn, maxTableName)
}

var levelNames [16]string

func init() {
	for i := range levelNames {
		levelNames[i] = "_sdc_level_" + strconv.Itoa(i) + "_id"
	}
}

// levelColumn is the name of the position column of array nesting level k.
func levelColumn(k int) string {
	if k < len(levelNames) {
		return levelNames[k]
	}
	return "_sdc_level_" + strconv.Itoa(k) + "_id"
}
