package state

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The state on a NATS JetStream cluster: the same Store as Pebble, shared by
// every hookhouse node connected to the cluster.
//
// Records. One stream (<Name>, file storage, Discard New, so a full stream
// refuses appends with ErrNoSpace instead of dropping records) with a subject
// per integration, <Name>.rec.<integration>. A message holds the records of
// one or more appends (a group commit) and says in its headers where they are
// in the integration's log:
//
//	Hh-Pos   position of its first record (a message with no records, an
//	         anchor, has the position the next record will get)
//	Hh-N     how many records it holds
//	Hh-At    the latest receipt time among its records (µs); for an import
//	         chunk (AppendOnceAt) the import's time, when its claim was made
//	Hh-Last  the head's LastReceivedAt after it (µs): the running maximum
//	Hh-Req   a random id of the publish, to recognise our own message when a
//	         retry comes back as a duplicate
//	Hh-W     (AppendOnce) the dedupe window the claim was made with (µs)
//
// Positions without gaps: every publish carries Nats-Expected-Last-Subject-
// Sequence, the stream sequence of the integration's last message as this
// node knows it, and the positions that follow it. If another node appended in
// between, the stream refuses it (wrong last sequence), the node reads the
// subject's last message again and republishes with new positions. So the
// positions of an integration are decided by the stream, in its order, and a
// message's headers are all a reader needs: Head is the last message's header,
// Read finds a position by binary search over the subject's messages, and
// Trim purges whole messages without renumbering anything. Trim never purges
// an integration's last message (it appends an empty anchor first), so the
// head is always in the stream.
//
// Durable acks: Append returns only after the PubAck, which the stream leader
// sends once a quorum of replicas has stored the message. A publish that fails
// without a definite answer (timeout, lost connection, no leader) is retried
// until JetStreamOptions.Timeout after the request arrived, and is never
// stored twice: an AppendOnce retry reuses its Nats-Msg-Id, and a plain
// append's retry recognises its own earlier try by the expected sequence (see
// publish). When the time is up the append fails with ErrUnavailable.
//
// Delivery-id dedupe (AppendOnce): the delivery's records are one message with
// Nats-Msg-Id <integration>.<sha256 of the id>, so the stream's duplicate
// window holds the claims, on every node alike. A duplicate PubAck names the
// claim's message; its Hh-At and Hh-W decide whether the claim still counts
// for this call's window. A claim that no longer counts is replaced by a
// message whose id chains on the old claim's sequence (<id>.<seq>), so that
// concurrent redeliveries still collide on one id. Claims older than the
// stream's duplicate window (JetStreamOptions.DedupeWindow) are forgotten by
// the server whatever the integration's window. New deliveries waiting for
// one integration are published as one atomic batch of such messages (see
// commitBatch).
//
// Control data lives in the KV bucket <Name>_control (jetstream_kv.go); the
// duplicate counts in <Name>_log.
type JetStream struct {
	opts    JetStreamOptions
	logger  *slog.Logger
	nc      *nats.Conn
	js      jetstream.JetStream
	stream  jetstream.Stream
	control jetstream.KeyValue
	ctlLog  jetstream.Stream // the control bucket's stream, for PutIf
	meta    jetstream.KeyValue
	subject string // <Name>.rec.

	// closing: as in Pebble, read-held by calls, write-held by Close.
	closing  sync.RWMutex
	isClosed bool
	stop     chan struct{}
	wg       sync.WaitGroup // writers and watchers

	mu      sync.Mutex
	heads   map[int64]jsHead
	writers map[int64]chan *jsAppend
	dups    map[int64]int64
	cursors map[int64]jsCursor
	changed chan struct{}

	tracker jetstream.ConsumeContext

	probeMu  sync.Mutex
	probeAt  time.Time
	probeErr error
}

// JetStreamOptions configure the state on JetStream.
type JetStreamOptions struct {
	// Name names the stream and prefixes its subjects and the KV buckets
	// (default "hookhouse"). Letters, digits, '-' and '_' only.
	Name string
	// Replicas of the stream and buckets (default 3).
	Replicas int
	// MaxBytes limits the stream; a full stream refuses appends (ErrNoSpace).
	// 0: no limit but the servers' own.
	MaxBytes int64
	// DedupeWindow is the stream's duplicate window, the longest dedupe window
	// AppendOnce can keep (default DefaultDedupeWindow).
	DedupeWindow time.Duration
	// Timeout bounds every write and read of the cluster (default 4s), so that
	// a request is answered 503 well within 5 s when there is no quorum.
	Timeout time.Duration
	// MaxMessageBytes caps a group commit's message, and so one request: a
	// larger one is refused. Default: 768 KiB under the servers' default
	// max_payload of 1 MiB; with a larger max_payload, it less 256 KiB.
	MaxMessageBytes int

	// migrating: opened by hookhouse migrate, which may find its own
	// unfinished run (jetstream_migrate.go).
	migrating bool
}

