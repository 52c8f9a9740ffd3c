package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/config"
)

// runCLI runs the built binary with args against the server at server, with env
// added (HOOKHOUSE_ADMIN_KEY is empty unless env sets it), and returns its output
// and exit status.
func runCLI(t *testing.T, server string, env []string, args ...string) (string, string, int) {
	t.Helper()
	return runCLIInput(t, server, env, "", args...)
}

// countLike finds wording that names a webhook URL by a bare number, which reads
// like a count ("URL 2 of integration 1").
var countLike = regexp.MustCompile(`URL \d+ of`)

// TestCLIAgainstServer runs the built binary's commands against a real server,
// with the admin key taken from <data>/admin.key as on the server's machine.
func TestCLIAgainstServer(t *testing.T) {
	dir := t.TempDir()
	addr := freePort(t)
	srv := startChild(t, dir, addr)
	cli := func(args ...string) (string, string, int) {
		t.Helper()
		return runCLI(t, srv.URL, nil, append(args, "--data", dir)...)
	}
	// The public URL follows --listen 127.0.0.1:<port>.
	if want := "Dashboard: " + srv.URL + "/"; !strings.Contains(srv.Stdout.String(), want) {
		t.Errorf("serve's first start does not say %q:\n%s", want, srv.Stdout.String())
	}
	out, errs, code := cli("integrations", "add", "--name", "Stitch Vero", "--type", "vero")
	if code != 0 || !strings.Contains(out, "stitch_vero") {
		t.Fatalf("integrations add: %d %s %s", code, out, errs)
	}
	out, errs, code = cli("urls", "generate", "1", "--json")
	var u struct{ URL, Hint string }
	if code != 0 || json.Unmarshal([]byte(out), &u) != nil || !strings.HasPrefix(u.URL, srv.URL+"/v1/clients/1/token/") {
		t.Fatalf("urls generate: %d %s %s", code, out, errs)
	}
	for _, f := range veroFiles(t) {
		if status, _ := post(t, u.URL, "application/json", mustRead(t, f)); status != 200 {
			t.Fatalf("POST %s = %d", f, status)
		}
	}
	waitFor(t, 30*time.Second, "rows via hookhouse sql", func() (bool, string) {
		out, errs, code := cli("sql", "select type, count(*) as n from stitch_vero.data group by 1 order by 1", "--csv")
		return code == 0 && strings.Contains(out, "type,n\n") && strings.Contains(out, "bounced,2\n"), out + errs
	})
	out, _, code = cli("urls", "list", "1")
	if code != 0 || !strings.Contains(out, "****"+u.Hint) || strings.Contains(out, u.URL[len(u.URL)-64:]) {
		t.Fatalf("urls list: %d %s", code, out)
	}
	out, _, code = cli("integrations", "show", "1", "--json")
	if code != 0 || !strings.Contains(out, `"records_received": 14`) && !strings.Contains(out, `"records_received":14`) {
		t.Fatalf("integrations show: %d %s", code, out)
	}

	// Integrations count on their own: the second one is 2, whatever URLs exist.
	out, errs, code = cli("integrations", "add", "--name", "Orders", "--type", "webhooks")
	if code != 0 || !strings.HasPrefix(out, "Created integration 2.\n") {
		t.Fatalf("second integrations add: %d %s %s", code, out, errs)
	}
	// A URL is named by its hint and creation time, never by a bare number.
	out, errs, code = cli("urls", "generate", "1")
	m := regexp.MustCompile(`New webhook URL \*\*\*\*([0-9a-f]{4}) \(id 2, created \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\) of integration 1:`).FindStringSubmatch(out)
	if code != 0 || m == nil || countLike.MatchString(out) {
		t.Fatalf("urls generate: %d\n%s%s", code, out, errs)
	}
	out, errs, code = cli("urls", "revoke", "1", "2")
	if code != 0 || !strings.HasPrefix(out, "Revoked webhook URL ****"+m[1]+" (id 2, created ") || !strings.HasSuffix(out, ") of integration 1: requests to it now get 401.\n") {
		t.Fatalf("urls revoke: %d %q %s", code, out, errs)
	}
	// Revoking it again says so, once, and when.
	out, errs, code = cli("urls", "revoke", "1", "2")
	if code != 0 || !regexp.MustCompile(`^Webhook URL \*\*\*\*`+m[1]+` \(id 2, created [^)]+\) of integration 1 was already revoked at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ; nothing changed\.\n$`).MatchString(out) {
		t.Fatalf("second urls revoke: %d %q %s", code, out, errs)
	}

	// A write is refused in one sentence that says what may run, without plumbing.
	_, errs, code = cli("sql", "drop table stitch_vero.data")
	want := "hookhouse: 403 read_only: Only a single read-only SELECT (or EXPLAIN of one) on the integration schemas can run here; " +
		"this statement was refused: it is a DROP statement\n"
	if code != 1 || errs != want {
		t.Fatalf("a write through hookhouse sql: exit %d, stderr %q; want %q", code, errs, want)
	}
	_, errs, code = cli("sql", "selec 1")
	if code != 1 || !strings.Contains(errs, "syntax error") || strings.Contains(errs, "duckdb:") || strings.Count(errs, "\n") != 1 {
		t.Fatalf("a syntax error: exit %d, stderr %q", code, errs)
	}
	out, _, code = cli("sql", "show tables", "--csv")
	if code != 0 || !strings.Contains(out, "stitch_vero,data\n") {
		t.Fatalf("show tables: %d %s", code, out)
	}

	out, _, code = cli("status")
	if code != 0 || !strings.Contains(out, "warehouse") || !strings.Contains(out, "Stitch Vero") {
		t.Fatalf("status: %d %s", code, out)
	}
	// A wrong key is an error, not a quieter report, and the key is never shown.
	const wrongKey = "hhk_0000000000000000000000000000000000000000000000000000000000000bad"
	for _, env := range [][]string{nil, {"HOOKHOUSE_ADMIN_KEY=" + wrongKey}} {
		args := []string{"status", "--data", dir}
		if env == nil {
			args = append(args, "--key", wrongKey)
		}
		out, errs, code = runCLI(t, srv.URL, env, args...)
		if code != 1 || out != "" || !strings.Contains(errs, "is not this server's (401 unauthorized)") || strings.Contains(errs, wrongKey) {
			t.Fatalf("status with a wrong key (env %v): exit %d, stdout %q, stderr %q", env, code, out, errs)
		}
	}
	_, errs, code = cli("integrations", "show", "99")
	if code == 0 || !strings.Contains(errs, "404") {
		t.Fatalf("show of a missing integration: %d %s", code, errs)
	}
	srv.Term(t)
}

