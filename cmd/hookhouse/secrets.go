package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"

	"github.com/hookhouse/hookhouse/client"
	"github.com/hookhouse/hookhouse/internal/verify"
)

// 'integrations secrets list|add|remove': rotating the signing secrets of an
// integration that verifies signatures. Secrets are named by their hint (last
// 4 characters); the only secret ever printed is a generated one, once.

const secretsAddDetails = `Without --secret or --secret-file, hookhouse generates the secret (standard-webhooks, github,
hmac) and prints it once. A secret given as --secret SECRET shows in process listings and shell
history: prefer --secret-file FILE or --secret - (stdin).

To rotate: add the new secret, switch the sender to it (both verify meanwhile), then remove the
old one with 'hookhouse integrations secrets remove <integration id> <secret id>'.
`

func secretsList(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	id, cl, err := c.integrationArg(fs, args)
	if err != nil {
		return err
	}
	list, err := cl.Secrets(ctx, id)
	if err != nil {
		return err
	}
	if c.json {
		if list == nil {
			list = []client.Secret{}
		}
		return c.printJSON(list)
	}
	if len(list) == 0 {
		fmt.Fprintf(c.stdout, "Integration %d has no signing secrets: it does not verify signatures (see 'hookhouse integrations add --verify').\n", id)
		return nil
	}
	tw := c.table()
	fmt.Fprintln(tw, "HINT\tSECRET_ID\tCREATED")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", maskHint(s.Hint), s.ID, formatTime(s.CreatedAt))
	}
	return tw.Flush()
}

func secretsAdd(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	var text, file string
	fs.StringVar(&file, "secret-file", "", "read the new signing secret from `FILE` (\"-\": stdin); it stays out of process listings")
	fs.StringVar(&text, "secret", "", "the new signing `SECRET`; \"-\" reads it from stdin. Given here it shows in process listings and shell history: prefer --secret-file or -")
	id, cl, err := c.integrationArg(fs, args)
	if err != nil {
		return err
	}
	secret, err := c.readSecret(fs, text, file)
	if err != nil {
		return err
	}
	if secret == "" {
		// Only some schemes let hookhouse choose the secret; say so in CLI terms.
		in, err := cl.Integration(ctx, id)
		if err != nil {
			return err
		}
		if in.Verify != nil && !generates[in.Verify.Scheme] {
			return c.usagef(fs, "integration %d verifies %s signatures, whose secret the provider issues: pass it with --secret-file FILE or --secret - (stdin)",
				id, in.Verify.Scheme)
		}
	}
	s, err := cl.AddSecret(ctx, id, secret)
	var apiErr *client.Error
	if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusConflict {
		// The server words it for the API; say what to run instead.
		return fmt.Errorf("%d %s: integration %d already has %d signing secrets, the most it holds: remove the old one first "+
			"(hookhouse integrations secrets remove %d <secret id>; 'hookhouse integrations secrets list %d' shows them)",
			apiErr.StatusCode, apiErr.Code, id, verify.MaxSecrets, id, id)
	}
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(s)
	}
	// Name the other secret, the one to remove once the sender has switched.
	old := "<old secret id>"
	if list, lerr := cl.Secrets(ctx, id); lerr == nil {
		for _, o := range list {
			if o.ID != s.ID {
				old = fmt.Sprint(o.ID)
			}
		}
	}
	if s.Secret != "" {
		fmt.Fprintf(c.stdout, "New signing secret %s of integration %d:\n\n  %s\n\n", describeSecret(*s), id, s.Secret)
		fmt.Fprintf(c.stdout, "It is shown only this once: copy it now into the sender's webhook settings. If it is lost, remove it "+
			"(hookhouse integrations secrets remove %d %d) and add another.\n", id, s.ID)
	} else {
		fmt.Fprintf(c.stdout, "Added signing secret %s to integration %d.\n", describeSecret(*s), id)
	}
	fmt.Fprintf(c.stdout, "Deliveries signed with either secret verify. Once the sender signs with the new one, remove the old one: "+
		"hookhouse integrations secrets remove %d %s\n", id, old)
	return nil
}

func secretsRemove(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	pos, err := c.parseArgs(fs, args, "integration id", "secret id")
	if err != nil {
		return err
	}
	id, err := c.parseID(fs, "integration id", pos[0])
	if err != nil {
		return err
	}
	secretID, err := c.parseID(fs, "secret id", pos[1])
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	// Name the secret by its hint; after the removal the listing no longer has it.
	s := client.Secret{ID: secretID}
	if list, lerr := cl.Secrets(ctx, id); lerr == nil {
		for _, o := range list {
			if o.ID == secretID {
				s = o
			}
		}
	}
	err = cl.RemoveSecret(ctx, id, secretID)
	var apiErr *client.Error
	if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusConflict {
		return fmt.Errorf("%w (to add one: hookhouse integrations secrets add %d --secret-file FILE)", err, id)
	}
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(struct {
			ID            int64  `json:"id"`
			IntegrationID int64  `json:"integration_id"`
			Hint          string `json:"hint,omitempty"`
			Removed       bool   `json:"removed"`
		}{secretID, id, s.Hint, true})
	}
	fmt.Fprintf(c.stdout, "Removed signing secret %s of integration %d: deliveries signed only with it now fail verification.\n", describeSecret(s), id)
	return nil
}
