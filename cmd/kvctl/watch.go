package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/cubekv/cubekv/client"
)

// watchOptions are the flags of watch.
type watchOptions struct {
	prefix    string
	prefixSet bool
	fromIndex int64
	count     int
	keysOnly  bool
	bounded   bool // --timeout was given: stop then
}

func newWatchCmd(g *globalOptions) *cobra.Command {
	o := &watchOptions{}
	cmd := &cobra.Command{
		Use:   "watch KEY | --prefix P",
		Short: "Print every change of a key or prefix as it happens, one line each, until interrupted",
		Long: `Print every change of KEY (or of every key with --prefix; --prefix "" is every key) made
after --from-index, in index order, one line per event as it arrives: index, PUT or DELETE, key,
and a PUT's value. A transaction's changes share an index. The watch moves to another node when
one fails and resumes after the last index printed, so no change is skipped or printed twice.
If every node has dropped the changes after that index from its history, a RESYNC line says so
(re-read the keys with scan) and the watch goes on from the index it names.

It runs until interrupted, for --count events, or for --timeout when that flag is given.`,
		Args: wrapArgs(cobra.RangeArgs(0, 1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.prefixSet = cmd.Flags().Changed("prefix")
			o.bounded = cmd.Flags().Changed("timeout")
			return runWatch(cmd.Context(), g, o, args, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.prefix, "prefix", "", "watch every key with this prefix instead of one key")
	f.Int64Var(&o.fromIndex, "from-index", 0, "print changes after this Raft index (0: from the first; a RESYNC line says when no node still holds them)")
	f.IntVar(&o.count, "count", 0, "stop after this many events (0: never)")
	f.BoolVar(&o.keysOnly, "keys-only", false, "leave values out")
	return cmd
}

func runWatch(ctx context.Context, g *globalOptions, o *watchOptions, args []string, stdout io.Writer) error {
	var key []byte
	opts := []client.WatchOption{}
	switch {
	case o.prefixSet && len(args) > 0:
		return usageErrorf("give a KEY or --prefix, not both")
	case o.prefixSet:
		key = []byte(o.prefix)
		opts = append(opts, client.WithPrefix())
	case len(args) == 1 && args[0] != "":
		key = []byte(args[0])
	default:
		return usageErrorf("watch needs a KEY or --prefix")
	}
	if o.fromIndex < 0 || o.count < 0 {
		return usageErrorf("--from-index and --count must not be negative")
	}
	if o.keysOnly {
		opts = append(opts, client.WithWatchKeysOnly())
	}
	var timeout time.Duration
	if o.bounded {
		timeout = g.timeout
	}
	if g.output != "simple" && g.output != "json" && g.output != "" {
		return usageErrorf("--output %q: want simple or json", g.output)
	}
	ctx, c, _, done, err := g.sessionFor(ctx, stdout, timeout)
	if err != nil {
		return err
	}
	defer done()
	events, err := c.Watch(ctx, key, o.fromIndex, opts...)
	if err != nil {
		return &usageError{err: err}
	}
	n := 0
	for e := range events {
		if e.Type == client.WatchFailed {
			return e.Err
		}
		if err := printWatchEvent(stdout, g.output == "json", e); err != nil {
			return fmt.Errorf("print: %w", err)
		}
		if n++; o.count > 0 && n >= o.count {
			return nil
		}
	}
	return nil // ctx ended: interrupted or --timeout
}

// watchLine is an event as -o json prints it, one object per line.
type watchLine struct {
	Type        string     `json:"type"`
	Index       int64      `json:"index"`
	Key         *string    `json:"key,omitempty"`
	Entry       *jsonEntry `json:"entry,omitempty"`
	OldestIndex int64      `json:"oldest_index,omitempty"`
}

func printWatchEvent(w io.Writer, asJSON bool, e client.WatchEvent) error {
	if asJSON {
		l := watchLine{Type: e.Type.String(), Index: e.Index, Entry: toJSONEntry(e.Entry)}
		if e.Type == client.WatchResync {
			l.OldestIndex = e.Oldest
		} else {
			k := string(e.Key)
			l.Key = &k
		}
		b, err := json.Marshal(l)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	var err error
	switch e.Type {
	case client.WatchPut:
		if e.Entry.Value == nil {
			_, err = fmt.Fprintf(w, "%d\tPUT\t%s\n", e.Index, e.Key)
		} else {
			_, err = fmt.Fprintf(w, "%d\tPUT\t%s\t%s\n", e.Index, e.Key, e.Entry.Value)
		}
	case client.WatchDelete:
		_, err = fmt.Fprintf(w, "%d\tDELETE\t%s\n", e.Index, e.Key)
	case client.WatchResync:
		_, err = fmt.Fprintf(w, "%d\tRESYNC\thistory starts at index %d, changes before it are gone: re-read the keys (scan); continuing after %d\n", e.Index, e.Oldest, e.Index)
	}
	return err
}
