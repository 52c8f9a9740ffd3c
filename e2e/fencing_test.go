package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/config"
	"github.com/hookhouse/hookhouse/internal/pgtest"
)

// TestFreshDataDirOnLoadedWarehouse: a new installation (fresh data directory)
// pointed at a warehouse another installation loaded gets integration id 1 again.
// It used to inherit the other's load position and skip its own records while the
// stats said they were loaded. Now its webhooks are still accepted, but loading is
// refused loudly (stats load_error, /status degraded) and nothing is skipped,
// also after a restart.
func TestFreshDataDirOnLoadedWarehouse(t *testing.T) {
	for _, engine := range []string{"duckdb", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			dsn := ""
			if engine == "postgres" {
				var err error
				if dsn, err = pgtest.Shared(t).NewDatabase(ctx); err != nil {
					t.Fatal(err)
				}
			}
			files := veroFiles(t)
			oldDir := t.TempDir()
			old := startServer(t, func(c *config.Config) { c.Warehouse = dsn; c.Data = oldDir })
			id, hook := setupVero(t, old)
			for _, f := range files[:3] {
				if status, body := post(t, hook, "application/json", mustRead(t, f)); status != 200 {
					t.Fatalf("POST = %d %s", status, body)
				}
			}
			waitLoaded(t, old.Client, id, 3)
			old.Stop(t)

			dir := t.TempDir()
			if engine == "duckdb" { // the warehouse file, without the state beside it
				b, err := os.ReadFile(filepath.Join(oldDir, "warehouse.duckdb"))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "warehouse.duckdb"), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			start := func() *instance {
				return startServer(t, func(c *config.Config) { c.Warehouse = dsn; c.Data = dir })
			}
			fresh := start()
			id2, hook2 := setupVero(t, fresh)
			if id2 != id {
				t.Fatalf("the fresh installation's integration has id %d, want %d (the case under test)", id2, id)
			}
			for _, f := range files[3:6] {
				if status, body := post(t, hook2, "application/json", mustRead(t, f)); status != 200 {
					t.Fatalf("POST to the fresh installation = %d %s", status, body)
				}
			}
			for round := range 2 {
				refused(t, fresh, id2, 3)
				if n := rows(t, fresh.Client, "stitch_vero.data"); n != 3 {
					t.Fatalf("stitch_vero.data has %d rows, want the old installation's 3", n)
				}
				if round == 0 { // and the same after a restart
					fresh.Stop(t)
					fresh = start()
				}
			}
		})
	}
}

// TestTwoServersOneWarehouse runs two installations on one PostgreSQL database
// at once, each with its own integration 1 named the same. The first to load
// owns the load position; the other's records are accepted and wait, refused
// loudly, and nothing is loaded twice or skipped.
func TestTwoServersOneWarehouse(t *testing.T) {
	ctx := context.Background()
	dsn, err := pgtest.Shared(t).NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	servers := []*instance{
		startServer(t, func(c *config.Config) { c.Warehouse = dsn }),
		startServer(t, func(c *config.Config) { c.Warehouse = dsn }),
	}
	hooks := make([]string, 2)
	for i, s := range servers {
		_, hooks[i] = setupVero(t, s)
	}
	files := veroFiles(t)
	const rounds = 5
	var wg sync.WaitGroup
	for i := range servers {
		wg.Go(func() {
			for r := range rounds {
				for _, f := range files {
					if status, body := post(t, hooks[i], "application/json", mustRead(t, f)); status != 200 {
						t.Errorf("server %d round %d: POST = %d %s", i, r, status, body)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	const each = rounds * 14
	// Exactly one server loads all of its records; the other none.
	var owner, other int
	waitFor(t, 60*time.Second, "one server to load everything it accepted", func() (bool, string) {
		var states []string
		for i, s := range servers {
			in, err := s.Client.Integration(ctx, 1)
			if err != nil {
				return false, err.Error()
			}
			if in.Stats.RecordsLoaded == each && in.Stats.Backlog == 0 {
				owner, other = i, 1-i
				return true, ""
			}
			states = append(states, fmt.Sprintf("server %d: %+v", i, *in.Stats))
		}
		return false, strings.Join(states, "; ")
	})
	refused(t, servers[other], 1, each)
	if n := rows(t, servers[owner].Client, "stitch_vero.data"); n != each {
		t.Fatalf("stitch_vero.data has %d rows, want the owner's %d", n, each)
	}
	if n := rows(t, servers[owner].Client, "(SELECT DISTINCT __sdc_primary_key FROM stitch_vero.data) AS keys"); n != each {
		t.Fatalf("%d distinct primary keys, want %d", n, each)
	}
}

// refused waits until integration id's loading on in is refused because the
// warehouse's load position is another installation's, with n records waiting,
// and checks that the stats and /status say so.
func refused(t *testing.T, in *instance, id, n int64) {
	t.Helper()
	ctx := context.Background()
	waitFor(t, 60*time.Second, "loading to be refused with the reason", func() (bool, string) {
		integ, err := in.Client.Integration(ctx, id)
		if err != nil {
			return false, err.Error()
		}
		s := integ.Stats
		ok := s.RecordsLoaded == 0 && s.Backlog == n && s.RecordsReceived == n &&
			strings.Contains(s.LoadError, "another hookhouse installation")
		return ok, fmt.Sprintf("%+v", *s)
	})
	st, err := in.Client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.Components {
		if c.Name == "loader" && (c.Status != "degraded" || !strings.Contains(c.Message, "another installation")) {
			t.Errorf("/status loader = %+v, want degraded naming the other installation", c)
		}
	}
}

// rows counts the rows of from (a table or subquery) through the query API.
func rows(t *testing.T, c *client.Client, from string) int64 {
	t.Helper()
	res, err := c.Query(context.Background(), "SELECT count(*) FROM "+from)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	fmt.Sscan(fmt.Sprint(res.Rows[0][0]), &n)
	return n
}
