package state

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Moving a single node's state into a cluster (hookhouse migrate).
//
// The warehouse keeps, per integration, the last loaded log position with the
// installation id, and trusts a position only from the same installation. So
// the cluster gets the node's installation id and every record still in its
// log at the position it had, with its id (__sdc_primary_key) and receipt
// time: per integration an anchor (a message with no records) at the first
// retained position, then the records in order, packed into messages under
// MaxMessageBytes. Loaded and unloaded records alike, so that positions line
// up with the warehouse.
//
// Control data: every control key is copied as it is (integrations, URL
// hashes, id counters, the admin key hash, sealed signing secrets, paused
// states and resets, dashboard sessions, chart history), and the duplicate
// counts.
//
// Delivery-id claims: on JetStream a claim is a message's Nats-Msg-Id in the
// stream's duplicate window, and AppendOnce judges a duplicate by the Hh-At
// and Hh-W of the message it names. Pebble keeps the SHA-256 of the id, which
// is what the Nats-Msg-Id holds, so each claim that still counts becomes a
// message with no records after the integration's last record (an anchor: it
// moves no position) carrying the claim's id, time and window. The server's
// duplicate window runs from the migration, so a claim is kept at least as
// long as on the node. Copied again (a resumed run), it is a duplicate the
// stream refuses, so it is stored once.
//
// The marker key meta/migration says which installation is being copied and
// whether the copy is done. It is written with the installation id, by
// compare-and-set into a cluster that holds neither, before anything else;
// while it says "copying", OpenJetStream refuses to open the state (a node
// must not serve a half-copied state), and a rerun of migrate for the same
// installation resumes: each integration's log continues after the head the
// cluster has, so no record is written twice. A cluster of another
// installation is refused.

const (
	// migrationKey is the marker; installationKey is the control package's
	// installation id.
	migrationKey    = "meta/migration"
	installationKey = "meta/installation_id"

	migrationCopying = "copying"
	migrationDone    = "done"

	// controlChunk: control keys per Put while copying.
	controlChunk = 500
)

// Migration is the marker a migration leaves in the cluster.
type Migration struct {
	Installation string     `json:"installation"`
	State        string     `json:"state"` // "copying" or "done"
	From         string     `json:"from,omitempty"`
	StartedAt    time.Time  `json:"started_at"`
	FinishedAt   *time.Time `json:"finished_at,omitempty"`
}

// MigrationSource is the state of a stopped single node; *PebbleReader is one.
type MigrationSource interface {
	Get(key string) ([]byte, error)
	Scan(prefix string, fn func(key string, value []byte) error) error
	Heads() (map[int64]Head, error)
	First(integration int64) (uint64, error)
	Read(integration int64, after uint64, max, maxBytes int) ([]Record, error)
	Duplicates() (map[int64]int64, error)
	Claims(integration int64, now time.Time, fn func(sum [32]byte, claimedAt, expiresAt time.Time) error) error
}

var _ MigrationSource = (*PebbleReader)(nil)

// MigrationLog is one integration's log in a migration.
type MigrationLog struct {
	Integration int64
	// First and Head: the node's first retained position (Head+1 when its
	// log holds no record any more) and its last position.
	First, Head    uint64
	LastReceivedAt time.Time
	// InCluster is the cluster's head before this run (0: nothing yet).
	InCluster uint64
	// Copied is how many records this run copied.
	Copied uint64
	// Claims is how many delivery-id claims count (at the plan's time).
	Claims uint64
	// Diverged (a finished migration only): the data dir holds records the
	// cluster does not have; the single node took webhooks after the
	// migration.
	Diverged bool
}

// Records is how many records of the log the node still holds.
func (l MigrationLog) Records() uint64 { return l.Head + 1 - l.First }

// MigrationPlan is what a migration will do, or did.
type MigrationPlan struct {
	Installation string
	// Resume: an earlier run for this installation stopped before the end.
	Resume bool
	// Done is set when the cluster holds a finished migration of this
	// installation: nothing is copied.
	Done        *Migration
	ControlKeys int
	Logs        []MigrationLog
	// ToCopy records are copied, Present are in the cluster already.
	ToCopy, Present uint64
	// Claims is the number of delivery-id claims to copy.
	Claims uint64
}

