package state_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookhouse/hookhouse/internal/natstest"
	"github.com/hookhouse/hookhouse/internal/state"
	"github.com/hookhouse/hookhouse/internal/state/statetest"
)

// jsNode is a JetStream state on a connection of its own, as a hookhouse node
// has; Close closes both.
type jsNode struct {
	*state.JetStream
	nc *nats.Conn
}

func (n jsNode) Close() error {
	err := n.JetStream.Close()
	n.nc.Close()
	return err
}

func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(false))
	if err != nil {
		t.Fatal(err)
	}
	return nc
}

func openJS(t testing.TB, url string, opts state.JetStreamOptions) jsNode {
	t.Helper()
	nc := connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := state.OpenJetStream(ctx, nc, slog.New(slog.DiscardHandler), opts)
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	return jsNode{j, nc}
}

func TestJetStreamConformance(t *testing.T) {
	c := natstest.Start(t, 3)
	var places, nodes atomic.Int64
	statetest.Run(t, statetest.Options{Shared: true}, func(t *testing.T) func() state.Store {
		name := fmt.Sprintf("hh%d", places.Add(1))
		return func() state.Store {
			// Each node talks to another server of the cluster.
			return openJS(t, c.URL(int(nodes.Add(1))%3), state.JetStreamOptions{Name: name})
		}
	})
}
