package loader

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// Reading JSON and typing its values (SPEC §5: types from JSON values alone).
//
// The parser builds a flat, ordered tree of nodes that point into the record
// text: keys keep their order (encoding/json's maps lose it), strings without
// escapes and number literals are never copied, and the node slice is reused from
// record to record.

// kind is the JSON kind of a node.
type kind uint8

const (
	kindNull kind = iota
	kindFalse
	kindTrue
	kindNumber
	kindString
	kindObject
	kindArray
	kindGone // an earlier duplicate key whose value a later one took over
)

// node is one JSON value. For object members, the key span is set too. Spans
// are byte offsets into the record text; a string's span excludes its quotes.
type node struct {
	kind  kind
	esc   bool // the string value holds escapes
	kesc  bool // the key holds escapes
	frac  bool // the number has a fraction or an exponent
	next  int32
	first int32
	ks    int32
	ke    int32
	vs    int32
	ve    int32
}

// maxDepth guards the parser's stack. The receiver already refuses nesting
// deeper than 64; this only keeps a bad record from doing harm.
const maxDepth = 512

type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("%s at byte %d", e.msg, e.off) }

type parser struct {
	s     string
	pos   int
	nodes []node
	seen  map[string]int32 // scratch for dedupe
}

// parse reads s, which must hold one JSON object and nothing else but
// whitespace. The root is node 0.
func (p *parser) parse(s string) error {
	p.s, p.pos, p.nodes = s, 0, p.nodes[:0]
	if len(s) > math.MaxInt32 {
		return errors.New("record is larger than 2 GiB")
	}
	p.ws()
	if p.pos >= len(s) || s[p.pos] != '{' {
		return &syntaxError{p.pos, "not a JSON object"}
	}
	if _, err := p.value(0); err != nil {
		return err
	}
	p.ws()
	if p.pos != len(s) {
		return &syntaxError{p.pos, "data after the JSON object"}
	}
	return nil
}

