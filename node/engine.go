// The state machine's engine: an in-memory one built by New, or the durable
// pebble engine opened by Open under DataDir/state, and the rule that decides
// whether raft restores its latest snapshot at start.

package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/fsm"
	"github.com/cubekv/cubekv/storage/pebbleng"
)

// EnginePebble is Config.Engine's durable engine: the state lives on disk
// under DataDir/state and survives a restart.
const EnginePebble = pebbleng.Name

// stateDirName is the directory under DataDir that holds the pebble
// engine's state (pebbleng.Dir's root).
const stateDirName = "state"

// ErrForeignState means the durable state holds entries beyond the end of
// the Raft log: it is not this log's state (the raft directory was replaced
// or lost), and applying the log on top of it would diverge.
var ErrForeignState = errors.New("durable state is ahead of the raft log")

// durable reports whether the node's engine keeps its state on disk.
func (c *Config) durable() bool { return c.Engine == EnginePebble }

// StateDir returns the directory that holds the pebble engine's state.
func (c *Config) StateDir() string { return filepath.Join(c.DataDir, stateDirName) }

// fsmConfig returns the FSM's config for this node.
func (n *Node) fsmConfig() *fsm.Config {
	fcfg := fsm.DefaultConfig()
	fcfg.Engine = n.cfg.Engine
	fcfg.HistoryBytes = n.cfg.WatchHistoryBytes
	fcfg.Logger = n.base // fsm adds its own component attribute
	return fcfg
}

// setFSM makes f the node's state machine, with the lease keeper reading
// its lease table.
func (n *Node) setFSM(f *fsm.FSM) {
	n.fsm = f
	n.leases = n.newKeeper()
}

// openDurable opens the pebble state under DataDir/state (creating an empty
// one the first time) as the node's FSM. The FSM then owns the files; Close
// closes it after raft has shut down.
func (n *Node) openDurable() error {
	dir := pebbleng.NewDir(n.cfg.StateDir(), pebbleng.Options{
		CacheBytes:    n.cfg.PebbleCacheBytes,
		MemTableBytes: n.cfg.PebbleMemTableBytes,
		Logger:        n.base.With("component", "pebble"),
	})
	f, err := fsm.NewDurable(n.fsmConfig(), dir)
	if err != nil {
		return fmt.Errorf("open state %s: %w", n.cfg.StateDir(), err)
	}
	n.setFSM(f)
	return nil
}

// reportStaleState warns when an in-memory node finds a pebble state left by
// an earlier run with --engine pebble. It is kept, not removed: the start
// rule (restoreOnStart) makes it safe to switch back, and it is only
// out of date, never wrong for this log.
func (n *Node) reportStaleState() {
	if n.cfg.DataDir == "" {
		return
	}
	if _, err := os.Stat(n.cfg.StateDir()); err == nil {
		n.logger.Warn("a pebble state from an earlier run is not used by this engine; it is out of date and may be removed while the node is stopped",
			"path", n.cfg.StateDir(), "engine", n.fsm.EngineName())
	}
}

// restoreOnStart decides whether raft must restore its latest snapshot when
// it starts, for an FSM on a durable engine whose state is already open:
//   - no when the FSM holds at least raft's index of that snapshot (raft's
//     own meta index: a backup's restore sets it above every index the
//     engine had, and the snapshot's own applied index may lie below it by
//     entries the FSM never sees); raft then re-delivers the log after the
//     snapshot and the FSM skips what it holds;
//   - yes when the FSM holds less (a new or replaced state, a crash during an
//     install, a switch from an in-memory engine): raft restores the
//     snapshot into a fresh durable state;
//   - an error wrapping ErrForeignState when the FSM holds more than raft's
//     last index (the log's, or the snapshot's when it is higher).
func restoreOnStart(applied uint64, logs raft.LogStore, snaps raft.SnapshotStore) (bool, error) {
	metas, err := snaps.List()
	if err != nil {
		return false, fmt.Errorf("list raft snapshots: %w", err)
	}
	var snapIndex uint64
	if len(metas) > 0 {
		snapIndex = metas[0].Index // List returns the newest first
	}
	last, err := logs.LastIndex()
	if err != nil {
		return false, fmt.Errorf("read the last raft index: %w", err)
	}
	last = max(last, snapIndex)
	if applied > last {
		return false, fmt.Errorf("%w: the state holds raft index %d, the raft log ends at %d; "+
			"start with an empty state directory (move it away) so the node rebuilds it from raft's snapshot and log",
			ErrForeignState, applied, last)
	}
	return applied < snapIndex, nil
}

