package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cubekv/cubekv/fsm"
	"github.com/cubekv/cubekv/node"
	"github.com/cubekv/cubekv/storage/pebbleng"
)

// refusals are the errors that mean "the operator must act": kvnode exits 2
// on them (as on a bad flag) with one line, and the systemd unit does not
// restart it (RestartPreventExitStatus=2). The data dir checks refuse
// before anything is written; with --engine pebble the checks that need the
// state's applied index (ErrForeignState, and ErrCannotRebuild for the
// snapshots) refuse when node.Open has opened the state, before raft
// starts.
var refusals = []error{
	errUsage,
	node.ErrDataDirInUse,
	node.ErrIdentityMismatch,
	node.ErrLowSpace,
	node.ErrCorruptStore,
	node.ErrCannotRebuild,
	node.ErrForeignState,
	fsm.ErrCorruptState,
	pebbleng.ErrCorrupt,
}

// exitCode maps run's error to the process exit status.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	for _, r := range refusals {
		if errors.Is(err, r) {
			return 2
		}
	}
	return 1
}

// openDataDir takes the data dir lock before anything else runs (a second
// kvnode on the same directory must not join gossip or touch the files),
// and refuses a directory that belongs to another node id, has too little
// free space, or holds damaged Raft state (node.Preflight). It writes
// nothing but the lock file. The caller
// releases the lock at exit; recordIdentity writes the identity of a new
// directory once every other check has passed.
func openDataDir(cfg *config, logger *slog.Logger) (*node.DataDirLock, error) {
	lock, err := node.LockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if _, _, err := node.CheckIdentity(cfg.DataDir, cfg.ID); err != nil {
		lock.Unlock()
		return nil, err
	}
	if err := node.CheckFreeSpace(cfg.DataDir, cfg.MinFreeSpace); err != nil {
		lock.Unlock()
		return nil, err
	}
	nc, err := cfg.nodeConfig()
	if err == nil {
		nc.Logger = logger
		err = node.Preflight(nc)
	}
	if err != nil {
		lock.Unlock()
		return nil, err
	}
	return lock, nil
}

// recordIdentity writes identity.json in a data dir that has none: a new
// one, or one from before the file existed.
func recordIdentity(cfg *config, logger *slog.Logger) error {
	id, found, err := node.CheckIdentity(cfg.DataDir, cfg.ID)
	if err != nil || found {
		return err
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "raft", "raft.db")); errors.Is(err, os.ErrNotExist) {
		// A new node: it knows the cluster id only when it bootstraps.
		if nc, err := cfg.nodeConfig(); err == nil && (nc.Bootstrap || len(nc.InitialCluster) > 0) {
			id.ClusterID = node.ClusterIDFor(nc.InitialCluster)
		}
	}
	id.NodeID = cfg.ID
	if err := node.WriteIdentity(cfg.DataDir, id); err != nil {
		return err
	}
	logger.Info("recorded the node id in the data dir", "path", filepath.Join(cfg.DataDir, "identity.json"), "cluster_id", id.ClusterID)
	return nil
}

// checkAddrsFree refuses, naming the flag, an address another process
// listens on, before the node writes anything: the Raft listener is opened
// only after raft.db, so its own error would come too late.
func checkAddrsFree(cfg *config) error {
	addrs := []struct{ flag, addr string }{
		{"--thrift-addr", cfg.ThriftAddr},
		{"--raft-addr", cfg.RaftAddr},
		{"--admin-addr", cfg.AdminAddr},
		{"--gossip-addr", cfg.GossipAddr},
	}
	for _, a := range addrs {
		if a.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", a.addr)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("%w: %s %s is already in use by another process", errUsage, a.flag, a.addr)
			}
			continue // resolution and permission errors are reported where the port is opened
		}
		ln.Close()
	}
	return nil
}

// watchFreeSpace logs a warning when the data dir's free space falls under
// --low-space-warning and again when it recovers, like etcd's space quota
// alarm; the gauges in metrics.go report the same at every scrape.
func watchFreeSpace(done <-chan struct{}, cfg *config, logger *slog.Logger) {
	if cfg.LowSpaceWarning == 0 {
		return
	}
	low := false
	t := time.NewTicker(freeSpaceInterval)
	defer t.Stop()
	for {
		free, err := node.FreeSpace(cfg.DataDir)
		if err == nil {
			switch {
			case !low && free < cfg.LowSpaceWarning:
				low = true
				logger.Warn("data dir is running out of disk space: free some before it fills, or the node stops keeping up (docs/operations.md \"Full disk\")", "path", cfg.DataDir, "free_bytes", free, "threshold_bytes", cfg.LowSpaceWarning)
			case low && free >= cfg.LowSpaceWarning:
				low = false
				logger.Info("data dir has enough free disk space again", "path", cfg.DataDir, "free_bytes", free)
			}
		}
		select {
		case <-done:
			return
		case <-t.C:
		}
	}
}

// freeSpaceInterval is how often watchFreeSpace looks.
const freeSpaceInterval = 5 * time.Second
