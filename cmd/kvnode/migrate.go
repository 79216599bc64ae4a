package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/cubekv/cubekv/internal/logging"
	"github.com/cubekv/cubekv/node"
)

// migrateLog runs kvnode migrate-log: it converts the Raft log and stable
// store of a stopped node to another kind and exits. Start the node with
// the matching --log-store afterwards.
func migrateLog(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	mc, err := parseMigrateConfig(args, getenv)
	if err != nil {
		return err
	}
	logger := logging.New(stderr, false, slog.LevelWarn)
	res, err := node.MigrateLogStore(mc.DataDir, mc.To, logging.HCLog(logger.With("component", logging.ComponentRaft)))
	if err != nil {
		return fmt.Errorf("migrate-log: %w", err)
	}
	fmt.Fprintf(stdout, "migrated the raft log in %s from %s to %s (entries %d..%d); the old one is in %s and can be removed once the node runs with --log-store %s\n",
		mc.DataDir, res.From, res.To, res.First, res.Last, res.Old, res.To)
	return nil
}
