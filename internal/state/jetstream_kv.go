package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Control data on JetStream: the bucket <Name>_control holds the control keys
// (integration/…, url/…, meta/…, session/…, history/…), one KV key each, and
// <Name>_log the duplicate counts (dups.<integration>).
//
// KV keys allow only letters, digits and "-_=/." with "." separating tokens,
// so a control key is encoded: it is split at "/", every part keeps letters,
// digits, "-" and "_" and writes any other byte as "=" and two hex digits, an
// empty part is "=", and the parts are joined with ".". "integration/12" is
// "integration.12"; a Scan of a prefix ending in "/" is then a subject filter
// ("integration.>"), and any other prefix filters the keys here.
//
// Put of several keys is one atomic batch (the KV stream allows atomic
// publish), so it is all or nothing as on Pebble; a Put of more than
// maxBatch keys is split into batches of that size.

const maxBatch = 1000

func (j *JetStream) openKV(ctx context.Context) error {
	var err error
	if j.control, err = j.bucket(ctx, "_control", "hookhouse: integrations, webhook URL hashes, the admin key hash, sessions, history"); err != nil {
		return err
	}
	if j.meta, err = j.bucket(ctx, "_log", "hookhouse: per-integration counts of the log"); err != nil {
		return err
	}
	// Allow atomic batches on the control bucket's stream, for Put, and read
	// from its leader only: a direct get may be answered by a replica that has
	// not yet stored a Put another node just made (a revoked URL, say).
	s, err := j.js.Stream(ctx, "KV_"+j.opts.Name+"_control")
	if err != nil {
		return fmt.Errorf("state: bucket stream: %w", j.unavailable(err))
	}
	j.ctlLog = s
	if cfg := s.CachedInfo().Config; !cfg.AllowAtomicPublish || cfg.AllowDirect {
		cfg.AllowAtomicPublish, cfg.AllowDirect = true, false
		if j.ctlLog, err = j.js.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("state: configure the control bucket: %w", j.unavailable(err))
		}
		// Bind again: a bucket handle decides at binding whether to read directly.
		if j.control, err = j.js.KeyValue(ctx, j.opts.Name+"_control"); err != nil {
			return fmt.Errorf("state: bind the control bucket: %w", j.unavailable(err))
		}
	}
	// Follow the duplicate counts of every node.
	w, err := j.meta.Watch(ctx, "dups.>")
	if err != nil {
		return fmt.Errorf("state: watch duplicate counts: %w", j.unavailable(err))
	}
	j.wg.Add(1)
	go func() {
		defer j.wg.Done()
		defer w.Stop()
		for {
			select {
			case <-j.stop:
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil || e.Operation() != jetstream.KeyValuePut {
					continue
				}
				id, err1 := strconv.ParseInt(strings.TrimPrefix(e.Key(), "dups."), 10, 64)
				n, err2 := strconv.ParseInt(string(e.Value()), 10, 64)
				if err1 == nil && err2 == nil {
					j.mu.Lock()
					j.dups[id] = max(j.dups[id], n)
					j.mu.Unlock()
				}
			}
		}
	}()
	return nil
}

// bucket binds the bucket <Name><suffix>, creating it if it does not exist.
// An existing bucket is not updated: CreateOrUpdateKeyValue would reset the
// control bucket's stream settings while other nodes use them.
func (j *JetStream) bucket(ctx context.Context, suffix, desc string) (jetstream.KeyValue, error) {
	name := j.opts.Name + suffix
	kv, err := j.js.KeyValue(ctx, name)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = j.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: name, Description: desc, History: 1, Storage: jetstream.FileStorage, Replicas: j.opts.Replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) { // another node was first
			kv, err = j.js.KeyValue(ctx, name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("state: bucket %s: %w", name, j.unavailable(err))
	}
	return kv, nil
}

