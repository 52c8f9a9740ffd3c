package config

import (
	"fmt"
)

// The memory budget: --memory-limit is the whole process's, and Budget splits it
// between the parts that hold memory in proportion to their work. The figures
// behind the shares are in docs/performance.md ("Memory budget").

// MinMemoryLimit is the smallest --memory-limit: below it the fixed costs (code,
// Pebble's memtables) leave too little for anything else.
const MinMemoryLimit = 384 << 20

// Fixed costs that no setting of hookhouse changes.
const (
	// baseMemory is the code (DuckDB's is most of it), the Go runtime and
	// the idle heap: an idle server's RSS is 65 MiB.
	baseMemory = 80 << 20
	// pebbleMemory is the log's memtables (64 MiB; one filling, one flushing)
	// and block cache, allocated outside the Go heap.
	pebbleMemory = 136 << 20
	// smallBodies is what requests below the large-body size hold while they
	// are read (at most 1 MiB each; 64 at once in the hostile tests).
	smallBodies = 48 << 20
)

// Budget is how the memory limit is split. Every figure is in bytes.
type Budget struct {
	Limit int64 // --memory-limit
	// DuckDB is the embedded warehouse's memory_limit (its buffer pool; it
	// spills to its temp directory beyond it); 0 with PostgreSQL.
	DuckDB int64
	// DuckDBOutside is what DuckDB allocates outside its pool while it loads a
	// batch (the Appender's copy of the rows, the allocator's caches): a
	// reserve, not a setting.
	DuckDBOutside int64
	// DuckDBThreads is DuckDB's worker threads; each holds memory of its own.
	DuckDBThreads int
	// DuckDBMaxText is the longest text value the embedded DuckDB takes
	// (a 4,096th of its pool, at least 8 KiB): it scans and checkpoints a
	// column 2,048 rows at a time with every string of them pinned in its
	// pool, so values this long load and checkpoint in any number, where
	// longer ones stall it once 2,048 of them add up to more than its pool
	// (docs/performance.md). A record with a longer value is rejected into
	// _sdc_rejected with the reason. 0 with PostgreSQL: no limit.
	DuckDBMaxText int64
	// GoHeap is the Go runtime's soft limit (GOMEMLIMIT): large bodies being
	// received, the loader's batches, everything else of the Go side.
	GoHeap int64
	// BatchBytes caps the record bodies the loader reads into one batch
	// (a batch holds at least one record, whatever its size).
	BatchBytes int64
	// LargeSlots is how many request bodies over 1 MiB are buffered at once;
	// more wait for a slot (and get 503 + Retry-After after 30 s).
	LargeSlots int
	// Fixed is the rest: code, runtime, Pebble's memtables.
	Fixed int64
}

// Budget splits the memory limit for this configuration. The embedded DuckDB
// gets a quarter of it and a reserve for what it allocates outside its pool; a
// PostgreSQL warehouse runs elsewhere, so its share goes to the Go side (more
// large bodies at once, bigger batches).
func (c Config) Budget() Budget {
	return splitMemory(c.MemoryLimit, c.MaxBody, c.Warehouse == "")
}

func splitMemory(limit, maxBody int64, embedded bool) Budget {
	b := Budget{Limit: limit, Fixed: baseMemory + pebbleMemory}
	free := limit - b.Fixed
	// Batches: 1/32 of the limit (32 MiB at 1 GiB), at least 4 MiB, at most
	// 64 MiB (more loads no faster; see docs/performance.md).
	b.BatchBytes = min(max(limit/32, 4<<20), 64<<20)
	if embedded {
		// A quarter, and half from 2 GiB on: DuckDB scans and checkpoints a
		// table 2,048 rows at a time with all their text pinned in its pool,
		// so long text values need a big pool (docs/performance.md).
		b.DuckDB = max(limit/4, 64<<20)
		if limit >= 2<<30 {
			b.DuckDB = limit / 2
		}
		// The Appender copies a batch into DuckDB's own vectors outside the
		// pool, and the allocator keeps up to 16 MiB per thread cached.
		b.DuckDBThreads = 1
		if limit >= 4<<30 {
			b.DuckDBThreads = 2
		}
		b.DuckDBMaxText = max(b.DuckDB/4096/1024*1024, 8<<10)
		b.DuckDBOutside = 2*b.BatchBytes + int64(b.DuckDBThreads)*16<<20
		free -= b.DuckDB + b.DuckDBOutside
	} else {
		b.BatchBytes = min(b.BatchBytes*2, 64<<20)
	}
	b.GoHeap = max(free, 64<<20)
	// The loader holds up to two batches (one committing, the next being
	// flattened), each as read from the log and as flattened rows: 4x.
	loader := 4 * b.BatchBytes
	// A large body costs its buffer (grown by doubling, so up to 1.5x the
	// body) and its copy in the log's group commit: 2.5x --max-body.
	perBody := maxBody * 5 / 2
	// A quarter of the Go heap stays free: a heap pressing on its soft limit
	// makes the GC run without pause, and bodies then arrive too slowly for
	// --read-timeout (measured with 5 slots at 1 GiB: 48 of 64 bodies cut off).
	b.LargeSlots = int(min(max((b.GoHeap*3/4-loader-smallBodies)/max(perBody, 1), 1), 64))
	return b
}

// String is the split as one line for the log and the help.
func (b Budget) String() string {
	s := fmt.Sprintf("limit=%s go-heap=%s batch-bytes=%s large-bodies=%d fixed=%s",
		roundSize(b.Limit), roundSize(b.GoHeap), roundSize(b.BatchBytes), b.LargeSlots, roundSize(b.Fixed))
	if b.DuckDB > 0 {
		s += fmt.Sprintf(" duckdb=%s duckdb-outside-pool=%s duckdb-threads=%d duckdb-max-text=%dKiB",
			roundSize(b.DuckDB), roundSize(b.DuckDBOutside), b.DuckDBThreads, b.DuckDBMaxText>>10)
	}
	return s
}

// roundSize prints n in MiB (or its exact unit when it has one).
func roundSize(n int64) string {
	if n%(1<<20) == 0 {
		return byteSize(n).String()
	}
	return fmt.Sprintf("%dMiB", n>>20)
}