func (p *parser) ws() {
	for p.pos < len(p.s) {
		switch p.s[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) fail(msg string) error { return &syntaxError{p.pos, msg} }

// value parses the value at p.pos (no leading whitespace) and returns its index.
func (p *parser) value(depth int) (int32, error) {
	if p.pos >= len(p.s) {
		return -1, p.fail("unexpected end of JSON")
	}
	i := int32(len(p.nodes))
	p.nodes = append(p.nodes, node{next: -1, first: -1})
	s := p.s
	switch c := s[p.pos]; c {
	case '{':
		if depth >= maxDepth {
			return -1, p.fail("JSON nested too deeply")
		}
		p.nodes[i].kind = kindObject
		p.pos++
		p.ws()
		if p.pos < len(s) && s[p.pos] == '}' {
			p.pos++
			return i, nil
		}
		prev := int32(-1)
		for {
			if p.pos >= len(s) || s[p.pos] != '"' {
				return -1, p.fail("expected a string key")
			}
			ks, ke, kesc, err := p.str()
			if err != nil {
				return -1, err
			}
			p.ws()
			if p.pos >= len(s) || s[p.pos] != ':' {
				return -1, p.fail("expected ':'")
			}
			p.pos++
			p.ws()
			c, err := p.value(depth + 1)
			if err != nil {
				return -1, err
			}
			n := &p.nodes[c]
			n.ks, n.ke, n.kesc = int32(ks), int32(ke), kesc
			if prev < 0 {
				p.nodes[i].first = c
			} else {
				p.nodes[prev].next = c
			}
			prev = c
			p.ws()
			if p.pos >= len(s) {
				return -1, p.fail("unexpected end of JSON")
			}
			if s[p.pos] == '}' {
				p.pos++
				return i, nil
			}
			if s[p.pos] != ',' {
				return -1, p.fail("expected ',' or '}'")
			}
			p.pos++
			p.ws()
		}
	case '[':
		if depth >= maxDepth {
			return -1, p.fail("JSON nested too deeply")
		}
		p.nodes[i].kind = kindArray
		p.pos++
		p.ws()
		if p.pos < len(s) && s[p.pos] == ']' {
			p.pos++
			return i, nil
		}
		prev := int32(-1)
		for {
			c, err := p.value(depth + 1)
			if err != nil {
				return -1, err
			}
			if prev < 0 {
				p.nodes[i].first = c
			} else {
				p.nodes[prev].next = c
			}
			prev = c
			p.ws()
			if p.pos >= len(s) {
				return -1, p.fail("unexpected end of JSON")
			}
			if s[p.pos] == ']' {
				p.pos++
				return i, nil
			}
			if s[p.pos] != ',' {
				return -1, p.fail("expected ',' or ']'")
			}
			p.pos++
			p.ws()
		}
	case '"':
		vs, ve, esc, err := p.str()
		if err != nil {
			return -1, err
		}
		n := &p.nodes[i]
		n.kind, n.vs, n.ve, n.esc = kindString, int32(vs), int32(ve), esc
	case 't':
		return i, p.literal("true", kindTrue, i)
	case 'f':
		return i, p.literal("false", kindFalse, i)
	case 'n':
		return i, p.literal("null", kindNull, i)
	default:
		if c == '-' || isDigit(c) {
			start := p.pos
			frac, err := p.number()
			if err != nil {
				return -1, err
			}
			n := &p.nodes[i]
			n.kind, n.vs, n.ve, n.frac = kindNumber, int32(start), int32(p.pos), frac
			return i, nil
		}
		return -1, p.fail(fmt.Sprintf("unexpected character %q", c))
	}
	return i, nil
}

func (p *parser) literal(lit string, k kind, i int32) error {
	if len(p.s)-p.pos < len(lit) || p.s[p.pos:p.pos+len(lit)] != lit {
		return p.fail("invalid literal")
	}
	p.pos += len(lit)
	p.nodes[i].kind = k
	return nil
}

// str scans the string starting at the quote at p.pos and returns the span of
// its content and whether it holds escapes.
func (p *parser) str() (start, end int, esc bool, err error) {
	s := p.s
	i := p.pos + 1
	start = i
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			p.pos = i + 1
			return start, i, esc, nil
		case c == '\\':
			esc = true
			if i+1 >= len(s) {
				p.pos = i
				return 0, 0, false, p.fail("unexpected end of JSON in a string")
			}
			switch s[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(s) || !isHex4(s[i+2:i+6]) {
					p.pos = i
					return 0, 0, false, p.fail(`invalid \u escape`)
				}
				i += 6
			default:
				p.pos = i
				return 0, 0, false, p.fail("invalid escape in a string")
			}
		case c < 0x20:
			p.pos = i
			return 0, 0, false, p.fail("control character in a string")
		default:
			i++
		}
	}
	p.pos = i
	return 0, 0, false, p.fail("unexpected end of JSON in a string")
}

// number scans a JSON number at p.pos.
func (p *parser) number() (frac bool, err error) {
	s := p.s
	i := p.pos
	if s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		p.pos = i
		return false, p.fail("invalid number")
	}
	if i < len(s) && s[i] == '.' {
		frac = true
		i++
		if i >= len(s) || !isDigit(s[i]) {
			p.pos = i
			return false, p.fail("invalid number")
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		frac = true
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || !isDigit(s[i]) {
			p.pos = i
			return false, p.fail("invalid number")
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	p.pos = i
	return frac, nil
}

func isHex4(s string) bool {
	for i := 0; i < 4; i++ {
		if hexVal(s[i]) < 0 {
			return false
		}
	}
	return true
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

func hex4(s string) rune {
	return rune(hexVal(s[0])<<12 | hexVal(s[1])<<8 | hexVal(s[2])<<4 | hexVal(s[3]))
}

// key returns node i's decoded key.
func (p *parser) key(i int32) string {
	n := &p.nodes[i]
	raw := p.s[n.ks:n.ke]
	if !n.kesc {
		return raw
	}
	k, _ := unescape(raw)
	return k
}

// dedupe applies JSON.parse's rule to duplicate keys in one object: the last
// value wins, at the place of the first. It reports whether it changed anything.
func (p *parser) dedupe() bool {
	changed := false
	if p.seen == nil {
		p.seen = map[string]int32{}
	}
	for i := range p.nodes {
		if p.nodes[i].kind != kindObject || p.nodes[i].first < 0 {
			continue
		}
		clear(p.seen)
		for c := p.nodes[i].first; c >= 0; c = p.nodes[c].next {
			k := p.key(c)
			j, ok := p.seen[k]
			if !ok {
				p.seen[k] = c
				continue
			}
			d, src := &p.nodes[j], &p.nodes[c]
			d.kind, d.esc, d.frac, d.first, d.vs, d.ve = src.kind, src.esc, src.frac, src.first, src.vs, src.ve
			src.kind = kindGone
			changed = true
		}
	}
	return changed
}

// unescape decodes the content of a JSON string that holds escapes (already
// validated by the parser). Lone surrogates become U+FFFD. It reports whether
// the result holds U+0000.
func unescape(raw string) (string, bool) {
	b := make([]byte, 0, len(raw))
	nul := false
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			j := i + 1
			for j < len(raw) && raw[j] != '\\' {
				j++
			}
			b = append(b, raw[i:j]...)
			i = j
			continue
		}
		if i+1 >= len(raw) {
			b = append(b, "\uFFFD"...)
			break
		}
		e := raw[i+1]
		i += 2
		switch e {
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			if i+4 > len(raw) || !isHex4(raw[i:i+4]) {
				b = append(b, "\uFFFD"...)
				continue
			}
			r := hex4(raw[i : i+4])
			i += 4
			if utf16.IsSurrogate(r) {
				if r < 0xDC00 && i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' && isHex4(raw[i+2:i+6]) {
					if r2 := hex4(raw[i+2 : i+6]); r2 >= 0xDC00 && r2 < 0xE000 {
						r = utf16.DecodeRune(r, r2)
						i += 6
					} else {
						r = utf8.RuneError
					}
				} else {
					r = utf8.RuneError
				}
			}
			if r == 0 {
				nul = true
			}
			b = utf8.AppendRune(b, r)
		default: // '"', '\\', '/'
			b = append(b, e)
		}
	}
	return string(b), nul
}

