package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/config"
)

// Signature verification on the command line: the flags of 'integrations add'
// that fill its "verify" object, reading a secret from a file or stdin, and how
// 'integrations add' and 'show' print the result. A secret is printed only in
// the one-time reveal of a generated one.

// addGroups order the help of 'integrations add'.
var addGroups = []config.FlagGroup{
	{Title: "Signature verification (type webhooks; per provider: docs/sources.md)", Flags: []string{
		"verify", "secret-file", "secret", "mode", "tolerance", "dedupe-window", "verify-token"}},
	{Title: "Generic HMAC (--verify hmac)", Flags: []string{
		"hmac-header", "hmac-algorithm", "hmac-encoding", "hmac-prefix", "hmac-signed", "hmac-timestamp-header", "hmac-id-header"}},
}

const addDetails = `Schemes: standard-webhooks (Svix, OpenAI, Clerk, Resend, …), stripe, github, shopify, slack,
zoom, meta and hmac. Without --secret or --secret-file, hookhouse generates the secret
(standard-webhooks, github, hmac) and prints it once; Stripe, Shopify, Slack, Zoom and Meta
issue their own: paste theirs, or, when the provider shows it only once its endpoint has the
URL, create without it and add it with 'integrations secrets add' (deliveries are refused
until then). A secret given as --secret SECRET shows in process listings and
shell history: prefer --secret-file FILE or --secret - (stdin).

Examples:
  hookhouse integrations add --name Svix --type webhooks --verify standard-webhooks
  hookhouse integrations add --name Stripe --type webhooks --verify stripe --secret-file stripe.txt
  hookhouse integrations add --name Meta --type webhooks --verify meta --secret - --verify-token my-token
  hookhouse integrations add --name Acme --type webhooks --verify hmac --hmac-header X-Acme-Signature \
    --hmac-prefix sha256= --hmac-id-header X-Acme-Delivery
`

// generates names the schemes whose secret hookhouse may choose (as
// verify.GenerateSecret does); the other providers issue it.
var generates = map[string]bool{"standard-webhooks": true, "github": true, "hmac": true}

// timestamped names the schemes that sign a timestamp, where a tolerance applies.
var timestamped = map[string]bool{"standard-webhooks": true, "stripe": true, "slack": true, "zoom": true}

// verifyFlags are the flags of 'integrations add' that make up "verify".
type verifyFlags struct {
	v          client.Verify
	secretFile string
	window     string
}

func defineVerifyFlags(fs *flag.FlagSet) *verifyFlags {
	f := &verifyFlags{}
	fs.StringVar(&f.v.Scheme, "verify", "", "check each delivery's signature by `SCHEME`: standard-webhooks, stripe, github, shopify, slack, zoom, meta or hmac")
	fs.StringVar(&f.secretFile, "secret-file", "", "read the signing secret from `FILE` (\"-\": stdin); it stays out of process listings")
	fs.StringVar(&f.v.Secret, "secret", "", "the signing `SECRET`; \"-\" reads it from stdin. Given here it shows in process listings and shell history: prefer --secret-file or -. Without either, one is generated (standard-webhooks, github, hmac) and printed once")
	fs.StringVar(&f.v.Mode, "mode", "", "what a bad signature gets, as `MODE`: enforce (401; the default) or monitor (accepted and only counted: for rollouts)")
	fs.StringVar(&f.v.Tolerance, "tolerance", "", "the `TIME` a signed timestamp may be off this server's clock, for the schemes that sign one (default 5m)")
	fs.StringVar(&f.window, "dedupe-window", "", "the `TIME` a delivery id counts as seen: a redelivery within it answers 200 and adds no row (default 168h, at most 2160h)")
	fs.StringVar(&f.v.VerifyToken, "verify-token", "", "meta only: the `TOKEN` you type into Meta's \"Verify token\" field, checked in Meta's GET handshake (not the app secret)")
	fs.StringVar(&f.v.Header, "hmac-header", "", "the `HEADER` carrying the signature (required)")
	fs.StringVar(&f.v.Algorithm, "hmac-algorithm", "", "the hash `NAME`: sha256 (the default), sha1 or sha512")
	fs.StringVar(&f.v.Encoding, "hmac-encoding", "", "the signature's `ENCODING`: hex (the default) or base64")
	fs.StringVar(&f.v.Prefix, "hmac-prefix", "", "`TEXT` before the signature in the header, e.g. sha256=")
	fs.StringVar(&f.v.Signed, "hmac-signed", "", "what is signed, a `TEMPLATE` over {body}, {timestamp} and {id} (default {body})")
	fs.StringVar(&f.v.TimestampHeader, "hmac-timestamp-header", "", "the `HEADER` carrying the timestamp; needed when the template has {timestamp}")
	fs.StringVar(&f.v.IDHeader, "hmac-id-header", "", "the `HEADER` carrying the delivery id, for {id} and for dropping redeliveries")
	return f
}

