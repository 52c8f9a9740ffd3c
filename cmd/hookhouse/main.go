// Command hookhouse runs the hookhouse server and administers a running one: its
// integrations, webhook URLs, warehouse queries and status (SPEC §7).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/config"
)

const (
	defaultServer = "http://localhost:8080"
	defaultData   = "./hookhouse-data"
)

// command is one thing the CLI does. Every command is listed in commands, the one
// place that maps command lines to code and feeds the usage text.
type command struct {
	name    string // "integrations add"
	args    string // synopsis after the name
	summary string
	run     func(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error
	local   bool   // needs no server, so takes no --server, --key or --data
	details string // more help, after the flags
	// groups titles sets of the command's own flags in its help; flags in no
	// group are listed first, under "Flags".
	groups []config.FlagGroup
}

var commands = []command{
	{name: "serve", args: "[flags]", summary: "run the server: receiver, loader, admin API, dashboard"},
	{name: "integrations add", args: "--name NAME --type vero|webhooks [flags]", summary: "create an integration",
		run: integrationsAdd, groups: addGroups, details: addDetails},
	{name: "integrations list", summary: "list integrations", run: integrationsList},
	{name: "integrations show", args: "<id>", summary: "show an integration, its signature checks and its loading stats", run: integrationsShow},
	{name: "integrations verify", args: "<id> [--mode enforce|monitor] [--tolerance TIME] [--dedupe-window TIME]",
		summary: "change how an integration checks signatures, e.g. end a rollout with --mode enforce", run: integrationsVerify, details: verifyDetails},
	{name: "integrations pause", args: "<id>", summary: "pause loading (receiving goes on; the backlog waits)", run: integrationsPause},
	{name: "integrations resume", args: "<id>", summary: "resume loading where it stopped", run: integrationsResume},
	{name: "integrations reset", args: "<id> [--yes] [--accept-partial] [--no-wait]",
		summary: "drop an integration's tables and reload every record still in the log, showing progress", run: integrationsReset, details: resetDetails},
	{name: "integrations delete", args: "<id> --yes", summary: "delete an integration and revoke its URLs (its data stays)", run: integrationsDelete},
	{name: "integrations secrets list", args: "<integration id>", summary: "list an integration's signing secrets (hints only)", run: secretsList},
	{name: "integrations secrets add", args: "<integration id> [flags]",
		summary: "add a signing secret to rotate (2 at most); a generated one is shown only once", run: secretsAdd, details: secretsAddDetails},
	{name: "integrations secrets remove", args: "<integration id> <secret id>", summary: "remove a signing secret, ending a rotation (never the last one)", run: secretsRemove},
	{name: "urls generate", args: "<integration id>", summary: "create a webhook URL; it is shown only once", run: urlsGenerate},
	{name: "urls list", args: "<integration id>", summary: "list an integration's webhook URLs (hints only)", run: urlsList},
	{name: "urls revoke", args: "<integration id> <url id>", summary: "revoke a webhook URL at once", run: urlsRevoke},
	{name: "import", args: "<integration id> FILE|- [--received-at FIELD] [--max-errors N] [--import-name NAME]",
		summary: "import a backfill (NDJSON or a JSON array, gzip'd or not) through the admin API; a rerun skips what is imported",
		run:     importFile, details: importDetails},
	{name: "sql", args: `"<query>" [--csv]`, summary: "run a read-only SQL query on the warehouse", run: sqlQuery, details: sqlDetails},
	{name: "status", summary: "show component states and per-integration freshness", run: status},
	{name: "backup", args: "<DIR>", summary: "take a consistent backup of the running server into an empty DIR", run: backupCmd, details: backupDetails},
	{name: "restore", args: "<DIR> --data NEWDIR", summary: "restore a backup into a new data dir (no server needed)", run: restoreCmd, local: true, details: restoreDetails},
	{name: "migrate", args: "--from DIR --nats URLS [flags]", summary: "copy a stopped single node's state into a NATS JetStream cluster, for 'serve --nats'",
		run: migrateCmd, local: true, details: migrateDetails},
	{name: "version", summary: "print the version", run: printVersion, local: true},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit status: 0 on success, 1 on
// failure, 2 on a mistake in the command line. stdin is read only when asked to
// (--secret -).
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 {
			// "hookhouse help urls generate" is "hookhouse urls generate -h".
			return run(ctx, append(append([]string{}, args[1:]...), "-h"), stdin, stdout, stderr)
		}
		printUsage(stdout)
		return 0
	case "--version", "-version":
		args = []string{"version"}
	case "serve":
		if err := runServe(ctx, args[1:], stdout, stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "hookhouse: %s\n", oneLine(err.Error()))
			var ue *config.UsageError
			if errors.As(err, &ue) {
				return 2 // a mistake in the flags or their env twins
			}
			return 1
		}
		return 0
	}

	cmd, rest, err := lookup(args, stdout, stderr)
	if err != nil {
		return exitStatus(err, stderr)
	}
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr}
	fs := c.flagSet(cmd)
	return exitStatus(c.explain(cmd.run(ctx, c, fs, rest)), stderr)
}

