package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/hookhouse/hookhouse/client"
)

const importDetails = `FILE is NDJSON (one JSON object per line) or a JSON array of objects, either
of them gzip'd or not: the format is told from the content. "-" reads stdin.
Each line (array element) becomes one record, checked as webhook records are
(one JSON object, valid UTF-8, at most 64 levels deep, at most 8 MiB); blank
lines are skipped. _sdc_received_at is the time of the import, or with
--received-at FIELD the record's top-level FIELD: an RFC 3339 string
("2025-03-01T12:00:00Z") or a number of Unix seconds or, from 10^11 on, Unix
milliseconds. A record without a usable FIELD is a bad line.

The file is streamed to the admin API (never through a webhook URL) in chunks
of 10,000 lines or 4 MiB (smaller on a cluster, where a chunk must fit one
NATS message: the server says how large); memory stays bounded. Each
chunk is stored whole or not at all, together with its id (the SHA-256 of the
content up to the chunk's end), so running the same command again after an
interruption (Ctrl-C, a network error, a server restart) imports every line
exactly once: the chunks already stored are skipped. Network errors and 503s
are retried for up to 2 minutes.

Bad lines are reported with their line numbers. A FILE is checked whole before
anything is sent: with more bad lines than --max-errors (default 0) nothing is
imported. From stdin each chunk is checked before it is sent, and the import
stops at the chunk that brings one bad line too many; the chunks before it are
imported (run the command again once the lines from there on are fixed).
Skipped bad lines are not imported later by a rerun: put them, fixed, into a
file of their own and import that.

A chunk id stays claimed for 400 days (a week on a cluster). To load a file once more on purpose
(say its rows were dropped and the log no longer holds them), give the import
a name with --import-name: the same file under a new name is a new import.

Examples:
  hookhouse import 7 vero-2025.ndjson.gz
  zcat export.json.gz | hookhouse import 7 - --received-at created_at
`

// importRetryFor is how long a chunk is retried after network errors and
// 503s before the command gives up (a rerun goes on where it stopped).
var importRetryFor = 2 * time.Minute

// maxShownBad is how many bad lines are printed one by one.
const maxShownBad = 20

// importer runs one 'hookhouse import'.
type importer struct {
	c          *cli
	cl         *client.Client
	id         int64
	schema     string
	name       string // the file's name, or "stdin"
	field      string
	maxErrors  int
	importName string // --import-name
	// maxBody, maxItems: the server's chunk limits when it takes smaller
	// chunks than this command cuts by default (a cluster); 0: none.
	maxBody, maxItems int

	bad     int // bad lines seen
	shown   int // bad lines printed
	stored  int64
	skipped int64 // records of chunks stored by an earlier run
	chunks  int
}

// importSummary is the --json answer.
type importSummary struct {
	Integration     int64  `json:"integration"`
	Format          string `json:"format"`
	Records         int64  `json:"records"`
	Stored          int64  `json:"stored"`
	AlreadyImported int64  `json:"already_imported"`
	BadLines        int    `json:"bad_lines"`
	Chunks          int    `json:"chunks"`
}

func importFile(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	field := fs.String("received-at", "", "take _sdc_received_at from the records' top-level `FIELD` (RFC 3339, or Unix seconds or milliseconds); default: the time of the import")
	maxErrors := fs.Int("max-errors", 0, "skip up to `N` bad lines (each is reported) and import the rest; one more stops the import")
	importName := fs.String("import-name", "", "import the file as another import under this `NAME`: lines an earlier import stored are stored again (see below)")
	pos, err := c.parseArgs(fs, args, "integration id", "file (or - for stdin)")
	if err != nil {
		return err
	}
	id, err := c.parseID(fs, "integration id", pos[0])
	if err != nil {
		return err
	}
	if *maxErrors < 0 {
		return c.usagef(fs, "--max-errors must be 0 or more, got %d", *maxErrors)
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	in, err := cl.Integration(ctx, id)
	if err != nil {
		return err
	}
	im := &importer{c: c, cl: cl, id: id, schema: in.Schema, name: pos[1], field: *field, maxErrors: *maxErrors, importName: *importName}
	if err := im.askLimits(ctx); err != nil {
		return err
	}
	if pos[1] == "-" {
		im.name = "stdin"
		return im.run(ctx, c.stdin, false, 0)
	}
	f, err := os.Open(pos[1])
	if err != nil {
		return fmt.Errorf("cannot open the import file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() { // a named pipe, a device: read once, like stdin
		return im.run(ctx, f, false, 0)
	}
	records, err := im.check(ctx, f, st.Size())
	if err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	return im.run(ctx, f, true, records)
}

// check reads the whole file once before anything is sent: it reports every
// bad line and refuses the import when there are more than --max-errors, and
// it counts the records for the progress.
func (im *importer) check(ctx context.Context, f io.Reader, size int64) (int64, error) {
	cr := &countingReader{r: f}
	ir, err := im.open(cr)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", im.name, err)
	}
	defer ir.Close()
	p := newProgress(im.c.stderr, "checking "+im.name, "checked", "bytes", size)
	defer p.Finish()
	var records int64
	for {
		if err := ctx.Err(); err != nil {
			return 0, errors.New("interrupted while checking the file; nothing was imported")
		}
		ch, err := ir.nextChunk()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			p.Finish()
			return 0, fmt.Errorf("%s: %w; nothing was imported", im.name, err)
		}
		records += int64(ch.records)
		im.report(ch.bad)
		p.Set(cr.n)
	}
	p.Set(cr.n)
	p.Finish()
	im.reportTail()
	if im.bad > im.maxErrors {
		return 0, fmt.Errorf("%s has %d bad lines, more than --max-errors %d allows: nothing was imported. Fix them, or pass --max-errors %d to import the other %d records without them",
			im.name, im.bad, im.maxErrors, im.bad, records)
	}
	im.bad, im.shown = 0, maxShownBad // counted again while sending; printed once
	return records, nil
}