// config returns the "verify" object the flags ask for (nil: no --verify) and
// the dedupe window ("" for the default). What the command line alone can tell
// is checked here; the server checks the rest and says what is wrong.
func (f *verifyFlags) config(c *cli, fs *flag.FlagSet) (*client.Verify, string, error) {
	if f.v.Scheme == "" {
		var stray []string
		fs.Visit(func(fl *flag.Flag) {
			if fl.Name == "secret" || fl.Name == "secret-file" || fl.Name == "mode" || fl.Name == "tolerance" ||
				fl.Name == "dedupe-window" || fl.Name == "verify-token" || strings.HasPrefix(fl.Name, "hmac-") {
				stray = append(stray, "--"+fl.Name)
			}
		})
		if len(stray) > 0 {
			return nil, "", c.usagef(fs, "%s needs --verify SCHEME", strings.Join(stray, ", "))
		}
		return nil, "", nil
	}
	for _, d := range []struct{ name, v string }{{"tolerance", f.v.Tolerance}, {"dedupe-window", f.window}} {
		if d.v == "" {
			continue
		}
		if _, err := time.ParseDuration(d.v); err != nil {
			return nil, "", c.usagef(fs, "--%s %q is not a duration: write it like 5m, 90s or 168h", d.name, d.v)
		}
	}
	secret, err := c.readSecret(fs, f.v.Secret, f.secretFile)
	if err != nil {
		return nil, "", err
	}
	if f.v.Scheme == "meta" && f.v.VerifyToken == "" {
		return nil, "", c.usagef(fs, `--verify meta needs --verify-token TOKEN: make up a string and type it into Meta's "Verify token" field too`)
	}
	v := f.v
	v.Secret = secret
	return &v, f.window, nil
}

// maxSecretSize bounds what is read as a secret: providers issue tens of bytes.
const maxSecretSize = 64 << 10

// readSecret returns the secret given by --secret TEXT, --secret - (stdin) or
// --secret-file FILE ("-": stdin), with surrounding white space trimmed (a
// pasted secret often ends in a newline); "" when none was given. Its errors
// never contain the secret.
func (c *cli) readSecret(fs *flag.FlagSet, text, file string) (string, error) {
	switch {
	case text != "" && file != "":
		return "", c.usagef(fs, "give the secret once: --secret or --secret-file, not both")
	case text == "-" || file == "-":
		return c.readSecretFrom(fs, "stdin", c.stdinSecret())
	case file != "":
		f, err := os.Open(file)
		if err != nil {
			return "", fmt.Errorf("cannot read the secret: %w", err)
		}
		defer f.Close()
		return c.readSecretFrom(fs, file, f)
	}
	return strings.TrimSpace(text), nil
}

// stdinSecret is stdin as a source of one secret: at a terminal, one line
// after a prompt on stderr; from a pipe, all of it.
func (c *cli) stdinSecret() io.Reader {
	if c.stdin == nil {
		return strings.NewReader("")
	}
	if f, ok := c.stdin.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprint(c.stderr, "Paste the signing secret, then press Enter: ")
			line, _ := bufio.NewReaderSize(io.LimitReader(f, maxSecretSize), 4096).ReadString('\n')
			return strings.NewReader(line)
		}
	}
	return c.stdin
}

