package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strings"

	"github.com/hookhouse/hookhouse/client"
)

func status(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	if _, err := c.parseArgs(fs, args); err != nil {
		return err
	}
	// Without a key the server still tells component states, so a key is not required
	// here: a health check should work from anywhere.
	key, err := c.adminKey()
	if err != nil && !errors.Is(err, errNoKey) {
		return err
	}
	if key == "" {
		fmt.Fprintln(c.stderr, "hookhouse: note: no admin key, so per-integration freshness is not shown (pass --key, set HOOKHOUSE_ADMIN_KEY, or point --data at the server's data dir)")
	}
	cl := client.New(c.server, key)
	if key != "" {
		// The status report quietly leaves out the integrations for a wrong key;
		// the admin API says whether the key is right.
		_, err := cl.Integrations(ctx)
		var apiErr *client.Error
		if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusUnauthorized {
			return fmt.Errorf("the admin key from %s is not this server's (401 unauthorized): pass the key in "+
				"<data>/admin.key of the server's data dir, or no key to see the component states only", c.keyFrom)
		}
		if err != nil {
			return err
		}
	}
	st, err := cl.Status(ctx)
	if err != nil {
		return err
	}

	if c.json {
		if err := c.printJSON(st); err != nil {
			return err
		}
	} else if err := c.printStatus(st); err != nil {
		return err
	}
	if st.Status == client.StatusDown {
		return fmt.Errorf("the server is down: %s", downReasons(st))
	}
	return nil
}

func (c *cli) printStatus(st *client.Status) error {
	tw := c.table()
	fmt.Fprintf(tw, "Server\t%s\n", c.server)
	fmt.Fprintf(tw, "Status\t%s\n", cell(st.Status))
	fmt.Fprintf(tw, "Version\t%s\n", cell(st.Version))
	fmt.Fprintln(tw)
	if err := tw.Flush(); err != nil {
		return err
	}

	tw = c.table()
	fmt.Fprintln(tw, "COMPONENT\tSTATUS\tMESSAGE")
	for _, comp := range st.Components {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", cell(comp.Name), cell(comp.Status), cell(comp.Message))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Integrations) == 0 {
		return nil
	}

	fmt.Fprintln(c.stdout)
	tw = c.table()
	fmt.Fprintln(tw, "ID\tINTEGRATION\tSCHEMA\tLAST_RECEIVED\tLAST_LOADED\tBACKLOG\tLAG\tREJECTED")
	for _, in := range st.Integrations {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%d\n", in.ID, cell(in.Name), cell(in.Schema),
			formatTimePtr(in.LastReceivedAt), formatTimePtr(in.LastLoadedAt), in.Backlog, formatLag(in.LagSeconds), in.RecordsRejected)
	}
	return tw.Flush()
}

// downReasons names the components that are down, with their messages.
func downReasons(st *client.Status) string {
	var reasons []string
	for _, comp := range st.Components {
		if comp.Status != client.StatusDown {
			continue
		}
		r := comp.Name
		if comp.Message != "" {
			r += ": " + comp.Message
		}
		reasons = append(reasons, r)
	}
	if len(reasons) == 0 {
		return "no component named"
	}
	return strings.Join(reasons, "; ")
}
