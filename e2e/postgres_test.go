package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/config"
	"github.com/hookhouse/hookhouse/internal/pgtest"
)

// TestWarehouseOutage stops PostgreSQL for 20+ s while records keep arriving:
// every request still gets 200, /status.json shows the warehouse down and the
// backlog growing, and after PostgreSQL returns the backlog drains with every
// record loaded exactly once.
func TestWarehouseOutage(t *testing.T) {
	ctx := context.Background()
	pg, err := pgtest.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	dsn, err := pg.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	in := startServer(t, func(c *config.Config) { c.Warehouse = dsn; c.LogLevel = "info" })
	id, hook := setupVero(t, in)

	var sent, ok atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				n := sent.Add(1)
				status, body := post(t, hook, "application/json", []byte(fmt.Sprintf(`{"marker":"w%d-%d","n":%d}`, w, i, n)))
				if status != 200 {
					t.Errorf("POST during outage = %d %s", status, body)
					return
				}
				ok.Add(1)
			}
		}()
	}
	waitLoaded(t, in.Client, id, 0) // loader started
	waitFor(t, 30*time.Second, "some records loaded", func() (bool, string) {
		s, _ := in.Client.Integration(ctx, id)
		return s != nil && s.Stats.RecordsLoaded > 20, ""
	})
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	// Sample /status.json through the outage. Only outcomes are checked, not how
	// many samples a busy machine manages: the warehouse is shown down at some
	// point, and the backlog at the end of the outage is larger than 2 s into it
	// (by then a commit that raced the stop is counted).
	var downSeen bool
	var backlogs []int64
	ref := -1 // index of the first sample at least 2 s into the outage
	for {
		at := time.Since(stoppedAt)
		st, err := in.Client.Status(ctx)
		if err != nil {
			t.Fatalf("status during outage: %v", err)
		}
		for _, c := range st.Components {
			if c.Name == "warehouse" && c.Status == "down" {
				downSeen = true
			}
		}
		backlog := int64(-1)
		for _, is := range st.Integrations {
			if is.ID == id {
				backlog = is.Backlog
			}
		}
		if backlog < 0 {
			t.Fatalf("/status.json during the outage does not list integration %d: %+v", id, st.Integrations)
		}
		backlogs = append(backlogs, backlog)
		if ref < 0 && at >= 2*time.Second {
			ref = len(backlogs) - 1
		} else if ref >= 0 && at >= 21*time.Second {
			break
		}
		time.Sleep(time.Second)
	}
	if !downSeen {
		t.Fatal("/status.json never showed the warehouse as down during the outage")
	}
	if last := backlogs[len(backlogs)-1]; last <= backlogs[ref] {
		t.Fatalf("backlog did not grow during the outage: %d 2 s in, %d at the end (all samples: %v)", backlogs[ref], last, backlogs)
	}
	outage := time.Since(stoppedAt).Round(time.Second)
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	if t.Failed() {
		return
	}
	n := ok.Load()
	waitLoaded(t, in.Client, id, n)
	r, err := in.Client.Query(ctx, "select count(*), count(distinct marker), count(distinct __sdc_primary_key) from stitch_vero.data")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%v %v %v", r.Rows[0]...); got != fmt.Sprintf("%d %d %d", n, n, n) {
		t.Fatalf("after the outage the warehouse holds %s (rows, markers, keys); %d requests got 200", got, n)
	}
	st, _ := in.Client.Status(ctx)
	if st.Status != "operational" {
		t.Fatalf("after recovery status is %s: %+v", st.Status, st.Components)
	}
	logs := in.Logs.String()
	if c := strings.Count(logs, "load failed") + strings.Count(logs, "cannot read load state"); c == 0 || c > 10 {
		t.Fatalf("load failures logged %d times during a 20 s outage; want a few, rate-limited", c)
	}
	t.Logf("outage of %s: %d records accepted, all loaded once; backlog went %v", outage, n, backlogs)
}

