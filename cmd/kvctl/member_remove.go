package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/cubekv/cubekv/thrift/kv"
)

func newMemberRemoveCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "remove ID",
		Short: "Remove node ID from the cluster",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMemberRemove(cmd.Context(), g, args[0], cmd.OutOrStdout())
		},
	}
}

// runMemberRemove removes id through the leader.
func runMemberRemove(ctx context.Context, g *globalOptions, id string, stdout io.Writer) error {
	ctx, c, p, done, err := g.session(ctx, stdout)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.RemoveMember(ctx, &kv.RemoveMemberRequest{NodeID: id})
	if err != nil {
		return err
	}
	if err := p.MemberChange(resp); err != nil {
		return fmt.Errorf("print: %w", err)
	}
	return nil
}