// checkDurableStart is Preflight's snapshot check for a durable engine, run
// once the state is open and restoreOnStart has decided (only for the
// snapshot store under DataDir/raft; an embedded one is the embedder's):
//   - when raft restores a snapshot, the same check as for an in-memory
//     engine (checkRebuildable): some snapshot that passes its CRC, and the
//     log right after it;
//   - when the state holds at least the newest snapshot, no snapshot is read
//     at start: the log must continue right after the state's index, and
//     the newest snapshot's CRC is checked in the background (a full read of
//     it, which would otherwise delay every start by the time it takes to
//     read the whole state). A damaged one is reported and replaced by a
//     new snapshot when the state has moved past it; raft's store checks
//     the CRC again before it sends a snapshot to a follower, so a damaged
//     one is never installed anywhere.
//
// It returns the snapshot to check in the background (verifyInBackground,
// once raft runs and has re-delivered the log), if any.
func (n *Node) checkDurableStart(restore bool, logs raft.LogStore) (*pendingCheck, error) {
	if n.cfg.SnapshotStore != nil || n.cfg.DataDir == "" {
		return nil, nil
	}
	snapDir := filepath.Join(n.cfg.DataDir, "raft", "snapshots")
	snaps, _, err := listSnapshots(snapDir, n.cfg.snapshotRetain())
	if err != nil {
		return nil, err
	}
	first, err := logs.FirstIndex()
	if err != nil {
		return nil, fmt.Errorf("read the first raft index: %w", err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("read the last raft index: %w", err)
	}
	if restore {
		damaged, err := checkRebuildable(first, last, snaps, snapDir)
		for _, d := range damaged {
			n.logger.Error("damaged snapshot skipped: starting from the one before it and the log", "path", filepath.Join(snapDir, d))
		}
		return nil, err
	}
	// Raft, told not to restore, still starts from the newest snapshot
	// whose meta.json it can read (listSnapshots skips the others as raft
	// does) and reads every entry after it, whatever the state holds: it
	// panics on a missing one, so the log must continue right after that
	// snapshot. The state is at or past it (restoreOnStart), so this also
	// covers the state's own index.
	var base uint64
	if len(snaps) > 0 {
		base = snaps[0].Index
	}
	if last > base && (first == 0 || first > base+1) {
		return nil, fmt.Errorf("%w: raft starts from the snapshot at index %d (the newest whose metadata it can read) but the log in %s starts at index %d: "+
			"remove this node from the cluster (kvctl member remove), move the data dir aside, start it empty and add it back (kvctl member add), or restore a backup; see docs/operations.md \"Damaged files\"",
			ErrCannotRebuild, base, filepath.Dir(snapDir), first)
	}
	if len(snaps) == 0 {
		return nil, nil
	}
	return &pendingCheck{snap: snaps[0], after: last}, nil
}

// pendingCheck is a snapshot to check in the background once raft has
// applied index after (the log's end at start: the re-delivery of what the
// state holds is over).
type pendingCheck struct {
	snap  storedSnapshot
	after uint64
}

// replayWait bounds how long verifyInBackground waits for the replay.
const replayWait = 2 * time.Minute

// verifyInBackground checks s's CRC after a durable start, with raft
// running, and, when it is damaged, reports it and asks raft for a new
// snapshot (which becomes the newest, the one raft sends to followers) once
// raft has applied past it: a restarted node applies nothing until it hears
// of a commit index. It gives up after replaceDamagedFor, leaving it to the
// next snapshot the log budget takes.
func (n *Node) verifyInBackground(c *pendingCheck) {
	s := &c.snap
	// After the replay: it reads raft.db, and the check reads a file as
	// large as the state.
	wait := time.NewTicker(100 * time.Millisecond)
	giveUp := time.Now().Add(replayWait)
	for n.raft.AppliedIndex() < c.after && time.Now().Before(giveUp) {
		select {
		case <-n.closing:
			wait.Stop()
			return
		case <-wait.C:
		}
	}
	wait.Stop()
	err := s.verifyUntil(n.closing)
	if err == nil || errors.Is(err, errVerifyStopped) {
		return
	}
	path := s.dir
	n.logger.Error("newest snapshot is damaged; the durable state does not need it, and a new snapshot replaces it", "path", path, "err", err)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	deadline := time.Now().Add(replaceDamagedFor)
	for {
		if n.raft.AppliedIndex() > s.Index {
			serr := n.raft.Snapshot().Error()
			if serr == nil {
				n.logger.Info("snapshot taken to replace a damaged one", "path", path)
				return
			}
			if errors.Is(serr, raft.ErrRaftShutdown) {
				return
			}
			err = serr
		}
		if time.Now().After(deadline) {
			n.logger.Warn("damaged snapshot not replaced yet; the next snapshot replaces it", "path", path, "err", err)
			return
		}
		select {
		case <-n.closing:
			return
		case <-tick.C:
		}
	}
}

// replaceDamagedFor is how long verifyInBackground keeps trying to replace
// a damaged snapshot.
const replaceDamagedFor = 5 * time.Minute