// run sends the chunks of r one after another, each once its predecessor is
// stored, while the next is read. checked: the file went through check.
func (im *importer) run(ctx context.Context, r io.Reader, checked bool, total int64) error {
	ir, err := im.open(r)
	if err != nil {
		return fmt.Errorf("%s: %w", im.name, err)
	}
	fmt.Fprintf(im.c.stderr, "Importing %s (%s) into integration %d (%s)\n", im.name, ir.format(), im.id, im.schema)

	// The reader goroutine is owned by run, and owns ir from here on: it
	// stops at rctx's end or the input's. Reading stdin cannot be
	// interrupted, so run waits for it only when reading a file.
	rctx, cancel := context.WithCancel(ctx)
	chunks := make(chan *chunk, 1)
	done := make(chan struct{})
	var readErr error
	go func() {
		defer close(done)
		defer close(chunks)
		defer ir.Close()
		for {
			ch, err := ir.nextChunk()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					readErr = err
				}
				return
			}
			select {
			case chunks <- ch:
			case <-rctx.Done():
				return
			}
		}
	}()
	defer func() {
		cancel()
		if checked {
			<-done
		}
	}()

	p := newProgress(im.c.stderr, "import into "+im.schema, "imported", "records", total)
	defer p.Finish()
	var line int // the first line not yet imported
	for ch := range chunks {
		if !checked {
			im.report(ch.bad)
		} else {
			im.bad += len(ch.bad)
		}
		if im.bad > im.maxErrors {
			p.Finish()
			im.reportTail()
			return fmt.Errorf("stopped at line %d: %d bad lines, more than --max-errors %d allows. %s",
				ch.firstLine, im.bad, im.maxErrors, im.resumeHint(ch.firstLine))
		}
		if ch.records > 0 {
			res, err := im.send(ctx, ch)
			if err != nil {
				p.Finish()
				if ctx.Err() != nil {
					return fmt.Errorf("interrupted. %s", im.resumeHint(ch.firstLine))
				}
				return fmt.Errorf("chunk %d (lines %d to %d): %w. %s", ch.index+1, ch.firstLine, ch.lastLine, im.c.explain(err), im.resumeHint(ch.firstLine))
			}
			if res.Duplicate {
				im.skipped += int64(ch.records)
			} else {
				im.stored += int64(res.Records)
			}
		}
		im.chunks++
		line = ch.lastLine + 1
		if done := im.stored + im.skipped; total > 0 && done > total {
			p.SetTotal(done) // the file grew since the check
		}
		p.Set(im.stored + im.skipped)
	}
	<-done
	if readErr != nil {
		p.Finish()
		im.reportTail()
		return fmt.Errorf("%s: %w. %s", im.name, readErr, im.resumeHint(line))
	}
	p.Finish()
	im.reportTail()
	return im.summary(ir.format())
}