// addDuplicates adds n to integration's duplicate count (compare-and-set, so
// that nodes counting at once lose nothing). The count is a statistic: if the
// cluster does not take it, the delivery is still a duplicate.
func (j *JetStream) addDuplicates(integration int64, n int64) {
	ctx, cancel := context.WithTimeout(context.Background(), j.opts.Timeout)
	defer cancel()
	key := "dups." + strconv.FormatInt(integration, 10)
	for range 20 {
		var cur int64
		var rev uint64
		e, err := j.meta.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			j.logger.Warn("counting a duplicate delivery failed", "integration", integration, "err", err)
			return
		default:
			cur, _ = strconv.ParseInt(string(e.Value()), 10, 64)
			rev = e.Revision()
		}
		v := []byte(strconv.FormatInt(cur+n, 10))
		if rev == 0 {
			_, err = j.meta.Create(ctx, key, v)
		} else {
			_, err = j.meta.Update(ctx, key, v, rev)
		}
		if err == nil {
			j.mu.Lock()
			j.dups[integration] = max(j.dups[integration], cur+n)
			j.mu.Unlock()
			return
		}
		if ctx.Err() != nil {
			break
		}
	}
	j.logger.Warn("counting a duplicate delivery failed: too many concurrent updates", "integration", integration)
}

// encodeKey turns a control key into a KV key; see above.
func encodeKey(key string) string {
	var b strings.Builder
	for i, part := range strings.Split(key, "/") {
		if i > 0 {
			b.WriteByte('.')
		}
		if part == "" {
			b.WriteByte('=')
			continue
		}
		for k := 0; k < len(part); k++ {
			c := part[k]
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
				b.WriteByte(c)
			} else {
				fmt.Fprintf(&b, "=%02X", c)
			}
		}
	}
	return b.String()
}

func decodeKey(k string) (string, error) {
	var b strings.Builder
	for i, part := range strings.Split(k, ".") {
		if i > 0 {
			b.WriteByte('/')
		}
		if part == "=" {
			continue
		}
		for x := 0; x < len(part); x++ {
			if part[x] != '=' {
				b.WriteByte(part[x])
				continue
			}
			if x+2 >= len(part) {
				return "", fmt.Errorf("state: bad control key %q", k)
			}
			v, err := strconv.ParseUint(part[x+1:x+3], 16, 8)
			if err != nil {
				return "", fmt.Errorf("state: bad control key %q", k)
			}
			b.WriteByte(byte(v))
			x += 2
		}
	}
	return b.String(), nil
}

// Get reads a control value.
func (j *JetStream) Get(key string) ([]byte, error) {
	if err := j.enter(); err != nil {
		return nil, err
	}
	defer j.leave()
	ctx, cancel := context.WithTimeout(context.Background(), j.opts.Timeout)
	defer cancel()
	e, err := j.control.Get(ctx, encodeKey(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("state: get %s: %w", key, j.unavailable(err))
	}
	return e.Value(), nil
}

// Put writes control values durably (a quorum has them) and atomically; a nil
// value deletes.
func (j *JetStream) Put(kvs map[string][]byte) error {
	if err := j.enter(); err != nil {
		return err
	}
	defer j.leave()
	ctx, cancel := context.WithTimeout(context.Background(), j.opts.Timeout)
	defer cancel()
	keys := make([]string, 0, len(kvs))
	for k := range kvs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for len(keys) > 0 {
		n := min(len(keys), maxBatch)
		if err := j.putBatch(ctx, keys[:n], kvs, nil); err != nil {
			return fmt.Errorf("state: write control data: %w", j.unavailable(err))
		}
		keys = keys[n:]
	}
	return nil
}

// putBatch writes keys (values from kvs, nil deletes) as one atomic batch;
// a key in expect is written only if its last message in the bucket's stream
// is still the one at that sequence (0: it has none).
func (j *JetStream) putBatch(ctx context.Context, keys []string, kvs map[string][]byte, expect map[string]uint64) error {
	if len(keys) == 1 && expect == nil {
		k := encodeKey(keys[0])
		if v := kvs[keys[0]]; v != nil {
			_, err := j.control.Put(ctx, k, v)
			return err
		}
		return j.control.Delete(ctx, k)
	}
	batchID := nats.NewInbox()[len(nats.InboxPrefix):]
	prefix := "$KV." + j.opts.Name + "_control."
	for i, k := range keys {
		m := nats.NewMsg(prefix + encodeKey(k))
		m.Header.Set("Nats-Batch-Id", batchID)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if v := kvs[k]; v != nil {
			m.Data = v
		} else {
			m.Header.Set("KV-Operation", "DEL")
		}
		if seq, ok := expect[k]; ok {
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(seq, 10))
		}
		if i < len(keys)-1 {
			if err := j.nc.PublishMsg(m); err != nil {
				return err
			}
			continue
		}
		m.Header.Set("Nats-Batch-Commit", "1")
		resp, err := j.nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			return err
		}
		var ack struct {
			Error *jetstream.APIError `json:"error"`
		}
		if err := json.Unmarshal(resp.Data, &ack); err != nil {
			return fmt.Errorf("unreadable answer to a batch: %w", err)
		}
		if ack.Error != nil {
			return ack.Error
		}
	}
	return nil
}