// ErrUnavailable is returned when the cluster did not answer within the
// timeout (no quorum, no leader, NATS unreachable). Nothing is known to be
// stored; answer 503.
var ErrUnavailable = errors.New("state: the NATS cluster is unavailable (no quorum or unreachable)")

type jsHead struct {
	Head
	seq   uint64 // stream sequence of the integration's last message
	known bool   // seq is known (0 with known: the subject has no message)
}

// jsCursor remembers where the last Read stopped, so that the next one, which
// usually starts there, needs no search.
type jsCursor struct {
	pos, seq uint64 // position pos is in the message at or after seq
}

type jsAppend struct {
	deadline   time.Time // Options.Timeout after it was queued
	receivedAt time.Time
	times      []time.Time // AppendOnceAt: each record's receipt time; nil: receivedAt for all
	bodies     [][]byte
	size       int
	once       *jsOnce
	try        *jsTry // AppendOnce: shared by the batch and the single publishes
	anchor     bool
	first      uint64
	err        chan error
}

type jsOnce struct {
	msgID     string
	window    time.Duration
	duplicate bool
	uncounted bool // an import chunk: a duplicate is not a provider's redelivery
}

const (
	hdrPos  = "Hh-Pos"
	hdrN    = "Hh-N"
	hdrAt   = "Hh-At"
	hdrLast = "Hh-Last"
	hdrReq  = "Hh-Req"
	hdrWin  = "Hh-W"
	// recordOverhead: receivedAt(8) id(16) length(4) before each body.
	recordOverhead = 28
)

var _ Store = (*JetStream)(nil)

// OpenJetStream creates (or updates) the stream and buckets and starts
// following the stream. nc belongs to the caller, who closes it after Close.
func OpenJetStream(ctx context.Context, nc *nats.Conn, logger *slog.Logger, opts JetStreamOptions) (*JetStream, error) {
	if opts.Name == "" {
		opts.Name = "hookhouse"
	}
	if opts.Replicas == 0 {
		opts.Replicas = 3
	}
	if opts.DedupeWindow == 0 {
		opts.DedupeWindow = DefaultDedupeWindow
	}
	if opts.Timeout == 0 {
		opts.Timeout = 4 * time.Second
	}
	if opts.MaxMessageBytes == 0 {
		// The servers' max_payload (1 MiB unless configured) less room for
		// the headers and the records' framing.
		opts.MaxMessageBytes = 768 << 10
		if mp := int(nc.MaxPayload()); mp > 1<<20 {
			opts.MaxMessageBytes = mp - 256<<10
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("state: jetstream: %w", err)
	}
	j := &JetStream{
		opts: opts, logger: logger, nc: nc, js: js,
		subject: opts.Name + ".rec.",
		stop:    make(chan struct{}),
		heads:   map[int64]jsHead{},
		writers: map[int64]chan *jsAppend{},
		dups:    map[int64]int64{},
		cursors: map[int64]jsCursor{},
		changed: make(chan struct{}),
	}
	maxBytes := opts.MaxBytes
	if maxBytes == 0 {
		maxBytes = -1
	}
	j.stream, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        opts.Name,
		Description: "hookhouse: accepted webhook records, a subject per integration",
		Subjects:    []string{j.subject + ">"},
		Storage:     jetstream.FileStorage,
		Replicas:    opts.Replicas,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    maxBytes,
		MaxMsgs:     -1,
		MaxAge:      0, // records leave only by Trim, once loaded
		Duplicates:  opts.DedupeWindow,
		// AppendOnce publishes concurrent deliveries as one atomic batch.
		AllowAtomicPublish: true,
	})
	if err != nil {
		return nil, fmt.Errorf("state: create stream %s: %w", opts.Name, j.unavailable(err))
	}
	if err := j.openKV(ctx); err != nil {
		return nil, err
	}
	if !opts.migrating {
		if err := j.checkMigration(ctx); err != nil {
			j.Close()
			return nil, err
		}
	}
	if err := j.follow(ctx); err != nil {
		return nil, err
	}
	return j, nil
}

// follow starts the tracker: an ordered consumer of the headers of every
// integration's last message and of every message after, which keeps the heads
// and Changed current with appends made by any node.
func (j *JetStream) follow(ctx context.Context) error {
	info, err := j.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("state: stream info: %w", j.unavailable(err))
	}
	cons, err := j.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{j.subject + ">"},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
		HeadersOnly:    true,
	})
	if err != nil {
		return fmt.Errorf("state: follow stream: %w", j.unavailable(err))
	}
	caughtUp := make(chan struct{})
	var once sync.Once
	if info.State.Msgs == 0 {
		once.Do(func() { close(caughtUp) })
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		id, ok := j.integrationOf(m.Subject())
		if ok {
			if h, ok := parseHead(m.Headers()); ok {
				h.seq = md.Sequence.Stream
				j.advance(id, h)
			}
		}
		if md.NumPending == 0 {
			once.Do(func() { close(caughtUp) })
		}
	})
	if err != nil {
		return fmt.Errorf("state: follow stream: %w", j.unavailable(err))
	}
	j.tracker = cc
	// Start with every integration's head; a stream too big to read in the
	// time leaves the rest to arrive while the node already works.
	t := time.NewTimer(j.opts.Timeout)
	defer t.Stop()
	select {
	case <-caughtUp:
	case <-t.C:
		j.logger.Warn("reading the heads of the stream takes long; continuing while they arrive")
	case <-ctx.Done():
	}
	return nil
}

