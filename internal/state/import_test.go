package state

import (
	"context"
	"testing"
	"time"
)

// An import chunk keeps each record's own receipt time, claims its id in the
// same write, and a second send of the same chunk adds nothing and is not
// counted as a provider's redelivery.
func TestAppendOnceAtPerRecordTimes(t *testing.T) {
	dir := t.TempDir()
	p := openTest(t, dir)
	ctx := context.Background()
	now := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	times := []time.Time{
		time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2025, 6, 1, 12, 30, 0, 123000, time.UTC),
	}
	bodies := [][]byte{[]byte(`{"n":1}`), []byte(`{"n":2}`)}
	first, dup, err := p.AppendOnceAt(ctx, 3, now, times, "import:abc", 365*day, bodies)
	if err != nil || dup || first != 1 {
		t.Fatalf("AppendOnceAt = %d, %v, %v; want 1, false, nil", first, dup, err)
	}
	first, dup, err = p.AppendOnceAt(ctx, 3, now.Add(time.Hour), times, "import:abc", 365*day, bodies)
	if err != nil || !dup || first != 0 {
		t.Fatalf("AppendOnceAt again = %d, %v, %v; want 0, true, nil", first, dup, err)
	}
	if n := p.Deduplicated(3); n != 0 {
		t.Errorf("Deduplicated = %d after an import chunk sent twice, want 0 (not a redelivery)", n)
	}
	if _, _, err := p.AppendOnceAt(ctx, 3, now, times[:1], "import:def", 365*day, bodies); err == nil {
		t.Error("AppendOnceAt with 1 time for 2 records: no error")
	}
	if h := p.Head(3); h.Position != 2 || !h.LastReceivedAt.Equal(now) {
		t.Errorf("head = %+v, want position 2, last received %s (the import's time)", h, now)
	}
	check := func(p *Pebble) {
		t.Helper()
		recs := readAll(t, p, 3)
		if len(recs) < 2 {
			t.Fatalf("%d records, want 2 or more", len(recs))
		}
		for i, r := range recs[:2] {
			if !r.ReceivedAt.Equal(times[i]) || string(r.Body) != string(bodies[i]) {
				t.Errorf("record %d: %s %s, want %s %s", i, r.ReceivedAt, r.Body, times[i], bodies[i])
			}
		}
	}
	check(p)
	// Plain appends still take the one time of the call.
	if _, err := p.Append(ctx, 3, now, [][]byte{[]byte(`{"n":3}`)}); err != nil {
		t.Fatal(err)
	}
	if recs := readAll(t, p, 3); !recs[2].ReceivedAt.Equal(now) {
		t.Errorf("Append's record received at %s, want %s", recs[2].ReceivedAt, now)
	}
	// The claim survives a restart.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p = openTest(t, dir)
	check(p)
	if _, dup, err := p.AppendOnceAt(ctx, 3, now.Add(24*time.Hour), times, "import:abc", 365*day, bodies); err != nil || !dup {
		t.Fatalf("after a restart: duplicate %v, err %v; want a duplicate", dup, err)
	}
}
