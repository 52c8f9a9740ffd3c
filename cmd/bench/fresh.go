package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hookhouse/hookhouse/client"
)

// freshSenders is how many requests may be in flight during the paced run: enough
// that a slow ack never holds back the schedule.
const freshSenders = 32

// freshResult is the paced run: how fast records were acknowledged, and how long
// after its ack each one first showed up in the warehouse.
type freshResult struct {
	planned, sent, acked, errors int64
	errKinds                     map[string]int64
	sendTook                     time.Duration
	ack                          latencies // request sent → 200
	visible                      latencies // 200 → first seen by a poll

	seen, unseen, unacked, dups int64 // from the poller's point of view
	rows, distinct, rejected    int64 // at the end: count(*), count(distinct bench_marker)
	polls, pollErrs             int
	pollLat                     latencies // query round trips
	lastPollErr                 string
}

func (r freshResult) exactlyOnce() bool {
	return r.rows == r.acked && r.distinct == r.acked && r.unseen == 0 && r.dups == 0
}

// send is one record of the paced run; each is written by the one sender that sent it.
type send struct {
	sentAt, ackAt time.Time
	ok            bool
}

// freshness creates an integration, sends rate records/s (one per request) for dur on a
// fixed schedule, and polls the warehouse every poll for the markers that became
// visible. After the last send it polls for up to drainMax more, then counts the rows.
func freshness(ctx context.Context, c *child, schema string, bodies [][]byte, rate int, dur, poll, drainMax time.Duration) (freshResult, error) {
	integ, err := c.admin.CreateIntegration(ctx, client.NewIntegration{Name: schema, Type: client.TypeVero, Schema: schema})
	if err != nil {
		return freshResult{}, fmt.Errorf("freshness: create integration: %w", err)
	}
	u, err := c.admin.GenerateURL(ctx, integ.ID)
	if err != nil {
		return freshResult{}, fmt.Errorf("freshness: generate URL: %w", err)
	}
	url, err := c.hookURL(u.URL)
	if err != nil {
		return freshResult{}, err
	}

	total := int(float64(rate) * dur.Seconds())
	interval := time.Second / time.Duration(rate)
	sends := make([]send, total)
	visibleAt := make([]time.Time, total)
	res := freshResult{planned: int64(total), errKinds: map[string]int64{}}

	// The poller runs from the first send until every acknowledged record was seen.
	acked := make(chan int64, 1)
	var pollWG sync.WaitGroup
	var ps pollStats
	pollWG.Add(1)
	go func() {
		defer pollWG.Done()
		ps = pollVisible(ctx, c.admin, schema, poll, drainMax, visibleAt, acked)
	}()

	tr := newTransport(freshSenders)
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	jobs := make(chan int, total)
	var wg sync.WaitGroup
	kinds := make([]map[string]int64, freshSenders)
	for w := range freshSenders {
		kinds[w] = map[string]int64{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 512)
			for i := range jobs {
				t0 := time.Now()
				var kind string
				buf, kind = post(ctx, hc, url, withMarker(bodies[i%len(bodies)], i, t0), buf)
				sends[i] = send{sentAt: t0, ackAt: time.Now(), ok: kind == ""}
				if kind != "" {
					kinds[w][kind]++
				}
			}
		}()
	}

	// Pace on the wall clock, not on ticks: a late tick sends everything due by now.
	start := time.Now()
	ticker := time.NewTicker(min(interval, time.Millisecond))
	next := 0
