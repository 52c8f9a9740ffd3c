package loader

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// Flattening records into warehouse tables (SPEC §5).
//
// A record becomes one row of "data"; each non-empty array becomes rows of a
// subtable "data__<path>", one per element. Decisions where SPEC is silent:
//
//   - null elements of an array make no row (their position is still counted,
//     so _sdc_level_N_id is the element's position in the array);
//   - an element that is itself an array makes no row of its own: its elements
//     become rows of "<subtable>__value", one level deeper;
//   - an object element makes a row even when it holds only arrays or nothing;
//   - a collision (two source keys naming one column) counts per row: the same
//     name in two different array elements is no collision, and a null value
//     takes part in none, since it writes nothing;
//   - with a primary key, a record superseded later in the same batch is
//     counted as loaded (the warehouse would have replaced it anyway), so
//     loaded + rejected is always the number of records added; columns it
//     created stay;
//   - _sdc_extra holds {"<flattened column name, before shortening>": value}
//     with each value as it was in the record's JSON; the primary key column
//     is always created, whatever the limit;
//   - reserved names are judged per key: a key whose normalized form ends in
//     __st/__bi/__do/__bo/__de or starts with _sdc rejects the record, whatever
//     its value and depth ({"a":{"_sdc_x":null}} too). A nested key that is
//     only "de" is fine ({"title":{"de":"Hallo"}} -> title__de), so German
//     titles load; such a column is shared with title's numeric split column
//     should title ever hold a number;
//   - an empty key is named "_"; two names that are equal after shortening but
//     not before reject the record (a hash collision, never seen in practice);
//   - the record text kept in _sdc_rejected has invalid UTF-8 and NUL bytes
//     replaced by U+FFFD, since text columns cannot hold them.

// internalError starts the reason of a record rejected because of a bug.
const internalError = "hookhouse failed to flatten this record (a bug: please report it)"

// defaultMaxColumns is SPEC's --max-columns default.
const defaultMaxColumns = 1000

// Input is one accepted record from the log.
type Input struct {
	ID         [16]byte  // becomes __sdc_primary_key, as a canonical UUID string
	ReceivedAt time.Time // _sdc_received_at
	Sequence   int64     // _sdc_sequence, assigned by the caller
	Body       []byte    // one JSON object
}

// Flattener turns records into rows of one integration's tables and keeps what
// it knows about their columns from batch to batch. It is not safe for
// concurrent use.
type Flattener struct {
	pk        string // source key of the primary key; "" for append-only
	pkCol     string // its column
	srcKeyCol string // first column of every subtable
	maxCols   int
	maxText   int // longest text value the warehouse takes; 0: no limit (LimitText)
	existing  map[string][]warehouse.Column

	data   *table
	tables map[string]*table
	order  []*table // data first, then subtables in order of first appearance
	rej    rejectedTable

	// The pending batch.
	alive    []bool        // per record added: false once superseded by its key
	keys     map[any]int32 // primary key value -> record that holds it
	loaded   int
	rejected int

	// Scratch for the record being flattened.
	p       parser
	s       string // the record text
	cells   []cell
	rows    []scratchRow
	cur     scratchRow
	pending []pendingArray
	levels  []int64
	undo    []undoStep
	extra   []byte
	rowID   uint64
	src     any // this record's source key value
	recv    any
	seq     any

	extraSeen map[extraKey]uint64 // see extraOnly

	slab      []any // rows are cut from here to save allocations
	pathNodes int   // size of all naming caches, bounded
}

// table is what the Flattener knows about one warehouse table.
type table struct {
	name  string
	full  string // name before shortening
	depth int    // number of _sdc_level_N_id columns it was created with
	dead  bool   // created by a rejected record and dropped again

	cols   []warehouse.Column
	index  map[string]int
	fields map[string]*field // by base column name
	root   *pathNode         // naming cache for the fields of a row
	value  *pathNode         // the "value" column of scalar elements
	vsub   *table            // "<name>__value", for arrays of arrays

	taken  int  // columns the warehouse has (existing, or returned by Take)
	live   bool // exists in the warehouse or has a committed row
	rows   [][]any
	rowRec []int32 // with a primary key: the record of each row
	nstd   int     // standard columns a new table starts with

	// Positions of the standard columns, -1 where missing.
	pkIdx, srcIdx, recvIdx, batchedIdx, seqIdx, verIdx, extraIdx int
	levelIdx                                                     []int

	stamp   uint64    // row that last sent an array here (collision check)
	stampBy *pathNode // and from which field
}

// field is a base column name and the columns that hold its values by type.
type field struct {
	name  string
	full  string // flattened name before shortening; "" if unknown
	idx   [warehouse.Timestamp + 1]int32
	stamp uint64    // row that last wrote it (collision check)
	by    *pathNode // and from which source field
}

