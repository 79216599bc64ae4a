package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/thrift/kv"
)

// leaseFlags are put's --lease and --ttl.
type leaseFlags struct {
	lease int64
	ttl   time.Duration
}

func (f *leaseFlags) add(cmd *cobra.Command) {
	cmd.Flags().Int64Var(&f.lease, "lease", 0, "attach the key to this lease (deleted when the lease ends)")
	cmd.Flags().DurationVar(&f.ttl, "ttl", 0, "give the key a lease of its own with this TTL (printed as lease=ID)")
}

func (f *leaseFlags) options() ([]client.WriteOption, error) {
	switch {
	case f.lease != 0 && f.ttl != 0:
		return nil, usageErrorf("set only one of --lease and --ttl")
	case f.lease < 0:
		return nil, usageErrorf("--lease %d: want a positive lease id", f.lease)
	case f.ttl < 0:
		return nil, usageErrorf("--ttl %v: want a positive duration", f.ttl)
	case f.lease != 0:
		return []client.WriteOption{client.WithLease(f.lease)}, nil
	case f.ttl != 0:
		return []client.WriteOption{client.WithTTL(f.ttl)}, nil
	}
	return nil, nil
}

func newLeaseCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lease",
		Short: "Grant, keep alive, revoke and inspect leases (keys attached to a lease end with it)",
		Args:  wrapArgs(cobra.NoArgs),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newLeaseGrantCmd(g), newLeaseKeepAliveCmd(g), newLeaseRevokeCmd(g), newLeaseInfoCmd(g), newLeaseListCmd(g))
	return cmd
}

func parseLeaseID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, usageErrorf("lease id %q: want a positive integer", s)
	}
	return id, nil
}

// printOut writes simple to w, or v as JSON with --output json.
func printOut(g *globalOptions, w io.Writer, v any, simple string, args ...any) error {
	if g.output == "json" {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	_, err := fmt.Fprintf(w, simple, args...)
	return err
}

func newLeaseGrantCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "grant TTL",
		Short: "Grant a lease with TTL (a duration such as 10s) and print its id",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ttl, err := time.ParseDuration(args[0])
			if err != nil || ttl <= 0 {
				return usageErrorf("TTL %q: want a positive duration such as 10s", args[0])
			}
			ctx, c, _, done, err := g.session(cmd.Context(), cmd.OutOrStdout())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.Grant(ctx, ttl)
			if err != nil {
				return err
			}
			return printOut(g, cmd.OutOrStdout(), struct {
				LeaseID int64 `json:"lease_id"`
				TTLMs   int64 `json:"ttl_ms"`
				Index   int64 `json:"index"`
			}{resp.LeaseID, resp.TTLMs, resp.Index},
				"lease %d granted with TTL %v\n", resp.LeaseID, time.Duration(resp.TTLMs)*time.Millisecond)
		},
	}
}

func newLeaseKeepAliveCmd(g *globalOptions) *cobra.Command {
	var once bool
	cmd := &cobra.Command{
		Use:   "keep-alive ID",
		Short: "Keep lease ID alive until interrupted (or send one keep-alive with --once)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseLeaseID(args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if once {
				ctx, c, _, done, err := g.session(cmd.Context(), out)
				if err != nil {
					return err
				}
				defer done()
				ttl, err := c.KeepAlive(ctx, id)
				if err != nil {
					return err
				}
				return printKeepAlive(g, out, id, ttl)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			ctx, c, _, done, err := g.sessionFor(ctx, out, 0)
			if err != nil {
				return err
			}
			defer done()
			// The first keep-alive restarts the countdown when the
			// leader receives it: count from before it was sent.
			sent := time.Now()
			ttl, err := keepAliveOnce(ctx, g, c, id)
			if err != nil {
				return err
			}
			if err := printKeepAlive(g, out, id, ttl); err != nil {
				return err
			}
			return c.KeepAliveLoopFrom(ctx, id, ttl, sent, func(time.Time) { _ = printKeepAlive(g, out, id, ttl) })
		},
	}
	cmd.Flags().BoolVar(&once, "once", false, "send one keep-alive and exit")
	return cmd
}