// send sends one chunk, retrying network errors and 503s for importRetryFor:
// a chunk sent twice is stored once.
func (im *importer) send(ctx context.Context, ch *chunk) (*client.ImportResult, error) {
	deadline := time.Now().Add(importRetryFor)
	wait := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		res, err := im.cl.ImportChunk(ctx, im.id, ch.id, im.field, ch.body)
		if err == nil || ctx.Err() != nil || !retryable(err) || time.Now().After(deadline) {
			return res, err
		}
		if attempt == 1 {
			fmt.Fprintf(im.c.stderr, "\nchunk %d (lines %d to %d) not stored yet: %v; retrying for up to %s\n",
				ch.index+1, ch.firstLine, ch.lastLine, im.c.explain(err), importRetryFor)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}

// retryable tells errors worth another try (the server restarting, busy or
// unreachable) from refusals.
func retryable(err error) bool {
	var apiErr *client.Error
	if errors.As(err, &apiErr) {
		switch apiErr.StatusCode {
		case 429, 502, 503, 504:
			return true
		}
		return false
	}
	return !errors.Is(err, context.Canceled)
}

// report prints bad lines, the first maxShownBad of them.
func (im *importer) report(bad []item) {
	for _, it := range bad {
		im.bad++
		if im.shown < maxShownBad {
			im.shown++
			fmt.Fprintf(im.c.stderr, "%s: bad %s: %v\n", im.name, it.where, it.err)
		}
	}
}

func (im *importer) reportTail() {
	if im.bad > im.shown && im.shown == maxShownBad {
		fmt.Fprintf(im.c.stderr, "%s: %d bad lines in all (the first %d are shown)\n", im.name, im.bad, maxShownBad)
		im.shown = im.bad + 1 // once
	}
}

// resumeHint says what a rerun does after a stop before line.
func (im *importer) resumeHint(line int) string {
	if im.stored+im.skipped == 0 {
		return "Nothing was imported."
	}
	return fmt.Sprintf("%s records before line %d are imported; run the same command again to go on: "+
		"what is already imported is skipped, as long as the lines before line %d stay the same.",
		thousands(im.stored+im.skipped), line, line)
}

func (im *importer) summary(format string) error {
	s := importSummary{Integration: im.id, Format: format, Records: im.stored + im.skipped, Stored: im.stored,
		AlreadyImported: im.skipped, BadLines: im.bad, Chunks: im.chunks}
	if im.c.json {
		return im.c.printJSON(s)
	}
	fmt.Fprintf(im.c.stdout, "Imported %s records from %s into integration %d (%s)", thousands(s.Records), im.name, im.id, im.schema)
	if s.AlreadyImported > 0 {
		fmt.Fprintf(im.c.stdout, ": %s now, %s by an earlier run (skipped)", thousands(s.Stored), thousands(s.AlreadyImported))
	}
	fmt.Fprintln(im.c.stdout, ".")
	if s.BadLines > 0 {
		fmt.Fprintf(im.c.stdout, "%d bad lines were skipped (listed above).\n", s.BadLines)
	}
	fmt.Fprintf(im.c.stdout, "They load into the warehouse with the next batches; 'hookhouse integrations show %d' shows the backlog.\n", im.id)
	return nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// askLimits asks the server how large a chunk it takes. A server whose
// limits hold every chunk this command cuts by default (one node) gets those
// chunks, with the same ids as ever; a smaller limit (a cluster: a chunk is
// one NATS message) makes the chunks fit it exactly. A server older than
// the question answers 404 or 405 and gets the default chunks.
func (im *importer) askLimits(ctx context.Context) error {
	lim, err := im.cl.ImportLimits(ctx, im.id)
	deadline := time.Now().Add(importRetryFor)
	for wait := 250 * time.Millisecond; err != nil && ctx.Err() == nil && retryable(err) && time.Now().Before(deadline); wait = min(wait*2, 5*time.Second) {
		if wait == 250*time.Millisecond {
			fmt.Fprintf(im.c.stderr, "asking the server how large a chunk may be: %v; retrying for up to %s\n", im.c.explain(err), importRetryFor)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		lim, err = im.cl.ImportLimits(ctx, im.id)
	}
	var ce *client.Error
	if errors.As(err, &ce) && (ce.StatusCode == http.StatusNotFound || ce.StatusCode == http.StatusMethodNotAllowed) {
		return nil
	}
	if err != nil {
		return err
	}
	if lim.MaxChunkBytes <= 0 || lim.MaxChunkRecords <= 0 {
		return fmt.Errorf("the server answered chunk limits of %d bytes and %d records", lim.MaxChunkBytes, lim.MaxChunkRecords)
	}
	if lim.MaxChunkBytes < chunkBytes+maxItemBytes+1 || lim.MaxChunkRecords < chunkItems {
		im.maxBody, im.maxItems = lim.MaxChunkBytes, lim.MaxChunkRecords
	}
	return nil
}

// open opens r for reading chunks cut to the server's limits.
func (im *importer) open(r io.Reader) (*importReader, error) {
	ir, err := openImport(r, im.field, im.importName)
	if err != nil {
		return nil, err
	}
	ir.maxBody, ir.maxItems = im.maxBody, im.maxItems
	return ir, nil
}