// pathNode caches the naming of one source path relative to a table, so that a
// field seen before costs one map lookup. Children are keyed by the decoded key:
// one node is one source path.
type pathNode struct {
	src   string // source path for messages, e.g. campaign.trigger-event
	name  string // flattened name before shortening, e.g. campaign__trigger_event
	col   string // column name (shortened)
	bad   string // why a key on this path cannot be loaded, "" if it can
	kids  map[string]*pathNode
	field *field
	sub   *table
	stamp uint64 // row that last visited it: a second visit is a duplicate key
}

type cell struct {
	idx int32
	v   any
}

type scratchRow struct {
	t          *table
	start, end int32 // cells
	width      int32
}

type pendingArray struct {
	t      *table // the subtable its elements go to
	arr    int32  // array node
	lv, nl int32  // parent positions in levels
}

// undoStep reverts one schema change of the record being flattened.
type undoStep struct {
	t        *table
	fl       *field
	typ      warehouse.Type
	cols     int  // len(t.cols) before the change
	newTable bool // t was created
}

// rejection is why a record goes to _sdc_rejected.
type rejection struct {
	table     string
	reason    string
	collision bool // might be duplicate keys, which are no collision
	syntax    bool // the record could not be read
}

type rejectedTable struct {
	cols  []warehouse.Column
	index [4]int // positions of RejectedColumns
	taken int
	live  bool
	rows  [][]any
}

// maxPathNodes bounds the naming caches; past it they are rebuilt from scratch
// at the next Take.
const maxPathNodes = 1 << 18

// NewFlattener starts from the tables that already exist in the warehouse for
// this integration (table name -> columns in order; a missing entry means the
// table does not exist). primaryKey is "" for append-only loading (data rows get
// __sdc_primary_key) or the top-level source field to upsert by. maxColumns is
// the per-table column limit (<= 0: 1000).
func NewFlattener(primaryKey string, maxColumns int, existing map[string][]warehouse.Column) *Flattener {
	if maxColumns <= 0 {
		maxColumns = defaultMaxColumns
	}
	f := &Flattener{
		pk:       primaryKey,
		maxCols:  maxColumns,
		existing: make(map[string][]warehouse.Column, len(existing)),
		tables:   map[string]*table{},
		keys:     map[any]int32{},
	}
	for name, cols := range existing {
		f.existing[name] = slices.Clone(cols)
	}
	if primaryKey != "" {
		f.pkCol = ColumnName(primaryKey)
	}
	f.srcKeyCol = sourceKeyColumn(f.pkCol)
	f.data = f.newTable(warehouse.DataTable, warehouse.DataTable, 0, warehouse.Text)
	f.tables[f.data.name] = f.data
	f.order = append(f.order, f.data)
	f.rej.init(f.existing[warehouse.RejectedTable])
	return f
}

// newTable makes the state of table name, from its columns in the warehouse if
// it exists there, adding any standard column it lacks.
func (f *Flattener) newTable(name, full string, depth int, srcType warehouse.Type) *table {
	t := &table{
		name: name, full: full, depth: depth,
		index:  map[string]int{},
		fields: map[string]*field{},
		root:   &pathNode{},
		pkIdx:  -1, srcIdx: -1, extraIdx: -1,
	}
	if cols, ok := f.existing[name]; ok {
		t.cols = slices.Clone(cols)
		t.taken, t.live = len(cols), true
	}
	for i, c := range t.cols {
		if _, dup := t.index[c.Name]; !dup {
			t.index[c.Name] = i
		}
	}
	ensure := func(name string, typ warehouse.Type) int {
		t.nstd++
		if i, ok := t.index[name]; ok {
			return i
		}
		t.cols = append(t.cols, warehouse.Column{Name: name, Type: typ})
		t.index[name] = len(t.cols) - 1
		return len(t.cols) - 1
	}
	if depth == 0 {
		if f.pk == "" {
			t.pkIdx = ensure(warehouse.ColPrimaryKey, warehouse.Text)
		}
	} else {
		t.srcIdx = ensure(f.srcKeyCol, srcType)
		for k := 0; k < depth; k++ {
			t.levelIdx = append(t.levelIdx, ensure(levelColumn(k), warehouse.BigInt))
		}
	}
	t.recvIdx = ensure(warehouse.ColReceivedAt, warehouse.Timestamp)
	t.batchedIdx = ensure(warehouse.ColBatchedAt, warehouse.Timestamp)
	t.seqIdx = ensure(warehouse.ColSequence, warehouse.BigInt)
	t.verIdx = ensure(warehouse.ColTableVersion, warehouse.BigInt)
	if i, ok := t.index[warehouse.ColExtra]; ok {
		t.extraIdx = i
	}
	// Columns found in the warehouse: "<base>__bi" next to "<base>" is the
	// bigint column of base's field.
	for i, c := range t.cols {
		if strings.HasPrefix(c.Name, "_sdc") || strings.HasPrefix(c.Name, "__sdc") {
			continue
		}
		name := c.Name
		if base, typ, ok := splitColumn(name); ok && typ == c.Type {
			if _, ok := t.index[base]; ok {
				name = base
			}
		}
		fl := t.fields[name]
		if fl == nil {
			fl = newField(name, "")
			t.fields[name] = fl
		}
		if fl.idx[c.Type] < 0 {
			fl.idx[c.Type] = int32(i)
		}
	}
	t.value = &pathNode{name: "value", col: "value"}
	return t
}

