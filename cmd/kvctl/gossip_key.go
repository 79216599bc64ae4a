package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cubekv/cubekv/gossip"
	"github.com/cubekv/cubekv/thrift/kv"
)

// newGossipCmd groups the gossip commands.
func newGossipCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gossip",
		Short: "Manage the gossip pool's encryption keys",
		Args:  wrapArgs(cobra.NoArgs),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	key := &cobra.Command{
		Use:   "key",
		Short: "List, install, use or remove gossip keys on every node (rotate: install, use, remove)",
		Args:  wrapArgs(cobra.NoArgs),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var keyFile string
	op := func(use string, o kv.GossipKeyOp, short string) *cobra.Command {
		c := &cobra.Command{
			Use:   use + " [BASE64_KEY]",
			Short: short,
			Args:  wrapArgs(cobra.MaximumNArgs(1)),
			RunE: func(cmd *cobra.Command, args []string) error {
				return runGossipKey(cmd.Context(), g, o, args, keyFile, cmd.OutOrStdout())
			},
		}
		c.Flags().StringVar(&keyFile, "key-file", "", "file holding the base64 key (instead of the argument)")
		return c
	}
	key.AddCommand(
		&cobra.Command{
			Use:   "list",
			Short: "Show every node's keys as fingerprints, the one in use first",
			Args:  exactArgs(0),
			RunE: func(cmd *cobra.Command, _ []string) error {
				return runGossipKey(cmd.Context(), g, kv.GossipKeyOp_LIST, nil, "", cmd.OutOrStdout())
			},
		},
		op("install", kv.GossipKeyOp_INSTALL, "Add a key every node accepts (not yet used to send)"),
		op("use", kv.GossipKeyOp_USE, "Make an installed key the one every node sends with"),
		op("remove", kv.GossipKeyOp_REMOVE, "Remove a key no node sends with any more"),
	)
	cmd.AddCommand(key)
	return cmd
}

// gossipKey reads the key from the argument or --key-file.
func gossipKey(args []string, keyFile string) ([]byte, error) {
	switch {
	case keyFile != "" && len(args) == 1:
		return nil, usageErrorf("give the key as an argument or --key-file, not both")
	case keyFile != "":
		k, err := gossip.LoadKeyFile(keyFile)
		if err != nil {
			return nil, &usageError{err: err}
		}
		return k, nil
	case len(args) == 1:
		k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(args[0]))
		if err != nil {
			return nil, usageErrorf("key: not base64: %v", err)
		}
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return nil, usageErrorf("key: an AES key is 16, 24 or 32 bytes, got %d", n)
		}
		return k, nil
	}
	return nil, usageErrorf("a key is required (argument or --key-file)")
}

func runGossipKey(ctx context.Context, g *globalOptions, op kv.GossipKeyOp, args []string, keyFile string, stdout io.Writer) error {
	req := &kv.GossipKeyRequest{Op: op}
	if op != kv.GossipKeyOp_LIST {
		k, err := gossipKey(args, keyFile)
		if err != nil {
			return err
		}
		req.Key = k
	}
	ctx, c, _, done, err := g.session(ctx, stdout)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.GossipKeys(ctx, req)
	if err != nil {
		return err
	}
	failed := 0
	for _, n := range resp.Nodes {
		if n.Error != nil {
			failed++
		}
	}
	if g.output == "json" {
		if err := json.NewEncoder(stdout).Encode(resp); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tKEYS (IN USE FIRST)\tERROR")
		for _, n := range resp.Nodes {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", n.NodeID, strings.Join(n.Fingerprints, ","), n.GetError())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("the operation failed on %d of %d nodes", failed, len(resp.Nodes))
	}
	return nil
}
