package node

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// ErrCannotRebuild means no snapshot in the data directory, together with
// the log after it, rebuilds the node's state: raft would stop with a
// panic ("log not found") or fail on every start.
var ErrCannotRebuild = errors.New("local state cannot be rebuilt")

// checkRebuildable finds the snapshot raft will restore at start (the
// newest one whose files open and pass raft's CRC check) and
// checks that the log continues right after it. raft restores the newest
// snapshot that loads and then reads every entry after it; when the newest
// is damaged and the log was compacted past the older one, that read
// panics. Saying so before raft starts lets kvnode exit with the way out.
// It returns the snapshots found damaged, for the log.
func checkRebuildable(logs raft.LogStore, snaps raft.SnapshotStore, dir string) (damaged []string, err error) {
	metas, err := snaps.List()
	if err != nil {
		return nil, fmt.Errorf("list snapshots in %s: %w", dir, err)
	}
	first, err := logs.FirstIndex()
	if err != nil {
		return nil, fmt.Errorf("read first log index: %w", err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("read last log index: %w", err)
	}
	base := uint64(0) // index of the state raft will restore
	found := len(metas) == 0
	for _, m := range metas {
		if verr := verifyStoredSnapshot(snaps, m.ID); verr != nil {
			damaged = append(damaged, fmt.Sprintf("%s (%v)", m.ID, verr))
			continue
		}
		base, found = m.Index, true
		break
	}
	howto := "remove this node from the cluster (kvctl member remove), move the data dir aside, start it empty and add it back (kvctl member add), or restore a backup; see docs/operations.md \"Damaged files\""
	if !found {
		return damaged, fmt.Errorf("%w: every snapshot in %s is damaged (%d: %v) and the log alone cannot replace them: %s", ErrCannotRebuild, dir, len(damaged), damaged, howto)
	}
	if last > base && (first == 0 || first > base+1) {
		what := "no snapshot"
		if base > 0 {
			what = fmt.Sprintf("the newest good snapshot ends at index %d", base)
		}
		if len(damaged) > 0 {
			what += fmt.Sprintf(" (damaged: %v)", damaged)
		}
		return damaged, fmt.Errorf("%w: %s but the log in %s starts at index %d: %s", ErrCannotRebuild, what, dir, first, howto)
	}
	return damaged, nil
}

// verifyStoredSnapshot opens a stored snapshot as raft will at start: the
// file store reads the whole state file and compares its CRC-64 with the
// one in meta.json, so bit rot and truncation fail here. (Decoding it too
// would hold a second copy of the state in memory on a small board; the
// FSM's own CRC-32C still guards the restore itself.)
func verifyStoredSnapshot(snaps raft.SnapshotStore, id string) error {
	_, rc, err := snaps.Open(id)
	if err != nil {
		return err
	}
	return rc.Close()
}