func (j *JetStream) integrationOf(subject string) (int64, bool) {
	s, ok := strings.CutPrefix(subject, j.subject)
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseInt(s, 10, 64)
	return id, err == nil
}

func (j *JetStream) subjectOf(integration int64) string {
	return j.subject + strconv.FormatInt(integration, 10)
}

// parseHead reads the head a message leaves its integration at.
func parseHead(h nats.Header) (jsHead, bool) {
	pos, err1 := strconv.ParseUint(h.Get(hdrPos), 10, 64)
	n, err2 := strconv.ParseUint(h.Get(hdrN), 10, 64)
	last, err3 := strconv.ParseInt(h.Get(hdrLast), 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || pos == 0 {
		return jsHead{}, false
	}
	var at time.Time
	if last != 0 {
		at = time.UnixMicro(last).UTC()
	}
	return jsHead{Head: Head{Position: pos + n - 1, LastReceivedAt: at}, known: true}, true
}

// advance moves integration's head to h if h is a later message than the one
// known, and wakes Changed if its position grew.
func (j *JetStream) advance(integration int64, h jsHead) {
	j.mu.Lock()
	defer j.mu.Unlock()
	old := j.heads[integration]
	if h.seq < old.seq || (h.seq == old.seq && old.known) {
		return // not later than what this node knows
	}
	j.heads[integration] = h
	if h.Position > old.Position {
		close(j.changed)
		j.changed = make(chan struct{})
	}
}

// forget marks integration's last message unknown: another node appended.
func (j *JetStream) forget(integration int64) {
	j.mu.Lock()
	h := j.heads[integration]
	h.known = false
	j.heads[integration] = h
	j.mu.Unlock()
}

// last returns integration's head and last message's sequence, asking the
// stream if this node does not know them.
func (j *JetStream) last(ctx context.Context, integration int64) (jsHead, error) {
	j.mu.Lock()
	h := j.heads[integration]
	j.mu.Unlock()
	if h.known {
		return h, nil
	}
	m, err := j.stream.GetLastMsgForSubject(ctx, j.subjectOf(integration))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		h = jsHead{known: true}
	} else if err != nil {
		return jsHead{}, err
	} else {
		var ok bool
		if h, ok = parseHead(m.Header); !ok {
			return jsHead{}, fmt.Errorf("state: message %d of integration %d has no valid position headers", m.Sequence, integration)
		}
		h.seq = m.Sequence
	}
	j.mu.Lock()
	cur := j.heads[integration]
	if !cur.known || cur.seq < h.seq {
		j.heads[integration] = h
		if h.Position > cur.Position {
			close(j.changed)
			j.changed = make(chan struct{})
		}
	} else {
		h = cur
	}
	j.mu.Unlock()
	return h, nil
}

// enter and leave: see Pebble.enter.
func (j *JetStream) enter() error {
	j.closing.RLock()
	if j.isClosed {
		j.closing.RUnlock()
		return ErrClosed
	}
	return nil
}

func (j *JetStream) leave() { j.closing.RUnlock() }

// Append stores bodies as records of integration and returns once a quorum has
// stored them; see Store.
func (j *JetStream) Append(ctx context.Context, integration int64, receivedAt time.Time, bodies [][]byte) (uint64, error) {
	req := &jsAppend{receivedAt: receivedAt, bodies: bodies, err: make(chan error, 1)}
	for _, b := range bodies {
		req.size += len(b) + recordOverhead
	}
	if err := j.do(ctx, integration, req); err != nil {
		return 0, err
	}
	return req.first, nil
}

// AppendOnce: see Deduper and the type's comment.
func (j *JetStream) AppendOnce(ctx context.Context, integration int64, receivedAt time.Time, deliveryID string, window time.Duration, bodies [][]byte) (uint64, bool, error) {
	if deliveryID == "" {
		return 0, false, errors.New("state: AppendOnce needs a delivery id (use Append for deliveries without one)")
	}
	if window < time.Microsecond {
		return 0, false, fmt.Errorf("state: dedupe window %s must be positive", window)
	}
	sum := sha256.Sum256([]byte(deliveryID))
	req := &jsAppend{receivedAt: receivedAt, bodies: bodies, err: make(chan error, 1),
		once: &jsOnce{msgID: strconv.FormatInt(integration, 10) + "." + hex.EncodeToString(sum[:]), window: window}}
	for _, b := range bodies {
		req.size += len(b) + recordOverhead
	}
	if err := j.do(ctx, integration, req); err != nil {
		return 0, false, err
	}
	if req.once.duplicate {
		return 0, true, nil
	}
	return req.first, false, nil
}

