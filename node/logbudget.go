package node

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// The Raft log is bounded in bytes as well as entries.
//
// hashicorp/raft counts entries only: it snapshots when SnapshotThreshold
// entries have arrived since the last snapshot and keeps TrailingLogs entries
// after one. An entry may carry one small command or a coalesced batch of
// hundreds of KiB, so an entry count alone either lets the log grow to
// gigabytes (a bulk load of large entries) or snapshots the whole state far
// too often (a trickle of small ones: a 200 MB snapshot for every few hundred
// 200-byte entries wears an SD card out). The node therefore adds two byte
// bounds, enforced by logBudgetLoop:
//
//   - a snapshot is taken as soon as the entries applied since the last
//     snapshot hold the node's budget of data, whatever their number (the
//     budget is SnapshotLogBytes scaled by a factor in [1, 1.25) drawn at
//     Open, so that nodes storing the same entries do not all snapshot at
//     once; the meter wakes the loop as soon as a budget has been stored,
//     and the loop also checks every second);
//   - the entries kept after a snapshot are at most TrailingLogs and at most
//     2 x the budget of data: raft's TrailingLogs is lowered at run time to
//     the number of newest entries that fit, never below minTrailingLogs
//     (unless TrailingLogs is lower). Twice the budget keeps the log
//     reaching back to the previous snapshot unless more than a budget
//     arrives while a snapshot is written, so a node whose newest snapshot
//     is damaged restarts from the one before it (docs/operations.md).
//
// With a durable engine the budget also scales with the state: a snapshot
// of it reads and rewrites the whole state, so it is max(the budget above,
// a quarter of the engine's bytes), at most maxDurableBudget (raft.db must
// stay well inside bbolt's 2 GB map on 32-bit boards). A 1 GB state is then
// snapshotted per 256 MiB of log, not per 8 MiB; a restart replays at most
// that much, which the engine skips up to its own applied index. In-memory
// engines keep SnapshotLogBytes alone: their snapshot is what a restart
// restores, and a smaller log is a faster restart.
//
// So the log holds about 3 budgets at most, plus what arrives while a
// snapshot is written, whatever the entry sizes; and the entry threshold can
// stay high, so that a large state is not rewritten for a little new data.

// logBudgetTick is how often the byte bounds are checked.
const logBudgetTick = time.Second

// minTrailingLogs is the fewest entries kept after a snapshot, however large
// they are: enough for a follower that missed one AppendEntries batch.
const minTrailingLogs = DefaultMaxAppendEntries

// logMark records that the log's entries up to index hold cum bytes of data,
// counted from an arbitrary origin.
type logMark struct {
	index uint64
	cum   int64
}

// logMeter is a raft.LogStore wrapper that counts the bytes of the entries
// stored through it, per StoreLogs call: enough to answer how many bytes lie
// after an index and how many newest entries fit in a byte budget, to the
// granularity of one call (one AppendEntries batch or one proposal).
// Entries stored before the process started are not counted: after a
// restart the bounds apply to what is new, and until two budgets have been
// counted the trailing entries are bounded by TrailingLogs alone.
//
// Safe for concurrent use; every raft.LogStore call goes to the wrapped store
// with its own contract.
type logMeter struct {
	raft.LogStore

	mu    sync.Mutex
	marks []logMark // ascending index; marks[i].cum >= base
	base  int64     // cum at the newest index no longer marked (compacted)
	// signal, when set, is the byte count since the last snapshot at which
	// StoreLogs wakes the budget loop through crossed, so a fast writer
	// does not wait for the next tick.
	signalAt int64
	crossed  chan struct{}
}

var (
	_ raft.LogStore          = (*logMeter)(nil)
	_ raft.MonotonicLogStore = (*logMeter)(nil)
)

func newLogMeter(store raft.LogStore) *logMeter {
	return &logMeter{LogStore: store, crossed: make(chan struct{}, 1)}
}

// IsMonotonic passes the wrapped store's answer on: raft asks it to decide
// whether a snapshot install or a restore must empty the log (raft-wal
// refuses a gap in its indexes), so hiding it would break both.
func (m *logMeter) IsMonotonic() bool {
	s, ok := m.LogStore.(raft.MonotonicLogStore)
	return ok && s.IsMonotonic()
}

// StoreLog stores one entry.
func (m *logMeter) StoreLog(l *raft.Log) error { return m.StoreLogs([]*raft.Log{l}) }

// StoreLogs stores entries and, when the store accepted them, counts them.
func (m *logMeter) StoreLogs(logs []*raft.Log) error {
	if err := m.LogStore.StoreLogs(logs); err != nil || len(logs) == 0 {
		return err
	}
	var n int64
	for _, l := range logs {
		n += int64(len(l.Data) + len(l.Extensions))
	}
	first, last := logs[0].Index, logs[len(logs)-1].Index
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dropFrom(first) // defensive: raft deletes a rewritten tail first
	total := m.totalLocked() + n
	m.marks = append(m.marks, logMark{index: last, cum: total})
	if m.signalAt > 0 && total >= m.signalAt {
		m.signalAt = 0
		select {
		case m.crossed <- struct{}{}:
		default:
		}
	}
	return nil
}

// wakeAfter asks StoreLogs to signal crossed once budget more bytes than
// are stored above index have been stored.
func (m *logMeter) wakeAfter(index uint64, budget int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.signalAt = m.totalLocked() - m.bytesAfterLocked(index) + budget
}

