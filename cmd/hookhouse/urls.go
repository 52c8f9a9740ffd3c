package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strings"
	"time"

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

	fmt.Fprintf(c.stdout, "New webhook URL %s of integration %d:\n\n  %s\n\n", describeURL(*u), id, u.URL)
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
		// The one form of these steps that SPEC §9 asks for everywhere.
		fmt.Fprintln(c.stdout, `In Vero: Settings (the gear icon) → Integrations → View next to "Custom Integration (Webhooks)" → `+
			`Add Webhooks Integration → paste the URL into "Notification URL" → Save → tick the events to track → Save.`)
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
	// The hint leads: it is what a provider's settings page shows of a URL. The id
	// is only a handle for 'urls revoke'.
	tw := c.table()
	fmt.Fprintln(tw, "HINT\tURL_ID\tCREATED\tLAST_USED\tREVOKED")
	for _, u := range list {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", maskHint(u.Hint), u.ID, formatTime(u.CreatedAt), formatTimePtr(u.LastUsedAt), formatTimePtr(u.RevokedAt))
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
	err = cl.RevokeURL(ctx, id, urlID)
	var apiErr *client.Error
	already := errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusConflict && apiErr.Code == client.CodeAlreadyRevoked
	if err != nil && !already {
		return err
	}
	// Name the URL by its hint and creation time; the answer to a revocation holds
	// neither, the listing does. Without it the server's own words do.
	u := &client.WebhookURL{ID: urlID}
	if list, lerr := cl.URLs(ctx, id); lerr == nil {
		for i := range list {
			if list[i].ID == urlID {
				u = &list[i]
			}
		}
	}
	if c.json {
		return c.printJSON(struct {
			ID             int64      `json:"id"`
			IntegrationID  int64      `json:"integration_id"`
			Hint           string     `json:"hint,omitempty"`
			Revoked        bool       `json:"revoked"`
			AlreadyRevoked bool       `json:"already_revoked"`
			RevokedAt      *time.Time `json:"revoked_at"`
		}{urlID, id, u.Hint, true, already, u.RevokedAt})
	}
	switch {
	case already && u.RevokedAt != nil:
		fmt.Fprintf(c.stdout, "Webhook URL %s of integration %d was already revoked at %s; nothing changed.\n",
			describeURL(*u), id, formatTime(*u.RevokedAt))
	case already:
		fmt.Fprintf(c.stdout, "%s.\n", capitalize(apiErr.Message))
	default:
		fmt.Fprintf(c.stdout, "Revoked webhook URL %s of integration %d: requests to it now get 401.\n", describeURL(*u), id)
	}
	return nil
}

// describeURL names a webhook URL so that it cannot be read as a count ("URL 2 of
// integration 1"): ****ab01 (id 2, created 2026-11-02T10:00:00Z).
func describeURL(u client.WebhookURL) string {
	if u.Hint == "" {
		return fmt.Sprintf("with id %d", u.ID)
	}
	return fmt.Sprintf("%s (id %d, created %s)", maskHint(u.Hint), u.ID, formatTime(u.CreatedAt))
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