func (c *cli) readSecretFrom(fs *flag.FlagSet, name string, r io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxSecretSize+1))
	if err != nil {
		return "", fmt.Errorf("cannot read the secret from %s: %w", name, err)
	}
	if len(b) > maxSecretSize {
		return "", c.usagef(fs, "the secret in %s is longer than %d KiB: is it the right file?", name, maxSecretSize>>10)
	}
	s := string(bytes.TrimSpace(b))
	switch {
	case s == "":
		return "", c.usagef(fs, "the secret in %s is empty", name)
	case strings.ContainsAny(s, "\r\n"):
		return "", c.usagef(fs, "%s holds more than one line; put only the signing secret in it", name)
	}
	return s, nil
}

// printVerify writes how an integration checks signatures, as label-value
// rows: the scheme and mode, and the secrets by hint. Nothing for one that
// does not verify.
func printVerify(w io.Writer, in *client.Integration) {
	v := in.Verify
	if v == nil {
		if in.Type == client.TypeWebhooks {
			fmt.Fprintf(w, "Verify\tnone: the secret URL alone authenticates\n")
		}
		return
	}
	fmt.Fprintf(w, "Verify\t%s\n", describeVerify(v))
	if v.Scheme == "hmac" {
		fmt.Fprintf(w, "HMAC\t%s\n", cell(describeHMAC(*v)))
	}
	if v.VerifyToken != "" {
		fmt.Fprintf(w, "Verify token\t%s\n", cell(v.VerifyToken)) // the server shows "(set)"
	}
	label := "Secrets"
	for _, s := range in.Secrets {
		fmt.Fprintf(w, "%s\t%s\n", label, describeSecret(s))
		label = ""
	}
	if len(in.Secrets) == 0 {
		fmt.Fprintf(w, "Secrets\tnone: every delivery fails verification; add one with hookhouse integrations secrets add %d\n", in.ID)
	}
}

// describeVerify sums up a verification: scheme, mode and, for the schemes
// that sign a timestamp, the tolerance.
func describeVerify(v *client.Verify) string {
	desc := cell(v.Scheme)
	if v.Mode != "" {
		desc += ", " + v.Mode
	}
	if v.Mode == "monitor" {
		desc += " (bad signatures are counted, not refused)"
	}
	if v.Tolerance != "" && (timestamped[v.Scheme] || v.TimestampHeader != "") {
		desc += ", tolerance " + shortDuration(v.Tolerance)
	}
	return desc
}

// describeHMAC sums up how a generic sender signs.
func describeHMAC(v client.Verify) string {
	parts := []string{strings.TrimSpace(v.Algorithm + " " + v.Encoding)}
	if v.Header != "" {
		h := "in " + v.Header
		if v.Prefix != "" {
			h += " after " + strconv.Quote(v.Prefix)
		}
		parts = append(parts, h)
	}
	if v.Signed != "" {
		parts = append(parts, "signs "+v.Signed)
	}
	if v.TimestampHeader != "" {
		parts = append(parts, "timestamp in "+v.TimestampHeader)
	}
	if v.IDHeader != "" {
		parts = append(parts, "delivery id in "+v.IDHeader)
	}
	return strings.Join(parts, ", ")
}

// printSignatureStats writes the stats of an integration that verifies.
func printSignatureStats(w io.Writer, s *client.Stats) {
	if s.SignatureFailures != nil {
		fmt.Fprintf(w, "Signature failures\t%d (since the server started)\n", *s.SignatureFailures)
	}
	if f := s.LastSignatureFailure; f != nil {
		fmt.Fprintf(w, "Last failure\t%s: %s\n", formatTime(f.At), cell(f.Reason))
	}
	if s.RecordsDeduplicated != nil {
		fmt.Fprintf(w, "Records deduplicated\t%d\n", *s.RecordsDeduplicated)
	}
}

// describeSecret names a signing secret by its hint: ****abcd (id 2, created …).
func describeSecret(s client.Secret) string {
	if s.Hint == "" {
		return fmt.Sprintf("with id %d", s.ID)
	}
	return fmt.Sprintf("%s (id %d, created %s)", maskHint(s.Hint), s.ID, formatTime(s.CreatedAt))
}