// do queues req for integration's writer and waits for its answer: once
// queued, the writer decides, whatever happens to ctx (as in Pebble.do).
func (j *JetStream) do(ctx context.Context, integration int64, req *jsAppend) error {
	if req.size > j.opts.MaxMessageBytes {
		return fmt.Errorf("state: %d bytes of records in one request is more than a NATS message holds here (%d)", req.size, j.opts.MaxMessageBytes)
	}
	if err := j.enter(); err != nil {
		return err
	}
	// The timeout counts from now, not from when the writer gets to it, so
	// that requests queued behind a publish waiting for a quorum are
	// answered in time too.
	req.deadline = time.Now().Add(j.opts.Timeout)
	j.mu.Lock()
	ch, ok := j.writers[integration]
	if !ok {
		ch = make(chan *jsAppend, 256)
		j.writers[integration] = ch
		j.wg.Add(1)
		go j.writeLoop(integration, ch)
	}
	j.mu.Unlock()
	select {
	case ch <- req:
	case <-ctx.Done():
		j.leave()
		return ctx.Err()
	}
	j.leave()
	return <-req.err
}

// writeLoop is integration's single writer on this node: it group-commits the
// plain appends waiting for it into one message, and publishes each
// AppendOnce as a message of its own (its id is the claim).
func (j *JetStream) writeLoop(integration int64, ch chan *jsAppend) {
	defer j.wg.Done()
	var group, plain []*jsAppend
	for {
		group = group[:0]
		select {
		case r := <-ch:
			group = append(group, r)
		case <-j.stop:
			for {
				select {
				case r := <-ch:
					r.err <- ErrClosed
				default:
					return
				}
			}
		}
		size := group[0].size
	drain:
		for size < j.opts.MaxMessageBytes {
			select {
			case r := <-ch:
				if size+r.size > j.opts.MaxMessageBytes {
					// Too big for this message: it goes first in the next.
					plain = plain[:0]
					j.commit(integration, group, &plain)
					group = append(group[:0], r)
					size = r.size
					continue
				}
				group = append(group, r)
				size += r.size
			default:
				break drain
			}
		}
		plain = plain[:0]
		j.commit(integration, group, &plain)
	}
}

func (j *JetStream) commit(integration int64, group []*jsAppend, plain *[]*jsAppend) {
	for _, r := range group {
		if r.once == nil {
			*plain = append(*plain, r)
		}
	}
	if len(*plain) > 0 {
		var body []byte
		var at time.Time
		n := 0
		deadline := (*plain)[0].deadline
		for _, r := range *plain {
			if r.deadline.Before(deadline) {
				deadline = r.deadline
			}
			body = appendRecordsAt(body, r.receivedAt, r.times, r.bodies)
			n += len(r.bodies)
			if r.receivedAt.After(at) {
				at = r.receivedAt
			}
		}
		first, _, err := j.publish(deadline, integration, body, n, at, nil, "", nil)
		for _, r := range *plain {
			r.first = first
			first += uint64(len(r.bodies))
			r.err <- err
		}
	}
	var onces []*jsAppend
	for _, r := range group {
		if r.once != nil {
			r.try = newTry()
			onces = append(onces, r)
		}
	}
	if len(onces) > 1 && j.commitBatch(integration, onces) {
		return
	}
	for _, r := range onces {
		r.err <- j.commitOnce(integration, r)
	}
}

// commitBatch publishes several AppendOnce requests as one atomic batch of
// messages, each with its claim as Nats-Msg-Id and the first with the
// expected last subject sequence, so that new deliveries share one round trip
// and fsync. It answers them and returns true if the stream stored the batch;
// otherwise nothing is answered and the caller publishes them one by one. A
// duplicate in the batch (a redelivery) makes the stream refuse it whole; and
// if the batch was stored after all though its answer was lost, each request's
// own publish finds its message by its claim and Hh-Req.
func (j *JetStream) commitBatch(integration int64, onces []*jsAppend) bool {
	if len(onces) > maxBatch {
		return false
	}
	deadline := onces[0].deadline
	for _, r := range onces {
		if r.deadline.Before(deadline) {
			deadline = r.deadline
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	h, err := j.last(ctx, integration)
	if err != nil {
		return false
	}
	subject := j.subjectOf(integration)
	batchID := newTry().req
	pos, last := h.Position+1, h.LastReceivedAt
	for i, r := range onces {
		m := nats.NewMsg(subject)
		m.Data = appendRecordsAt(nil, r.receivedAt, r.times, r.bodies)
		if len(r.bodies) > 0 && r.receivedAt.After(last) {
			last = r.receivedAt
		}
		m.Header.Set(hdrPos, strconv.FormatUint(pos, 10))
		m.Header.Set(hdrN, strconv.Itoa(len(r.bodies)))
		m.Header.Set(hdrAt, strconv.FormatInt(micros(r.receivedAt), 10))
		m.Header.Set(hdrLast, strconv.FormatInt(micros(last), 10))
		m.Header.Set(hdrReq, r.try.req)
		m.Header.Set(hdrWin, strconv.FormatInt(r.once.window.Microseconds(), 10))
		m.Header.Set(jetstream.MsgIDHeader, r.once.msgID)
		m.Header.Set("Nats-Batch-Id", batchID)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if i == 0 {
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(h.seq, 10))
		}
		pos += uint64(len(r.bodies))
		if i < len(onces)-1 {
			if err := j.nc.PublishMsg(m); err != nil {
				return false
			}
			continue
		}
		m.Header.Set("Nats-Batch-Commit", "1")
		resp, err := j.nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			return false
		}
		var ack struct {
			Error *jetstream.APIError `json:"error"`
			Seq   uint64              `json:"seq"`
		}
		if json.Unmarshal(resp.Data, &ack) != nil || ack.Error != nil || ack.Seq == 0 {
			return false
		}
		j.advance(integration, jsHead{Head: Head{Position: pos - 1, LastReceivedAt: last}, seq: ack.Seq, known: true})
	}
	first := h.Position + 1
	for _, r := range onces {
		r.first = first
		first += uint64(len(r.bodies))
		r.err <- nil
	}
	return true
}

