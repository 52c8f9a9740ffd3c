package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/hookhouse/hookhouse/client"
)

func integrationsAdd(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	var in client.NewIntegration
	fs.StringVar(&in.Name, "name", "", `display name, e.g. "Stitch Vero"; the schema is derived from it`)
	fs.StringVar(&in.Type, "type", "", "vero (append-only) or webhooks (generic)")
	fs.StringVar(&in.Schema, "schema", "", "warehouse `schema` instead of the one derived from the name; immutable")
	fs.StringVar(&in.PrimaryKey, "primary-key", "", "webhooks type only: top-level `field` to upsert rows by")
	vf := defineVerifyFlags(fs)
	if _, err := c.parseArgs(fs, args); err != nil {
		return err
	}
	if in.Name == "" {
		return c.usagef(fs, `--name is required, e.g. --name "Stitch Vero"`)
	}
	if in.Type == "" {
		return c.usagef(fs, "--type is required: vero or webhooks")
	}
	v, window, err := vf.config(c, fs)
	if err != nil {
		return err
	}
	in.Verify = v

	cl, err := c.client()
	if err != nil {
		return err
	}
	created, err := c.createIntegration(ctx, cl, in, window)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(created)
	}
	fmt.Fprintf(c.stdout, "Created integration %d.\n\n", created.ID)
	tw := c.table()
	printIntegration(tw, created)
	if err := tw.Flush(); err != nil {
		return err
	}
	if created.Secret != "" {
		// The one place, with 'secrets add', where a secret is printed.
		shown := client.Secret{ID: 1, CreatedAt: created.CreatedAt}
		if len(created.Secrets) > 0 {
			shown = created.Secrets[0]
		}
		fmt.Fprintf(c.stdout, "\nNew signing secret %s of integration %d:\n\n  %s\n\n", describeSecret(shown), created.ID, created.Secret)
		fmt.Fprintf(c.stdout, "It is shown only this once: copy it now into the sender's webhook settings. If it is lost, "+
			"add another (hookhouse integrations secrets add %d) and remove this one.\n", created.ID)
	}
	if created.Verify != nil && len(created.Secrets) == 0 {
		fmt.Fprintf(c.stdout, "\nIt has no signing secret yet, so every delivery is refused (401) until you add the one %s shows "+
			"once its endpoint has the URL: hookhouse integrations secrets add %d --secret-file FILE\n", created.Verify.Scheme, created.ID)
	}
	fmt.Fprintf(c.stdout, "\nnext: hookhouse urls generate %d\n", created.ID)
	return nil
}

func integrationsList(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	if _, err := c.parseArgs(fs, args); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	list, err := cl.Integrations(ctx)
	if err != nil {
		return err
	}
	if c.json {
		if list == nil {
			list = []client.Integration{} // "[]", not "null", for scripts
		}
		return c.printJSON(list)
	}
	if len(list) == 0 {
		fmt.Fprintln(c.stdout, `No integrations yet. Create one: hookhouse integrations add --name "Stitch Vero" --type vero`)
		return nil
	}
	tw := c.table()
	fmt.Fprintln(tw, "ID\tNAME\tTYPE\tSCHEMA\tCREATED")
	for _, in := range list {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", in.ID, cell(in.Name), cell(in.Type), cell(in.Schema), formatTime(in.CreatedAt))
	}
	return tw.Flush()
}

func integrationsShow(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	id, cl, err := c.integrationArg(fs, args)
	if err != nil {
		return err
	}
	in, err := cl.Integration(ctx, id)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(in)
	}
	tw := c.table()
	printIntegration(tw, in)
	if s := in.Stats; s != nil {
		rejected := strconv.FormatInt(s.RecordsRejected, 10)
		if s.RecordsRejected > 0 {
			rejected += fmt.Sprintf(" (see %s._sdc_rejected)", in.Schema)
		}
		fmt.Fprintf(tw, "Records received\t%d\n", s.RecordsReceived)
		fmt.Fprintf(tw, "Records loaded\t%d\n", s.RecordsLoaded)
		fmt.Fprintf(tw, "Records rejected\t%s\n", rejected)
		fmt.Fprintf(tw, "Last received\t%s\n", formatTimePtr(s.LastReceivedAt))
		fmt.Fprintf(tw, "Last loaded\t%s\n", formatTimePtr(s.LastLoadedAt))
		fmt.Fprintf(tw, "Backlog\t%d\n", s.Backlog)
		fmt.Fprintf(tw, "Lag\t%s\n", formatLag(s.LagSeconds))
		printSignatureStats(tw, s)
		printResetStats(tw, s)
	} else {
		fmt.Fprintf(tw, "Stats\t-\n")
	}
	return tw.Flush()
}

func integrationsDelete(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	var yes bool
	fs.BoolVar(&yes, "yes", false, "really delete: its webhook URLs stop working at once")
	fs.BoolVar(&yes, "y", false, "short for --yes")
	id, cl, err := c.integrationArg(fs, args)
	if err != nil {
		return err
	}
	if !yes {
		// Name what would go, so the user confirms the right one.
		in, err := cl.Integration(ctx, id)
		if err != nil {
			return err
		}
		return fmt.Errorf("not deleting integration %d %q without --yes: its webhook URLs would stop working at once (its data in schema %s stays)", in.ID, in.Name, in.Schema)
	}
	if err := cl.DeleteIntegration(ctx, id); err != nil {
		return err
	}
	if c.json {
		return c.printJSON(struct {
			ID      int64 `json:"id"`
			Deleted bool  `json:"deleted"`
		}{id, true})
	}
	fmt.Fprintf(c.stdout, "Deleted integration %d: its webhook URLs are revoked; its warehouse data stays.\n", id)
	return nil
}

// printIntegration writes the fields of an integration as label-value rows.
func printIntegration(w io.Writer, in *client.Integration) {
	fmt.Fprintf(w, "ID\t%d\n", in.ID)
	fmt.Fprintf(w, "Name\t%s\n", cell(in.Name))
	fmt.Fprintf(w, "Type\t%s\n", cell(in.Type))
	fmt.Fprintf(w, "Schema\t%s\n", cell(in.Schema))
	if in.PrimaryKey != "" {
		fmt.Fprintf(w, "Primary key\t%s\n", cell(in.PrimaryKey))
	}
	fmt.Fprintf(w, "Created\t%s\n", formatTime(in.CreatedAt))
	printVerify(w, in)
}

// formatLag prints a lag in seconds as a short duration: 250ms, 4.2s, 3m10s.
func formatLag(seconds float64) string {
	d := time.Duration(seconds * float64(time.Second))
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// integrationArg parses the one positional argument, an integration id, and
// makes the API client: the start of every command about one integration.
func (c *cli) integrationArg(fs *flag.FlagSet, args []string) (int64, *client.Client, error) {
	pos, err := c.parseArgs(fs, args, "integration id")
	if err != nil {
		return 0, nil, err
	}
	id, err := c.parseID(fs, "integration id", pos[0])
	if err != nil {
		return 0, nil, err
	}
	cl, err := c.client()
	if err != nil {
		return 0, nil, err
	}
	return id, cl, nil
}
