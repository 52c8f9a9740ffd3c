package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hookhouse/hookhouse/client"
)

const resetDetails = `Reset drops every table of the integration's schema (data, its child tables
and _sdc_rejected) and reloads every record still in the server's log, in the
original order, with the original __sdc_primary_key, _sdc_received_at and
_sdc_sequence. Webhooks are still accepted meanwhile and load after the reload.
If the server stops during the reset, it resumes when the server starts again.
If retention has removed the integration's first records from the log, the
reset is refused and says how much is gone; --accept-partial reloads what is
left, and the rest is gone from the warehouse for good.`

// resetPoll is how often the reload's progress is read from the server.
const resetPoll = 500 * time.Millisecond

func integrationsReset(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	var yes, partial, noWait bool
	fs.BoolVar(&yes, "yes", false, "reset without asking: the schema's tables are dropped at once")
	fs.BoolVar(&yes, "y", false, "short for --yes")
	fs.BoolVar(&partial, "accept-partial", false, "reset even when retention has removed the integration's first records from the log (they are lost)")
	fs.BoolVar(&noWait, "no-wait", false, "return once the tables are dropped, without following the reload")
	id, cl, err := c.integrationArg(fs, args)
	if err != nil {
		return err
	}
	in, err := cl.Integration(ctx, id)
	if err != nil {
		return err
	}
	if !yes {
		if err := c.confirmReset(in); err != nil {
			return err
		}
	}
	out, err := cl.Reset(ctx, id, partial)
	if err != nil {
		var ae *client.Error
		if errors.As(err, &ae) && ae.Code == "partial_log" {
			return errors.New(ae.Message)
		}
		if ctx.Err() == nil && !errors.As(err, &ae) {
			return fmt.Errorf("%w; if the server went away during the reset, it redoes the reset when it starts again: check with hookhouse integrations show %d", err, id)
		}
		return err
	}
	rs := resetStats(out)
	if rs == nil {
		return fmt.Errorf("the server answered without the reset's progress; check with hookhouse integrations show %d", id)
	}
	if !c.json {
		if rs.RecordsTotal == 0 {
			fmt.Fprintf(c.stdout, "Reset integration %d (%s): its tables are dropped; the log holds no record to reload.\n", id, in.Schema)
			if rs.Done {
				return nil
			}
		} else {
			fmt.Fprintf(c.stdout, "Reset integration %d (%s): its tables are dropped; reloading %s records from the log (positions %d–%d).\n",
				id, in.Schema, thousands(rs.RecordsTotal), rs.FromPosition, rs.TargetPosition)
		}
	}
	if noWait {
		if c.json {
			return c.printJSON(out)
		}
		fmt.Fprintf(c.stdout, "The reload goes on in the server; follow it with: hookhouse integrations show %d\n", id)
		return nil
	}
	final, err := followReset(ctx, c, cl, in, rs)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(final)
	}
	fs2 := resetStats(final)
	fmt.Fprintf(c.stdout, "Reset of %s done: %s records reloaded.\n", in.Schema, thousands(fs2.RecordsReloaded))
	return nil
}

// confirmReset asks on a terminal for the schema's name; elsewhere it refuses
// without --yes.
func (c *cli) confirmReset(in *client.Integration) error {
	what := fmt.Sprintf("resetting integration %d %q drops every table of schema %s and reloads what the log still holds", in.ID, in.Name, in.Schema)
	f, ok := c.stdin.(*os.File)
	if !ok || !isTerminal(f) || !isTerminal(c.stderr) {
		return fmt.Errorf("not resetting without --yes: %s", what)
	}
	fmt.Fprintf(c.stderr, "Warning: %s.\nType the schema name (%s) to confirm: ", capitalize(what), in.Schema)
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if strings.TrimSpace(line) != in.Schema {
		return fmt.Errorf("not reset: the name typed is not %s", in.Schema)
	}
	return nil
}

// followReset polls the reload's progress until it is done, showing it with
// newProgress on stderr. A server that goes away (a restart) is waited for.
func followReset(ctx context.Context, c *cli, cl *client.Client, in *client.Integration, rs *client.ResetProgress) (*client.Integration, error) {
	p := newProgress(c.stderr, "reset of "+in.Schema, "reloaded", "records", rs.RecordsTotal)
	defer p.Finish()
	p.Set(rs.RecordsReloaded)
	t := time.NewTicker(resetPoll)
	defer t.Stop()
	var lost time.Time
	pausedNoted := false
	for {
		select {
		case <-ctx.Done():
			p.Finish()
			return nil, fmt.Errorf("stopped following the reset (%w); it goes on in the server: hookhouse integrations show %d", ctx.Err(), in.ID)
		case <-t.C:
		}
		got, err := cl.Integration(ctx, in.ID)
		if err != nil {
			var ae *client.Error
			if errors.As(err, &ae) || ctx.Err() != nil {
				return nil, err
			}
			// Not reachable: the server may be restarting; the reset resumes there.
			if lost.IsZero() {
				lost = time.Now()
			} else if time.Since(lost) > time.Minute {
				return nil, fmt.Errorf("lost the server for a minute (%w); the reset resumes when it runs again: hookhouse integrations show %d", err, in.ID)
			}
			continue
		}
		lost = time.Time{}
		cur := resetStats(got)
		if cur == nil || cur.RequestedAt.Before(rs.RequestedAt) {
			return nil, fmt.Errorf("the server no longer shows this reset; check with hookhouse integrations show %d", in.ID)
		}
		if got.Stats.Paused && !pausedNoted {
			// Progress lines would only repeat 0; say why once.
			fmt.Fprintf(c.stderr, "Loading of integration %d is paused: the reload starts when you run hookhouse integrations resume %d\n", in.ID, in.ID)
			pausedNoted = true
		}
		p.SetTotal(cur.RecordsTotal)
		p.Set(cur.RecordsReloaded)
		if cur.Done {
			return got, nil
		}
	}
}

func resetStats(in *client.Integration) *client.ResetProgress {
	if in == nil || in.Stats == nil {
		return nil
	}
	return in.Stats.Reset
}

// printResetStats adds the last reset to 'integrations show'.
func printResetStats(tw *tabwriter.Writer, s *client.Stats) {
	r := s.Reset
	if r == nil {
		return
	}
	switch {
	case r.Done && r.FinishedAt != nil:
		fmt.Fprintf(tw, "Last reset\t%s: %s records reloaded, done %s\n", r.RequestedAt.Format(time.RFC3339), thousands(r.RecordsReloaded), r.FinishedAt.Format(time.RFC3339))
	case r.CommittedAt == nil:
		fmt.Fprintf(tw, "Reset\trequested %s, not yet made\n", r.RequestedAt.Format(time.RFC3339))
	default:
		line := fmt.Sprintf("reloading: %s of %s records", thousands(r.RecordsReloaded), thousands(r.RecordsTotal))
		if r.RecordsPerSecond > 0 {
			line += fmt.Sprintf(", %s records/s", thousands(int64(r.RecordsPerSecond)))
		}
		if r.ETASeconds != nil {
			line += ", ETA " + (time.Duration(*r.ETASeconds * float64(time.Second))).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "Reset\t%s\n", line)
	}
	if r.FromPosition > 1 {
		fmt.Fprintf(tw, "\tpartial: the log held positions %d on; earlier records are gone\n", r.FromPosition)
	}
}