// shortDuration writes a Go duration without zero units: 5m, 168h, 1h30m.
func shortDuration(s string) string {
	d, err := time.ParseDuration(s)
	if err != nil {
		return s
	}
	out := d.String()
	if strings.HasSuffix(out, "m0s") {
		out = strings.TrimSuffix(out, "0s")
	}
	if strings.HasSuffix(out, "h0m") {
		out = strings.TrimSuffix(out, "0m")
	}
	return out
}

// createIntegration creates in with the dedupe window ("" for the default).
func (c *cli) createIntegration(ctx context.Context, cl *client.Client, in client.NewIntegration, window string) (*client.Integration, error) {
	in.DedupeWindow = window
	return cl.CreateIntegration(ctx, in)
}

const verifyDetails = `A rollout: create the integration with --mode monitor, so deliveries whose signature fails are
stored anyway and only counted; watch "Signature failures" in 'hookhouse integrations show <id>';
once it stays flat, enforce: deliveries whose signature fails then get 401. The scheme and the
secrets stay (rotate secrets with 'hookhouse integrations secrets'). Only an integration created
with --verify can change; the new dedupe window applies to deliveries received from now on.

Examples:
  hookhouse integrations verify 3 --mode enforce
  hookhouse integrations verify 3 --mode monitor --tolerance 10m
`

// integrationsVerify changes an integration's mode, tolerance or dedupe
// window (PATCH /api/v1/integrations/{id}) and prints the new settings.
func integrationsVerify(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	var ch client.VerifyChange
	fs.StringVar(&ch.Mode, "mode", "", "what a bad signature gets, as `MODE`: enforce (401) or monitor (accepted and only counted)")
	fs.StringVar(&ch.Tolerance, "tolerance", "", "the `TIME` a signed timestamp may be off this server's clock, for the schemes that sign one (1s to 24h; default 5m)")
	fs.StringVar(&ch.DedupeWindow, "dedupe-window", "", "the `TIME` a delivery id counts as seen (at most 2160h; default 168h)")
	id, cl, err := c.integrationArg(fs, args)
	if err != nil {
		return err
	}
	if ch == (client.VerifyChange{}) {
		return c.usagef(fs, "say what to change: --mode enforce|monitor, --tolerance TIME or --dedupe-window TIME")
	}
	if ch.Mode != "" && ch.Mode != "enforce" && ch.Mode != "monitor" {
		return c.usagef(fs, "--mode %q: use enforce or monitor", ch.Mode)
	}
	for _, d := range []struct{ name, v string }{{"tolerance", ch.Tolerance}, {"dedupe-window", ch.DedupeWindow}} {
		if d.v == "" {
			continue
		}
		if _, err := time.ParseDuration(d.v); err != nil {
			return c.usagef(fs, "--%s %q is not a duration: write it like 5m, 90s or 168h", d.name, d.v)
		}
	}
	in, err := cl.UpdateVerify(ctx, id, ch)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(in)
	}
	fmt.Fprintf(c.stdout, "Updated signature verification of integration %d.\n\n", in.ID)
	tw := c.table()
	if in.Verify != nil {
		fmt.Fprintf(tw, "Verify\t%s\n", describeVerify(in.Verify))
	}
	window := "168h (the default)"
	if in.DedupeWindow != "" {
		window = shortDuration(in.DedupeWindow)
	}
	fmt.Fprintf(tw, "Dedupe window\t%s\n", window)
	if err := tw.Flush(); err != nil {
		return err
	}
	if in.Verify != nil && ch.Mode != "" {
		if in.Verify.Mode == "monitor" {
			fmt.Fprintf(c.stdout, "\nDeliveries whose signature fails are now stored and counted. Once \"Signature failures\" in "+
				"'hookhouse integrations show %d' stays flat, enforce: hookhouse integrations verify %d --mode enforce\n", in.ID, in.ID)
		} else {
			fmt.Fprintf(c.stdout, "\nDeliveries whose signature fails now get 401 and are not stored.\n")
		}
	}
	return nil
}
