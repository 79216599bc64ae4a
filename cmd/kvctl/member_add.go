package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/cubekv/cubekv/thrift/kv"
)

// memberAddOptions are the flags of member add.
type memberAddOptions struct {
	nonvoter bool
	catchup  time.Duration
}

func newMemberAddCmd(g *globalOptions) *cobra.Command {
	o := &memberAddOptions{}
	cmd := &cobra.Command{
		Use:   "add ID RAFT_ADDR [--nonvoter] [--catchup-timeout 60s]",
		Short: "Add node ID, reachable for Raft at RAFT_ADDR, to the cluster",
		Long: "Add node ID as a non-voter; the leader waits until it has caught up, then promotes it to\n" +
			"voter (unless --nonvoter). Start the node first (with --join, without --bootstrap). When it\n" +
			"does not catch up within --catchup-timeout it stays a non-voter: run 'member promote' later.\n" +
			"The command's time limit is at least the catch-up timeout plus 15s.",
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMemberAdd(cmd.Context(), g, o, args[0], args[1], cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.nonvoter, "nonvoter", false, "keep the node a non-voting read replica")
	f.DurationVar(&o.catchup, "catchup-timeout", defaultCatchupTimeout, "how long the node may take to catch up before promotion")
	return cmd
}

// runMemberAdd adds id at raftAddr through the leader.
func runMemberAdd(ctx context.Context, g *globalOptions, o *memberAddOptions, id, raftAddr string, stdout io.Writer) error {
	ms, err := catchupMs(o.catchup)
	if err != nil {
		return err
	}
	ctx, c, p, done, err := g.sessionFor(ctx, stdout, g.membershipTimeout(o.catchup))
	if err != nil {
		return err
	}
	defer done()
	req := &kv.AddMemberRequest{NodeID: id, RaftAddr: raftAddr, CatchupTimeoutMs: ms}
	if o.nonvoter {
		req.Nonvoter = new(true)
	}
	resp, err := c.AddMember(ctx, req)
	if err != nil {
		return err
	}
	if err := p.MemberChange(resp); err != nil {
		return fmt.Errorf("print: %w", err)
	}
	return nil
}