// PutIf writes kvs if every key of expect holds the expected value (nil:
// absent), as one atomic batch in which each expected key is written again
// with an expected last subject sequence: if any changed since it was read,
// on any node, the stream refuses the whole batch (ErrConflict).
func (j *JetStream) PutIf(expect, kvs map[string][]byte) error {
	if err := j.enter(); err != nil {
		return err
	}
	defer j.leave()
	if len(expect)+len(kvs) > maxBatch {
		return fmt.Errorf("state: PutIf of %d keys is more than one batch (%d)", len(expect)+len(kvs), maxBatch)
	}
	ctx, cancel := context.WithTimeout(context.Background(), j.opts.Timeout)
	defer cancel()
	seqs := map[string]uint64{}
	all := map[string][]byte{}
	for k, want := range expect {
		m, err := j.ctlLog.GetLastMsgForSubject(ctx, "$KV."+j.opts.Name+"_control."+encodeKey(k))
		var cur []byte
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			seqs[k] = 0 // must still have no message when the batch is stored
		case err != nil:
			return fmt.Errorf("state: read %s: %w", k, j.unavailable(err))
		default:
			seqs[k] = m.Sequence
			if op := m.Header.Get("KV-Operation"); op != "DEL" && op != "PURGE" {
				cur = m.Data
				if cur == nil {
					cur = []byte{}
				}
			}
		}
		if (want == nil) != (cur == nil) || !bytes.Equal(want, cur) {
			return ErrConflict
		}
		all[k] = cur // written again unchanged unless kvs says otherwise
	}
	for k, v := range kvs {
		all[k] = v
	}
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	err := j.putBatch(ctx, keys, all, seqs)
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return ErrConflict
	}
	if err != nil {
		return fmt.Errorf("state: write control data: %w", j.unavailable(err))
	}
	return nil
}

// Scan calls fn for every control key with the prefix, in key order.
func (j *JetStream) Scan(prefix string, fn func(key string, value []byte) error) error {
	if err := j.enter(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), j.opts.Timeout)
	defer cancel()
	filter := ">"
	if p, ok := strings.CutSuffix(prefix, "/"); ok && p != "" {
		filter = encodeKey(p) + ".>"
	}
	type kv struct {
		k string
		v []byte
	}
	var all []kv
	err := func() error {
		defer j.leave()
		w, err := j.control.Watch(ctx, filter, jetstream.IgnoreDeletes())
		if err != nil {
			return err
		}
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case e, ok := <-w.Updates():
				if !ok {
					return errors.New("watch ended")
				}
				if e == nil {
					return nil // every current value has come
				}
				k, err := decodeKey(e.Key())
				if err != nil {
					return err
				}
				if strings.HasPrefix(k, prefix) {
					all = append(all, kv{k, e.Value()})
				}
			}
		}
	}()
	if err != nil {
		return fmt.Errorf("state: scan %s: %w", prefix, j.unavailable(err))
	}
	slices.SortFunc(all, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	for _, e := range all {
		if err := fn(e.k, e.v); err != nil {
			return err
		}
	}
	return nil
}
