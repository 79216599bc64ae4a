package node

import (
	"errors"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/raft"
)

// checkLogStore runs the log store's own consistency check on path before
// the store is opened, bounded by Config.StoreCheckTimeout.
func (n *Node) checkLogStore(path string, check storeChecker) error {
	err := checkStore(path, n.cfg.StoreCheckTimeout, check)
	if errors.Is(err, errCheckIncomplete) {
		n.logger.Warn("raft log check stopped before the end of the file; starting on the part checked", "path", path, "err", err)
		return nil
	}
	return err
}

// checkStartState refuses to start raft on state it cannot rebuild, and
// logs damaged snapshots raft will skip.
func (n *Node) checkStartState(logs raft.LogStore, snaps raft.SnapshotStore) error {
	dir := filepath.Join(n.cfg.DataDir, "raft", "snapshots")
	damaged, err := checkRebuildable(logs, snaps, dir)
	if err != nil {
		return err
	}
	for _, d := range damaged {
		n.logger.Error("damaged snapshot skipped: starting from the one before it and the log", "path", filepath.Join(dir, d))
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
