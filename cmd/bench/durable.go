package main

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	duckdbdriver "github.com/duckdb/duckdb-go/v2"

	"github.com/hookhouse/hookhouse/internal/warehouse/duckdb"
)

// The durable floors: what any server that fsyncs before its 200 can reach on
// this machine, next to the trivial handler (which answers from memory) and
// hookhouse. A durable floor is the trivial handler plus the least a durable
// ack needs: the body checked as JSON, queued to one writer, written with the
// rest of its group in one write(2) to a plain file, fdatasync'd, and only then
// answered. With loading on, it also appends every synced body once a second
// to DuckDB, in one of two ways:
//   - raw (floorLoading): a table of two columns, a sequence and the raw body:
//     the cheapest load into DuckDB there is;
//   - rows (floorRows): rows of the shape hookhouse loads (the _sdc_ columns and
//     one typed column per leaf of the record), with each distinct body parsed
//     only once and its values reused, so that what it measures is DuckDB's own
//     cost of such rows and nothing of parsing or flattening.
// hookhouse does more than any of them (Pebble, tokens, receipt ids, parsing
// and flattening every record, arrays into subtables), so where a floor is under
// the aim the aim is out of reach for any durable design that loads the same.

// floorMode names the floor a -floor-server child serves.
const (
	floorTrivial = "trivial"
	floorDurable = "durable"
	floorLoading = "durable-duckdb"
	floorRows    = "durable-duckdb-rows"
)

// durableHold is how long the writer holds a group open for more requests
// once the last group had durableHoldMin or more: fewer fsyncs per request
// under load. 300 µs measured best for a plain file on the development VM
// (docs/performance.md, fifth pass).
const (
	durableHold    = 300 * time.Microsecond
	durableHoldMin = 4
)

// durableFloor is a durable floor server; see the comment at the top.
type durableFloor struct {
	srv  *http.Server
	ln   net.Listener
	file *os.File
	off  int64 // where the next group goes in the ring; the writer's
	reqs chan *durableReq

	loadDB *sql.DB // nil: no loading
	rows   *shaper // the rows floor's columns and parsed bodies; nil: raw

	mu      sync.Mutex
	synced  [][]byte // bodies synced and not yet loaded
	loaded  int64    // rows appended to DuckDB
	syncErr error    // the first failed write or fsync: every later request gets 503

	stop chan struct{}
	wg   sync.WaitGroup
}

type durableReq struct {
	body []byte
	done chan error
}

// startDurableFloor serves the durable floor mode (floorDurable, floorLoading
// or floorRows) on a free loopback port, with its log (and its DuckDB file,
// when it loads) in dir.
func startDurableFloor(dir, mode string) (*durableFloor, error) {
	if mode != floorDurable && mode != floorLoading && mode != floorRows {
		return nil, fmt.Errorf("durable floor: unknown mode %q", mode)
	}
	load := mode != floorDurable
	file, err := openRing(filepath.Join(dir, "floor.log"))
	if err != nil {
		return nil, fmt.Errorf("durable floor: %w", err)
	}
	f := &durableFloor{file: file, reqs: make(chan *durableReq, 1024), stop: make(chan struct{})}
	if load {
		// hookhouse's DuckDB settings (checkpoint threshold, threads,
		// allocator), with the benchmarks' memory cap.
		db, err := sql.Open("duckdb", duckdb.DSN(filepath.Join(dir, "floor.duckdb")))
		if err == nil && mode == floorLoading {
			_, err = db.Exec("CREATE TABLE IF NOT EXISTS floor (seq BIGINT, body VARCHAR)")
		}
		if err == nil && mode == floorRows {
			f.rows = newShaper()
			_, err = db.Exec(f.rows.createSQL())
		}
		if err != nil {
			file.Close()
			if db != nil {
				db.Close()
			}
			return nil, fmt.Errorf("durable floor: duckdb: %w", err)
		}
		f.loadDB = db
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.closeFiles()
		return nil, fmt.Errorf("durable floor: listen: %w", err)
	}
	f.ln = ln
	f.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(f.serve)}
	f.wg.Add(2)
	go func() {
		defer f.wg.Done()
		f.writeLoop()
	}()
	go func() {
		defer f.wg.Done()
		_ = f.srv.Serve(ln)
	}()
	if load {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.loadLoop()
		}()
	}
	return f, nil
}

func (f *durableFloor) url() string {
	return "http://" + f.ln.Addr().String() + "/v1/clients/1/token/floor"
}

var floorAnswer = []byte(`{"status":"ok","records":1}` + "\n")

