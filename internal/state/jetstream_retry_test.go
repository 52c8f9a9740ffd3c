package state

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookhouse/hookhouse/internal/natstest"
)

// A try whose PubAck was lost but which the stream stored is found by the
// retry, which then stores nothing: the records are in the log once.
func TestJetStreamRetryStoresOnce(t *testing.T) {
	c := natstest.Start(t, 3)
	nc, err := nats.Connect(c.URLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := OpenJetStream(ctx, nc, slog.New(slog.DiscardHandler), JetStreamOptions{Name: "retry"})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, err := j.Append(ctx, 1, at, [][]byte{[]byte(`{"a":1}`)}); err != nil {
		t.Fatal(err)
	}
	h, err := j.last(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}

	// storeTry stores what a try of publish with req sends, as if its
	// PubAck had been lost.
	storeTry := func(req string, expect uint64, pos uint64, msgID string) {
		t.Helper()
		m := nats.NewMsg(j.subjectOf(1))
		m.Data = appendRecords(nil, at, [][]byte{[]byte(`{"lost":"ack"}`)})
		m.Header.Set(hdrPos, strconv.FormatUint(pos, 10))
		m.Header.Set(hdrN, "1")
		m.Header.Set(hdrAt, strconv.FormatInt(at.UnixMicro(), 10))
		m.Header.Set(hdrLast, strconv.FormatInt(at.UnixMicro(), 10))
		m.Header.Set(hdrReq, req)
		opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(expect)}
		if msgID != "" {
			m.Header.Set(hdrWin, strconv.FormatInt(time.Hour.Microseconds(), 10))
			opts = append(opts, jetstream.WithMsgID(msgID))
		}
		if _, err := j.js.PublishMsg(ctx, m, opts...); err != nil {
			t.Fatal(err)
		}
	}

	// A plain append: the try with expected sequence h.seq was stored; the
	// retry (this node still thinks the head is h) must find it.
	try := &jsTry{req: "lost-ack-1", uncertain: []uint64{h.seq}}
	storeTry(try.req, h.seq, 2, "")
	first, dup, err := j.publish(time.Now().Add(10*time.Second), 1, appendRecords(nil, at, [][]byte{[]byte(`{"lost":"ack"}`)}), 1, at, nil, "", try)
	if err != nil || dup != nil || first != 2 {
		t.Fatalf("retry of a stored try = %d, %v, %v; want position 2", first, dup, err)
	}
	// The same when another node appended after the lost try.
	h, _ = j.last(ctx, 1)
	try = &jsTry{req: "lost-ack-2", uncertain: []uint64{h.seq}}
	storeTry(try.req, h.seq, 3, "")
	if _, err := j.Append(ctx, 1, at, [][]byte{[]byte(`{"other":"node"}`)}); err != nil { // position 4
		t.Fatal(err)
	}
	j.forget(1)
	first, _, err = j.publish(time.Now().Add(10*time.Second), 1, nil, 1, at, nil, "", try)
	if err != nil || first != 3 {
		t.Fatalf("retry of a stored try after another append = %d, %v; want 3", first, err)
	}
	// A try that was not stored: the retry stores it, once.
	h, _ = j.last(ctx, 1)
	try = &jsTry{req: "lost-3", uncertain: []uint64{h.seq - 1}}
	first, _, err = j.publish(time.Now().Add(10*time.Second), 1, appendRecords(nil, at, [][]byte{[]byte(`{"x":1}`)}), 1, at, nil, "", try)
	if err != nil || first != 5 {
		t.Fatalf("retry of a try that was not stored = %d, %v; want 5", first, err)
	}
	// AppendOnce: a retry of a stored claim under the same Nats-Msg-Id is ours.
	h, _ = j.last(ctx, 1)
	try = &jsTry{req: "lost-once", uncertain: []uint64{h.seq}}
	storeTry(try.req, h.seq, 6, "1.claim")
	first, dup, err = j.publish(time.Now().Add(10*time.Second), 1, nil, 1, at, &jsOnce{msgID: "1.claim", window: time.Hour}, "1.claim", try)
	if err != nil || dup != nil || first != 6 {
		t.Fatalf("retry of a stored claim = %d, %v, %v; want 6", first, dup, err)
	}
	// And a publish of another's claim is a duplicate.
	_, dup, err = j.publish(time.Now().Add(10*time.Second), 1, nil, 1, at, &jsOnce{msgID: "1.claim", window: time.Hour}, "1.claim", nil)
	if err != nil || dup == nil {
		t.Fatalf("another's claim: duplicate %v, %v", dup, err)
	}

	recs, err := j.Read(ctx, 1, 0, 100, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 6 {
		t.Fatalf("the log holds %d records, want 6", len(recs))
	}
	for i, r := range recs {
		if r.Position != uint64(i+1) {
			t.Fatalf("record %d has position %d", i, r.Position)
		}
	}
}
