package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

func newDelCmd(g *globalOptions) *cobra.Command {
	var rid *requestIDFlag
	cmd := &cobra.Command{
		Use:   "del KEY",
		Short: "Delete KEY (exit 1 when it did not exist)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDel(cmd.Context(), g, args[0], rid, cmd.OutOrStdout())
		},
	}
	rid = addRequestIDFlag(cmd)
	return cmd
}

// runDel deletes key, with rid's request id when given (rid may be nil); a key that did not exist is
// errNotFound.
func runDel(ctx context.Context, g *globalOptions, key string, rid *requestIDFlag, stdout io.Writer) error {
	ctx, c, p, done, err := g.session(ctx, stdout)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.Delete(ctx, []byte(key), rid.options()...)
	if err != nil {
		return err
	}
	if err := p.Delete(resp); err != nil {
		return fmt.Errorf("print: %w", err)
	}
	if !resp.Deleted {
		return fmt.Errorf("%q: %w", key, errNotFound)
	}
	return nil
}