func newField(name, full string) *field {
	fl := &field{name: name, full: full}
	for i := range fl.idx {
		fl.idx[i] = -1
	}
	return fl
}

func (r *rejectedTable) init(existing []warehouse.Column) {
	if existing != nil {
		r.cols = slices.Clone(existing)
		r.taken, r.live = len(existing), true
	}
	for k, want := range warehouse.RejectedColumns {
		r.index[k] = -1
		for i, c := range r.cols {
			if c.Name == want.Name {
				r.index[k] = i
				break
			}
		}
		if r.index[k] < 0 {
			r.cols = append(r.cols, want)
			r.index[k] = len(r.cols) - 1
		}
	}
}

// Add flattens one record into the pending batch. A record that cannot be
// loaded becomes one row of _sdc_rejected, with the reason, and adds nothing
// else: no rows, no columns.
func (f *Flattener) Add(in Input) {
	s := string(in.Body)
	f.s = s
	defer func() {
		// A bug must not stop the integration's loading for good (the record
		// would be read again after every restart): the record is rejected,
		// with the reason saying what happened.
		if p := recover(); p != nil {
			f.rollback()
			f.reject(&rejection{table: warehouse.DataTable, reason: fmt.Sprintf("%s: %v", internalError, p)}, s)
		}
	}()
	f.recv = warehouse.UTC(in.ReceivedAt)
	f.seq = in.Sequence
	r := f.flatten(in, false)
	if r != nil && !r.syntax {
		// Duplicate keys in one object: the last value wins, as with
		// JSON.parse, so they are no collision and the earlier values do not
		// count. They are rare, so they are looked for only here.
		f.rollback()
		if f.p.dedupe() {
			r = f.flatten(in, true)
		}
	}
	if r == nil {
		r = f.tooLong()
	}
	if r != nil {
		f.rollback()
		f.reject(r, s)
		return
	}
	f.commit()
}

// LimitText makes records with a text value longer than n bytes rejected, and
// cuts the record text _sdc_rejected keeps to n/2 bytes; 0 means no limit. The
// embedded DuckDB needs it (Options.MaxText).
func (f *Flattener) LimitText(n int) { f.maxText = max(n, 0) }

// tooLong is the rejection of the record just flattened if one of its text
// values is longer than maxText.
func (f *Flattener) tooLong() *rejection {
	if f.maxText <= 0 {
		return nil
	}
	for _, sr := range f.rows {
		for _, c := range f.cells[sr.start:sr.end] {
			if v, ok := c.v.(string); ok && len(v) > f.maxText {
				col := sr.t.cols[c.idx].Name
				if sr.t != f.data {
					col = sr.t.name + "." + col
				}
				return &rejection{table: sr.t.name, reason: fmt.Sprintf(
					"the value of column %s is %d bytes; the embedded DuckDB warehouse takes text values of up to %d bytes "+
						"(a 4,096th of its memory share, from --memory-limit); use PostgreSQL, or a larger --memory-limit, for longer values",
					clip(col, 200), len(v), f.maxText)}
			}
		}
	}
	return nil
}

// flatten flattens the record into the scratch rows, recording every schema
// change in f.undo.
func (f *Flattener) flatten(in Input, parsed bool) *rejection {
	f.cells, f.rows, f.pending, f.levels, f.undo = f.cells[:0], f.rows[:0], f.pending[:0], f.levels[:0], f.undo[:0]
	if len(f.extraSeen) > 1<<16 {
		f.extraSeen = nil // after a record of many keys: let its memory go
	} else {
		clear(f.extraSeen)
	}
	if !parsed {
		if !utf8.ValidString(f.s) {
			return &rejection{table: warehouse.DataTable, syntax: true, reason: "the record is not valid UTF-8"}
		}
		if err := f.p.parse(f.s); err != nil {
			return &rejection{table: warehouse.DataTable, syntax: true, reason: "the record is not a valid JSON object: " + err.Error()}
		}
	}
	t := f.data
	f.startRow(t, 0, 0)
	skip := int32(-1)
	if f.pk == "" {
		f.src = uuid.UUID(in.ID).String()
		f.put(t.pkIdx, f.src)
	} else {
		var r *rejection
		if skip, r = f.primaryKey(); r != nil {
			return r
		}
	}
	if r := f.walk(t, t.root, 0, 0, 0, skip); r != nil {
		return r
	}
	f.endRow()
	// Arrays, breadth first: each row's cells stay together.
	for i := 0; i < len(f.pending); i++ {
		if r := f.array(f.pending[i]); r != nil {
			return r
		}
	}
	return nil
}

