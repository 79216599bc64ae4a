package node

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/fsm"
	"github.com/cubekv/cubekv/thrift/kv"
)

// SnapshotTo writes a snapshot of the whole state to w for a backup. It
// first waits for a linearizable read index (on a follower, the leader's),
// so the snapshot holds every write acknowledged before the call. The
// stream is fsm's snapshot format, which ends in a CRC-32C.
func (n *Node) SnapshotTo(ctx context.Context, w io.Writer) (fsm.SnapshotInfo, int64, error) {
	if _, err := n.prepareRead(ctx, kv.Consistency_LINEARIZABLE); err != nil {
		return fsm.SnapshotInfo{}, 0, err
	}
	return n.fsm.WriteSnapshot(w)
}

// RestoreFrom replaces the cluster's state with the backup in path. Only the
// leader restores; raft then installs the snapshot on every follower. The
// file is verified in full first: raft.Restore stores its input as the
// newest snapshot before the FSM reads it, so a corrupt file must never
// reach it. Afterwards the leader commits a NOOP command, so linearizable
// reads resume at an index the FSM observes (raft ends a restore with a
// no-op entry the FSM never sees). Meant for seeding a fresh cluster, as
// raft's own warning on Restore says.
func (n *Node) RestoreFrom(ctx context.Context, path string) (fsm.SnapshotInfo, error) {
	if !n.isLeader() {
		return fsm.SnapshotInfo{}, n.notLeaderErr()
	}
	f, err := os.Open(path)
	if err != nil {
		return fsm.SnapshotInfo{}, fmt.Errorf("open backup: %w", err)
	}
	defer f.Close()
	info, err := fsm.VerifySnapshot(f)
	if err != nil {
		return fsm.SnapshotInfo{}, err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fsm.SnapshotInfo{}, fmt.Errorf("size backup: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fsm.SnapshotInfo{}, fmt.Errorf("rewind backup: %w", err)
	}
	term := n.raft.CurrentTerm()
	timeout := time.Minute
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	n.withdrawReady(term)
	defer func() {
		// Ready again, however the restore ended; establish gives up by
		// itself if this node is no longer leader.
		n.establishUntilClosed(n.raft.CurrentTerm())
	}()
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: info.AppliedIndex, Term: term, Size: size}
	n.logger.Info("restoring backup", "raft_index", info.AppliedIndex, "count", info.Entries, "bytes", size)
	if err := n.raft.Restore(meta, f, timeout); err != nil {
		// raft may have stored and applied the snapshot locally before
		// failing (its final no-op is what waits for the followers), so a
		// failure here does not mean nothing changed.
		return fsm.SnapshotInfo{}, fmt.Errorf("%w: restore ended with %v; compare /digest on every node before retrying", ErrTimeout, err)
	}
	n.logger.Info("backup restored", "raft_index", n.raft.LastIndex(), "count", info.Entries)
	return info, nil
}
