package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

func newGetCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "get KEY",
		Short: "Print the value of KEY (exit 1 when it does not exist)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGet(cmd.Context(), g, args[0], cmd.OutOrStdout())
		},
	}
}

// runGet reads key and prints it; a missing key is errNotFound.
func runGet(ctx context.Context, g *globalOptions, key string, stdout io.Writer) error {
	ctx, c, p, done, err := g.session(ctx, stdout)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.Get(ctx, []byte(key))
	if err != nil {
		return err
	}
	if err := p.Get(resp); err != nil {
		return fmt.Errorf("print: %w", err)
	}
	if !resp.Found {
		return fmt.Errorf("%q: %w", key, errNotFound)
	}
	return nil
}