// primaryKey writes the key field's cell first (so that a new data table gets
// the key as its first field column) and sets the record's source key.
func (f *Flattener) primaryKey() (int32, *rejection) {
	t := f.data
	nodes := f.p.nodes
	at := int32(-1)
	for c := nodes[0].first; c >= 0; c = nodes[c].next {
		if nodes[c].kind == kindGone {
			continue
		}
		if f.p.key(c) == f.pk {
			at = c // the last one wins
		}
	}
	rej := func(format string, args ...any) (int32, *rejection) {
		return -1, &rejection{table: t.name, reason: fmt.Sprintf(format, args...)}
	}
	if at < 0 {
		return rej("the primary key field %q is missing", clip(f.pk, 100))
	}
	n := &nodes[at]
	switch n.kind {
	case kindNull:
		return rej("the primary key field %q is null", clip(f.pk, 100))
	case kindObject, kindArray:
		return rej("the primary key field %q is an %s; a key must be a string, a number or a boolean", clip(f.pk, 100), map[kind]string{kindObject: "object", kindArray: "array"}[n.kind])
	}
	pn := f.child(t.root, at)
	if pn.bad != "" {
		return -1, &rejection{table: t.name, reason: pn.bad}
	}
	pn.stamp = f.rowID
	v, typ, why := scalarValue(f.s, n)
	if why != "" {
		return rej("the primary key field %q %s", clip(f.pk, 100), why)
	}
	if i, ok := t.index[f.pkCol]; ok && t.cols[i].Type != typ {
		return rej("the primary key field %q holds a %s value, but the key column %q is %s", clip(f.pk, 100), typ, f.pkCol, t.cols[i].Type)
	}
	fl, r := f.fieldOf(t, pn)
	if r != nil {
		return -1, r
	}
	fl.stamp, fl.by = f.rowID, pn
	idx, r := f.column(t, fl, typ, true)
	if r != nil {
		return -1, r
	}
	f.put(idx, v)
	f.src = v
	return at, nil
}

// walk flattens the members of object node obj into the current row of t.
func (f *Flattener) walk(t *table, pn *pathNode, obj int32, lv, nl int32, skip int32) *rejection {
	nodes := f.p.nodes
	for c := nodes[obj].first; c >= 0; c = nodes[c].next {
		n := &nodes[c]
		if n.kind == kindGone || c == skip {
			continue
		}
		if n.kind != kindObject && n.kind != kindArray && !f.room(t) {
			if done, r := f.extraOnly(t, pn, c); done {
				if r != nil {
					return r
				}
				continue
			}
		}
		ch := f.child(pn, c)
		if ch.bad != "" {
			return &rejection{table: t.name, reason: ch.bad}
		}
		if ch.stamp == f.rowID {
			return &rejection{table: t.name, collision: true, reason: fmt.Sprintf("the field %q appears twice", clip(ch.src, 200))}
		}
		ch.stamp = f.rowID
		switch n.kind {
		case kindNull:
		case kindObject:
			if n.first >= 0 {
				if r := f.walk(t, ch, c, lv, nl, -1); r != nil {
					return r
				}
			}
		case kindArray:
			if n.first < 0 {
				continue
			}
			sub, r := f.subtable(t, ch)
			if r != nil {
				return r
			}
			if sub.stamp == f.rowID {
				return &rejection{table: t.name, collision: true, reason: fmt.Sprintf(
					"the fields %q and %q both map to the table %s", clip(sub.stampBy.src, 200), clip(ch.src, 200), sub.name)}
			}
			sub.stamp, sub.stampBy = f.rowID, ch
			f.pending = append(f.pending, pendingArray{t: sub, arr: c, lv: lv, nl: nl})
		default:
			if r := f.scalar(t, ch, c); r != nil {
				return r
			}
		}
	}
	return nil
}

