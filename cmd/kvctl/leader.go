package main

import "github.com/spf13/cobra"

func newLeaderCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "leader",
		Short: "Act on the cluster's leadership",
		Args:  wrapArgs(cobra.NoArgs),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newLeaderTransferCmd(g))
	return cmd
}
