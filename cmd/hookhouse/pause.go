package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/hookhouse/hookhouse/client"
)

func integrationsPause(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	return setPaused(ctx, c, fs, args, true)
}

func integrationsResume(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	return setPaused(ctx, c, fs, args, false)
}

// setPaused pauses or resumes loading of one integration. Receiving never
// pauses: providers keep getting 200 and the records wait in the log.
func setPaused(ctx context.Context, c *cli, fs *flag.FlagSet, args []string, pause bool) error {
	id, cl, err := c.integrationArg(fs, args)
	if err != nil {
		return err
	}
	in, err := cl.SetPaused(ctx, id, pause)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(in)
	}
	if pause {
		fmt.Fprintf(c.stdout, "Paused loading of integration %d (%s): webhooks are still accepted and wait in the log "+
			"(%d waiting now). Resume with: hookhouse integrations resume %d\n", in.ID, in.Schema, backlog(in), in.ID)
		return nil
	}
	fmt.Fprintf(c.stdout, "Resumed loading of integration %d (%s): %d waiting records load from where it stopped.\n", in.ID, in.Schema, backlog(in))
	return nil
}

// backlog is how many records wait to load, from the answer's stats.
func backlog(in *client.Integration) int64 {
	if in.Stats == nil {
		return 0
	}
	return in.Stats.Backlog
}