// lookup finds the command named by the first words of args ("sql", "urls
// generate", "integrations secrets add").
func lookup(args []string, stdout, stderr io.Writer) (command, []string, error) {
	for _, cmd := range commands {
		words := strings.Fields(cmd.name)
		if len(args) >= len(words) && slices.Equal(args[:len(words)], words) {
			return cmd, args[len(words):], nil
		}
	}
	// Not a whole command: find the longest group it names ("integrations
	// secrets") and list that group's commands.
	var group string
	var subs []command
	for n := 1; n <= len(args); n++ {
		g := strings.Join(args[:n], " ")
		var in []command
		for _, cmd := range commands {
			if strings.HasPrefix(cmd.name, g+" ") {
				in = append(in, cmd)
			}
		}
		if len(in) == 0 {
			break
		}
		group, subs = g, in
	}
	if len(subs) == 0 {
		printUsage(stderr)
		return command{}, nil, &usageError{msg: fmt.Sprintf("unknown command %q", args[0])}
	}
	next := len(strings.Fields(group))
	if len(args) == next {
		printCommands(stderr, subs)
		return command{}, nil, &usageError{msg: group + " needs a command"}
	}
	switch args[next] {
	case "-h", "-help", "--help", "help":
		printCommands(stdout, subs)
		return command{}, nil, flag.ErrHelp
	}
	return command{}, nil, &usageError{cmd: group, msg: fmt.Sprintf("unknown command %q", args[next])}
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `hookhouse turns webhooks into warehouse tables.

Usage: hookhouse <command> [arguments] [flags]

`)
	printCommands(w, commands)
	fmt.Fprintf(w, `
Flags of the commands that talk to a server (before or after the arguments):
  --server URL   the server (default %s; env HOOKHOUSE_SERVER)
  --key KEY      the admin key (env HOOKHOUSE_ADMIN_KEY; else read from <data>/admin.key)
  --data DIR     the server's data dir, for admin.key (default %s; env HOOKHOUSE_DATA)
  --json         print JSON, for scripts

Run 'hookhouse <command> --help' for the flags of a command.
`, defaultServer, defaultData)
}

func printCommands(w io.Writer, cmds []command) {
	fmt.Fprintln(w, "Commands:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, cmd := range cmds {
		fmt.Fprintf(tw, "  %s %s\t%s\n", cmd.name, cmd.args, cmd.summary)
	}
	tw.Flush()
}

// usageError is a mistake in the command line; it exits with status 2.
type usageError struct {
	cmd string // command whose -h helps, if any
	msg string
}

func (e *usageError) Error() string {
	if e.cmd == "" {
		return e.msg
	}
	return fmt.Sprintf("%s: %s (see 'hookhouse %s -h')", e.cmd, e.msg, e.cmd)
}

// exitStatus prints err as one line and turns it into an exit status.
func exitStatus(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "hookhouse: %s\n", oneLine(err.Error()))
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// cli holds what every command but serve shares: its input and output and the
// common flags.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	server  string
	key     string
	data    string
	json    bool
	keyFrom string // where the admin key came from, for error messages
}

// envNames are the env twins of the common flags.
var envNames = map[string]string{"server": "HOOKHOUSE_SERVER", "key": "HOOKHOUSE_ADMIN_KEY", "data": "HOOKHOUSE_DATA",
	"nats": "HOOKHOUSE_NATS", "nats-creds": "HOOKHOUSE_NATS_CREDS", "nats-ca": "HOOKHOUSE_NATS_CA",
	"nats-replicas": "HOOKHOUSE_NATS_REPLICAS", "nats-stream": "HOOKHOUSE_NATS_STREAM"}

// helpGroups order a command's help: its own flags, then the common ones.
var helpGroups = []config.FlagGroup{
	{Title: "Flags", Flags: nil},
	{Title: "Reaching the server", Flags: []string{"server", "key", "data"}},
	{Title: "Output", Flags: []string{"json", "csv"}},
}

// flagSet returns the flags of cmd with the common ones already defined: --json,
// and for a command that talks to a server, --server, --key and --data.
func (c *cli) flagSet(cmd command) *flag.FlagSet {
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	// Errors are reported by exitStatus, in one line; help goes to stdout.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: hookhouse %s\n\n%s.\n\n", strings.TrimSpace(cmd.name+" "+cmd.args), capitalize(cmd.summary))
		groups := append(append(helpGroups[:1:1], cmd.groups...), helpGroups[1:]...)
		config.PrintFlags(w, fs, groups, func(name string) string { return envNames[name] })
		if cmd.details != "" {
			fmt.Fprintf(w, "\n%s", cmd.details)
		}
	}
	c.server, c.data = defaultServer, defaultData
	if !cmd.local {
		fs.StringVar(&c.server, "server", defaultServer, "the server's base `URL`")
		fs.StringVar(&c.key, "key", "", "the admin `KEY` (default: the one in <data>/admin.key)")
		fs.StringVar(&c.data, "data", defaultData, "the server's data `DIR`, to read admin.key from")
		// Env twins first, so flags override them.
		for _, name := range []string{"server", "data"} {
			if v := strings.TrimSpace(os.Getenv(envNames[name])); v != "" {
				fs.Set(name, v)
			}
		}
	}
	fs.BoolVar(&c.json, "json", false, "print JSON, for scripts")
	return fs
}

