package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hookhouse/hookhouse/internal/config"
	"github.com/hookhouse/hookhouse/internal/secretbox"
	"github.com/hookhouse/hookhouse/internal/server"
	"github.com/hookhouse/hookhouse/internal/state"
)

const migrateDetails = `migrate copies the state of a STOPPED single node into a NATS JetStream
cluster, so that 'hookhouse serve --nats …' nodes take over: the installation
id, integrations, webhook URL hashes, id counters, the admin key hash, sealed
signing secrets, paused states, dashboard sessions and chart history, the
redelivery claims that still count, and every
record still in the node's log (loaded or not) at its position, with its
__sdc_primary_key and receipt time, so that the warehouse's load positions
line up and nothing is loaded twice or skipped.

It refuses a data dir a server still runs on, and a cluster that holds another
installation's state. If it stops (killed, Ctrl-C, NATS unreachable), run it
again: it resumes where it stopped and writes no record twice. Until it
reports done, nodes refuse to start on the cluster.

Redelivery claims that still count move too: a provider's redelivery of a
delivery the node accepted stays a duplicate on the cluster.
`

// migrateCmd is 'hookhouse migrate --from DIR --nats URLS'.
func migrateCmd(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	var o migrateOpts
	fs.StringVar(&o.from, "from", "", "the stopped single node's data `DIR` (its --data)")
	fs.StringVar(&o.nats, "nats", "", "the NATS servers, comma-separated nats:// `URLS`")
	fs.StringVar(&o.creds, "nats-creds", "", "NATS credentials `FILE`")
	fs.StringVar(&o.ca, "nats-ca", "", "CA `FILE` for the NATS servers' TLS certificates")
	fs.IntVar(&o.replicas, "nats-replicas", 3, "replicas of the stream and buckets, when migrate creates them")
	fs.StringVar(&o.stream, "nats-stream", "hookhouse", "the stream's `NAME` (the buckets are named after it); the same as the nodes'")
	fs.BoolVar(&o.yes, "yes", false, "migrate without asking")
	fs.BoolVar(&o.yes, "y", false, "short for --yes")
	for _, flagName := range []string{"nats", "nats-creds", "nats-ca", "nats-replicas", "nats-stream"} {
		env := envNames[flagName]
		if v := strings.TrimSpace(os.Getenv(env)); v != "" {
			if err := fs.Set(flagName, v); err != nil {
				return c.usagef(fs, "%s: %v", env, err)
			}
		}
	}
	if _, err := c.parseArgs(fs, args); err != nil {
		return err
	}
	switch {
	case o.from == "":
		return c.usagef(fs, "--from DIR is required: the data dir of the stopped single node")
	case o.nats == "":
		return c.usagef(fs, "--nats URLS is required (or HOOKHOUSE_NATS): the cluster's NATS servers")
	case o.replicas != 1 && o.replicas != 3 && o.replicas != 5:
		return c.usagef(fs, "--nats-replicas must be 1, 3 or 5, as for serve")
	case len(o.stream) > 64 || strings.Trim(o.stream, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != "" || o.stream == "":
		return c.usagef(fs, "--nats-stream %q must be 1–64 letters, digits, - or _", o.stream)
	}
	for _, u := range strings.Split(o.nats, ",") {
		if u = strings.TrimSpace(u); u != "" && !strings.HasPrefix(u, "nats://") && !strings.HasPrefix(u, "tls://") {
			return c.usagef(fs, "--nats: %q must start with nats:// or tls://", config.RedactNATSURL(u))
		}
	}
	for _, f := range []struct{ name, path string }{{"nats-creds", o.creds}, {"nats-ca", o.ca}} {
		if f.path != "" {
			if _, err := os.Stat(f.path); err != nil {
				return fmt.Errorf("--%s: %w", f.name, err)
			}
		}
	}
	return o.run(ctx, c)
}

type migrateOpts struct {
	from, nats, creds, ca, stream string
	replicas                      int
	yes                           bool
}

func (o *migrateOpts) run(ctx context.Context, c *cli) error {
	src, err := openSource(o.from)
	if err != nil {
		return err
	}
	defer src.Close()
	logger := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	nc, err := server.ConnectNATS(ctx, config.Config{NATS: o.nats, NATSCreds: o.creds, NATSCA: o.ca, NodeName: "migrate"}, logger)
	if err != nil {
		return err
	}
	defer nc.Close()
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	js, err := state.OpenJetStreamForMigration(octx, nc, logger, state.JetStreamOptions{Name: o.stream, Replicas: o.replicas})
	cancel()
	if err != nil {
		return fmt.Errorf("open the cluster's state (stream %s): %w", o.stream, err)
	}
	defer js.Close()
	plan, err := js.PlanMigration(ctx, src)
	if err != nil {
		return err
	}
	if plan.Done != nil {
		if c.json {
			return c.printJSON(planJSON(o, plan))
		}
		fmt.Fprintf(c.stdout, "%s was migrated into the stream %s at %s: nothing to copy.\n", o.from, o.stream, formatTime(*plan.Done.FinishedAt))
		diverged := false
		for _, l := range plan.Logs {
			line := fmt.Sprintf("  integration %d: the cluster's log is at position %s, the data dir's at %s", l.Integration, thousands(int64(l.InCluster)), thousands(int64(l.Head)))
			if l.Diverged {
				line += ": the data dir holds records the cluster does not"
				diverged = true
			}
			fmt.Fprintln(c.stdout, line)
		}
		if diverged {
			fmt.Fprintf(c.stderr, "Warning: the single node on %s took webhooks after the migration; those records are not in the cluster and cannot be copied now (their positions may be taken). "+
				"Re-send them from the provider, or import them (hookhouse import).\n", o.from)
		}
		o.nextSteps(c.stdout)
		return nil
	}
	if !c.json {
		o.printPlan(c.stdout, plan, integrationNames(src))
	}
	if w := secretKeyWarning(src, o.from); w != "" {
		fmt.Fprintf(c.stderr, "Warning: %s\n", w)
	}
	if !o.yes {
		if err := c.confirmMigrate(o, plan); err != nil {
			return err
		}
	}
	start := time.Now()
	p := newProgress(c.stderr, "migrate into "+o.stream, "copied", "records", int64(plan.ToCopy))
	var cp *progress // the claims, which go after the records
	err = js.Migrate(ctx, src, plan, state.MigrateOptions{
		From:     absPath(o.from),
		Progress: func(n uint64) { p.Set(int64(n)) },
		ClaimProgress: func(n uint64) {
			if cp == nil {
				p.Finish()
				cp = newProgress(c.stderr, "redelivery claims into "+o.stream, "copied", "claims", int64(plan.Claims))
			}
			cp.Set(int64(n))
		},
	})
	p.Finish()
	if cp != nil {
		cp.Finish()
	}
	if err != nil {
		if ctx.Err() != nil {
			err = errors.New("interrupted")
		}
		return fmt.Errorf("migration stopped: %w; run the same command again to resume (nodes refuse to start on the cluster until it is done)", err)
	}
	if c.json {
		return c.printJSON(planJSON(o, plan))
	}
	var copied uint64
	for _, l := range plan.Logs {
		copied += l.Copied
	}
	took := time.Since(start)
	integrations := "integrations"
	if len(plan.Logs) == 1 {
		integrations = "integration"
	}
	fmt.Fprintf(c.stdout, "Done: %s records of %d %s and %d control keys copied into the stream %s in %s (%s records/s)",
		thousands(int64(copied)), len(plan.Logs), integrations, plan.ControlKeys, o.stream, took.Round(time.Millisecond), thousands(int64(float64(copied)/max(took.Seconds(), 0.001))))
	if plan.Claims > 0 {
		fmt.Fprintf(c.stdout, ", with %s redelivery claims", thousands(int64(plan.Claims)))
	}
	if plan.Present > 0 {
		fmt.Fprintf(c.stdout, "; %s records were there from an earlier run", thousands(int64(plan.Present)))
	}
	fmt.Fprintln(c.stdout, ".")
	o.nextSteps(c.stdout)
	return nil
}

// openSource opens the state of the node in data dir dir, read-only.
func openSource(dir string) (*state.PebbleReader, error) {
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("--from %s: %w", dir, err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("--from %s is not a directory: give the single node's data dir (its --data)", dir)
	}
	stateDir := filepath.Join(dir, "state")
	if _, err := os.Stat(stateDir); errors.Is(err, fs.ErrNotExist) {
		if m, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*")); len(m) > 0 {
			return nil, fmt.Errorf("--from %s is the state dir itself: give the data dir that holds it (%s)", dir, filepath.Dir(filepath.Clean(dir)))
		}
		return nil, fmt.Errorf("--from %s is not a hookhouse data dir: it has no state/ (give the single node's --data, default %s)", dir, defaultData)
	}
	r, err := state.OpenPebbleReadOnly(stateDir, slog.New(slog.DiscardHandler))
	if errors.Is(err, state.ErrInUse) {
		return nil, fmt.Errorf("the data dir %s is in use: a hookhouse server still runs on it (it holds the lock on %s). "+
			"Stop it first: migrate copies the state of a stopped node, so that nothing it accepts afterwards is left behind", dir, filepath.Join(stateDir, "LOCK"))
	}
	return r, err
}