// commitOnce publishes an AppendOnce's message, following the chain of claims
// on its id until one counts or the message is stored.
func (j *JetStream) commitOnce(integration int64, r *jsAppend) error {
	body := appendRecordsAt(nil, r.receivedAt, r.times, r.bodies)
	msgID := r.once.msgID
	now := r.receivedAt.UnixMicro()
	for range 100 {
		first, dup, err := j.publish(r.deadline, integration, body, len(r.bodies), r.receivedAt, r.once, msgID, r.try)
		if err != nil {
			return err
		}
		if dup == nil {
			r.first = first
			return nil
		}
		claimedAt, err1 := strconv.ParseInt(dup.Header.Get(hdrAt), 10, 64)
		claimWindow, err2 := strconv.ParseInt(dup.Header.Get(hdrWin), 10, 64)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("state: the claim of a delivery in message %d has no valid time or window", dup.Sequence)
		}
		if now < claimedAt+claimWindow && now < claimedAt+r.once.window.Microseconds() {
			r.once.duplicate = true
			if !r.once.uncounted {
				j.addDuplicates(integration, int64(len(r.bodies)))
			}
			return nil
		}
		// The claim has expired for this call: claim again, under an id
		// every node derives the same way from the expired claim.
		msgID = r.once.msgID + "." + strconv.FormatUint(dup.Sequence, 10)
	}
	return errors.New("state: too many expired claims of one delivery id")
}

