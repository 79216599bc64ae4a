package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/cubekv/cubekv/client"
)

func newPutCmd(g *globalOptions) *cobra.Command {
	var rid *requestIDFlag
	var lf leaseFlags
	cmd := &cobra.Command{
		Use:   "put KEY [VALUE]",
		Short: "Write VALUE at KEY (VALUE is read from stdin when omitted or -)",
		Args:  wrapArgs(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := lf.options()
			if err != nil {
				return err
			}
			return runPut(cmd.Context(), g, args, rid, cmd.InOrStdin(), cmd.OutOrStdout(), opts...)
		},
	}
	rid = addRequestIDFlag(cmd)
	lf.add(cmd)
	return cmd
}

// runPut writes args[1] (or stdin when it is absent or "-") at args[0], with rid's request id when
// given (rid may be nil).
func runPut(ctx context.Context, g *globalOptions, args []string, rid *requestIDFlag, stdin io.Reader, stdout io.Writer, opts ...client.WriteOption) error {
	key := args[0]
	var value []byte
	if len(args) < 2 || args[1] == "-" {
		v, err := io.ReadAll(stdin)
		if err != nil {
			return usageErrorf("read value from stdin: %w", err)
		}
		value = v
	} else {
		value = []byte(args[1])
	}
	ctx, c, p, done, err := g.session(ctx, stdout)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.Put(ctx, []byte(key), value, append(rid.options(), opts...)...)
	if err != nil {
		return err
	}
	if err := p.Put(resp); err != nil {
		return fmt.Errorf("print: %w", err)
	}
	return nil
}
