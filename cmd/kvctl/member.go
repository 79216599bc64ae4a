package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/cubekv/cubekv/thrift/kv"
)

// defaultCatchupTimeout is how long member add and member promote let a new member catch up, the
// server's own default.
const defaultCatchupTimeout = 60 * time.Second

func newMemberCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "member",
		Short: "List and change the members of the cluster",
		Args:  wrapArgs(cobra.NoArgs),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(
		newMemberListCmd(g),
		newMemberAddCmd(g),
		newMemberRemoveCmd(g),
		newMemberPromoteCmd(g),
	)
	return cmd
}

// catchupMs returns d in milliseconds for a request, refusing a d that is not positive.
func catchupMs(d time.Duration) (*int64, error) {
	if d <= 0 {
		return nil, usageErrorf("--catchup-timeout %v: must be positive", d)
	}
	return new(d.Milliseconds()), nil
}

// suffrageName is how kvctl prints a suffrage: voter, nonvoter, or "-" when unset.
func suffrageName(s *kv.Suffrage) string {
	if s == nil {
		return "-"
	}
	switch *s {
	case kv.Suffrage_VOTER:
		return "voter"
	case kv.Suffrage_NONVOTER:
		return "nonvoter"
	}
	return s.String()
}

// gossipName is how kvctl prints a gossip state.
func gossipName(s kv.GossipState) string {
	switch s {
	case kv.GossipState_ALIVE:
		return "alive"
	case kv.GossipState_SUSPECT:
		return "suspect"
	case kv.GossipState_DEAD:
		return "dead"
	case kv.GossipState_LEFT:
		return "left"
	}
	return "unknown"
}