// ErrForeignInstallation is returned when the cluster holds the state of
// another installation.
var ErrForeignInstallation = errors.New("the cluster holds the state of another hookhouse installation")

// OpenJetStreamForMigration opens the state as OpenJetStream does, also while
// an unfinished migration's marker is in the cluster (which OpenJetStream
// refuses).
func OpenJetStreamForMigration(ctx context.Context, nc *nats.Conn, logger *slog.Logger, opts JetStreamOptions) (*JetStream, error) {
	opts.migrating = true
	return OpenJetStream(ctx, nc, logger, opts)
}

// checkMigration refuses a state whose migration is not finished.
func (j *JetStream) checkMigration(ctx context.Context) error {
	m, err := j.migration(ctx)
	if err != nil {
		return err
	}
	if m != nil && m.State != migrationDone {
		return fmt.Errorf("state: a 'hookhouse migrate' into the stream %s started at %s (from %s) has not finished; "+
			"run it again until it reports done before starting nodes on this cluster",
			j.opts.Name, m.StartedAt.Format(time.RFC3339), m.From)
	}
	return nil
}

func (j *JetStream) migration(ctx context.Context) (*Migration, error) {
	e, err := j.control.Get(ctx, encodeKey(migrationKey))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: read %s: %w", migrationKey, j.unavailable(err))
	}
	var m Migration
	if err := json.Unmarshal(e.Value(), &m); err != nil {
		return nil, fmt.Errorf("state: corrupt %s: %w", migrationKey, err)
	}
	return &m, nil
}