func (f *durableFloor) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if !json.Valid(body) {
		http.Error(w, "the body is not JSON", http.StatusBadRequest)
		return
	}
	req := &durableReq{body: body, done: make(chan error, 1)}
	select {
	case f.reqs <- req:
	case <-f.stop:
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	if err := <-req.done; err != nil {
		http.Error(w, "not stored: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(floorAnswer)
}

// writeLoop is the single writer: each group is what is queued when the last
// sync ends, held open for up to durableHold under load.
func (f *durableFloor) writeLoop() {
	var group []*durableReq
	var buf []byte
	last := 0
	for {
		group = group[:0]
		select {
		case r := <-f.reqs:
			group = append(group, r)
		case <-f.stop:
			f.failQueued()
			return
		}
		if last >= durableHoldMin {
			time.Sleep(durableHold)
		}
	drain:
		for {
			select {
			case r := <-f.reqs:
				group = append(group, r)
			default:
				break drain
			}
		}
		buf = buf[:0]
		for _, r := range group {
			buf = append(buf, r.body...)
			buf = append(buf, '\n')
		}
		err := f.syncErrOrNil()
		if err == nil {
			if _, err = f.writeRing(buf); err == nil {
				err = syscall.Fdatasync(int(f.file.Fd()))
			}
			if err != nil {
				f.mu.Lock()
				f.syncErr = err
				f.mu.Unlock()
			}
		}
		if err == nil && f.loadDB != nil {
			f.mu.Lock()
			for _, r := range group {
				f.synced = append(f.synced, r.body)
			}
			f.mu.Unlock()
		}
		for _, r := range group {
			r.done <- err
		}
		last = len(group)
		clear(group)
	}
}

// ringSize is the durable floor's log: written once with zeros and synced
// before serving, then overwritten in a circle. Writing into blocks that are
// already allocated keeps fdatasync to the data, with no journal commit for a
// growing file (Pebble recycles its WAL files for the same reason). A floor
// only has to be durable for as long as it runs; the bench's 10 s at ~30,000
// records/s of ~500 B is about 150 MiB, so the ring wraps.
const ringSize = 64 << 20

func openRing(path string) (*os.File, error) {
	file, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	zeros := make([]byte, 1<<20)
	for i := 0; i < ringSize/len(zeros); i++ {
		if _, err := file.Write(zeros); err != nil {
			file.Close()
			return nil, err
		}
	}
	if err := file.Sync(); err != nil {
		file.Close()
		return nil, err
	}
	return file, nil
}

// writeRing writes buf at the ring's next offset, wrapping at its end.
func (f *durableFloor) writeRing(buf []byte) (int, error) {
	written := 0
	for len(buf) > 0 {
		n := min(len(buf), int(ringSize-f.off))
		if _, err := f.file.WriteAt(buf[:n], f.off); err != nil {
			return written, err
		}
		written += n
		buf = buf[n:]
		f.off = (f.off + int64(n)) % ringSize
	}
	return written, nil
}

func (f *durableFloor) syncErrOrNil() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.syncErr
}

func (f *durableFloor) failQueued() {
	for {
		select {
		case r := <-f.reqs:
			r.done <- errors.New("shutting down")
		default:
			return
		}
	}
}

// loadLoop appends what was synced to DuckDB once a second (as hookhouse's
// --batch-wait 1s does), one Appender and one commit per batch.
func (f *durableFloor) loadLoop() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-f.stop:
			if err := f.loadOnce(); err != nil {
				slog.Error("durable floor: load", "err", err)
			}
			return
		}
		if err := f.loadOnce(); err != nil {
			slog.Error("durable floor: load", "err", err)
		}
	}
}

func (f *durableFloor) loadOnce() error {
	f.mu.Lock()
	batch := f.synced
	f.synced = nil
	seq := f.loaded
	f.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	ctx := context.Background()
	conn, err := f.loadDB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if f.rows != nil {
		err = f.rows.prepare(ctx, conn, batch)
	}
	if err == nil {
		err = conn.Raw(func(dc any) error {
			a, err := duckdbdriver.NewAppender(dc.(driver.Conn), "", "", "floor")
			if err != nil {
				return err
			}
			now := time.Now()
			for _, b := range batch {
				seq++
				if f.rows != nil {
					err = a.AppendRow(f.rows.row(b, seq, now)...)
				} else {
					err = a.AppendRow(seq, string(b))
				}
				if err != nil {
					_ = a.Close()
					return err
				}
			}
			return a.Close()
		})
	}
	if err != nil {
		// Put the batch back in front, so that nothing synced is skipped.
		f.mu.Lock()
		f.synced = append(batch, f.synced...)
		f.mu.Unlock()
		return err
	}
	f.mu.Lock()
	f.loaded = seq
	f.mu.Unlock()
	return nil
}