// TestCLIServeListenSetsPublicURL: `serve --listen :<port>` prints and makes URLs
// on that port, not on the default 8080.
func TestCLIServeListenSetsPublicURL(t *testing.T) {
	dir := t.TempDir()
	_, port, err := net.SplitHostPort(freePort(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := launchChild(t, []string{"HOOKHOUSE_PUBLIC_URL="}, dir, ":"+port)
	srv.URL = "http://127.0.0.1:" + port
	if !srv.waitReady(t) {
		t.Fatalf("serve --listen :%s did not start:\n%s", port, srv.Stderr.String())
	}
	public := "http://localhost:" + port
	if want := "Dashboard: " + public + "/"; !strings.Contains(srv.Stdout.String(), want) {
		t.Errorf("serve does not say %q:\n%s", want, srv.Stdout.String())
	}
	if want := "public_url=" + public; !strings.Contains(srv.Stderr.String(), want) {
		t.Errorf("serve's log lacks %s:\n%s", want, srv.Stderr.String())
	}
	cli := func(args ...string) (string, string, int) {
		return runCLI(t, srv.URL, nil, append(args, "--data", dir)...)
	}
	if out, errs, code := cli("integrations", "add", "--name", "Stitch Vero", "--type", "vero"); code != 0 {
		t.Fatalf("integrations add: %d %s %s", code, out, errs)
	}
	out, errs, code := cli("urls", "generate", "1")
	if code != 0 || !strings.Contains(out, "\n  "+public+"/v1/clients/1/token/") {
		t.Fatalf("urls generate: %d, want a URL on %s:\n%s%s", code, public, out, errs)
	}
	srv.Term(t)
}

// TestCLIQueryOnBothWarehouses: "show tables" (and the query it runs) lists the
// integration tables, and refusals read the same, on DuckDB and on PostgreSQL,
// where the query endpoint runs as a restricted role.
func TestCLIQueryOnBothWarehouses(t *testing.T) {
	warehouses(t, func(t *testing.T, mod func(*config.Config)) {
		in := startServer(t, mod)
		ctx := context.Background()
		id, hook := setupVero(t, in)
		if status, body := post(t, hook, "application/json", mustRead(t, veroFiles(t)[0])); status != 200 {
			t.Fatalf("POST = %d %s", status, body)
		}
		waitFor(t, 30*time.Second, "the record loaded", func() (bool, string) {
			got, err := in.Client.Integration(ctx, id)
			if err != nil || got.Stats == nil {
				return false, fmt.Sprint(err)
			}
			return got.Stats.RecordsLoaded == 1, fmt.Sprintf("%+v", *got.Stats)
		})
		key := []string{"HOOKHOUSE_ADMIN_KEY=" + in.Key}
		for _, q := range []string{"show tables", client.ListTablesSQL} {
			out, errs, code := runCLI(t, in.URL, key, "sql", q, "--csv")
			if code != 0 || !strings.HasPrefix(out, "table_schema,table_name\n") || !strings.Contains(out, "stitch_vero,data\n") ||
				strings.Contains(out, "_hookhouse") || strings.Contains(out, "pg_catalog") {
				t.Errorf("sql %q: exit %d\n%s%s", q, code, out, errs)
			}
		}
		for _, q := range []string{"drop table stitch_vero.data", "select * from _hookhouse.load_state"} {
			_, errs, code := runCLI(t, in.URL, key, "sql", q)
			if code != 1 || !strings.HasPrefix(errs, "hookhouse: 403 read_only: Only a single read-only SELECT (or EXPLAIN of one) on the integration schemas can run here; this statement was refused: ") ||
				strings.Contains(errs, "duckdb:") || strings.Contains(errs, "postgres:") || strings.Contains(errs, "warehouse:") {
				t.Errorf("sql %q: exit %d, stderr %q", q, code, errs)
			}
		}
		_, errs, code := runCLI(t, in.URL, key, "sql", "select * from nope.data")
		if code != 1 || !strings.Contains(errs, "400 query_failed: ") || !strings.Contains(errs, `hookhouse sql "show tables" lists the integration tables`) ||
			strings.Contains(errs, "duckdb:") || strings.Contains(errs, "postgres:") {
			t.Errorf("a missing table: exit %d, stderr %q", code, errs)
		}
	})
}