// PlanMigration reads the node's state and the cluster's, refuses what must
// not be copied, and says what Migrate will do. It writes nothing.
func (j *JetStream) PlanMigration(ctx context.Context, src MigrationSource) (*MigrationPlan, error) {
	inst, err := src.Get(installationKey)
	if errors.Is(err, ErrNotFound) {
		return nil, errors.New("the data dir has no installation id: it was never started by a hookhouse that keeps one; start it once with 'hookhouse serve', stop it, and migrate")
	}
	if err != nil {
		return nil, err
	}
	p := &MigrationPlan{Installation: string(inst)}
	err = src.Scan("", func(k string, _ []byte) error {
		if k != migrationKey && k != installationKey {
			p.ControlKeys++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the data dir's control data: %w", err)
	}
	theirs, err := j.Get(installationKey)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	m, err := j.migration(ctx)
	if err != nil {
		return nil, err
	}
	switch {
	case theirs == nil:
		if err := j.checkEmpty(ctx); err != nil {
			return nil, err
		}
	case string(theirs) != p.Installation:
		return nil, j.foreign(string(theirs), p.Installation, src)
	case m == nil || m.Installation != p.Installation:
		return nil, fmt.Errorf("the cluster (stream %s) already runs this installation (%s) but holds no record of a migration into it: it was not made by 'hookhouse migrate', and is left alone",
			j.opts.Name, p.Installation)
	case m.State == migrationDone:
		p.Done = m
	default:
		p.Resume = true
	}
	heads, err := src.Heads()
	if err != nil {
		return nil, fmt.Errorf("read the data dir's log: %w", err)
	}
	ids := make([]int64, 0, len(heads))
	for id, h := range heads {
		if h.Position > 0 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		h := heads[id]
		l := MigrationLog{Integration: id, Head: h.Position, LastReceivedAt: h.LastReceivedAt}
		if l.First, err = src.First(id); err != nil {
			return nil, err
		}
		if l.First == 0 {
			l.First = h.Position + 1
		}
		if l.First > h.Position+1 {
			return nil, fmt.Errorf("the data dir's log of integration %d holds position %d beyond its head %d: the state is damaged", id, l.First, h.Position)
		}
		if p.Done == nil {
			if err := j.checkLog(ctx, src, &l); err != nil {
				return nil, err
			}
			p.ToCopy += l.Head - max(l.InCluster, l.First-1)
		} else {
			ch, err := j.last(ctx, id)
			if err != nil {
				return nil, fmt.Errorf("read the cluster's log of integration %d: %w", id, j.unavailable(err))
			}
			l.InCluster = ch.Position
			if l.Diverged, err = j.diverged(ctx, src, l); err != nil {
				return nil, err
			}
		}
		p.Present += min(l.InCluster, l.Head) - min(l.InCluster, l.First-1)
		if p.Done == nil {
			err := src.Claims(id, time.Now(), func([32]byte, time.Time, time.Time) error { l.Claims++; return nil })
			if err != nil {
				return nil, fmt.Errorf("read the data dir's delivery claims: %w", err)
			}
			p.Claims += l.Claims
		}
		p.Logs = append(p.Logs, l)
	}
	return p, nil
}

// diverged says whether the node's last record is missing from the cluster,
// or is another record there.
func (j *JetStream) diverged(ctx context.Context, src MigrationSource, l MigrationLog) (bool, error) {
	if l.Head > l.InCluster {
		return true, nil
	}
	if l.Head < l.First {
		return false, nil
	}
	ours, err := src.Read(l.Integration, l.Head-1, 1, 1)
	if err != nil {
		return false, err
	}
	theirs, err := j.Read(ctx, l.Integration, l.Head-1, 1, 1)
	if err != nil {
		return false, err
	}
	if len(ours) != 1 || len(theirs) != 1 || theirs[0].Position != l.Head {
		return false, nil // retention removed it from the cluster: cannot tell
	}
	return theirs[0].ID != ours[0].ID, nil
}

// checkEmpty refuses a cluster without an installation id that holds
// hookhouse data all the same.
func (j *JetStream) checkEmpty(ctx context.Context) error {
	info, err := j.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("state: stream info: %w", j.unavailable(err))
	}
	keys := 0
	if err := j.Scan("", func(string, []byte) error { keys++; return nil }); err != nil {
		return err
	}
	if info.State.Msgs > 0 || keys > 0 {
		return fmt.Errorf("the cluster's stream %s holds %d messages and its control bucket %d keys, but no installation id: it is not an empty cluster nor one made by 'hookhouse migrate'; "+
			"use another --nats-stream, or remove the stream %s and the buckets %s_control and %s_log if nothing in them is needed",
			j.opts.Name, info.State.Msgs, keys, j.opts.Name, j.opts.Name, j.opts.Name)
	}
	return nil
}

// foreign is the refusal of a cluster that belongs to another installation.
func (j *JetStream) foreign(theirs, ours string, src MigrationSource) error {
	have := map[string]bool{}
	_ = src.Scan("integration/", func(k string, _ []byte) error { have[k] = true; return nil })
	var same []string
	_ = j.Scan("integration/", func(k string, _ []byte) error {
		if have[k] {
			n, _ := strconv.ParseInt(strings.TrimPrefix(k, "integration/"), 10, 64)
			same = append(same, strconv.FormatInt(n, 10))
		}
		return nil
	})
	what := "it"
	if len(same) > 0 {
		what = "it holds integrations " + strings.Join(same, ", ") + ", the same ids as the data dir's, and"
	}
	return fmt.Errorf("%w: the stream %s belongs to installation %s, the data dir to %s; %s copying would mix two logs, and the warehouse would skip or reload records. "+
		"migrate copies only into an empty cluster, or finishes its own earlier run. If that state was made by a node started on the cluster before migrating and nothing in it is needed, "+
		"remove the stream %s and the buckets %s_control and %s_log (nats stream rm, nats kv rm) or pick another --nats-stream, and run migrate again",
		ErrForeignInstallation, j.opts.Name, theirs, ours, what, j.opts.Name, j.opts.Name, j.opts.Name)
}

// checkLog reads the cluster's log of l's integration and checks that it is
// the beginning of the node's: a resumed run continues after its head.
func (j *JetStream) checkLog(ctx context.Context, src MigrationSource, l *MigrationLog) error {
	subject := j.subjectOf(l.Integration)
	j.forget(l.Integration)
	h, err := j.last(ctx, l.Integration)
	if err != nil {
		return fmt.Errorf("read the cluster's log of integration %d: %w", l.Integration, j.unavailable(err))
	}
	if h.seq == 0 {
		return nil // nothing yet
	}
	_, first, _, err := j.msgAt(ctx, subject, 1)
	if err != nil {
		return fmt.Errorf("read the cluster's log of integration %d: %w", l.Integration, j.unavailable(err))
	}
	if first != l.First {
		return fmt.Errorf("the cluster's log of integration %d starts at position %d, the data dir's at %d: it is not this data dir's copy (was the single node started again since the first run?)", l.Integration, first, l.First)
	}
	if h.Position > l.Head {
		return fmt.Errorf("the cluster's log of integration %d goes up to position %d, the data dir's only to %d: it is not this data dir's copy (a restored backup of the same installation?)", l.Integration, h.Position, l.Head)
	}
	if h.Position >= l.First {
		theirs, err := j.Read(ctx, l.Integration, h.Position-1, 1, 1)
		if err != nil {
			return err
		}
		ours, err := src.Read(l.Integration, h.Position-1, 1, 1)
		if err != nil {
			return err
		}
		if len(theirs) != 1 || len(ours) != 1 || theirs[0].ID != ours[0].ID || !theirs[0].ReceivedAt.Equal(ours[0].ReceivedAt) {
			return fmt.Errorf("record %d of integration %d differs between the cluster and the data dir: it is not this data dir's copy", h.Position, l.Integration)
		}
	}
	l.InCluster = h.Position
	return nil
}

// MigrateOptions tune Migrate.
type MigrateOptions struct {
	// From names the data dir in the marker.
	From string
	// Progress, if set, is called with the number of records copied so far
	// after each message.
	Progress func(copied uint64)
	// ControlProgress, if set, is called with the number of control keys
	// copied so far after each chunk.
	ControlProgress func(copied int)
	// ClaimProgress, if set, is called with the number of delivery-id claims
	// copied so far after each batch.
	ClaimProgress func(copied uint64)
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Migrate copies the node's state into the cluster as plan (from
// PlanMigration) says, then marks the migration done. A run cut off (killed,
// or the cluster unavailable) leaves the marker at "copying"; running it
// again resumes. It fills in each log's Copied.
func (j *JetStream) Migrate(ctx context.Context, src MigrationSource, plan *MigrationPlan, opts MigrateOptions) error {
	if plan.Done != nil {
		return nil
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	// No enter here: the calls below enter one by one (a read lock held
	// across them would deadlock with a Close waiting in between), and the
	// publishes stop at Close.
	marker := Migration{Installation: plan.Installation, State: migrationCopying, From: opts.From, StartedAt: opts.Now().UTC()}
	if plan.Resume {
		old, err := j.migration(ctx)
		if err != nil {
			return err
		}
		if old == nil || old.Installation != plan.Installation || old.State != migrationCopying {
			return errors.New("the cluster's migration marker changed since the plan was made: run migrate again")
		}
		marker.StartedAt = old.StartedAt
	} else {
		mv, _ := json.Marshal(marker)
		err := j.PutIf(map[string][]byte{installationKey: nil, migrationKey: nil},
			map[string][]byte{installationKey: []byte(plan.Installation), migrationKey: mv})
		if errors.Is(err, ErrConflict) {
			return fmt.Errorf("something else wrote the installation id into the stream %s meanwhile (a hookhouse node starting on the cluster?): stop every node and run migrate again", j.opts.Name)
		}
		if err != nil {
			return err
		}
	}
	if err := j.copyControl(src, opts.ControlProgress); err != nil {
		return err
	}
	if err := j.copyDuplicates(ctx, src); err != nil {
		return err
	}
	var copied uint64
	for i := range plan.Logs {
		if err := j.copyLog(ctx, src, &plan.Logs[i], func(n uint64) {
			copied += n
			if opts.Progress != nil {
				opts.Progress(copied)
			}
		}); err != nil {
			return err
		}
	}
	var claims uint64
	now := opts.Now()
	for _, l := range plan.Logs {
		if err := j.copyClaims(ctx, src, l.Integration, now, func(n uint64) {
			claims += n
			if opts.ClaimProgress != nil {
				opts.ClaimProgress(claims)
			}
		}); err != nil {
			return err
		}
	}
	// Check every head before calling it done.
	for _, l := range plan.Logs {
		j.forget(l.Integration)
		h, err := j.last(ctx, l.Integration)
		if err != nil {
			return fmt.Errorf("read the cluster's log of integration %d: %w", l.Integration, j.unavailable(err))
		}
		if h.Position != l.Head {
			return fmt.Errorf("after the copy the cluster's log of integration %d ends at %d, the data dir's at %d", l.Integration, h.Position, l.Head)
		}
	}
	done := opts.Now().UTC()
	marker.State, marker.FinishedAt = migrationDone, &done
	mv, _ := json.Marshal(marker)
	if err := j.Put(map[string][]byte{migrationKey: mv}); err != nil {
		return fmt.Errorf("every record is copied, but marking the migration done failed (run migrate again): %w", err)
	}
	plan.Done = &marker
	return nil
}

// copyControl writes every control key of the node into the cluster.
func (j *JetStream) copyControl(src MigrationSource, progress func(int)) error {
	kvs := map[string][]byte{}
	n := 0
	flush := func() error {
		if len(kvs) == 0 {
			return nil
		}
		if err := j.Put(kvs); err != nil {
			return fmt.Errorf("copy control data: %w", err)
		}
		n += len(kvs)
		clear(kvs)
		if progress != nil {
			progress(n)
		}
		return nil
	}
	err := src.Scan("", func(k string, v []byte) error {
		if k == migrationKey || k == installationKey {
			return nil
		}
		kvs[k] = v
		if len(kvs) >= controlChunk {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// copyDuplicates raises the cluster's duplicate counts to the node's.
func (j *JetStream) copyDuplicates(ctx context.Context, src MigrationSource) error {
	dups, err := src.Duplicates()
	if err != nil {
		return err
	}
	for id, n := range dups {
		key := "dups." + strconv.FormatInt(id, 10)
		e, err := j.meta.Get(ctx, key)
		if err == nil {
			if cur, _ := strconv.ParseInt(string(e.Value()), 10, 64); cur >= n {
				continue
			}
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("copy duplicate counts: %w", j.unavailable(err))
		}
		if _, err := j.meta.Put(ctx, key, []byte(strconv.FormatInt(n, 10))); err != nil {
			return fmt.Errorf("copy duplicate counts: %w", j.unavailable(err))
		}
	}
	return nil
}

// migrateBatch bounds one read of the node's log.
const (
	migrateBatch      = 10000
	migrateBatchBytes = 16 << 20
)

// copyLog copies l's records the cluster does not have yet, in messages of
// at most MaxMessageBytes, each published after the last (expected last
// subject sequence), so that no position is taken twice.
func (j *JetStream) copyLog(ctx context.Context, src MigrationSource, l *MigrationLog, progress func(uint64)) error {
	j.forget(l.Integration)
	h, err := j.last(ctx, l.Integration)
	if err != nil {
		return fmt.Errorf("read the cluster's log of integration %d: %w", l.Integration, j.unavailable(err))
	}
	if h.seq == 0 {
		var last time.Time
		if l.First > l.Head {
			last = l.LastReceivedAt // no record follows to carry it
		}
		if err := j.put(ctx, l.Integration, l.First, 0, nil, time.Time{}, last, true); err != nil {
			return err
		}
		h.Position = l.First - 1
	}
	after := h.Position
	for after < l.Head {
		recs, err := src.Read(l.Integration, after, migrateBatch, migrateBatchBytes)
		if err != nil {
			return fmt.Errorf("read the data dir's log of integration %d: %w", l.Integration, err)
		}
		if len(recs) == 0 || recs[0].Position != after+1 {
			return fmt.Errorf("the data dir's log of integration %d has no record %d (its head is %d): the state is damaged", l.Integration, after+1, l.Head)
		}
		for len(recs) > 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			var body []byte
			var at time.Time
			n := 0
			for n < len(recs) {
				r := recs[n]
				size := len(r.Body) + recordOverhead
				if size > j.opts.MaxMessageBytes && n > 0 {
					break // copy the records before it first
				}
				if size > j.opts.MaxMessageBytes {
					return fmt.Errorf("record %d of integration %d is %d bytes, more than a message of this NATS cluster holds (%d): raise max_payload on the NATS servers (docs/cluster.md) and run migrate again",
						r.Position, l.Integration, len(r.Body), j.opts.MaxMessageBytes)
				}
				if n > 0 && len(body)+size > j.opts.MaxMessageBytes {
					break
				}
				body = appendRecord(body, r)
				if r.ReceivedAt.After(at) {
					at = r.ReceivedAt
				}
				n++
			}
			if err := j.put(ctx, l.Integration, recs[0].Position, n, body, at, time.Time{}, false); err != nil {
				return fmt.Errorf("copy integration %d's records from position %d: %w", l.Integration, recs[0].Position, err)
			}
			after += uint64(n)
			l.Copied += uint64(n)
			progress(uint64(n))
			recs = recs[n:]
		}
	}
	// The head's last receipt time: an import's is its own time, later than
	// its records'; an anchor carries it.
	h, err = j.last(ctx, l.Integration)
	if err != nil {
		return fmt.Errorf("read the cluster's log of integration %d: %w", l.Integration, j.unavailable(err))
	}
	if h.LastReceivedAt.Before(l.LastReceivedAt) {
		return j.put(ctx, l.Integration, l.Head+1, 0, nil, time.Time{}, l.LastReceivedAt, false)
	}
	return nil
}

// put publishes a message with records first..first+n-1 of integration
// (n = 0: an anchor at first) right after the subject's last message, which
// must end at position first-1 (empty: the subject must have no message). It
// never renumbers, as Append does: if the subject holds anything else, the
// log changed during the migration and put fails. at is the latest receipt
// time of the records; the head's last receipt time becomes the latest of
// the one before, at and last. A try whose answer was lost is recognised by
// its Hh-Req; as every try expects the same last message, at most one is
// stored.
func (j *JetStream) put(ctx context.Context, integration int64, first uint64, n int, body []byte, at, last time.Time, empty bool) error {
	subject := j.subjectOf(integration)
	req := newTry().req
	ctx, cancel := context.WithTimeout(ctx, j.opts.Timeout)
	defer cancel()
	backoff := 20 * time.Millisecond
	h, err := j.last(ctx, integration)
	for try := 0; ; try++ {
		if try > 0 {
			var m *jetstream.RawStreamMsg
			m, err = j.stream.GetLastMsgForSubject(ctx, subject)
			switch {
			case errors.Is(err, jetstream.ErrMsgNotFound):
				h, err = jsHead{known: true}, nil
			case err == nil:
				hh, ok := parseHead(m.Header)
				if !ok {
					return fmt.Errorf("state: message %d of integration %d has no valid position headers", m.Sequence, integration)
				}
				hh.seq = m.Sequence
				if m.Header.Get(hdrReq) == req {
					j.advance(integration, hh) // an earlier try was stored
					return nil
				}
				h = hh
			}
		}
		if err == nil {
			if (empty && h.seq != 0) || (!empty && (h.seq == 0 || h.Position != first-1)) {
				return fmt.Errorf("integration %d's log in the stream %s changed during the migration (it ends at position %d where the copy expected %d): "+
					"is a hookhouse node or another migrate running on the cluster? Stop it and run migrate again", integration, j.opts.Name, h.Position, first-1)
			}
			lastRecv := h.LastReceivedAt
			if n > 0 && at.After(lastRecv) {
				lastRecv = at
			}
			if last.After(lastRecv) {
				lastRecv = last
			}
			m := nats.NewMsg(subject)
			m.Data = body
			m.Header.Set(hdrPos, strconv.FormatUint(first, 10))
			m.Header.Set(hdrN, strconv.Itoa(n))
			m.Header.Set(hdrAt, strconv.FormatInt(micros(at), 10))
			m.Header.Set(hdrLast, strconv.FormatInt(micros(lastRecv), 10))
			m.Header.Set(hdrReq, req)
			var ack *jetstream.PubAck
			ack, err = j.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(h.seq))
			if err == nil {
				j.advance(integration, jsHead{Head: Head{Position: first + uint64(n) - 1, LastReceivedAt: lastRecv}, seq: ack.Sequence, known: true})
				return nil
			}
			var apiErr *jetstream.APIError
			if errors.As(err, &apiErr) && (strings.Contains(apiErr.Description, "maximum bytes") || strings.Contains(apiErr.Description, "resource limits exceeded") ||
				strings.Contains(apiErr.Description, "insufficient resources")) {
				return fmt.Errorf("%w: the stream %s is full (%s): give it room (max_bytes, the servers' JetStream storage) and run migrate again", ErrNoSpace, j.opts.Name, apiErr.Description)
			}
		}
		if !j.pause(ctx, backoff) {
			return fmt.Errorf("copy integration %d: %w: %v", integration, ErrUnavailable, err)
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

// appendRecord encodes one record as appendRecords does, keeping its id and
// receipt time.
func appendRecord(b []byte, r Record) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(r.ReceivedAt.UnixMicro()))
	b = append(b, r.ID[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Body)))
	return append(b, r.Body...)
}

// claimBatch is how many claims go in one atomic batch.
const claimBatch = 500

type claimMsg struct {
	id        string
	claimedAt time.Time
	window    time.Duration
}

// copyClaims writes integration's claims that count at now as messages
// without records after its log; see the type's comment.
func (j *JetStream) copyClaims(ctx context.Context, src MigrationSource, integration int64, now time.Time, progress func(uint64)) error {
	var chunk []claimMsg
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !j.claimsBatch(ctx, integration, chunk) {
			for _, c := range chunk {
				if err := j.claimOne(ctx, integration, c); err != nil {
					return err
				}
			}
		}
		progress(uint64(len(chunk)))
		chunk = chunk[:0]
		return nil
	}
	prefix := strconv.FormatInt(integration, 10) + "."
	err := src.Claims(integration, now, func(sum [32]byte, at, exp time.Time) error {
		chunk = append(chunk, claimMsg{id: prefix + hex.EncodeToString(sum[:]), claimedAt: at, window: exp.Sub(at)})
		if len(chunk) >= claimBatch {
			return flush()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("copy integration %d's delivery claims: %w", integration, err)
	}
	if err := flush(); err != nil {
		return fmt.Errorf("copy integration %d's delivery claims: %w", integration, err)
	}
	return nil
}

// claimMessage is claim c as a message after head h.
func (j *JetStream) claimMessage(integration int64, h jsHead, c claimMsg) *nats.Msg {
	m := nats.NewMsg(j.subjectOf(integration))
	m.Header.Set(hdrPos, strconv.FormatUint(h.Position+1, 10))
	m.Header.Set(hdrN, "0")
	m.Header.Set(hdrAt, strconv.FormatInt(c.claimedAt.UnixMicro(), 10))
	m.Header.Set(hdrLast, strconv.FormatInt(micros(h.LastReceivedAt), 10))
	m.Header.Set(hdrReq, newTry().req)
	m.Header.Set(hdrWin, strconv.FormatInt(c.window.Microseconds(), 10))
	return m
}

// claimsBatch publishes claims as one atomic batch; false if the stream did
// not store it (a claim in it is there already, say), and then they go one by
// one.
func (j *JetStream) claimsBatch(ctx context.Context, integration int64, claims []claimMsg) bool {
	if len(claims) < 2 {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, j.opts.Timeout)
	defer cancel()
	h, err := j.last(ctx, integration)
	if err != nil {
		return false
	}
	batchID := newTry().req
	for i, c := range claims {
		m := j.claimMessage(integration, h, c)
		m.Header.Set(jetstream.MsgIDHeader, c.id)
		m.Header.Set("Nats-Batch-Id", batchID)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if i == 0 {
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(h.seq, 10))
		}
		if i < len(claims)-1 {
			if err := j.nc.PublishMsg(m); err != nil {
				return false
			}
			continue
		}
		m.Header.Set("Nats-Batch-Commit", "1")
		resp, err := j.nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			j.forget(integration)
			return false
		}
		var ack struct {
			Error *jetstream.APIError `json:"error"`
			Seq   uint64              `json:"seq"`
		}
		if json.Unmarshal(resp.Data, &ack) != nil || ack.Error != nil || ack.Seq == 0 {
			j.forget(integration)
			return false
		}
		j.advance(integration, jsHead{Head: h.Head, seq: ack.Seq, known: true})
	}
	return true
}

// claimOne publishes one claim, unless the stream has it already.
func (j *JetStream) claimOne(ctx context.Context, integration int64, c claimMsg) error {
	ctx, cancel := context.WithTimeout(ctx, j.opts.Timeout)
	defer cancel()
	backoff := 20 * time.Millisecond
	for {
		h, err := j.last(ctx, integration)
		if err == nil {
			var ack *jetstream.PubAck
			ack, err = j.js.PublishMsg(ctx, j.claimMessage(integration, h, c),
				jetstream.WithMsgID(c.id), jetstream.WithExpectLastSequencePerSubject(h.seq))
			if err == nil {
				if !ack.Duplicate {
					j.advance(integration, jsHead{Head: h.Head, seq: ack.Sequence, known: true})
				}
				return nil
			}
		}
		// Read the head again: a lost answer may have been a stored claim,
		// which the next try finds as a duplicate.
		j.forget(integration)
		if !j.pause(ctx, backoff) {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}
