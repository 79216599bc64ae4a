package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

func newStatusCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show every endpoint's view of itself and the cluster, one row per endpoint",
		Args:  wrapArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStatus(cmd.Context(), g, cmd.OutOrStdout())
		},
	}
}

// runStatus asks each endpoint for its status and prints one row per endpoint. An endpoint that does
// not answer gets an error row, and the command then fails after printing.
func runStatus(ctx context.Context, g *globalOptions, stdout io.Writer) error {
	ctx, c, p, done, err := g.session(ctx, stdout)
	if err != nil {
		return err
	}
	defer done()
	var (
		rows   []statusRow
		failed []string
	)
	for ep := range strings.SplitSeq(g.endpoints, ",") {
		if ep = strings.TrimSpace(ep); ep == "" {
			continue
		}
		st, err := c.Status(ctx, ep)
		rows = append(rows, statusRow{Endpoint: ep, Status: st, Err: err})
		if err != nil {
			failed = append(failed, ep)
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
