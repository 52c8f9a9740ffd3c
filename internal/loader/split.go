package loader

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// Splitting batches that do not fit in the warehouse's memory.
//
// The loader bounds a batch by records (BatchSize) and by bytes read
// (MaxBatchBytes, from --memory-limit), but what a batch costs the warehouse
// also depends on its shape (1,000-column tables, long strings). When a load
// fails with warehouse.ErrOutOfMemory nothing of it was written, so the worker
// tries again at once with half the records, down to one. A record that fails
// alone is rejected into _sdc_rejected with the reason; should even that row not
// fit, its text is cut to maxRejectedText. Every attempt is fenced by the load
// position like any other, so splitting keeps loading exactly-once.

// The same must hold when the warehouse does not fail but the process is killed
// during a load (the kernel's OOM killer, a container's memory limit): else
// every start would load the same batch and be killed again. So before a load
// of more than attemptNoteBytes the worker writes a note of it, the batch's
// start position, size and splitting state, and removes it after. A start that
// finds a note for the position it starts from treats that batch as out of
// memory: it splits it, and a single record is rejected.
const attemptNoteBytes = 1 << 20

// maxRejectedText is how much of a record _sdc_rejected keeps when the whole
// text did not fit in the warehouse's memory.
const maxRejectedText = 1 << 20

// split is one worker's splitting state; only the worker's goroutine uses it.
type split struct {
	limit    int    // records per batch while splitting; 0 when not splitting
	rejectAt uint64 // log position of the record to reject; 0 for none
	truncate bool   // reject it with its text cut
}

func (s *split) active() bool { return s.limit > 0 }

// size is the number of records to read for the next batch.
func (s *split) size(batchSize int) int {
	if s.limit > 0 {
		return min(s.limit, batchSize)
	}
	return batchSize
}

// outOfMemory takes a batch of records records after position after that the
// warehouse had no memory for. It reports whether trying again smaller can help;
// false when the rejection row of one record with its text cut did not fit
// either (then the load fails like any other and is retried with a backoff).
func (s *split) outOfMemory(after uint64, records int) bool {
	switch {
	case records <= 0:
		return false
	case s.rejectAt == after+1:
		if s.truncate {
			return false
		}
		s.truncate = true
	case records > 1:
		s.limit = max(records/2, 1)
	default:
		s.limit, s.rejectAt, s.truncate = 1, after+1, false
	}
	return true
}

// reject reports whether the record at position is to be rejected, and why.
func (s *split) reject(position uint64) (reason string, truncate, ok bool) {
	if s.rejectAt == 0 || position != s.rejectAt {
		return "", false, false
	}
	return "the warehouse ran out of memory loading this record alone; raise --memory-limit to load records like it", s.truncate, true
}

// committed notes a batch of records records that loaded up to position. While
// splitting, each batch that loads doubles the limit again, and the split ends
// once a batch comes back smaller than the limit (the backlog that needed it is
// loaded) or the limit reaches batchSize.
func (s *split) committed(position uint64, records, batchSize int) {
	if s.rejectAt != 0 && position >= s.rejectAt {
		s.rejectAt, s.truncate = 0, false
	}
	if s.limit == 0 {
		return
	}
	if records < s.limit {
		s.limit = 0
		return
	}
	if s.limit *= 2; s.limit >= batchSize {
		s.limit = 0
	}
}

// Reject sends a record to _sdc_rejected with reason, without flattening it; with
// truncate, only its first maxRejectedText bytes are kept and the reason says so
// (with a text limit, LimitText, only half of that limit is kept in any case:
// the embedded DuckDB stalls on 2,048 rows of 1 MiB).
func (f *Flattener) Reject(in Input, reason string, truncate bool) {
	s := string(in.Body)
	// With a text limit, reject cuts the text to half of it in any case.
	if truncate && len(s) > maxRejectedText && f.maxText == 0 {
		reason, s = cutRecord(reason, s, maxRejectedText)
	}
	f.reject(&rejection{table: warehouse.DataTable, reason: reason}, s)
}

// attempts are the notes of large loads in progress, one file per integration
// in dir ("" for none).
type attempts struct{ dir string }

func (a attempts) path(integration int64) string {
	return filepath.Join(a.dir, strconv.FormatInt(integration, 10))
}

// begin notes a load of records records after position after, in splitting
// state s. It reports whether the note was written; a note that cannot be
// written only loses the protection.
func (a attempts) begin(integration int64, after uint64, records int, s split) bool {
	if a.dir == "" {
		return false
	}
	note := fmt.Sprintf("%d %d %d %t\n", after, records, s.rejectAt, s.truncate)
	return os.WriteFile(a.path(integration), []byte(note), 0o600) == nil
}

// end removes the note: the load finished, committed or not, without the
// process dying.
func (a attempts) end(integration int64) { _ = os.Remove(a.path(integration)) }

// unfinished reads and removes the note an earlier run left for integration,
// and returns the splitting state to retry that batch in (its limit being
// the batch's records) when the note is for the batch after position after,
// the one about to be loaded again.
func (a attempts) unfinished(integration int64, after uint64) (split, bool) {
	if a.dir == "" {
		return split{}, false
	}
	b, err := os.ReadFile(a.path(integration))
	if err != nil {
		return split{}, false
	}
	a.end(integration)
	var (
		at       uint64
		s        split
		truncate bool
	)
	if _, err := fmt.Sscanf(string(b), "%d %d %d %t", &at, &s.limit, &s.rejectAt, &truncate); err != nil || at != after || s.limit < 1 {
		return split{}, false
	}
	s.truncate = truncate
	return s, true
}
