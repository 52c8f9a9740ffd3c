package natsproc

import (
	"context"
	"testing"
	"time"
)

// StartT starts a cluster for a test in a temporary directory and kills it
// when the test ends; on failure the test stops.
func StartT(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // a first build of nats-server included
	defer cancel()
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}
