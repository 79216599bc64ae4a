package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/cubekv/cubekv/client"
)

// errNoThriftAddr is the status row of a member whose Thrift address nobody knows (it was never seen
// in gossip), so it cannot be asked.
var errNoThriftAddr = errors.New("no Thrift address known (not seen in gossip)")

func newStatusCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show every node of the cluster, one row per node",
		Long: "Learn the cluster's members from any endpoint and ask each of them for its status. When no\n" +
			"endpoint answers the topology request (a single node of an older version, a proxy), show\n" +
			"one row per endpoint instead.",
		Args: wrapArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStatus(cmd.Context(), g, cmd.OutOrStdout())
		},
	}
}

// runStatus prints one row per member of the cluster (or per endpoint, when the topology is not to be
// had). A node that does not answer gets an error row, and the command then fails after printing.
func runStatus(ctx context.Context, g *globalOptions, stdout io.Writer) error {
	ctx, c, p, done, err := g.session(ctx, stdout)
	if err != nil {
		return err
	}
	defer done()
	rows := statusTargets(ctx, c, g.endpoints)
	var wg sync.WaitGroup
	for i := range rows {
		if rows[i].Endpoint == "" {
			rows[i].Err = errNoThriftAddr
			continue
		}
		wg.Go(func() {
			rows[i].Status, rows[i].Err = c.Status(ctx, rows[i].Endpoint)
		})
	}
	wg.Wait()
	var failed []string
	for _, r := range rows {
		if r.Err != nil {
			failed = append(failed, r.name())
		}
	}
	if err := p.Status(rows); err != nil {
		return fmt.Errorf("print: %w", err)
	}
	if len(failed) > 0 {
		return fmt.Errorf("status: no answer from %s", strings.Join(failed, ", "))
	}
	return nil
}

// statusTargets returns the rows to fill: one per member of the topology, else one per endpoint.
func statusTargets(ctx context.Context, c *client.Client, endpoints string) []statusRow {
	var rows []statusRow
	if topo, err := c.Topology(ctx); err == nil {
		for _, m := range topo.Members {
			rows = append(rows, statusRow{NodeID: m.NodeID, Endpoint: m.ThriftAddr})
		}
		return rows
	}
	for ep := range strings.SplitSeq(endpoints, ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			rows = append(rows, statusRow{Endpoint: ep})
		}
	}
	return rows
}