// Why a scalar cannot be loaded; each completes the sentence "field X ...".
const (
	whyNUL      = "holds a string with the NUL character (U+0000), which the warehouse cannot store"
	whyOverflow = "holds the number %s, which is too large for double precision; the warehouse cannot hold it"
	whyDigits   = "holds an integer of %d digits; numeric holds at most 38, so the warehouse cannot hold it"
)

// maxNumericDigits is the precision of the numeric columns (PostgreSQL
// numeric(38,0), DuckDB DECIMAL(38,0)).
const maxNumericDigits = 38

// scalarValue types the scalar node n of the record text s. It returns the Go
// value for its column, or a reason the warehouse cannot hold it.
func scalarValue(s string, n *node) (any, warehouse.Type, string) {
	switch n.kind {
	case kindString:
		raw := s[n.vs:n.ve]
		if !n.esc {
			return raw, warehouse.Text, ""
		}
		v, nul := unescape(raw)
		if nul {
			return nil, 0, whyNUL
		}
		return v, warehouse.Text, ""
	case kindNumber:
		return numberValue(s[n.vs:n.ve], n.frac)
	case kindTrue:
		return true, warehouse.Boolean, ""
	case kindFalse:
		return false, warehouse.Boolean, ""
	}
	return nil, 0, "is not a scalar"
}

// numberValue types a JSON number literal: an integer literal that fits int64 is
// bigint, a longer one numeric (as its digits), anything with a fraction or an
// exponent double (1.0 and 1e2 included).
func numberValue(lit string, frac bool) (any, warehouse.Type, string) {
	if !frac {
		if v, ok := parseInt64(lit); ok {
			return v, warehouse.BigInt, ""
		}
		digits := len(lit)
		if lit[0] == '-' {
			digits--
		}
		if digits > maxNumericDigits {
			return nil, 0, fmt.Sprintf(whyDigits, digits)
		}
		return lit, warehouse.Numeric, ""
	}
	v, err := strconv.ParseFloat(lit, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return nil, 0, fmt.Sprintf(whyOverflow, clip(lit, 40))
	}
	return v, warehouse.Double, ""
}

// parseInt64 parses a JSON integer literal, reporting false when it does not fit.
func parseInt64(lit string) (int64, bool) {
	neg := lit[0] == '-'
	digits := lit
	if neg {
		digits = lit[1:]
	}
	if len(digits) == 0 || len(digits) > 19 {
		return 0, false
	}
	var u uint64
	for i := 0; i < len(digits); i++ {
		u = u*10 + uint64(digits[i]-'0') // at most 19 digits: no uint64 overflow
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > math.MaxInt64 {
		return 0, false
	}
	return int64(u), true
}

// clip shortens s for a message.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