// publish appends one message of n records (body) to integration after its
// last message, retrying until deadline; see the type's comment. msgID is set
// for AppendOnce (the claim) and empty for plain appends. It returns the first
// position, or, when the stream already holds a message with msgID stored by
// another publish, that message (dup).
//
// A plain append carries no Nats-Msg-Id: every message id stays in the
// servers' memory for the whole duplicate window (a week by default), too
// much for every group commit. A retry finds its own earlier try instead by
// the expected last subject sequence: a try sent with expected sequence E can
// only have been stored as the subject's first message after E, so once the
// subject has moved past E, that message either carries this publish's Hh-Req
// (then it is ours, and stored once) or no try with E will ever be stored.
func (j *JetStream) publish(deadline time.Time, integration int64, body []byte, n int, at time.Time, once *jsOnce, msgID string, try *jsTry) (first uint64, dup *jetstream.RawStreamMsg, err error) {
	if try == nil {
		try = newTry()
	}
	req := try.req
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	subject := j.subjectOf(integration)
	backoff := 20 * time.Millisecond
	uncertain := try.uncertain
	defer func() { try.uncertain = uncertain }()
	var lastErr error
	for {
		h, err := j.last(ctx, integration)
		if err == nil {
			for i := 0; i < len(uncertain); i++ {
				e := uncertain[i]
				if e == h.seq {
					continue // not decided yet: this try decides it
				}
				m, _, _, cerr := j.msgAt(ctx, subject, e+1)
				if cerr != nil {
					err = cerr
					break
				}
				if m.Header.Get(hdrReq) == req {
					return j.ours(integration, m)
				}
				uncertain = append(uncertain[:i], uncertain[i+1:]...)
				i--
			}
		}
		if err == nil {
			m := nats.NewMsg(subject)
			m.Data = body
			last := h.LastReceivedAt
			if n > 0 && at.After(last) {
				last = at
			}
			m.Header.Set(hdrPos, strconv.FormatUint(h.Position+1, 10))
			m.Header.Set(hdrN, strconv.Itoa(n))
			m.Header.Set(hdrAt, strconv.FormatInt(micros(at), 10))
			m.Header.Set(hdrLast, strconv.FormatInt(micros(last), 10))
			m.Header.Set(hdrReq, req)
			opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(h.seq)}
			if once != nil {
				m.Header.Set(hdrWin, strconv.FormatInt(once.window.Microseconds(), 10))
				opts = append(opts, jetstream.WithMsgID(msgID))
			}
			var ack *jetstream.PubAck
			ack, err = j.js.PublishMsg(ctx, m, opts...)
			if err == nil && !ack.Duplicate {
				j.advance(integration, jsHead{Head: Head{Position: h.Position + uint64(n), LastReceivedAt: last}, seq: ack.Sequence, known: true})
				return h.Position + 1, nil, nil
			}
			if err == nil { // a claim: ours from an earlier try, or another's
				orig, gerr := j.stream.GetMsg(ctx, ack.Sequence)
				if gerr != nil {
					err = gerr
				} else if orig.Header.Get(hdrReq) == req {
					return j.ours(integration, orig)
				} else {
					return 0, orig, nil
				}
			}
			var apiErr *jetstream.APIError
			if errors.As(err, &apiErr) {
				switch {
				case apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence:
					j.forget(integration) // another node appended: read its head and renumber
					continue
				case apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant:
					// Another node's publish to the subject is in flight: wait
					// until the tracker sees it stored (or the wait is up) rather
					// than asking the stream again and again meanwhile, which
					// costs the servers the CPU the publish in flight needs.
					// Meanwhile this node's next group grows.
					if !j.awaitNewer(ctx, integration, h.seq, 100*time.Millisecond) {
						if ctx.Err() != nil {
							return 0, nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
						}
						j.forget(integration)
					}
					continue
				case strings.Contains(apiErr.Description, "maximum bytes") || strings.Contains(apiErr.Description, "maximum messages") ||
					strings.Contains(apiErr.Description, "resource limits exceeded") || strings.Contains(apiErr.Description, "insufficient resources"):
					return 0, nil, fmt.Errorf("%w: the stream %s is full (%s)", ErrNoSpace, j.opts.Name, apiErr.Description)
				}
			}
			// Any other error leaves the outcome open, an API error too: a
			// server may answer "JetStream system temporarily unavailable"
			// (10008) for a publish its stream leader has proposed and
			// later stores (seen once right after a partition healed). So
			// the next try first looks whether this one was stored.
			if !errors.Is(err, jetstream.ErrMsgNotFound) {
				uncertain = append(uncertain, h.seq)
			}
		}
		lastErr = err
		j.forget(integration)
		if !j.pause(ctx, backoff) {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return 0, nil, fmt.Errorf("%w: %v", ErrUnavailable, lastErr)
			}
			// Closing: the outcome may be unknown, as after a crash.
			return 0, nil, ErrClosed
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

// awaitNewer waits until this node knows a message of integration after
// stream sequence seq (the tracker delivers every node's appends), for at most
// d. It returns false if d passed or ctx ended first.
func (j *JetStream) awaitNewer(ctx context.Context, integration int64, seq uint64, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		j.mu.Lock()
		h, ch := j.heads[integration], j.changed
		j.mu.Unlock()
		if h.known && h.seq > seq {
			return true
		}
		select {
		case <-ch:
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		case <-j.stop:
			return false
		}
	}
}

// jsTry is what the tries of one publish share: its Hh-Req, and the expected
// sequences of the tries whose outcome is unknown.
type jsTry struct {
	req       string
	uncertain []uint64
}

func newTry() *jsTry {
	var nonce [12]byte
	rand.Read(nonce[:])
	return &jsTry{req: hex.EncodeToString(nonce[:])}
}

// pause waits d; false if ctx ended or the store is closing first.
func (j *JetStream) pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-j.stop:
		return false
	case <-t.C:
		return true
	}
}

// ours returns the first position of m, a message an earlier try of this
// publish stored.
func (j *JetStream) ours(integration int64, m *jetstream.RawStreamMsg) (uint64, *jetstream.RawStreamMsg, error) {
	h, ok := parseHead(m.Header)
	first, err := strconv.ParseUint(m.Header.Get(hdrPos), 10, 64)
	if !ok || err != nil {
		return 0, nil, fmt.Errorf("state: message %d has no valid position headers", m.Sequence)
	}
	h.seq = m.Sequence
	j.advance(integration, h)
	return first, nil, nil
}

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// appendRecords encodes records: receivedAt µs(8) id(16) length(4) body.
func appendRecords(b []byte, at time.Time, bodies [][]byte) []byte {
	return appendRecordsAt(b, at, nil, bodies)
}