// array makes the rows of one array's elements.
func (f *Flattener) array(pa pendingArray) *rejection {
	t := pa.t
	nodes := f.p.nodes
	pos := int64(0)
	for c := nodes[pa.arr].first; c >= 0; c, pos = nodes[c].next, pos+1 {
		n := &nodes[c]
		if n.kind == kindNull || (n.kind == kindArray && n.first < 0) {
			continue
		}
		lv := int32(len(f.levels))
		f.levels = append(f.levels, f.levels[pa.lv:pa.lv+pa.nl]...)
		f.levels = append(f.levels, pos)
		nl := pa.nl + 1
		switch n.kind {
		case kindArray:
			sub := t.vsub
			if sub == nil || sub.dead {
				var r *rejection
				if sub, r = f.tableFor(t.full+"__value", int(nl)+1); r != nil {
					return r
				}
				if sub.root.src == "" {
					sub.root.src, sub.value.src = t.value.src+"[]", t.value.src+"[]"
				}
				t.vsub = sub
			}
			f.pending = append(f.pending, pendingArray{t: sub, arr: c, lv: lv, nl: nl})
		case kindObject:
			f.startRow(t, lv, nl)
			if r := f.walk(t, t.root, c, lv, nl, -1); r != nil {
				return r
			}
			f.endRow()
		default:
			f.startRow(t, lv, nl)
			if r := f.scalar(t, t.value, c); r != nil {
				return r
			}
			f.endRow()
		}
	}
	return nil
}

// scalar puts the value of scalar node c, found at path pn, into the current row.
func (f *Flattener) scalar(t *table, pn *pathNode, c int32) *rejection {
	n := &f.p.nodes[c]
	v, typ, why := scalarValue(f.s, n)
	if why != "" {
		return &rejection{table: t.name, reason: fmt.Sprintf("the field %q %s", clip(pn.src, 200), why)}
	}
	fl, r := f.fieldOf(t, pn)
	if r != nil {
		return r
	}
	if fl.stamp == f.rowID {
		return &rejection{table: t.name, collision: true, reason: fmt.Sprintf(
			"the fields %q and %q both map to the column %q; rename one of them at the source", clip(fl.by.src, 200), clip(pn.src, 200), fl.name)}
	}
	fl.stamp, fl.by = f.rowID, pn
	idx, r := f.column(t, fl, typ, false)
	if r != nil {
		return r
	}
	if idx >= 0 {
		f.put(idx, v)
		return nil
	}
	// No room for a new column: keep the value as JSON in _sdc_extra.
	if len(f.extra) == 0 {
		f.extra = append(f.extra, '{')
	} else {
		f.extra = append(f.extra, ',')
	}
	f.extra = append(f.extra, '"')
	f.extra = append(f.extra, pn.name...)
	f.extra = append(f.extra, '"', ':')
	switch n.kind {
	case kindString:
		f.extra = append(f.extra, f.s[n.vs-1:n.ve+1]...)
	case kindNumber:
		f.extra = append(f.extra, f.s[n.vs:n.ve]...)
	case kindTrue:
		f.extra = append(f.extra, "true"...)
	default:
		f.extra = append(f.extra, "false"...)
	}
	return nil
}

// extraKey is a field written by extraOnly: its table and flattened name.
type extraKey struct {
	t    *table
	name string
}

// extraOnly writes scalar member c of an object at path pn straight to
// _sdc_extra when t has no room for a column and nothing is known of the field
// (no cached naming, no column, no field): the naming cache and the fields are
// not grown for it. Without this, one object of a million keys cost ~400 bytes
// of heap per key (docs/performance.md, "Memory budget"). It reports false when
// the field must take the ordinary path. Duplicates and names that collide
// are found with f.extraSeen, per row, as the ordinary path finds them with its
// stamps.
func (f *Flattener) extraOnly(t *table, pn *pathNode, c int32) (bool, *rejection) {
	n := &f.p.nodes[c]
	key := f.s[n.ks:n.ke]
	if n.kesc {
		key, _ = unescape(key)
	}
	if pn.kids[key] != nil {
		return false, nil
	}
	seg := normalize(key)
	name := seg
	if pn.name != "" {
		name = pn.name + "__" + seg
	}
	col := shorten(name, maxColumnName)
	if _, ok := t.index[col]; ok || t.fields[col] != nil {
		return false, nil
	}
	src := key
	if pn.src != "" {
		src = pn.src + "." + key
	}
	if why := reservedKey(seg); why != "" {
		return true, &rejection{table: t.name, reason: fmt.Sprintf("the field %q %s", clip(src, 200), why)}
	}
	if f.extraSeen == nil {
		f.extraSeen = map[extraKey]uint64{}
	}
	k := extraKey{t, col}
	if at, ok := f.extraSeen[k]; ok && at == f.rowID {
		return true, &rejection{table: t.name, collision: true, reason: fmt.Sprintf("the field %q appears twice, or shares its column name %q with another field", clip(src, 200), col)}
	}
	f.extraSeen[k] = f.rowID
	if n.kind == kindNull {
		return true, nil
	}
	if _, _, why := scalarValue(f.s, n); why != "" {
		return true, &rejection{table: t.name, reason: fmt.Sprintf("the field %q %s", clip(src, 200), why)}
	}
	if len(f.extra) == 0 {
		f.extra = append(f.extra, '{')
	} else {
		f.extra = append(f.extra, ',')
	}
	f.extra = append(f.extra, '"')
	f.extra = append(f.extra, name...)
	f.extra = append(f.extra, '"', ':')
	switch n.kind {
	case kindString:
		f.extra = append(f.extra, f.s[n.vs-1:n.ve+1]...)
	case kindNumber:
		f.extra = append(f.extra, f.s[n.vs:n.ve]...)
	case kindTrue:
		f.extra = append(f.extra, "true"...)
	default:
		f.extra = append(f.extra, "false"...)
	}
	return true, nil
}