// secretKeyWarning checks that the key the next steps name (HOOKHOUSE_SECRET_KEY,
// else <from>/secret.key) opens the node's sealed signing secrets, and says
// what is wrong if not ("" when it does, or when there are none). The nodes
// need that key; without it they refuse to start.
func secretKeyWarning(src *state.PebbleReader, from string) string {
	var sealed [][]byte
	_ = src.Scan("secret/", func(_ string, v []byte) error {
		var st struct {
			Sealed []byte `json:"sealed"`
		}
		if json.Unmarshal(v, &st) == nil && len(st.Sealed) > 0 {
			sealed = append(sealed, st.Sealed)
		}
		return nil
	})
	if len(sealed) == 0 {
		return ""
	}
	where := "HOOKHOUSE_SECRET_KEY"
	text := strings.TrimSpace(os.Getenv("HOOKHOUSE_SECRET_KEY"))
	if text == "" {
		where = filepath.Join(from, secretbox.KeyFile)
		b, err := os.ReadFile(where)
		if err != nil {
			return fmt.Sprintf("the node's %d signing secrets are sealed with a key that is neither in %s nor in HOOKHOUSE_SECRET_KEY; "+
				"the cluster nodes need that key to verify deliveries (they refuse to start without it)", len(sealed), where)
		}
		text = string(b)
	}
	key, err := secretbox.ParseKey(text)
	if err != nil {
		return fmt.Sprintf("%s: %v; the cluster nodes need the key the node's signing secrets are sealed with", where, err)
	}
	box, err := secretbox.New(key)
	if err != nil {
		return fmt.Sprintf("%s: %v", where, err)
	}
	for _, v := range sealed {
		if _, err := box.Open(v); err != nil {
			return fmt.Sprintf("the key in %s does not open the node's signing secrets: the cluster nodes need the key they were sealed with", where)
		}
	}
	return ""
}

