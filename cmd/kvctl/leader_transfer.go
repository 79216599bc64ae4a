package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

func newLeaderTransferCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "transfer [ID]",
		Short: "Hand leadership to voter ID (without ID: to the most up-to-date voter)",
		Args:  wrapArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			return runLeaderTransfer(cmd.Context(), g, id, cmd.OutOrStdout())
		},
	}
}

// runLeaderTransfer asks the leader to hand over to id ("" for any voter).
func runLeaderTransfer(ctx context.Context, g *globalOptions, id string, stdout io.Writer) error {
	ctx, c, p, done, err := g.session(ctx, stdout)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.TransferLeadership(ctx, id)
	if err != nil {
		return err
	}
	if err := p.Transfer(resp); err != nil {
		return fmt.Errorf("print: %w", err)
	}
	return nil
}
