package ingest

import (
	"fmt"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting of objects and arrays a request may have.
const MaxDepth = 64

// SyntaxError says what is wrong with a request body and where.
type SyntaxError struct {
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%s at byte %d", e.Msg, e.Offset) }

// Split validates body as one JSON object or an array of objects and returns the
// records' byte ranges within body. It checks what encoding/json does not: valid
// UTF-8 inside strings, nesting depth, and that array elements are objects. It
// allocates only the result.
func Split(body []byte) ([][]byte, error) {
	p := parser{b: body}
	p.ws()
	if p.i >= len(p.b) {
		return nil, p.fail("empty body: expected a JSON object or an array of objects")
	}
	var out [][]byte
	switch p.b[p.i] {
	case '{':
		start := p.i
		if err := p.value(1); err != nil {
			return nil, err
		}
		out = [][]byte{p.b[start:p.i]}
	case '[':
		p.i++
		p.ws()
		if p.peek() == ']' {
			p.i++
			break
		}
		for {
			p.ws()
			if p.peek() != '{' {
				if p.i >= len(p.b) {
					return nil, p.fail("unexpected end of input inside the array")
				}
				return nil, p.fail(fmt.Sprintf("array element %d is not an object: each element must be a JSON object", len(out)))
			}
			start := p.i
			if err := p.value(2); err != nil {
				return nil, err
			}
			out = append(out, p.b[start:p.i])
			p.ws()
			c := p.peek()
			if c == ',' {
				p.i++
				continue
			}
			if c == ']' {
				p.i++
				break
			}
			if p.i >= len(p.b) {
				return nil, p.fail("unexpected end of input inside the array")
			}
			return nil, p.fail("expected ',' or ']' in array")
		}
	default:
		if err := p.value(1); err != nil {
			return nil, err
		}
		return nil, &SyntaxError{0, "body is a JSON scalar: expected a JSON object or an array of objects"}
	}
	p.ws()
	if p.i < len(p.b) {
		return nil, p.fail("trailing data after the JSON value")
	}
	return out, nil
}

type parser struct {
	b []byte
	i int
}

func (p *parser) fail(msg string) error { return &SyntaxError{p.i, msg} }

func (p *parser) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// value parses one value; depth counts the containers it is inside plus its own.
func (p *parser) value(depth int) error {
	p.ws()
	if p.i >= len(p.b) {
		return p.fail("unexpected end of input: truncated JSON")
	}
	switch c := p.b[p.i]; {
	case c == '{':
		if depth > MaxDepth {
			return p.fail(fmt.Sprintf("nesting deeper than %d levels", MaxDepth))
		}
		p.i++
		p.ws()
		if p.peek() == '}' {
			p.i++
			return nil
		}
		for {
			p.ws()
			if p.peek() != '"' {
				if p.i >= len(p.b) {
					return p.fail("unexpected end of input: truncated JSON")
				}
				return p.fail("expected a string key in object")
			}
			if err := p.str(); err != nil {
				return err
			}
			p.ws()
			if p.peek() != ':' {
				if p.i >= len(p.b) {
					return p.fail("unexpected end of input: truncated JSON")
				}
				return p.fail("expected ':' after object key")
			}
			p.i++
			if err := p.value(depth + 1); err != nil {
				return err
			}
			p.ws()
			switch p.peek() {
			case ',':
				p.i++
			case '}':
				p.i++
				return nil
			default:
				if p.i >= len(p.b) {
					return p.fail("unexpected end of input: truncated JSON")
				}
				return p.fail("expected ',' or '}' in object")
			}
		}
	case c == '[':
		if depth > MaxDepth {
			return p.fail(fmt.Sprintf("nesting deeper than %d levels", MaxDepth))
		}
		p.i++
		p.ws()
		if p.peek() == ']' {
			p.i++
			return nil
		}
		for {
			if err := p.value(depth + 1); err != nil {
				return err
			}
			p.ws()
			switch p.peek() {
			case ',':
				p.i++
			case ']':
				p.i++
				return nil
			default:
				if p.i >= len(p.b) {
					return p.fail("unexpected end of input: truncated JSON")
				}
				return p.fail("expected ',' or ']' in array")
			}
		}
	case c == '"':
		return p.str()
	case c == 't':
		return p.lit("true")
	case c == 'f':
		return p.lit("false")
	case c == 'n':
		return p.lit("null")
	case c == '-' || c >= '0' && c <= '9':
		return p.num()
	default:
		return p.fail(fmt.Sprintf("invalid character %q: malformed JSON", rune(c)))
	}
}

func (p *parser) lit(s string) error {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		if len(p.b)-p.i < len(s) {
			return p.fail("unexpected end of input: truncated JSON")
		}
		return p.fail("invalid literal: malformed JSON")
	}
	p.i += len(s)
	return nil
}

func (p *parser) num() error {
	start := p.i
	if p.peek() == '-' {
		p.i++
	}
	switch {
	case p.peek() == '0':
		p.i++
	case p.peek() >= '1' && p.peek() <= '9':
		for p.peek() >= '0' && p.peek() <= '9' {
			p.i++
		}
	default:
		return p.fail("invalid number")
	}
	if p.peek() == '.' {
		p.i++
		if !(p.peek() >= '0' && p.peek() <= '9') {
			return p.fail("invalid number: digit expected after '.'")
		}
		for p.peek() >= '0' && p.peek() <= '9' {
			p.i++
		}
	}
	if c := p.peek(); c == 'e' || c == 'E' {
		p.i++
		if c := p.peek(); c == '+' || c == '-' {
			p.i++
		}
		if !(p.peek() >= '0' && p.peek() <= '9') {
			return p.fail("invalid number: digit expected in exponent")
		}
		for p.peek() >= '0' && p.peek() <= '9' {
			p.i++
		}
	}
	_ = start
	return nil
}

// str parses a string starting at '"', checking escapes and UTF-8.
func (p *parser) str() error {
	p.i++ // opening quote
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return nil
		case c == '\\':
			p.i++
			if p.i >= len(p.b) {
				return p.fail("unexpected end of input: truncated JSON")
			}
			switch p.b[p.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.i++
			case 'u':
				p.i++
				if len(p.b)-p.i < 4 {
					return p.fail("unexpected end of input: truncated JSON")
				}
				for k := 0; k < 4; k++ {
					if !isHex(p.b[p.i+k]) {
						return p.fail("invalid \\u escape in string")
					}
				}
				p.i += 4
			default:
				return p.fail("invalid escape in string")
			}
		case c < 0x20:
			return p.fail("control character in string must be escaped")
		case c < utf8.RuneSelf:
			p.i++
		default:
			r, n := utf8.DecodeRune(p.b[p.i:])
			if r == utf8.RuneError && n <= 1 {
				return p.fail("invalid UTF-8 in string")
			}
			p.i += n
		}
	}
	return p.fail("unexpected end of input: unterminated string")
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