// child returns the naming of member c of an object at path pn.
func (f *Flattener) child(pn *pathNode, c int32) *pathNode {
	n := &f.p.nodes[c]
	key := f.s[n.ks:n.ke]
	if n.kesc {
		key, _ = unescape(key)
	}
	if ch := pn.kids[key]; ch != nil {
		return ch
	}
	// Clone: the cache must not keep the record text alive.
	key = strings.Clone(key)
	seg := normalize(key)
	ch := &pathNode{src: key, name: seg}
	if pn.src != "" {
		ch.src = pn.src + "." + key
	}
	if pn.name != "" {
		ch.name = pn.name + "__" + seg
	}
	ch.col = shorten(ch.name, maxColumnName)
	if why := reservedKey(seg); why != "" {
		ch.bad = fmt.Sprintf("the field %q %s", clip(ch.src, 200), why)
	}
	if pn.kids == nil {
		pn.kids = map[string]*pathNode{}
	}
	pn.kids[key] = ch
	f.pathNodes++
	return ch
}

// fieldOf returns the field of path pn in t.
func (f *Flattener) fieldOf(t *table, pn *pathNode) (*field, *rejection) {
	if pn.field != nil {
		return pn.field, nil
	}
	fl := t.fields[pn.col]
	switch {
	case fl == nil:
		fl = newField(pn.col, pn.name)
		t.fields[pn.col] = fl
	case fl.full == "":
		fl.full = pn.name
	case fl.full != pn.name:
		return nil, &rejection{table: t.name, collision: true, reason: fmt.Sprintf(
			"the field %q shortens to the column %q of another long field name", clip(pn.src, 200), fl.name)}
	}
	pn.field = fl
	return fl, nil
}

// subtable returns the subtable of the array at path pn in t.
func (f *Flattener) subtable(t *table, pn *pathNode) (*table, *rejection) {
	if pn.sub != nil && !pn.sub.dead {
		return pn.sub, nil
	}
	sub, r := f.tableFor(t.full+"__"+pn.name, t.depth+1)
	if r != nil {
		return nil, r
	}
	if sub.root.src == "" {
		sub.root.src, sub.value.src = pn.src+"[]", pn.src+"[]"
	}
	pn.sub = sub
	return sub, nil
}

// tableFor returns the state of the table for the flattened name full, creating
// it if this is its first appearance.
func (f *Flattener) tableFor(full string, depth int) (*table, *rejection) {
	name := shorten(full, maxTableName)
	if t := f.tables[name]; t != nil {
		if t.full != full {
			return nil, &rejection{table: name, collision: true, reason: fmt.Sprintf(
				"the array %s shortens to the name of another long table name, %s", clip(full, 200), name)}
		}
		return t, nil
	}
	srcType := warehouse.Text
	if f.pk != "" {
		srcType = f.data.cols[f.data.index[f.pkCol]].Type
	}
	t := f.newTable(name, full, depth, srcType)
	f.tables[name] = t
	f.order = append(f.order, t)
	f.undo = append(f.undo, undoStep{t: t, newTable: true})
	return t, nil
}

// column returns the position of fl's column for values of type typ, creating it
// if needed, or -1 when the table has no room left for it (the value then goes
// to _sdc_extra). force ignores the column limit (the primary key).
func (f *Flattener) column(t *table, fl *field, typ warehouse.Type, force bool) (int, *rejection) {
	if i := fl.idx[typ]; i >= 0 {
		return int(i), nil
	}
	name := fl.name
	if i, ok := t.index[name]; ok {
		if t.cols[i].Type == typ {
			f.setIdx(t, fl, typ, i)
			return i, nil
		}
		// The first type seen owns the plain name; others get a suffix.
		name += typeSuffixes[typ]
		if i, ok := t.index[name]; ok {
			if t.cols[i].Type == typ {
				f.setIdx(t, fl, typ, i)
				return i, nil
			}
			return -1, &rejection{table: t.name, reason: fmt.Sprintf(
				"the field %q holds a %s value, but its column for that type, %q, exists with type %s",
				clip(fl.by.src, 200), typ, name, t.cols[i].Type)}
		}
	}
	if !force && !f.room(t) {
		return -1, nil
	}
	i := f.addColumn(t, name, typ)
	f.setIdx(t, fl, typ, i)
	return i, nil
}