// integrationNames are the node's integrations as the plan names them:
// "1 (orders_a)", "2 (old, deleted)".
func integrationNames(src *state.PebbleReader) map[int64]string {
	out := map[int64]string{}
	_ = src.Scan("integration/", func(_ string, v []byte) error {
		var in struct {
			ID        int64      `json:"id"`
			Schema    string     `json:"schema"`
			DeletedAt *time.Time `json:"deleted_at"`
		}
		if json.Unmarshal(v, &in) == nil {
			name := in.Schema
			if in.DeletedAt != nil {
				name += ", deleted"
			}
			out[in.ID] = fmt.Sprintf("%d (%s)", in.ID, name)
		}
		return nil
	})
	return out
}

func (o *migrateOpts) printPlan(w io.Writer, p *state.MigrationPlan, names map[int64]string) {
	verb := "Migrating"
	if p.Resume {
		verb = "Resuming the migration of"
	}
	fmt.Fprintf(w, "%s %s (installation %s) into the NATS stream %s at %s:\n", verb, o.from, p.Installation, o.stream, o.shownNATS())
	fmt.Fprintf(w, "  %d control keys: integrations, webhook URL hashes, id counters, admin key hash, signing secrets (sealed), sessions, history\n", p.ControlKeys)
	for _, l := range p.Logs {
		name := names[l.Integration]
		if name == "" {
			name = fmt.Sprint(l.Integration)
		}
		line := fmt.Sprintf("  integration %s: ", name)
		if l.Records() == 0 {
			line += fmt.Sprintf("no record left in the log (head at position %s)", thousands(int64(l.Head)))
		} else {
			line += fmt.Sprintf("%s records, positions %s–%s", thousands(int64(l.Records())), thousands(int64(l.First)), thousands(int64(l.Head)))
		}
		if have := min(l.InCluster, l.Head) - min(l.InCluster, l.First-1); have > 0 {
			line += fmt.Sprintf(" (%s already in the cluster)", thousands(int64(have)))
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "  %s records to copy, and %s redelivery claims that still count\n", thousands(int64(p.ToCopy)), thousands(int64(p.Claims)))
}

// confirmMigrate asks on a terminal; elsewhere it refuses without --yes.
func (c *cli) confirmMigrate(o *migrateOpts, p *state.MigrationPlan) error {
	what := fmt.Sprintf("copying %s records and %d control keys into the stream %s", thousands(int64(p.ToCopy)), p.ControlKeys, o.stream)
	f, ok := c.stdin.(*os.File)
	if !ok || !isTerminal(f) || !isTerminal(c.stderr) {
		return fmt.Errorf("not migrating without --yes: %s", what)
	}
	fmt.Fprintf(c.stderr, "%s. Is the single node stopped for good? [y/N] ", capitalize(what))
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
		return errors.New("not migrated")
	}
	return nil
}

