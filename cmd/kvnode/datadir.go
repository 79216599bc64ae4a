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

	"github.com/cubekv/cubekv/node"
)

// refusals are the errors that mean "the operator must act": kvnode exits 2
// on them (as on a bad flag) with one line, before writing anything, and the
// systemd unit does not restart it (RestartPreventExitStatus=2).
var refusals = []error{
	errUsage,
	node.ErrDataDirInUse,
	node.ErrIdentityMismatch,
	node.ErrLowSpace,
	node.ErrCorruptStore,
	node.ErrCannotRebuild,
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
// refuses a directory that belongs to another node id or has too little
// free space, and records the identity of a new directory. The caller
// releases the lock at exit.
func openDataDir(cfg *config, logger *slog.Logger) (*node.DataDirLock, error) {
	lock, err := node.LockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*node.DataDirLock, error) {
		lock.Unlock()
		return nil, err
	}
	id, found, err := node.CheckIdentity(cfg.DataDir, cfg.ID)
	if err != nil {
		return fail(err)
	}
	if err := node.CheckFreeSpace(cfg.DataDir, cfg.MinFreeSpace); err != nil {
		return fail(err)
	}
	if found {
		return lock, nil
	}
	// A new directory, or one from before the identity file existed.
	_, statErr := os.Stat(filepath.Join(cfg.DataDir, "raft", "raft.db"))
	existing := statErr == nil
	if !existing {
		if nc, err := cfg.nodeConfig(); err == nil && (nc.Bootstrap || len(nc.InitialCluster) > 0) {
			id.ClusterID = node.ClusterIDFor(nc.InitialCluster)
		}
	}
	id.NodeID = cfg.ID
	if err := node.WriteIdentity(cfg.DataDir, id); err != nil {
		return fail(err)
	}
	logger.Info("recorded the node id in the data dir", "path", filepath.Join(cfg.DataDir, "identity.json"), "cluster_id", id.ClusterID)
	return lock, nil
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
