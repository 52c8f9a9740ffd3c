package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/hookhouse/hookhouse/internal/ingest"
)

// Reading an import file: NDJSON or one JSON array of objects, either of them
// gzip'd, told apart by the content (gzip's magic bytes, then the first byte
// that is not white space: '{' is NDJSON, '[' an array). The file is read as a
// stream, one item (a line, an array element) at a time, and cut into chunks at
// boundaries that depend on the content only, so that a rerun cuts the same
// chunks. A chunk's id is the SHA-256 of the items up to its end: the same
// file (gzip'd or not) gives the same ids, and a file whose first lines are
// unchanged gives the same ids for the chunks that hold only those lines.
const (
	// A chunk closes after chunkItems items or once its items reach
	// chunkBytes, whichever comes first.
	chunkItems = 10_000
	chunkBytes = 4 << 20
	// maxItemBytes bounds one record; a longer line is a bad line. A chunk's
	// body stays below the server's limit (api.MaxImportChunkBytes, 16 MiB).
	maxItemBytes = 8 << 20
)

// errEmptyInput is the error of an input without a single byte of JSON.
var errEmptyInput = errors.New("the input is empty: expected NDJSON (one JSON object per line) or a JSON array of objects")

// importReader reads the items of an import file.
type importReader struct {
	br     *bufio.Reader
	zr     *gzip.Reader // nil unless the input is gzip'd
	array  bool
	field  string // --received-at
	line   int    // the line the reader is on (1-based)
	elems  int    // array elements read
	ended  bool   // the array's ']' was read, or NDJSON's end
	sum    hash.Hash
	buf    []byte
	chunks int
	// lastBody is the size of the last chunk's body.
	lastBody int
	// maxBody and maxItems, when set (a server that takes smaller chunks: a
	// cluster), bound a chunk exactly: an item that would make the chunk's
	// body longer than maxBody starts the next chunk instead (held).
	maxBody, maxItems int
	held              *item
}

// item is one line of NDJSON or one element of an array.
type item struct {
	where string // "line 12" or "element 5 (line 12)"
	line  int
	rec   []byte // the record, valid until the next call; nil for a bad item
	size  int    // bytes of the item as read
	err   error  // why the item is bad
}

// openImport detects the format of r and returns a reader at its first item.
// name, if not empty, makes the chunk ids another import's (--import-name).
func openImport(r io.Reader, field, name string) (*importReader, error) {
	ir := &importReader{br: bufio.NewReaderSize(r, 256<<10), field: field, line: 1, sum: sha256.New()}
	if name != "" {
		fmt.Fprintf(ir.sum, "hookhouse import name %q\n", name)
	}
	if magic, _ := ir.br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(ir.br)
		if err != nil {
			return nil, fmt.Errorf("the input starts like gzip but is not valid gzip: %v", err)
		}
		ir.zr = zr
		ir.br = bufio.NewReaderSize(zr, 256<<10)
	}
	if bom, _ := ir.br.Peek(3); bytes.Equal(bom, []byte("\xef\xbb\xbf")) {
		ir.br.Discard(3)
	}
	// NDJSON's leading blank lines are part of its first item's read, so that
	// the line numbers stay right; an array's are skipped here.
	if head, _ := ir.br.Peek(6); len(head) >= 3 {
		for _, m := range []struct{ magic, name string }{{"\x28\xb5\x2f\xfd", "zstd"}, {"BZh", "bzip2"}, {"\xfd7zXZ\x00", "xz"}} {
			if bytes.HasPrefix(head, []byte(m.magic)) {
				return nil, fmt.Errorf("the input is %s-compressed; hookhouse reads plain or gzip'd input: decompress it first (or pipe it: %s -dc FILE | hookhouse import ID -)", m.name, m.name)
			}
		}
	}
	for {
		b, err := ir.peekNonSpace()
		if errors.Is(err, io.EOF) {
			return nil, errEmptyInput
		}
		if err != nil {
			return nil, ir.readErr(err)
		}
		switch {
		case b == '{':
			return ir, nil
		case b == '[':
			ir.array = true
			ir.skipSpace()
			ir.br.ReadByte()
			return ir, nil
		case b < 0x20 || b >= 0x7f:
			return nil, fmt.Errorf("the input is not JSON text (it starts with the byte 0x%02x): expected NDJSON or a JSON array of objects, plain or gzip'd (other compressions are not read)", b)
		default:
			return nil, fmt.Errorf("the input is neither NDJSON nor a JSON array: its first character is %q; expected '{' (NDJSON, one JSON object per line) or '[' (an array of objects)", rune(b))
		}
	}
}

// format names the detected format.
func (ir *importReader) format() string {
	f := "NDJSON"
	if ir.array {
		f = "a JSON array"
	}
	if ir.zr != nil {
		f += ", gzip'd"
	}
	return f
}

