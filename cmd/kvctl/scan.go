package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/cubekv/cubekv/thrift/kv"
)

// defaultScanLimit is the most entries scan returns when --limit is not given.
const defaultScanLimit = 10000

// scanOptions are the flags of scan.
type scanOptions struct {
	prefix, start, end string
	limit              int
	keysOnly, reverse  bool
	// set records which of prefix, start and end were given (an empty string is a valid bound).
	prefixSet, startSet, endSet bool
}

func newScanCmd(g *globalOptions) *cobra.Command {
	o := &scanOptions{}
	cmd := &cobra.Command{
		Use:   "scan",
		Short: "List the entries of a key range, following pages up to --limit",
		Args:  wrapArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.prefixSet = cmd.Flags().Changed("prefix")
			o.startSet = cmd.Flags().Changed("start")
			o.endSet = cmd.Flags().Changed("end")
			return runScan(cmd.Context(), g, o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.prefix, "prefix", "", "only keys with this prefix")
	f.StringVar(&o.start, "start", "", "first key (inclusive)")
	f.StringVar(&o.end, "end", "", "end key (exclusive)")
	f.IntVar(&o.limit, "limit", defaultScanLimit, "most entries to list, across pages")
	f.BoolVar(&o.keysOnly, "keys-only", false, "list keys without values")
	f.BoolVar(&o.reverse, "reverse", false, "descending key order")
	return cmd
}

// runScan lists the range page by page until it is exhausted or o.limit entries are listed.
func runScan(ctx context.Context, g *globalOptions, o *scanOptions, stdout io.Writer) error {
	if o.limit <= 0 {
		return usageErrorf("--limit %d: must be positive", o.limit)
	}
	ctx, c, p, done, err := g.session(ctx, stdout)
	if err != nil {
		return err
	}
	defer done()
	req := &kv.ScanRequest{KeysOnly: &o.keysOnly, Reverse: &o.reverse}
	if o.prefixSet {
		req.Prefix = []byte(o.prefix)
	}
	if o.startSet {
		req.StartKey = []byte(o.start)
	}
	if o.endSet {
		req.EndKey = []byte(o.end)
	}
	var entries []*kv.Entry
	for len(entries) < o.limit {
		req.Limit = new(int32(min(o.limit-len(entries), 1<<30)))
		resp, err := c.Scan(ctx, req)
		if err != nil {
			return err
		}
		entries = append(entries, resp.Entries...)
		if resp.Continuation == nil {
			break
		}
		if o.reverse {
			req.EndKey = resp.Continuation
		} else {
			req.StartKey = resp.Continuation
		}
	}
	if len(entries) > o.limit {
		entries = entries[:o.limit]
	}
	if err := p.Scan(entries, o.keysOnly); err != nil {
		return fmt.Errorf("print: %w", err)
	}
	return nil
}