func (o *migrateOpts) nextSteps(w io.Writer) {
	from := o.from
	secret := filepath.Join(from, "secret.key")
	admin := "The admin key is unchanged."
	if k := filepath.Join(from, "admin.key"); fileExists(k) {
		admin = fmt.Sprintf("The admin key is unchanged: copy %s too, for the CLI on the nodes.", k)
	}
	fmt.Fprintf(w, "\nNext steps:\n")
	if fileExists(secret) {
		fmt.Fprintf(w, "  1. Copy %s into every node's data dir (mode 0600), or give the nodes its contents as\n"+
			"     HOOKHOUSE_SECRET_KEY: the signing secrets are sealed with it. %s\n", secret, admin)
	} else {
		fmt.Fprintf(w, "  1. Start the nodes with the same HOOKHOUSE_SECRET_KEY as the single node: the signing secrets are\n"+
			"     sealed with it. %s\n", admin)
	}
	fmt.Fprintf(w, "  2. Start each node on the cluster with the same PostgreSQL warehouse as the single node:\n"+
		"     hookhouse serve --nats %s --nats-stream %s --warehouse postgres://… --data <a local dir>\n", o.shownNATS(), o.stream)
	fmt.Fprintf(w, "  3. Point the load balancer at the nodes. Webhook URLs already pasted into Vero and other providers keep\n"+
		"     working: their hashes moved. Loading resumes at the warehouse's positions: nothing is loaded twice.\n")
	fmt.Fprintf(w, "  Do not start the single node on %s again: what it accepted would not reach the cluster.\n", from)
}

// migrateJSON is the --json answer.
type migrateJSON struct {
	From         string           `json:"from"`
	Stream       string           `json:"stream"`
	Installation string           `json:"installation"`
	State        string           `json:"state"`
	Resumed      bool             `json:"resumed"`
	ControlKeys  int              `json:"control_keys"`
	Copied       uint64           `json:"records_copied"`
	Present      uint64           `json:"records_already_present"`
	Claims       uint64           `json:"claims"`
	Integrations []migrateLogJSON `json:"integrations"`
}

type migrateLogJSON struct {
	ID        int64  `json:"id"`
	First     uint64 `json:"first_position"`
	Head      uint64 `json:"head_position"`
	InCluster uint64 `json:"cluster_position_before"`
	Copied    uint64 `json:"records_copied"`
}

func planJSON(o *migrateOpts, p *state.MigrationPlan) migrateJSON {
	out := migrateJSON{From: o.from, Stream: o.stream, Installation: p.Installation, State: "copying",
		Resumed: p.Resume, ControlKeys: p.ControlKeys, Present: p.Present, Claims: p.Claims, Integrations: []migrateLogJSON{}}
	if p.Done != nil {
		out.State = "done"
	}
	for _, l := range p.Logs {
		out.Copied += l.Copied
		out.Integrations = append(out.Integrations, migrateLogJSON{ID: l.Integration, First: l.First, Head: l.Head, InCluster: l.InCluster, Copied: l.Copied})
	}
	return out
}

// shownNATS is --nats with any password or token in it masked, for output.
func (o *migrateOpts) shownNATS() string {
	var shown []string
	for _, u := range strings.Split(o.nats, ",") {
		if u = strings.TrimSpace(u); u != "" {
			shown = append(shown, config.RedactNATSURL(u))
		}
	}
	return strings.Join(shown, ",")
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
