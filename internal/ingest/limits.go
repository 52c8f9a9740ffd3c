package ingest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// largeBody is the size past which a request body needs one of the large-body
// slots: at most Slots bodies bigger than this are held in memory at once, so 64
// concurrent 20 MiB uploads cost a bounded amount of memory instead of 64 × 20 MiB.
const largeBody = 1 << 20

var errBusy = errors.New("too many large requests at once")

// Slots bounds how many large bodies are buffered at once.
type Slots chan struct{}

// NewSlots makes n large-body slots.
func NewSlots(n int) Slots { return make(Slots, n) }

// acquire waits for a slot until ctx ends or wait passes.
func (s Slots) acquire(ctx context.Context, wait time.Duration) error {
	if s == nil {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case s <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errBusy
	}
}

func (s Slots) release() {
	if s != nil {
		<-s
	}
}

// FailLimiter limits failed token checks per client address (r.RemoteAddr, which
// the server sets to the forwarded client behind a --trusted-proxies proxy): each address may
// fail Burst times, refilled at Rate per second. Valid tokens never consume it,
// so a sender with a good URL is never slowed by a noisy neighbour on its address.
type FailLimiter struct {
	Rate  float64
	Burst float64

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// Allow reports whether addr may have another failure answered with 401 (false:
// answer 429) and takes one unit from its bucket.
func (l *FailLimiter) Allow(r *http.Request, now time.Time) bool {
	if l == nil {
		return true
	}
	addr := clientAddr(r)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buckets == nil {
		l.buckets = map[string]*bucket{}
	}
	if len(l.buckets) > 10000 && now.Sub(l.swept) > time.Second {
		// Bounded memory: forget addresses whose buckets are full again.
		for k, b := range l.buckets {
			if now.Sub(b.last).Seconds()*l.Rate+b.tokens >= l.Burst {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b, ok := l.buckets[addr]
	if !ok {
		b = &bucket{tokens: l.Burst, last: now}
		l.buckets[addr] = b
	}
	b.tokens = min(l.Burst, b.tokens+now.Sub(b.last).Seconds()*l.Rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