// appendRecordsAt is appendRecords with record i received at times[i], or at
// at if times is nil.
func appendRecordsAt(b []byte, at time.Time, times []time.Time, bodies [][]byte) []byte {
	us := uint64(at.UnixMicro())
	for i, body := range bodies {
		if times != nil {
			us = uint64(times[i].UnixMicro())
		}
		var id [16]byte
		rand.Read(id[:])
		id[6] = id[6]&0x0f | 0x40 // a version 4 UUID, as Pebble's
		id[8] = id[8]&0x3f | 0x80
		b = binary.BigEndian.AppendUint64(b, us)
		b = append(b, id[:]...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
		b = append(b, body...)
	}
	return b
}

func decodeRecords(integration int64, first uint64, n int, data []byte) ([]Record, error) {
	out := make([]Record, 0, n)
	for i := 0; i < n; i++ {
		if len(data) < recordOverhead {
			return nil, fmt.Errorf("state: a message of integration %d is truncated", integration)
		}
		r := Record{Integration: integration, Position: first + uint64(i),
			ReceivedAt: time.UnixMicro(int64(binary.BigEndian.Uint64(data))).UTC()}
		copy(r.ID[:], data[8:24])
		size := int(binary.BigEndian.Uint32(data[24:28]))
		data = data[recordOverhead:]
		if len(data) < size {
			return nil, fmt.Errorf("state: a message of integration %d is truncated", integration)
		}
		r.Body = data[:size:size]
		data = data[size:]
		out = append(out, r)
	}
	return out, nil
}

// RefreshHead asks the stream for integration's last message and moves this
// node's head to it if it is later. Head follows other nodes' appends through
// the tracker, which can fall behind for a while (its consumer is re-created
// after the server it lived on was lost); a loader waiting for records asks
// this way now and then, so that such a gap never stops loading.
func (j *JetStream) RefreshHead(ctx context.Context, integration int64) (Head, error) {
	if err := j.enter(); err != nil {
		return Head{}, err
	}
	defer j.leave()
	m, err := j.stream.GetLastMsgForSubject(ctx, j.subjectOf(integration))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
	case err != nil:
		return Head{}, j.unavailable(err)
	default:
		h, ok := parseHead(m.Header)
		if !ok {
			return Head{}, fmt.Errorf("state: message %d of integration %d has no valid position headers", m.Sequence, integration)
		}
		h.seq = m.Sequence
		j.advance(integration, h)
	}
	return j.Head(integration), nil
}

// Head returns integration's head as this node knows it.
func (j *JetStream) Head(integration int64) Head {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.heads[integration].Head
}

// Heads returns every integration's head as this node knows it.
func (j *JetStream) Heads() map[int64]Head {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make(map[int64]Head, len(j.heads))
	for id, h := range j.heads {
		if h.Position > 0 {
			out[id] = h.Head
		}
	}
	return out
}

// Changed returns a channel closed when a head grows (an append by any node).
func (j *JetStream) Changed() <-chan struct{} {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.changed
}

// msgAt returns integration's first message at or after seq
// (jetstream.ErrMsgNotFound if none), with its first position and count.
func (j *JetStream) msgAt(ctx context.Context, subject string, seq uint64) (*jetstream.RawStreamMsg, uint64, int, error) {
	m, err := j.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
	if err != nil {
		return nil, 0, 0, err
	}
	pos, err1 := strconv.ParseUint(m.Header.Get(hdrPos), 10, 64)
	n, err2 := strconv.Atoi(m.Header.Get(hdrN))
	if err1 != nil || err2 != nil || n < 0 {
		return nil, 0, 0, fmt.Errorf("state: message %d on %s has no valid position headers", m.Sequence, subject)
	}
	return m, pos, n, nil
}

// locate returns a stream sequence from which the first message of the
// subject holds position pos or a later one (binary search: positions grow
// with sequences).
func (j *JetStream) locate(ctx context.Context, subject string, pos uint64) (uint64, error) {
	m, p, n, err := j.msgAt(ctx, subject, 1)
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return 1, nil
		}
		return 0, err
	}
	if p+uint64(n) > pos {
		return m.Sequence, nil
	}
	lo := m.Sequence + 1
	last, err := j.stream.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		return 0, err
	}
	hi := last.Sequence
	for lo < hi {
		mid := lo + (hi-lo)/2
		m, p, n, err := j.msgAt(ctx, subject, mid)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return hi, nil
		}
		if err != nil {
			return 0, err
		}
		if p+uint64(n) > pos {
			hi = mid
		} else {
			lo = m.Sequence + 1
		}
	}
	return lo, nil
}

// Read returns records of integration after position after; see Store.
func (j *JetStream) Read(ctx context.Context, integration int64, after uint64, max, maxBytes int) ([]Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := j.enter(); err != nil {
		return nil, err
	}
	defer j.leave()
	ctx, cancel := context.WithTimeout(ctx, j.opts.Timeout)
	defer cancel()
	subject := j.subjectOf(integration)
	j.mu.Lock()
	c, ok := j.cursors[integration]
	j.mu.Unlock()
	seq := c.seq
	if !ok || c.pos != after+1 {
		var err error
		if seq, err = j.locate(ctx, subject, after+1); err != nil {
			return nil, j.readErr(err)
		}
	}
	var out []Record
	size := 0
	for len(out) < max && size < maxBytes {
		m, p, n, err := j.msgAt(ctx, subject, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, j.readErr(err)
		}
		recs, err := decodeRecords(integration, p, n, m.Data)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			if r.Position <= after || len(out) >= max || size >= maxBytes {
				continue
			}
			out = append(out, r)
			size += len(r.Body)
		}
		if len(out) > 0 && out[len(out)-1].Position < p+uint64(n)-1 {
			seq = m.Sequence // stopped inside this message
			break
		}
		seq = m.Sequence + 1
	}
	if len(out) > 0 {
		j.mu.Lock()
		j.cursors[integration] = jsCursor{pos: out[len(out)-1].Position + 1, seq: seq}
		j.mu.Unlock()
	}
	return out, nil
}