// close stops serving, fails what is queued, loads what was synced and closes
// the files.
func (f *durableFloor) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = f.srv.Shutdown(ctx)
	close(f.stop)
	f.wg.Wait()
	f.closeFiles()
}

func (f *durableFloor) closeFiles() {
	f.file.Close()
	if f.loadDB != nil {
		f.loadDB.Close()
	}
}

// shaper turns bodies into rows of the shape hookhouse loads: _sdc_sequence,
// _sdc_received_at, _sdc_batched_at, _sdc_table_version, __sdc_primary_key, then
// one column per leaf path and JSON type (objects flattened with "__", arrays
// kept as JSON text). Each distinct body is parsed once; its values are reused.
type shaper struct {
	cols   []string       // leaf columns, in table order
	types  []string       // their DuckDB types
	index  map[string]int // column name → position in cols
	added  int            // columns the table has
	parsed map[string]map[int]driver.Value
	buf    []driver.Value
}

const shapedSDC = 5

func newShaper() *shaper {
	return &shaper{index: map[string]int{}, parsed: map[string]map[int]driver.Value{}}
}

func (s *shaper) createSQL() string {
	return `CREATE TABLE IF NOT EXISTS floor (_sdc_sequence BIGINT, _sdc_received_at TIMESTAMPTZ,
		_sdc_batched_at TIMESTAMPTZ, _sdc_table_version BIGINT, __sdc_primary_key VARCHAR)`
}

// prepare parses the batch's new distinct bodies and adds their new columns
// to the table.
func (s *shaper) prepare(ctx context.Context, conn *sql.Conn, batch [][]byte) error {
	for _, b := range batch {
		if _, ok := s.parsed[string(b)]; ok {
			continue
		}
		var v any
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			return err
		}
		vals := map[int]driver.Value{}
		s.flatten("", v, vals)
		s.parsed[string(b)] = vals
	}
	for ; s.added < len(s.cols); s.added++ {
		q := fmt.Sprintf(`ALTER TABLE floor ADD COLUMN "%s" %s`, s.cols[s.added], s.types[s.added])
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

func (s *shaper) flatten(path string, v any, vals map[int]driver.Value) {
	var typ string
	var val driver.Value
	switch x := v.(type) {
	case map[string]any:
		for k, sub := range x {
			p := k
			if path != "" {
				p = path + "__" + k
			}
			s.flatten(p, sub, vals)
		}
		return
	case nil:
		return
	case []any:
		text, _ := json.Marshal(x)
		typ, val = "VARCHAR", string(text)
	case string:
		typ, val = "VARCHAR", x
	case bool:
		typ, val = "BOOLEAN", x
	case json.Number:
		if i, err := x.Int64(); err == nil {
			typ, val = "BIGINT", i
		} else {
			f, _ := x.Float64()
			typ, val = "DOUBLE", f
		}
	}
	name := path + "__" + strings.ToLower(typ)
	i, ok := s.index[name]
	if !ok {
		i = len(s.cols)
		s.index[name] = i
		s.cols = append(s.cols, name)
		s.types = append(s.types, typ)
	}
	vals[i] = val
}

// row is body's row: prepare must have seen it. The slice is reused.
func (s *shaper) row(body []byte, seq int64, now time.Time) []driver.Value {
	if cap(s.buf) < shapedSDC+len(s.cols) {
		s.buf = make([]driver.Value, shapedSDC+len(s.cols))
	}
	r := s.buf[:shapedSDC+len(s.cols)]
	clear(r)
	var id [16]byte
	binary.BigEndian.PutUint64(id[:8], uint64(seq))
	binary.BigEndian.PutUint64(id[8:], uint64(now.UnixNano()))
	r[0], r[1], r[2], r[3], r[4] = now.UnixMilli()*1_000_000+seq%1_000_000, now, now, int64(0), hex.EncodeToString(id[:])
	for i, v := range s.parsed[string(body)] {
		r[shapedSDC+i] = v
	}
	return r
}

// durableFloors are the durable floors the bench measures, in order.
var durableFloors = []struct{ mode, name string }{
	{floorDurable, "durable floor: + write + fdatasync per group"},
	{floorLoading, "durable floor + raw bodies into DuckDB"},
	{floorRows, "durable floor + Vero-shaped rows into DuckDB"},
}

// durableRun is one durable floor's wrk run.
type durableRun struct {
	mode, name string
	res        wrkResult
	err        error
}