pace:
	for next < total {
		select {
		case <-ctx.Done():
			break pace
		case now := <-ticker.C:
			due := min(total, int(now.Sub(start)/interval)+1)
			for ; next < due; next++ {
				jobs <- next
			}
		}
	}
	ticker.Stop()
	close(jobs)
	wg.Wait()
	res.sendTook = time.Since(start)
	res.sent = int64(next)

	var ackLat, visLat []time.Duration
	for _, s := range sends[:next] {
		if s.ok {
			res.acked++
			ackLat = append(ackLat, s.ackAt.Sub(s.sentAt))
		}
	}
	for _, k := range kinds {
		for kind, n := range k {
			res.errKinds[kind] += n
			res.errors += n
		}
	}
	acked <- res.acked
	pollWG.Wait()
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("freshness run interrupted: %w", err)
	}

	for i, s := range sends[:next] {
		switch seen := !visibleAt[i].IsZero(); {
		case s.ok && seen:
			res.seen++
			visLat = append(visLat, visibleAt[i].Sub(s.ackAt))
		case s.ok:
			res.unseen++
		case seen:
			res.unacked++
		}
	}
	res.ack, res.visible = summarize(ackLat), summarize(visLat)
	res.dups, res.polls, res.pollErrs, res.lastPollErr = ps.dups, ps.polls, ps.errs, ps.lastErr
	res.pollLat = summarize(ps.lat)

	q, err := c.admin.Query(ctx, fmt.Sprintf("select count(*), count(distinct bench_marker) from %s.data", schema))
	if err != nil {
		return res, fmt.Errorf("freshness: count rows: %w", err)
	}
	if len(q.Rows) != 1 || len(q.Rows[0]) != 2 {
		return res, fmt.Errorf("freshness: count rows: unexpected answer %v", q.Rows)
	}
	res.rows, _ = toInt64(q.Rows[0][0])
	res.distinct, _ = toInt64(q.Rows[0][1])
	if in, err := c.admin.Integration(ctx, integ.ID); err == nil && in.Stats != nil {
		res.rejected = in.Stats.RecordsRejected
	}
	return res, nil
}

type pollStats struct {
	polls, errs int
	dups        int64
	lat         []time.Duration
	lastErr     string
}

// pollVisible asks the warehouse every poll for the rows loaded since the last one it
// saw (by _sdc_sequence, which the single loader makes increasing and commits in
// order) and stamps their markers with the time the answer arrived: an upper bound
// on when they became visible, at most one poll plus one query late. Once acked
// delivers the count of acknowledged records it stops when that many were seen, or
// drainMax later.
func pollVisible(ctx context.Context, admin *client.Client, schema string, poll, drainMax time.Duration, visibleAt []time.Time, acked <-chan int64) pollStats {
	var st pollStats
	ticker := time.NewTicker(poll)
	defer ticker.Stop()
	var (
		last     int64
		seen     int64
		want     int64 = -1
		deadline time.Time
		tableOK  bool
		again    bool // the last answer was cut at the row limit: ask again at once
	)
	for {
		if !again {
			select {
			case <-ctx.Done():
				return st
			case n := <-acked:
				want, deadline, acked = n, time.Now().Add(drainMax), nil
			case <-ticker.C:
			}
		}
		if want >= 0 && (seen >= want || time.Now().After(deadline)) {
			return st
		}
		q := fmt.Sprintf("select _sdc_sequence, bench_marker from %s.data where _sdc_sequence > %d order by _sdc_sequence", schema, last)
		t0 := time.Now()
		res, err := admin.Query(ctx, q)
		t1 := time.Now()
		again = false
		if err != nil {
			// Until the first batch is loaded the table does not exist yet.
			if tableOK {
				st.errs++
				st.lastErr = err.Error()
			}
			continue
		}
		tableOK = true
		st.polls++
		st.lat = append(st.lat, t1.Sub(t0))
		for _, row := range res.Rows {
			if len(row) != 2 {
				continue
			}
			seq, ok1 := toInt64(row[0])
			m, ok2 := toInt64(row[1])
			if !ok1 || !ok2 || m < 0 || m >= int64(len(visibleAt)) {
				continue
			}
			last = max(last, seq)
			if visibleAt[m].IsZero() {
				visibleAt[m] = t1
				seen++
			} else {
				st.dups++
			}
		}
		again = res.Truncated
	}
}

// withMarker returns the Vero sample obj with two fields in front: the record's
// unique marker and when it was sent. Vero's own fields (sent_at, …) keep their names.
func withMarker(obj []byte, marker int, sentAt time.Time) []byte {
	obj = bytes.TrimSpace(obj)
	rest := bytes.TrimSpace(obj[1:]) // after '{'
	b := make([]byte, 0, len(obj)+80)
	b = append(b, `{"bench_marker":`...)
	b = strconv.AppendInt(b, int64(marker), 10)
	b = append(b, `,"bench_sent_at":"`...)
	b = sentAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if !bytes.HasPrefix(rest, []byte("}")) {
		b = append(b, ',')
	}
	return append(b, rest...)
}

// toInt64 reads an integer from a query answer (json.Number; float64 or string just
// in case).
func toInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case json.Number:
		n, err := strconv.ParseInt(string(x), 10, 64)
		return n, err == nil
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		return n, err == nil
	case float64:
		return int64(x), true
	}
	return 0, false
}