func (f *Flattener) setIdx(t *table, fl *field, typ warehouse.Type, i int) {
	fl.idx[typ] = int32(i)
	f.undo = append(f.undo, undoStep{t: t, fl: fl, typ: typ, cols: len(t.cols)})
}

// room reports whether t may get one more field column, keeping one slot for
// _sdc_extra. A limit below what the standard columns need is raised to it.
func (f *Flattener) room(t *table) bool {
	limit := max(f.maxCols, t.nstd+1)
	need := 1
	if t.extraIdx < 0 {
		need = 2
	}
	return len(t.cols)+need <= limit
}

func (f *Flattener) addColumn(t *table, name string, typ warehouse.Type) int {
	f.undo = append(f.undo, undoStep{t: t, cols: len(t.cols)})
	t.cols = append(t.cols, warehouse.Column{Name: name, Type: typ})
	t.index[name] = len(t.cols) - 1
	return len(t.cols) - 1
}

// startRow begins a scratch row of t at nesting positions levels[lv:lv+nl].
func (f *Flattener) startRow(t *table, lv, nl int32) {
	f.rowID++
	f.cur = scratchRow{t: t, start: int32(len(f.cells))}
	f.extra = f.extra[:0]
	if t.srcIdx >= 0 {
		f.put(t.srcIdx, f.src)
	}
	for k := 0; k < int(nl); k++ {
		for len(t.levelIdx) <= k {
			t.levelIdx = append(t.levelIdx, -1)
		}
		if t.levelIdx[k] < 0 {
			name := levelColumn(k)
			if i, ok := t.index[name]; ok {
				t.levelIdx[k] = i
			} else {
				t.levelIdx[k] = f.addColumn(t, name, warehouse.BigInt)
			}
		}
		f.put(t.levelIdx[k], f.levels[int(lv)+k])
	}
	f.put(t.recvIdx, f.recv)
	f.put(t.batchedIdx, nil) // set by Take
	f.put(t.seqIdx, f.seq)
	f.put(t.verIdx, int64(0))
}

func (f *Flattener) put(idx int, v any) {
	f.cells = append(f.cells, cell{int32(idx), v})
	if int32(idx) >= f.cur.width {
		f.cur.width = int32(idx) + 1
	}
}

func (f *Flattener) endRow() {
	if len(f.extra) > 0 {
		t := f.cur.t
		if t.extraIdx < 0 {
			t.extraIdx = f.addColumn(t, warehouse.ColExtra, warehouse.Text)
		}
		f.extra = append(f.extra, '}')
		f.put(t.extraIdx, string(f.extra))
	}
	f.cur.end = int32(len(f.cells))
	f.rows = append(f.rows, f.cur)
}

// rollback undoes the schema changes of a record that is not committed.
func (f *Flattener) rollback() {
	for i := len(f.undo) - 1; i >= 0; i-- {
		u := f.undo[i]
		t := u.t
		if u.newTable {
			t.dead = true
			delete(f.tables, t.name)
			if n := len(f.order); n > 0 && f.order[n-1] == t {
				f.order = f.order[:n-1]
			}
			continue
		}
		if u.fl != nil {
			u.fl.idx[u.typ] = -1
		}
		for j := u.cols; j < len(t.cols); j++ {
			if t.index[t.cols[j].Name] == j {
				delete(t.index, t.cols[j].Name)
			}
		}
		t.cols = t.cols[:min(u.cols, len(t.cols))]
		if t.extraIdx >= len(t.cols) {
			t.extraIdx = -1
		}
		for k, i := range t.levelIdx {
			if i >= len(t.cols) {
				t.levelIdx[k] = -1
			}
		}
	}
	f.undo = f.undo[:0]
}

// commit moves the scratch rows of a flattened record into the batch.
func (f *Flattener) commit() {
	rec := int32(len(f.alive))
	f.alive = append(f.alive, true)
	for _, sr := range f.rows {
		row := f.newRow(int(sr.width))
		for _, c := range f.cells[sr.start:sr.end] {
			row[c.idx] = c.v
		}
		t := sr.t
		t.rows = append(t.rows, row)
		t.live = true
		if f.pk != "" {
			t.rowRec = append(t.rowRec, rec)
		}
	}
	if f.pk != "" {
		if old, ok := f.keys[f.src]; ok {
			f.alive[old] = false
		}
		f.keys[f.src] = rec
	}
	f.undo = f.undo[:0]
	f.loaded++
}