// DeleteRange deletes entries from the store and forgets their marks: a
// range that reaches the newest mark is a tail rewrite, any other is a
// compaction of the head.
func (m *logMeter) DeleteRange(min, max uint64) error {
	err := m.LogStore.DeleteRange(min, max)
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.marks) == 0 {
		return err
	}
	if max >= m.marks[len(m.marks)-1].index {
		m.dropFrom(min)
		return err
	}
	i := sort.Search(len(m.marks), func(i int) bool { return m.marks[i].index > max })
	if i > 0 {
		m.base = m.marks[i-1].cum
		m.marks = append(m.marks[:0], m.marks[i:]...)
	}
	return err
}

// dropFrom forgets the marks at or above index.
func (m *logMeter) dropFrom(index uint64) {
	i := sort.Search(len(m.marks), func(i int) bool { return m.marks[i].index >= index })
	m.marks = m.marks[:i]
}

func (m *logMeter) totalLocked() int64 {
	if len(m.marks) == 0 {
		return m.base
	}
	return m.marks[len(m.marks)-1].cum
}

// bytesAfter returns the bytes counted in entries above index.
func (m *logMeter) bytesAfter(index uint64) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bytesAfterLocked(index)
}

// bytesBetween returns the bytes counted in entries in (from, to].
func (m *logMeter) bytesBetween(from, to uint64) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bytesAfterLocked(from) - m.bytesAfterLocked(to)
}

func (m *logMeter) bytesAfterLocked(index uint64) int64 {
	i := sort.Search(len(m.marks), func(i int) bool { return m.marks[i].index > index })
	from := m.base
	if i > 0 {
		from = m.marks[i-1].cum
	}
	return m.totalLocked() - from
}

// entriesWithin returns how many of the newest entries hold at most budget
// bytes, or ok false when every counted entry does (the meter cannot tell
// how many older, uncounted ones would fit too).
func (m *logMeter) entriesWithin(budget int64) (n uint64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	total := m.totalLocked()
	if total-m.base <= budget {
		return 0, false
	}
	last := m.marks[len(m.marks)-1].index
	// The oldest mark whose later entries fit: entries (mark.index, last].
	i := sort.Search(len(m.marks), func(i int) bool { return total-m.marks[i].cum <= budget })
	return last - m.marks[i].index, true
}

// logBudgetLoop enforces the byte bounds described at the top of this file
// until the node closes: every tick, and as soon as the meter reports that
// a budget's worth has been stored since the last snapshot.
func (n *Node) logBudgetLoop() {
	defer n.wg.Done()
	t := time.NewTicker(logBudgetTick)
	defer t.Stop()
	var lastWarn time.Time
	for {
		select {
		case <-n.closing:
			return
		case <-t.C:
		case <-n.meter.crossed:
		}
		if err := n.enforceLogBudget(); err != nil && time.Since(lastWarn) > time.Minute {
			lastWarn = time.Now() // a full disk fails every attempt: say so once a minute
			n.logger.Warn("snapshot for the log's byte budget failed", "err", err)
		}
	}
}

// maxDurableBudget caps the budget a durable engine's size raises: 256 MiB,
// and 64 MiB on 32-bit platforms, where bbolt maps raft.db into the same
// 3 GB of address space as the heap and pebble's memory, and a log of
// about three budgets must stay well below the 1 GiB past which bbolt's
// next mapping is 2 GiB.
const maxDurableBudget = 64 << 20 * (1 + 3*(strconv.IntSize/64))

// logBudget is this node's SnapshotLogBytes, scaled by a factor in [1,
// 1.25) drawn at Open, so that the nodes of a cluster, which store the same
// entries, do not all write their snapshots at the same moment (raft
// staggers its own threshold checks for the same reason). With a durable
// engine it is at least a quarter of the state's bytes, up to
// maxDurableBudget.
func (n *Node) logBudget() int64 {
	if !n.cfg.durable() {
		return n.budget
	}
	return durableBudget(n.budget, n.fsm.Bytes())
}

// durableBudget is the budget for a durable engine holding state bytes.
func durableBudget(budget, state int64) int64 {
	return max(budget, min(state/4, maxDurableBudget))
}

// enforceLogBudget sets raft's TrailingLogs to what fits in the trailing
// byte bound and takes a snapshot when the applied entries since the last
// one hold the budget. Below the budget it asks the meter to wake the loop
// once enough has been stored.
func (n *Node) enforceLogBudget() error {
	budget := n.logBudget()
	trailing := n.cfg.trailingLogs()
	if fit, ok := n.meter.entriesWithin(2 * budget); ok {
		trailing = min(trailing, max(fit, minTrailingLogs))
	}
	rc := n.raft.ReloadableConfig()
	if rc.TrailingLogs != trailing {
		rc.TrailingLogs = trailing
		if err := n.raft.ReloadConfig(rc); err != nil {
			return fmt.Errorf("set trailing logs to %d: %w", trailing, err)
		}
	}
	snap, err := strconv.ParseUint(n.raft.Stats()["last_snapshot_index"], 10, 64)
	if err != nil {
		return fmt.Errorf("read the last snapshot index: %w", err)
	}
	// Only applied entries count: a snapshot covers what the FSM has
	// applied, and stored-but-unapplied bytes would make it snapshot again
	// and again while the FSM catches up.
	if n.meter.bytesBetween(snap, n.fsm.AppliedIndex()) < budget {
		n.meter.wakeAfter(snap, budget)
		return nil
	}
	switch err := n.raft.Snapshot().Error(); {
	case err == nil:
		n.logger.Info("snapshot taken: the log reached its byte budget", "bytes", budget)
	case errors.Is(err, raft.ErrNothingNewToSnapshot), errors.Is(err, raft.ErrRaftShutdown):
	default:
		return err
	}
	return nil
}
