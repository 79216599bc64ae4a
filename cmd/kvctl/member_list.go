package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

func newMemberListCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the members of the cluster as the node asked sees them",
		Args:  wrapArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMemberList(cmd.Context(), g, cmd.OutOrStdout())
		},
	}
}

// runMemberList asks the cluster for its topology and prints one row per member.
func runMemberList(ctx context.Context, g *globalOptions, stdout io.Writer) error {
	ctx, c, p, done, err := g.session(ctx, stdout)
	if err != nil {
		return err
	}
	defer done()
	topo, err := c.Topology(ctx)
	if err != nil {
		return err
	}
	if err := p.Members(topo); err != nil {
		return fmt.Errorf("print: %w", err)
	}
	return nil
}