func (f *Flattener) newRow(n int) []any {
	if n > len(f.slab) {
		f.slab = make([]any, max(n, 4096))
	}
	row := f.slab[:n:n]
	f.slab = f.slab[n:]
	return row
}

// reject records the record as one row of _sdc_rejected. With a text limit
// (LimitText) a record text longer than half of it is cut to that, and the
// reason says so: the rejection must always fit where the record did not.
func (f *Flattener) reject(r *rejection, record string) {
	f.alive = append(f.alive, false)
	reason := r.reason
	if keep := f.maxText / 2; keep > 0 && len(record) > keep {
		reason, record = cutRecord(reason, record, keep)
	}
	if !utf8.ValidString(record) || strings.IndexByte(record, 0) >= 0 {
		// Text columns hold neither invalid UTF-8 nor NUL.
		record = strings.ReplaceAll(strings.ToValidUTF8(record, "\uFFFD"), "\x00", "\uFFFD")
	}
	reason = strings.ReplaceAll(strings.ToValidUTF8(reason, "\uFFFD"), "\x00", "\uFFFD")
	row := make([]any, len(f.rej.cols))
	row[f.rej.index[1]] = r.table
	row[f.rej.index[2]] = reason
	row[f.rej.index[3]] = record
	f.rej.rows = append(f.rej.rows, row)
	f.rejected++
}

// cutRecord keeps the first keep bytes of record (fewer, to end on a whole
// character), and adds to reason that it did.
func cutRecord(reason, record string, keep int) (string, string) {
	n := min(keep, len(record))
	for n > 0 && n < len(record) && !utf8.RuneStart(record[n]) {
		n--
	}
	return reason + fmt.Sprintf("; only the first %d of its %d bytes are kept here", n, len(record)), record[:n]
}

// Take returns the pending tables and clears the pending rows, keeping what it
// knows of the schema (columns created by this batch count as existing
// afterwards). The order is "data", then subtables in order of first
// appearance, then "_sdc_rejected"; only tables with rows or new columns come.
// "_sdc_rejected" comes with the first batch even when empty, so that it exists
// (and can be queried) from the start.
// Every row's _sdc_batched_at (and _sdc_rejected_at) is batchedAt. loaded counts
// the records that became a data row, rejected those sent to _sdc_rejected.
func (f *Flattener) Take(batchedAt time.Time) (tables []warehouse.Table, loaded, rejected int) {
	at := any(warehouse.UTC(batchedAt))
	for _, t := range f.order {
		if !t.live {
			continue
		}
		rows := t.rows
		if f.pk != "" {
			kept := rows[:0]
			for i, row := range rows {
				if f.alive[t.rowRec[i]] {
					kept = append(kept, row)
				}
			}
			clear(rows[len(kept):])
			rows = kept
		}
		if len(rows) == 0 && len(t.cols) == t.taken {
			t.rows, t.rowRec = t.rows[:0], t.rowRec[:0]
			continue
		}
		for _, row := range rows {
			row[t.batchedIdx] = at
		}
		tables = append(tables, warehouse.Table{Name: t.name, Columns: slices.Clone(t.cols), Rows: rows})
		t.taken = len(t.cols)
		t.rows, t.rowRec = nil, t.rowRec[:0]
	}
	if r := &f.rej; len(r.rows) > 0 || len(r.cols) > r.taken {
		for _, row := range r.rows {
			row[r.index[0]] = at
		}
		tables = append(tables, warehouse.Table{Name: warehouse.RejectedTable, Columns: slices.Clone(r.cols), Rows: r.rows})
		r.taken, r.live, r.rows = len(r.cols), true, nil
	}
	loaded, rejected = f.loaded, f.rejected
	f.loaded, f.rejected = 0, 0
	f.alive = f.alive[:0]
	clear(f.keys)
	f.slab = nil
	if f.pathNodes > maxPathNodes {
		f.forget()
	}
	return tables, loaded, rejected
}

// forget drops the naming caches and the fields without a column, which only a
// stream of ever-new keys makes grow.
func (f *Flattener) forget() {
	for _, t := range f.order {
		t.root = &pathNode{src: t.root.src}
		t.value = &pathNode{src: t.value.src, name: "value", col: "value"}
		for name, fl := range t.fields {
			used := false
			for _, i := range fl.idx {
				used = used || i >= 0
			}
			if !used {
				delete(t.fields, name)
			}
		}
	}
	f.pathNodes = 0
}
