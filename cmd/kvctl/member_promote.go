package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/cubekv/cubekv/thrift/kv"
)

func newMemberPromoteCmd(g *globalOptions) *cobra.Command {
	var catchup time.Duration
	cmd := &cobra.Command{
		Use:   "promote ID [--catchup-timeout 60s]",
		Short: "Make the non-voter ID a voter once it has caught up",
		Long: "Wait until non-voter ID has caught up with the leader, then make it a voter. The command's\n" +
			"time limit is at least the catch-up timeout plus 15s.",
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMemberPromote(cmd.Context(), g, args[0], catchup, cmd.OutOrStdout())
		},
	}
	cmd.Flags().DurationVar(&catchup, "catchup-timeout", defaultCatchupTimeout, "how long the node may take to catch up")
	return cmd
}

// runMemberPromote promotes id through the leader.
func runMemberPromote(ctx context.Context, g *globalOptions, id string, catchup time.Duration, stdout io.Writer) error {
	ms, err := catchupMs(catchup)
	if err != nil {
		return err
	}
	ctx, c, p, done, err := g.sessionFor(ctx, stdout, g.membershipTimeout(catchup))
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.PromoteMember(ctx, &kv.PromoteMemberRequest{NodeID: id, CatchupTimeoutMs: ms})
	if err != nil {
		return err
	}
	if err := p.MemberChange(resp); err != nil {
		return fmt.Errorf("print: %w", err)
	}
	return nil
}
