package natsproc_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookhouse/hookhouse/internal/natsproc"
)

func connect(t testing.TB, urls string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond)}, opts...)
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestClusterKillRestart: three real processes with sync_interval: always
// form a JetStream cluster; the stream leader is SIGKILLed, the others elect
// a new one and keep acknowledging; the killed server comes back on its ports
// and store and catches up, and every acknowledged message is there.
func TestClusterKillRestart(t *testing.T) {
	c := natsproc.StartT(t, natsproc.Options{})
	for i := range c.Len() {
		conf, err := os.ReadFile(strings.TrimSuffix(c.Log(i), ".log") + ".conf")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(conf), "sync_interval: always") {
			t.Fatalf("%s's configuration lacks sync_interval: always:\n%s", c.Name(i), conf)
		}
	}
	ctx := context.Background()
	nc := connect(t, c.URLs())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(cctx, jetstream.StreamConfig{Name: "t", Subjects: []string{"t.>"}, Replicas: 3, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	publish := func(from, n int) {
		t.Helper()
		for i := from; i < from+n; i++ {
			// Retried under one message id until acknowledged: an election
			// may be under way, and a request the killed leader took is
			// never answered, so each try has its own short deadline.
			deadline := time.Now().Add(40 * time.Second)
			for {
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := js.Publish(pctx, "t.x", []byte(fmt.Sprint(i)), jetstream.WithMsgID(fmt.Sprint(i)))
				cancel()
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("publish %d: %v", i, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	publish(0, 20)
	leader := c.StreamLeader(ctx, nc, "t")
	if leader < 0 {
		t.Fatal("the stream has no leader")
	}
	c.Kill(leader)
	if c.Running(leader) {
		t.Fatal("the killed server still runs")
	}
	publish(20, 20)
	if l := c.StreamLeader(ctx, nc, "t"); l == leader || l < 0 {
		t.Fatalf("stream leader after the kill: %d (killed %d)", l, leader)
	}
	if err := c.Restart(ctx, leader); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitMetaLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitStreamCurrent(ctx, nc, "t"); err != nil {
		t.Fatal(err)
	}
	// The restarted server has every message: read from it alone.
	cctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	one := connect(t, c.URL(leader), nats.IgnoreDiscoveredServers())
	ojs, _ := jetstream.New(one)
	s, err := ojs.Stream(cctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().State.Msgs; got != 40 {
		t.Fatalf("the stream holds %d messages, want 40", got)
	}
	for seq := uint64(1); seq <= 40; seq++ {
		m, err := s.GetMsg(cctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Data) != fmt.Sprint(seq-1) {
			t.Fatalf("message %d is %q", seq, m.Data)
		}
	}
}

// TestProxy: bytes pass both ways; Cut closes the connection and refuses new
// ones; after Restore connections work again.
func TestProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // an echo server, ends with ln
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	p, err := natsproc.NewProxy(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	echo := func() (net.Conn, error) {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			return nil, err
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("hello\n")); err != nil {
			c.Close()
			return nil, err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			c.Close()
			return nil, err
		}
		if line != "hello\n" {
			c.Close()
			return nil, fmt.Errorf("echo %q", line)
		}
		return c, nil
	}
	c, err := echo()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p.Cut()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes from a cut connection", n)
	}
	if c2, err := echo(); err == nil {
		c2.Close()
		t.Fatal("a new connection through a cut proxy reached the server")
	}
	p.Restore()
	c3, err := echo()
	if err != nil {
		t.Fatalf("after Restore: %v", err)
	}
	c3.Close()
}

// TestStartFails: a server that cannot start is an error that says which and
// why, and leaves nothing running.
func TestStartFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bad := t.TempDir() + "/nats-server"
	if err := os.WriteFile(bad, []byte("#!/bin/sh\necho 'no JetStream today' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := natsproc.Start(ctx, natsproc.Options{Dir: t.TempDir(), Bin: bad})
	if err == nil {
		c.Close()
		t.Fatal("Start succeeded with a server that exits at once")
	}
	if !strings.Contains(err.Error(), "n1 exited at start") || !strings.Contains(err.Error(), "no JetStream today") {
		t.Fatalf("error %q does not say which server failed and its log", err)
	}
}
