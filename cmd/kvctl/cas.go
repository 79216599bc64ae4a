package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/cubekv/cubekv/thrift/kv"
)

// casOptions are the flags of cas.
type casOptions struct {
	expectValue    string
	expectIndex    int64
	remove         bool
	expectValueSet bool
	expectIndexSet bool
	requestID      *requestIDFlag
}

func newCASCmd(g *globalOptions) *cobra.Command {
	o := &casOptions{}
	cmd := &cobra.Command{
		Use:   "cas KEY [NEWVALUE] (--expect-value V | --expect-index N) [--delete]",
		Short: "Compare-and-swap KEY (exit 1 when the compare fails)",
		Long: "Write NEWVALUE at KEY, or delete KEY with --delete, only if KEY holds the value given by\n" +
			"--expect-value or was last changed at the index given by --expect-index (0: KEY must not exist).",
		Args: wrapArgs(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.expectValueSet = cmd.Flags().Changed("expect-value")
			o.expectIndexSet = cmd.Flags().Changed("expect-index")
			return runCAS(cmd.Context(), g, o, args, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.expectValue, "expect-value", "", "the value KEY must hold")
	f.Int64Var(&o.expectIndex, "expect-index", 0, "the mod index KEY must have (0: KEY must not exist)")
	f.BoolVar(&o.remove, "delete", false, "delete KEY instead of writing NEWVALUE")
	o.requestID = addRequestIDFlag(cmd)
	return cmd
}

// runCAS runs one compare-and-swap: args are KEY and, unless o.remove, NEWVALUE. A failed compare
// prints the outcome and returns errCompareFailed.
func runCAS(ctx context.Context, g *globalOptions, o *casOptions, args []string, stdout io.Writer) error {
	if o.expectValueSet == o.expectIndexSet {
		return usageErrorf("cas: give exactly one of --expect-value and --expect-index")
	}
	if o.remove != (len(args) == 1) {
		return usageErrorf("cas: give NEWVALUE, or --delete without NEWVALUE")
	}
	if o.expectIndexSet && o.expectIndex < 0 {
		return usageErrorf("cas: --expect-index %d: must not be negative", o.expectIndex)
	}
	req := &kv.CASRequest{Key: []byte(args[0]), RequestID: o.requestID.requestID()}
	if o.expectValueSet {
		req.ExpectedValue = []byte(o.expectValue)
	} else {
		req.ExpectedModIndex = &o.expectIndex
	}
	if o.remove {
		req.Remove = &o.remove
	} else {
		req.Value = []byte(args[1])
	}
	ctx, c, p, done, err := g.session(ctx, stdout)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.CAS(ctx, req)
	if err != nil {
		return err
	}
	if err := p.CAS(resp); err != nil {
		return fmt.Errorf("print: %w", err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("cas %q: %w", args[0], errCompareFailed)
	}
	return nil
}
