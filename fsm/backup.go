package fsm

import (
	"fmt"
	"io"
)

// SnapshotInfo describes a snapshot stream.
type SnapshotInfo struct {
	// AppliedIndex is the Raft index the state was taken at.
	AppliedIndex uint64
	// Entries is the number of keys.
	Entries int
	// Clients is the number of client ids in the request-id table.
	Clients int
}

// WriteSnapshot writes a point-in-time snapshot of the current state to w,
// in the format Restore reads (doc.go), for backups. Like Snapshot it only
// holds the lock to capture the state; the writing runs while Apply
// continues. It returns what it wrote and the number of bytes.
//
// A backup carries no members table: addresses belong to the cluster that
// runs, not to the data, and a backup restored into another cluster must
// never send forwarded writes to the nodes it was taken from. After a
// restore every node records its own addresses again.
func (f *FSM) WriteSnapshot(w io.Writer) (SnapshotInfo, int64, error) {
	s, err := f.snapshot()
	if err != nil {
		return SnapshotInfo{}, 0, err
	}
	snap := s.(*fsmSnapshot)
	snap.members = nil
	n, err := snap.writeTo(w)
	if err != nil {
		return SnapshotInfo{}, n, fmt.Errorf("write snapshot: %w", err)
	}
	return SnapshotInfo{AppliedIndex: snap.applied, Entries: snap.view.Len(), Clients: len(snap.records)}, n, nil
}

// VerifySnapshot reads a whole snapshot stream and checks it exactly as
// Restore would (magic, version, every record, counts and the CRC), without
// touching any FSM. Errors on bad input wrap ErrCorruptSnapshot. It holds
// the decoded state in memory while checking.
func VerifySnapshot(r io.Reader) (SnapshotInfo, error) {
	f, err := New(DefaultConfig())
	if err != nil {
		return SnapshotInfo{}, err
	}
	st, err := f.readSnapshot(r, f.engine)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("verify snapshot: %w", err)
	}
	return SnapshotInfo{AppliedIndex: st.applied, Entries: st.engine.Len(), Clients: st.requests.len()}, nil
}
