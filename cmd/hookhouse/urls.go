package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/hookhouse/hookhouse/client"
)

func urlsGenerate(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	id, cl, err := c.integrationArg(fs, args)
	if err != nil {
		return err
	}
	u, err := cl.GenerateURL(ctx, id)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(u)
	}

	fmt.Fprintf(c.stdout, "Webhook URL %d of integration %d:\n\n  %s\n\n", u.ID, id, u.URL)
	fmt.Fprintf(c.stdout, "It is shown only this once: copy it now. If it is lost, generate another and revoke this one (hookhouse urls revoke %d %d).\n", id, u.ID)
	// The setup steps depend on the type; the URL is already made, so a failure to
	// look the type up only costs the tailored hint.
	typ := ""
	if in, err := cl.Integration(ctx, id); err == nil {
		typ = in.Type
	}
	switch typ {
	case client.TypeWebhooks:
		fmt.Fprintln(c.stdout, "Send events to it with POST: a JSON object, or an array of objects, per request.")
	default:
		fmt.Fprintln(c.stdout, "In Vero: Settings → Integrations → Webhooks, paste the URL, tick the events to send, and save.")
	}
	return nil
}

func urlsList(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	id, cl, err := c.integrationArg(fs, args)
	if err != nil {
		return err
	}
	list, err := cl.URLs(ctx, id)
	if err != nil {
		return err
	}
	if c.json {
		if list == nil {
			list = []client.WebhookURL{}
		}
		return c.printJSON(list)
	}
	if len(list) == 0 {
		fmt.Fprintf(c.stdout, "No webhook URLs for integration %d yet. Generate one: hookhouse urls generate %d\n", id, id)
		return nil
	}
	tw := c.table()
	fmt.Fprintln(tw, "ID\tHINT\tCREATED\tLAST_USED\tREVOKED")
	for _, u := range list {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", u.ID, maskHint(u.Hint), formatTime(u.CreatedAt), formatTimePtr(u.LastUsedAt), formatTimePtr(u.RevokedAt))
	}
	return tw.Flush()
}

func urlsRevoke(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	pos, err := c.parseArgs(fs, args, "integration id", "url id")
	if err != nil {
		return err
	}
	id, err := c.parseID(fs, "integration id", pos[0])
	if err != nil {
		return err
	}
	urlID, err := c.parseID(fs, "url id", pos[1])
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	if err := cl.RevokeURL(ctx, id, urlID); err != nil {
		return err
	}
	if c.json {
		return c.printJSON(struct {
			ID            int64 `json:"id"`
			IntegrationID int64 `json:"integration_id"`
			Revoked       bool  `json:"revoked"`
		}{urlID, id, true})
	}
	fmt.Fprintf(c.stdout, "Revoked webhook URL %d of integration %d: requests to it now get 401.\n", urlID, id)
	return nil
}

// maskHint shows the last characters of a token the way request logs do: ****abcd.
func maskHint(hint string) string {
	if hint == "" {
		return "-"
	}
	if strings.HasPrefix(hint, "*") {
		return hint // already masked by the server
	}
	return "****" + hint
}