// peekNonSpace returns the first byte that is not white space without
// consuming anything.
func (ir *importReader) peekNonSpace() (byte, error) {
	for n := 1; ; n++ {
		b, err := ir.br.Peek(n)
		if len(b) < n {
			if err == nil {
				err = io.EOF
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				// Megabytes of white space: consume them (arrays only
				// reach here after the '[', NDJSON counts them as lines).
				return ir.skipThenPeek()
			}
			return 0, err
		}
		if c := b[n-1]; !isSpace(c) {
			return c, nil
		}
	}
}

func (ir *importReader) skipThenPeek() (byte, error) {
	if err := ir.skipSpace(); err != nil {
		return 0, err
	}
	b, err := ir.br.Peek(1)
	if len(b) == 0 {
		return 0, err
	}
	return b[0], nil
}

// skipSpace consumes white space, counting lines.
func (ir *importReader) skipSpace() error {
	for {
		b, err := ir.br.ReadByte()
		if err != nil {
			return err
		}
		if !isSpace(b) {
			return ir.br.UnreadByte()
		}
		if b == '\n' {
			ir.line++
		}
	}
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

// readErr describes an error reading the input.
func (ir *importReader) readErr(err error) error {
	if ir.zr != nil && (errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader)) {
		return fmt.Errorf("the gzip data is truncated or corrupt near line %d: %v", ir.line, err)
	}
	return fmt.Errorf("reading the input near line %d: %w", ir.line, err)
}

// Close releases the gzip reader, if any.
func (ir *importReader) Close() error {
	if ir.zr != nil {
		return ir.zr.Close()
	}
	return nil
}

// next returns the next item, io.EOF at the end, or an error that ends the
// import (unreadable input, an array whose structure is broken).
func (ir *importReader) next() (item, error) {
	if ir.ended {
		return item{}, io.EOF
	}
	if ir.array {
		return ir.nextElement()
	}
	return ir.nextLine()
}

func (ir *importReader) nextLine() (item, error) {
	for {
		line, size, tooLong, err := ir.readLine()
		if err != nil && !(errors.Is(err, io.EOF) && size > 0) {
			if errors.Is(err, io.EOF) {
				ir.ended = true
				return item{}, io.EOF
			}
			return item{}, ir.readErr(err)
		}
		n := ir.line
		ir.line++
		if !tooLong && len(bytes.TrimSpace(line)) == 0 {
			continue // blank lines are not records
		}
		it := item{where: fmt.Sprintf("line %d", n), line: n, size: size}
		if tooLong {
			it.err = fmt.Errorf("longer than %s, the largest record an import takes", humanBytes(maxItemBytes))
			return it, nil
		}
		it.rec, _, it.err = ingest.ImportRecord(line, ir.field)
		return it, nil
	}
}

// readLine reads one line (without its '\n'), keeping at most maxItemBytes of
// it; every byte goes into the chunk hash. size counts all its bytes.
func (ir *importReader) readLine() (line []byte, size int, tooLong bool, err error) {
	ir.buf = ir.buf[:0]
	for {
		frag, err := ir.br.ReadSlice('\n')
		size += len(frag)
		ir.sum.Write(frag)
		if !tooLong {
			if len(ir.buf)+len(frag) > maxItemBytes+2 { // room for "\r\n"
				tooLong = true
				ir.buf = ir.buf[:0]
			} else {
				ir.buf = append(ir.buf, frag...)
			}
		}
		switch {
		case err == nil:
			if len(ir.buf) > 0 && ir.buf[len(ir.buf)-1] == '\n' {
				ir.buf = ir.buf[:len(ir.buf)-1]
			}
			return ir.buf, size, tooLong, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			if errors.Is(err, io.EOF) && size > 0 {
				ir.sum.Write([]byte{'\n'}) // a last line without '\n' hashes as one with
			}
			return ir.buf, size, tooLong, err
		}
	}
}

func (ir *importReader) nextElement() (item, error) {
	if err := ir.skipSpace(); err != nil {
		return item{}, ir.arrayEnd(err)
	}
	c, _ := ir.br.Peek(1)
	if c[0] == ']' {
		if ir.elems > 0 {
			return item{}, fmt.Errorf("the JSON array has a ']' right after a ',' at line %d (after element %d)", ir.line, ir.elems)
		}
		ir.br.ReadByte()
		if err := ir.closeArray(); err != nil {
			return item{}, err
		}
		return item{}, io.EOF
	}
	ir.elems++
	it := item{line: ir.line, where: fmt.Sprintf("element %d (line %d)", ir.elems, ir.line)}
	raw, size, tooLong, err := ir.scanValue()
	if err != nil {
		return item{}, ir.arrayEnd(err)
	}
	it.size = size
	ir.sum.Write(raw)
	ir.sum.Write([]byte{'\n'})
	if tooLong {
		it.err = fmt.Errorf("larger than %s, the largest record an import takes", humanBytes(maxItemBytes))
	} else {
		it.rec, _, it.err = ingest.ImportRecord(raw, ir.field)
	}
	if err := ir.skipSpace(); err != nil {
		return item{}, ir.arrayEnd(err)
	}
	b, _ := ir.br.ReadByte()
	switch b {
	case ',':
		return it, nil
	case ']':
		if err := ir.closeArray(); err != nil {
			return item{}, err
		}
		return it, nil
	default:
		return item{}, fmt.Errorf("expected ',' or ']' after element %d of the JSON array at line %d, found %q: the array is broken there", ir.elems, ir.line, rune(b))
	}
}