// keepAliveOnce sends one keep-alive bounded by --timeout.
func keepAliveOnce(ctx context.Context, g *globalOptions, c *client.Client, id int64) (time.Duration, error) {
	if g.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.timeout)
		defer cancel()
	}
	return c.KeepAlive(ctx, id)
}

func printKeepAlive(g *globalOptions, w io.Writer, id int64, ttl time.Duration) error {
	return printOut(g, w, struct {
		LeaseID int64 `json:"lease_id"`
		TTLMs   int64 `json:"ttl_ms"`
	}{id, ttl.Milliseconds()}, "lease %d kept alive, TTL %v\n", id, ttl)
}

func newLeaseRevokeCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke lease ID, deleting every key attached to it",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseLeaseID(args[0])
			if err != nil {
				return err
			}
			ctx, c, _, done, err := g.session(cmd.Context(), cmd.OutOrStdout())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.Revoke(ctx, id)
			if err != nil {
				return err
			}
			return printOut(g, cmd.OutOrStdout(), struct {
				LeaseID int64 `json:"lease_id"`
				Index   int64 `json:"index"`
			}{id, resp.Index}, "lease %d revoked at index %d\n", id, resp.Index)
		},
	}
}

// jsonLease is a lease as --output json prints it.
type jsonLease struct {
	LeaseID     int64    `json:"lease_id"`
	TTLMs       int64    `json:"ttl_ms"`
	RemainingMs int64    `json:"remaining_ms"`
	KeyCount    int64    `json:"key_count"`
	Keys        []string `json:"keys,omitempty"`
}

func toJSONLease(l *kv.LeaseInfo) jsonLease {
	j := jsonLease{LeaseID: l.LeaseID, TTLMs: l.TTLMs, RemainingMs: l.RemainingMs, KeyCount: l.KeyCount}
	for _, k := range l.Keys {
		j.Keys = append(j.Keys, string(k))
	}
	return j
}

// leaseLine is a lease as one line of simple output.
func leaseLine(l *kv.LeaseInfo) string {
	remaining := (time.Duration(l.RemainingMs) * time.Millisecond).String()
	if l.RemainingMs < 0 {
		remaining = "expiring"
	}
	return fmt.Sprintf("lease %d ttl=%v remaining=%s keys=%d", l.LeaseID, time.Duration(l.TTLMs)*time.Millisecond, remaining, l.KeyCount)
}

func newLeaseInfoCmd(g *globalOptions) *cobra.Command {
	var keys bool
	cmd := &cobra.Command{
		Use:   "info ID",
		Short: "Show lease ID as the leader sees it: TTL, time remaining and keys",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseLeaseID(args[0])
			if err != nil {
				return err
			}
			ctx, c, _, done, err := g.session(cmd.Context(), cmd.OutOrStdout())
			if err != nil {
				return err
			}
			defer done()
			info, err := c.LeaseInfo(ctx, id, keys)
			if err != nil {
				return err
			}
			simple := leaseLine(info) + "\n"
			for _, k := range info.Keys {
				simple += string(k) + "\n"
			}
			return printOut(g, cmd.OutOrStdout(), toJSONLease(info), "%s", simple)
		},
	}
	cmd.Flags().BoolVar(&keys, "keys", false, "list the attached keys")
	return cmd
}

func newLeaseListCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List every lease as the leader sees it",
		Args:  wrapArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, c, _, done, err := g.session(cmd.Context(), cmd.OutOrStdout())
			if err != nil {
				return err
			}
			defer done()
			var after int64
			var all []jsonLease
			out := cmd.OutOrStdout()
			for {
				page, err := c.Leases(ctx, after, 0)
				if err != nil {
					return err
				}
				for _, l := range page.Leases {
					if g.output == "json" {
						all = append(all, toJSONLease(l))
					} else if _, err := fmt.Fprintln(out, leaseLine(l)); err != nil {
						return err
					}
				}
				if page.Continuation == nil {
					break
				}
				after = *page.Continuation
			}
			if g.output == "json" {
				if all == nil {
					all = []jsonLease{}
				}
				return printOut(g, out, all, "")
			}
			return nil
		},
	}
}
