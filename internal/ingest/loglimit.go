package ingest

import (
	"sort"
	"sync"
	"time"
)

// LineLimiter rate-limits log lines so that a flood of refused requests cannot
// fill the disk. Each key may write Burst lines, refilled at Rate per second,
// and all keys together GlobalBurst, refilled at GlobalRate. A line held back
// is counted against its key: the key's next line reports the count (Allow), and
// TakeSuppressed hands over the counts no line has reported yet.
type LineLimiter struct {
	Rate, Burst             float64
	GlobalRate, GlobalBurst float64
	// MaxKeys bounds the keys remembered (0: 10,000). Past it, keys whose bucket
	// is full and that hold no count are forgotten first, then any; the counts
	// of forgotten keys are kept in one total, so none is lost.
	MaxKeys int

	mu       sync.Mutex
	keys     map[LineKey]*lineBucket
	global   bucket
	orphaned int64 // held-back lines of forgotten keys, not yet reported
}

// LineKey is what a line is limited by: the integration (0 when none is
// proven), the client address (without port) and the answer's status.
type LineKey struct {
	Integration int64
	Addr        string
	Status      int
}

type lineBucket struct {
	bucket
	suppressed int64
}

// Allow reports whether a line for k may be written now and takes one unit from
// k's bucket and the global one. When it may, suppressed is how many lines of k
// were held back since k's last line, for this line to say so; the count is
// then reset.
func (l *LineLimiter) Allow(k LineKey, now time.Time) (ok bool, suppressed int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys == nil {
		l.keys = map[LineKey]*lineBucket{}
		l.global = bucket{tokens: l.GlobalBurst, last: now}
	}
	b := l.keys[k]
	if b == nil {
		l.makeRoom(now)
		b = &lineBucket{bucket: bucket{tokens: l.Burst, last: now}}
		l.keys[k] = b
	}
	b.refill(now, l.Rate, l.Burst)
	l.global.refill(now, l.GlobalRate, l.GlobalBurst)
	if b.tokens < 1 || l.global.tokens < 1 {
		b.suppressed++
		return false, 0
	}
	b.tokens--
	l.global.tokens--
	suppressed, b.suppressed = b.suppressed, 0
	return true, suppressed
}

// makeRoom forgets keys once MaxKeys are remembered, down to 90% of it, so the
// O(n) pass runs at most once per MaxKeys/10 new keys.
func (l *LineLimiter) makeRoom(now time.Time) {
	limit := l.MaxKeys
	if limit <= 0 {
		limit = 10000
	}
	if len(l.keys) < limit {
		return
	}
	for k, b := range l.keys {
		if b.suppressed == 0 && b.tokens+now.Sub(b.last).Seconds()*l.Rate >= l.Burst {
			delete(l.keys, k) // indistinguishable from a key never seen
		}
	}
	for k, b := range l.keys {
		if len(l.keys) < limit*9/10 {
			break
		}
		l.orphaned += b.suppressed
		delete(l.keys, k)
	}
}

// Suppressed is a count of lines held back for one key.
type Suppressed struct {
	Key   LineKey
	Lines int64
}

// TakeSuppressed returns the counts of held-back lines no line has reported
// yet, largest first, at most max of them; rest sums the others (with those
// of forgotten keys) and restKeys says how many keys they came from (forgotten
// keys not counted). Every count returned is reset.
func (l *LineLimiter) TakeSuppressed(max int) (top []Suppressed, rest int64, restKeys int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, b := range l.keys {
		if b.suppressed > 0 {
			top = append(top, Suppressed{k, b.suppressed})
			b.suppressed = 0
		}
	}
	sort.Slice(top, func(i, j int) bool { return top[i].Lines > top[j].Lines })
	if len(top) > max {
		for _, s := range top[max:] {
			rest += s.Lines
		}
		restKeys = len(top) - max
		top = top[:max]
	}
	rest += l.orphaned
	l.orphaned = 0
	return top, rest, restKeys
}

// refill adds the units earned since the last call, up to burst.
func (b *bucket) refill(now time.Time, rate, burst float64) {
	if d := now.Sub(b.last).Seconds(); d > 0 {
		b.tokens = min(burst, b.tokens+d*rate)
	}
	b.last = now
}