// parse parses flags that may come before, between or after the positional arguments,
// so that "hookhouse urls generate 1 --json" works; everything after "--" is positional.
func (c *cli) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(c.stdout)
			fs.Usage()
			return nil, flag.ErrHelp
		}
		if err != nil {
			return nil, &usageError{cmd: fs.Name(), msg: err.Error()}
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// parseArgs parses args and checks that exactly the named positional arguments came.
func (c *cli) parseArgs(fs *flag.FlagSet, args []string, names ...string) ([]string, error) {
	pos, err := c.parse(fs, args)
	if err != nil {
		return nil, err
	}
	switch {
	case len(pos) < len(names):
		return nil, c.usagef(fs, "missing %s", names[len(pos)])
	case len(pos) > len(names):
		return nil, c.usagef(fs, "unexpected argument %q", pos[len(names)])
	}
	return pos, nil
}

func (c *cli) usagef(fs *flag.FlagSet, format string, args ...any) error {
	return &usageError{cmd: fs.Name(), msg: fmt.Sprintf(format, args...)}
}

// parseID reads a positive id such as an integration id.
func (c *cli) parseID(fs *flag.FlagSet, what, s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, c.usagef(fs, "%s must be a positive integer, got %q", what, s)
	}
	return id, nil
}

// client returns an API client for --server with the admin key, which it finds in
// --key, then HOOKHOUSE_ADMIN_KEY, then <data>/admin.key.
func (c *cli) client() (*client.Client, error) {
	key, err := c.adminKey()
	if err != nil {
		return nil, err
	}
	return client.New(c.server, key), nil
}

// errNoKey is returned by adminKey when none of the three places holds a key.
var errNoKey = errors.New("no admin key")

func (c *cli) adminKey() (string, error) {
	if k := strings.TrimSpace(c.key); k != "" {
		c.keyFrom = "--key"
		return k, nil
	}
	if k := strings.TrimSpace(os.Getenv("HOOKHOUSE_ADMIN_KEY")); k != "" {
		c.keyFrom = "HOOKHOUSE_ADMIN_KEY"
		return k, nil
	}
	path := filepath.Join(c.data, "admin.key")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w: pass --key, set HOOKHOUSE_ADMIN_KEY, or point --data (env HOOKHOUSE_DATA) at the server's data dir holding admin.key (%s does not exist)", errNoKey, path)
	}
	if err != nil {
		return "", fmt.Errorf("cannot read the admin key: %w (pass --key or set HOOKHOUSE_ADMIN_KEY instead)", err)
	}
	k := strings.TrimSpace(string(b))
	if k == "" {
		return "", fmt.Errorf("%w: %s is empty; pass --key or set HOOKHOUSE_ADMIN_KEY", errNoKey, path)
	}
	c.keyFrom = path
	return k, nil
}

// explain adds the next step to errors a user can act on.
func (c *cli) explain(err error) error {
	if err == nil {
		return nil
	}
	var apiErr *client.Error
	if errors.As(err, &apiErr) {
		if apiErr.StatusCode == 401 && c.keyFrom != "" {
			return fmt.Errorf("%w (the admin key came from %s; is it this server's key?)", err, c.keyFrom)
		}
		return err
	}
	if errors.Is(err, context.Canceled) {
		return errors.New("interrupted")
	}
	var urlErr *url.Error
	if errors.As(err, &urlErr) && urlErr.Timeout() {
		return fmt.Errorf("no answer from the server at %s in time: %v", c.server, urlErr.Err)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return fmt.Errorf("cannot reach the server at %s: %v (is 'hookhouse serve' running? set --server or HOOKHOUSE_SERVER to reach another)", c.server, opErr)
	}
	return err
}

// printJSON writes v indented, for scripts.
func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table returns a writer that aligns tab-separated columns; Flush it.
func (c *cli) table() *tabwriter.Writer {
	return tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
}

// formatTime prints t in RFC 3339 UTC, or "-" for no time.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func formatTimePtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return formatTime(*t)
}

// cell makes a value safe for a tabwriter column (one line, no tabs); "-" stands for
// nothing.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return flatten(s)
}

var flattener = strings.NewReplacer("\t", " ", "\n", `\n`, "\r", `\r`)

// flatten keeps a value on one line and out of tabwriter's column separators.
func flatten(s string) string { return flattener.Replace(s) }

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
