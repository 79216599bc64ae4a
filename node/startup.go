package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/cubekv/cubekv/internal/logging"
)

// Preflight checks the Raft state in cfg.DataDir before anything starts,
// reading only: raft.db passes the log store's consistency check (bounded
// by StoreCheckTimeout), and some snapshot plus the log after it can
// rebuild the state. Damage is an error wrapping ErrCorruptStore or
// ErrCannotRebuild whose text names the file and the recovery. A new data
// dir passes. With a durable engine the snapshot check waits for Open,
// which knows what the state holds (checkDurableStart). Open runs it unless SkipStartChecks is set; kvnode runs it
// itself before it joins gossip.
func Preflight(cfg *Config) error {
	if cfg.LogStore != nil || cfg.StableStore != nil || cfg.SnapshotStore != nil {
		return nil // embedded stores are the embedder's to check
	}
	logger := cfg.Logger
	if logger == nil {
		logger = logging.Discard()
	}
	logger = logger.With("component", logging.ComponentNode)
	dir := filepath.Join(cfg.DataDir, "raft")
	path := filepath.Join(dir, "raft.db")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	err := checkStore(path, cfg.StoreCheckTimeout, checkBolt)
	if errors.Is(err, errCheckIncomplete) {
		logger.Warn("raft log check stopped before the end of the file; starting on the part checked", "path", path, "err", err)
	} else if err != nil {
		return err
	}
	bs, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bbolt.Options{ReadOnly: true, Timeout: time.Second}})
	if err != nil {
		return fmt.Errorf("open raft log %s read-only: %w", path, err)
	}
	defer bs.Close()
	first, err := bs.FirstIndex()
	if err != nil {
		return fmt.Errorf("read first log index of %s: %w", path, err)
	}
	last, err := bs.LastIndex()
	if err != nil {
		return fmt.Errorf("read last log index of %s: %w", path, err)
	}
	snapDir := filepath.Join(dir, "snapshots")
	snaps, unreadable, err := listSnapshots(snapDir, cfg.snapshotRetain())
	if err != nil {
		return err
	}
	for _, u := range unreadable {
		logger.Error("damaged snapshot skipped: raft cannot read its metadata", "path", filepath.Join(snapDir, u))
	}
	if cfg.durable() {
		// Whether a snapshot is needed at all depends on the index the
		// durable state holds, which only opening it tells: Open checks
		// once it is open (checkDurableStart).
		return nil
	}
	damaged, err := checkRebuildable(first, last, snaps, snapDir)
	if err != nil {
		return err
	}
	for _, d := range damaged {
		logger.Error("damaged snapshot skipped: starting from the one before it and the log", "path", filepath.Join(snapDir, d))
	}
	return nil
}

// reportIgnoredBootstrap says plainly that an initial cluster list is not
// used on a restart, and warns when it disagrees with the configuration
// raft holds: membership changes only through kvctl member.
func (n *Node) reportIgnoredBootstrap() {
	if len(n.cfg.InitialCluster) == 0 {
		return
	}
	var want []string
	for _, p := range n.cfg.InitialCluster {
		want = append(want, p.ID+"="+p.RaftAddr)
	}
	var have []string
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			have = append(have, string(s.ID)+"="+string(s.Address))
		}
	}
	sort.Strings(want)
	sort.Strings(have)
	if strings.Join(want, ",") == strings.Join(have, ",") {
		n.logger.Info("initial cluster ignored: the data dir already holds this cluster's state")
		return
	}
	n.logger.Warn("initial cluster ignored: the data dir holds Raft state whose members differ; change members with kvctl member add/remove, or start with an empty data dir to form a new cluster",
		"initial_cluster", strings.Join(want, ","), "members", strings.Join(have, ","))
}