// closeArray checks that only white space follows the array's ']'.
func (ir *importReader) closeArray() error {
	ir.ended = true
	err := ir.skipSpace()
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return ir.readErr(err)
	}
	return fmt.Errorf("data after the JSON array's closing ']' at line %d: an import is one array or NDJSON", ir.line)
}

// arrayEnd explains an error or EOF inside the array.
func (ir *importReader) arrayEnd(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("the input ends inside the JSON array (after element %d, line %d): the file is truncated or the array has no closing ']'", ir.elems, ir.line)
	}
	return ir.readErr(err)
}

// scanValue reads one JSON value's bytes by brackets and strings (ingest
// checks them after), keeping at most maxItemBytes.
func (ir *importReader) scanValue() (raw []byte, size int, tooLong bool, err error) {
	ir.buf = ir.buf[:0]
	keep := func(b byte) {
		size++
		if tooLong {
			return
		}
		if len(ir.buf) >= maxItemBytes {
			tooLong = true
			return
		}
		ir.buf = append(ir.buf, b)
	}
	first, err := ir.br.ReadByte()
	if err != nil {
		return nil, 0, false, err
	}
	keep(first)
	switch first {
	case '{', '[':
		depth, inStr := 1, false
		for depth > 0 {
			b, err := ir.br.ReadByte()
			if err != nil {
				return nil, 0, false, err
			}
			keep(b)
			switch {
			case b == '\n':
				ir.line++
			case inStr && b == '\\':
				e, err := ir.br.ReadByte()
				if err != nil {
					return nil, 0, false, err
				}
				keep(e)
			case b == '"':
				inStr = !inStr
			case inStr:
			case b == '{' || b == '[':
				depth++
			case b == '}' || b == ']':
				depth--
			}
		}
	case '"':
		for {
			b, err := ir.br.ReadByte()
			if err != nil {
				return nil, 0, false, err
			}
			keep(b)
			if b == '\\' {
				e, err := ir.br.ReadByte()
				if err != nil {
					return nil, 0, false, err
				}
				keep(e)
			} else if b == '"' {
				break
			}
		}
	default: // a scalar or garbage: up to the next separator
		for {
			b, err := ir.br.ReadByte()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, 0, false, err
			}
			if b == ',' || b == ']' || isSpace(b) {
				ir.br.UnreadByte()
				break
			}
			keep(b)
		}
	}
	return ir.buf, size, tooLong, nil
}

// chunk is a run of items sent in one request: the good records as NDJSON.
type chunk struct {
	index     int
	id        string // 64 hex characters
	firstLine int
	lastLine  int
	records   int
	body      []byte
	bad       []item
}

// nextChunk reads the next chunk; io.EOF when there is none. A chunk with no
// good records has nothing to send but still counts its bad items.
func (ir *importReader) nextChunk() (*chunk, error) {
	// Sized like the last chunk: most chunks are alike, and growing a
	// 4 MiB body by doubling would copy it twice over.
	c := &chunk{index: ir.chunks, body: make([]byte, 0, ir.lastBody+ir.lastBody/8)}
	items, size := 0, 0
	add := func(it item) {
		if items == 0 {
			c.firstLine = it.line
		}
		c.lastLine = it.line
		items++
		size += it.size
		if it.err != nil {
			it.rec = nil
			c.bad = append(c.bad, it)
			return
		}
		c.body = append(append(c.body, it.rec...), '\n')
		c.records++
	}
	maxItems, maxSize := chunkItems, chunkBytes
	if ir.maxBody > 0 {
		maxItems, maxSize = min(maxItems, ir.maxItems), min(maxSize, ir.maxBody)
	}
	if ir.held != nil {
		add(*ir.held)
		ir.held = nil
	}
	var id []byte
	for items < maxItems && size < maxSize {
		var before []byte // the hash's state before this item
		if ir.maxBody > 0 && items > 0 {
			before, _ = ir.sum.(encoding.BinaryMarshaler).MarshalBinary()
		}
		it, err := ir.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if before != nil && it.err == nil && len(c.body)+len(it.rec)+1 > ir.maxBody {
			// It starts the next chunk; this one's id is the hash up to
			// its own end.
			held := it
			held.rec = bytes.Clone(it.rec)
			ir.held = &held
			h := sha256.New()
			if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(before); err != nil {
				return nil, err
			}
			id = h.Sum(nil)
			break
		}
		add(it)
	}
	if items == 0 {
		return nil, io.EOF
	}
	ir.chunks++
	ir.lastBody = len(c.body)
	if id == nil {
		id = ir.sum.Sum(nil)
	}
	c.id = hex.EncodeToString(id)
	return c, nil
}