// TestUpserts sends 1,000 updates over 50 keys to a webhooks integration with a
// primary key, several for the same key inside one batch, on both warehouses;
// the table ends with 50 rows, each holding the last value sent for its key.
func TestUpserts(t *testing.T) {
	warehouses(t, func(t *testing.T, mod func(*config.Config)) {
		in := startServer(t, func(c *config.Config) {
			if mod != nil {
				mod(c)
			}
			c.BatchWait = 500 * time.Millisecond
		})
		ctx := context.Background()
		integ, err := in.Client.CreateIntegration(ctx, client.NewIntegration{Name: "Accounts", Type: "webhooks", PrimaryKey: "id"})
		if err != nil {
			t.Fatal(err)
		}
		u, err := in.Client.GenerateURL(ctx, integ.ID)
		if err != nil {
			t.Fatal(err)
		}
		hook := in.hookURL(u.URL)
		last := map[int]int{}
		var batch []map[string]any
		for i := 0; i < 1000; i++ {
			key := (i * 7) % 50
			last[key] = i
			batch = append(batch, map[string]any{"id": key, "version": i, "tags": []int{i, i + 1}})
			if len(batch) == 100 || i == 999 { // 100 records per request: keys repeat within one batch
				body, _ := json.Marshal(batch)
				if status, resp := post(t, hook, "application/json", body); status != 200 {
					t.Fatalf("POST = %d %s", status, resp)
				}
				batch = nil
			}
		}
		// A record without its key, and one with a null key, go to _sdc_rejected.
		post(t, hook, "application/json", []byte(`[{"version":-1},{"id":null,"version":-2}]`))
		waitLoaded(t, in.Client, integ.ID, 1002)
		r, err := in.Client.Query(ctx, "select id, version from accounts.data order by id")
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Rows) != 50 {
			t.Fatalf("accounts.data has %d rows, want 50", len(r.Rows))
		}
		for _, row := range r.Rows {
			var k, v int
			fmt.Sscan(fmt.Sprint(row[0]), &k)
			fmt.Sscan(fmt.Sprint(row[1]), &v)
			if last[k] != v {
				t.Fatalf("key %d holds version %d, want the last sent %d", k, v, last[k])
			}
		}
		// Subtables hold only the winning record's rows, linked by the key.
		r, err = in.Client.Query(ctx, "select count(*), count(distinct _sdc_source_key_id) from accounts.data__tags")
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprintf("%v %v", r.Rows[0]...) != "100 50" {
			t.Fatalf("accounts.data__tags has %v rows/keys, want 100 rows over 50 keys", r.Rows[0])
		}
		r, err = in.Client.Query(ctx, "select count(*) from accounts._sdc_rejected")
		if err != nil || fmt.Sprint(r.Rows[0][0]) != "2" {
			t.Fatalf("rejected = %v %v, want 2 (missing and null key)", r, err)
		}
		r, _ = in.Client.Query(ctx, "select count(*) from information_schema.columns where table_schema='accounts' and table_name='data' and column_name='__sdc_primary_key'")
		if fmt.Sprint(r.Rows[0][0]) != "0" {
			t.Fatal("an integration with a primary_key has a __sdc_primary_key column")
		}
	})
}

// TestStartWithWarehouseDown starts hookhouse while PostgreSQL is down: webhooks
// are accepted into the log, and loading starts once PostgreSQL is up.
func TestStartWithWarehouseDown(t *testing.T) {
	ctx := context.Background()
	pg, err := pgtest.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	dsn, err := pg.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	in := startServer(t, func(c *config.Config) { c.Warehouse = dsn })
	id, hook := setupVero(t, in)
	for _, f := range veroFiles(t) {
		if status, resp := post(t, hook, "application/json", mustRead(t, f)); status != 200 {
			t.Fatalf("POST with the warehouse down = %d %s", status, resp)
		}
	}
	st, err := in.Client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.Components {
		if c.Name == "warehouse" && c.Status != "down" {
			t.Fatalf("warehouse shown as %s while PostgreSQL is stopped", c.Status)
		}
	}
	if _, err := in.Client.Query(ctx, "select 1"); err == nil {
		t.Fatal("query succeeded with the warehouse down")
	}
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	waitLoaded(t, in.Client, id, 14)
	r, err := in.Client.Query(ctx, "select count(*) from stitch_vero.data")
	if err != nil || fmt.Sprint(r.Rows[0][0]) != "14" {
		t.Fatalf("rows = %v, %v", r, err)
	}
	if strings.Contains(in.Logs.String(), dsn) {
		t.Fatal("the warehouse URL reached the logs")
	}
}