func (j *JetStream) readErr(err error) error {
	return fmt.Errorf("state: read log: %w", j.unavailable(err))
}

// unavailable wraps errors that mean the cluster did not answer in ErrUnavailable.
func (j *JetStream) unavailable(err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrNoServers) || errors.Is(err, nats.ErrDisconnected) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return err
}

// trimScan bounds how many messages one Trim looks at; the loader trims again
// a minute later.
const trimScan = 10000

// Trim removes whole messages of integration whose records are all at or below
// upTo and were received before cutoff, oldest first; see Store. It never
// removes the integration's last message: to trim that one too, it appends an
// empty anchor after it first.
func (j *JetStream) Trim(integration int64, upTo uint64, cutoff time.Time) (uint64, error) {
	if err := j.enter(); err != nil {
		return 0, err
	}
	subject := j.subjectOf(integration)
	var removed, end uint64
	seq := uint64(1)
	// The scan gets half the timeout; if it finds more than it can read in
	// that time, this Trim removes what it has read and the next goes on.
	scan, cancelScan := context.WithTimeout(context.Background(), j.opts.Timeout/2)
	defer cancelScan()
	for range trimScan {
		m, p, n, err := j.msgAt(scan, subject, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) || (err != nil && scan.Err() != nil && end > 0) {
			break
		}
		if err != nil {
			j.leave()
			return 0, fmt.Errorf("state: trim log: %w", j.unavailable(err))
		}
		at, _ := strconv.ParseInt(m.Header.Get(hdrAt), 10, 64)
		if p+uint64(n)-1 > upTo || (n > 0 && at >= cutoff.UnixMicro()) {
			break
		}
		removed += uint64(n)
		end = m.Sequence
		seq = m.Sequence + 1
	}
	j.leave()
	if removed == 0 {
		return 0, nil // nothing but anchors: an idle integration stays as it is
	}
	ctx, cancel := context.WithTimeout(context.Background(), j.opts.Timeout)
	defer cancel()
	last, err := j.stream.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		return 0, fmt.Errorf("state: trim log: %w", j.unavailable(err))
	}
	if last.Sequence == end {
		// Keep the head in the stream: an empty message after it.
		req := &jsAppend{anchor: true, err: make(chan error, 1)}
		if err := j.do(ctx, integration, req); err != nil {
			return 0, fmt.Errorf("state: trim log: %w", err)
		}
	}
	if err := j.enter(); err != nil {
		return 0, err
	}
	defer j.leave()
	if err := j.stream.Purge(ctx, jetstream.WithPurgeSubject(subject), jetstream.WithPurgeSequence(end+1)); err != nil {
		return 0, fmt.Errorf("state: trim log: %w", j.unavailable(err))
	}
	return removed, nil
}

// Deduplicated returns how many records of integration AppendOnce refused as
// parts of duplicate deliveries, on every node.
func (j *JetStream) Deduplicated(integration int64) int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.dups[integration]
}

// Writable reports whether the stream answers (for /readyz), at most one
// question a second.
func (j *JetStream) Writable() error {
	if err := j.enter(); err != nil {
		return err
	}
	defer j.leave()
	j.probeMu.Lock()
	defer j.probeMu.Unlock()
	if time.Since(j.probeAt) < time.Second {
		return j.probeErr
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	info, err := j.stream.Info(ctx)
	if err != nil {
		err = fmt.Errorf("state: stream %s: %w", j.opts.Name, j.unavailable(err))
	} else if err = quorum(info); err != nil {
		err = fmt.Errorf("state: stream %s: %w", j.opts.Name, err)
	}
	j.probeAt, j.probeErr = time.Now(), err
	return err
}

// quorum says whether the stream's leader hears from enough replicas to store
// a write. A replica counts if it was heard from within 3 s: the leader sends
// heartbeats every second, and the server itself calls a replica not current
// only after 10 s, too late for a readiness check.
func quorum(info *jetstream.StreamInfo) error {
	ci := info.Cluster
	if ci == nil {
		return nil // a single server: it answered
	}
	if ci.Leader == "" {
		return fmt.Errorf("%w: the stream has no leader", ErrUnavailable)
	}
	alive := 1
	for _, p := range ci.Replicas {
		if p != nil && !p.Offline && p.Active < 3*time.Second {
			alive++
		}
	}
	if need := info.Config.Replicas/2 + 1; alive < need {
		return fmt.Errorf("%w: the stream's leader %s hears from %d of %d replicas", ErrUnavailable, ci.Leader, alive, info.Config.Replicas)
	}
	return nil
}

// Close stops the writers (failing queued appends with ErrClosed) and the
// watchers. It does not close the connection, which belongs to the caller.
func (j *JetStream) Close() error {
	j.closing.Lock()
	if j.isClosed {
		j.closing.Unlock()
		return nil
	}
	j.isClosed = true
	j.closing.Unlock()
	close(j.stop)
	if j.tracker != nil {
		j.tracker.Stop()
	}
	j.wg.Wait()
	return nil
}
