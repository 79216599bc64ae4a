package fsm

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/storage"
	"github.com/cubekv/cubekv/thrift/kv"
)

// Sentinel errors.
var (
	// ErrStaleSequence is the result of a command whose request id has a
	// sequence lower than the last one applied for its client id. Nothing
	// was applied.
	ErrStaleSequence = errors.New("stale request sequence")
	// ErrInvalidCommand is the result of a well-formed command that is
	// semantically invalid (an empty key, an unknown op, a CAS without
	// exactly one expectation, ...), and what Validate refuses. Nothing was
	// applied.
	ErrInvalidCommand = errors.New("invalid command")
	// ErrAnswerTooLarge is the result of a transaction whose results would
	// carry more than the answer budget stamped into it. Nothing was
	// applied.
	ErrAnswerTooLarge = errors.New("answer too large")
	// ErrCorruptSnapshot is returned by Restore for input that is truncated,
	// has a bad magic, version or CRC, or holds undecodable or out-of-range
	// records. The FSM's state is left as it was.
	ErrCorruptSnapshot = errors.New("corrupt snapshot")
	// ErrInvalidConfig is returned by Config.Validate and New for a
	// configuration they cannot use.
	ErrInvalidConfig = errors.New("invalid fsm config")
)

// CommandError is a command refused without applying anything, by Validate
// or by Apply. Field names the offending field as the client's request
// calls it ("key", "success[2].value", "success"), Reason says why, and Err,
// ErrInvalidCommand or ErrAnswerTooLarge, is what errors.Is matches.
type CommandError struct {
	Field  string
	Reason string
	Err    error
}

func (e *CommandError) Error() string { return e.Field + ": " + e.Reason }

func (e *CommandError) Unwrap() error { return e.Err }

// Config configures an FSM. ClientTTL and MaxClients decide which retries
// are recognised, and so what gets applied: they must be the same on every
// node of a cluster.
type Config struct {
	// Engine is the storage kind: "arena" (storage.KindDefault, also when
	// empty), "btree" or "hash".
	Engine string
	// Logger receives the FSM's logs; nil discards them.
	Logger *slog.Logger
	// ClientTTL is the request-id table's idle limit, in Raft indexes: a
	// client id untouched for this many indexes is forgotten. 0 means
	// DefaultClientTTL.
	ClientTTL uint64
	// MaxClients caps the request-id table, in client ids; the least
	// recently touched is forgotten first. 0 means DefaultMaxClients.
	MaxClients int
	// HistoryBytes bounds the change history that serves watches, in
	// bytes (keys, values and about 80 bytes per change); the oldest
	// indexes are dropped first. 0 means DefaultHistoryBytes. It may
	// differ between nodes: it decides only how far back each node's
	// watches reach.
	HistoryBytes int64
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() *Config {
	return &Config{
		Engine:     storage.KindDefault,
		ClientTTL:  DefaultClientTTL,
		MaxClients: DefaultMaxClients,

		HistoryBytes: DefaultHistoryBytes,
	}
}

// Validate reports a field New cannot use.
func (c *Config) Validate() error {
	if c.Engine != "" && !slices.Contains(storage.Kinds, c.Engine) {
		return fmt.Errorf("%w: engine %q (want one of %q)", ErrInvalidConfig, c.Engine, storage.Kinds)
	}
	if c.MaxClients < 0 {
		return fmt.Errorf("%w: max clients %d is negative", ErrInvalidConfig, c.MaxClients)
	}
	if c.HistoryBytes < 0 {
		return fmt.Errorf("%w: history bytes %d is negative", ErrInvalidConfig, c.HistoryBytes)
	}
	return nil
}

// Result is what Apply returns for each command: a *Result for an
// EntryCommand log, a []*Result for an EntryBatch log (one per command, in
// order) and nil for any other log.
type Result struct {
	// Write is the command's outcome, set when Err is nil. It may be shared
	// with the request-id table: callers must not modify it.
	Write *kv.WriteResult_
	// Err is ErrStaleSequence, ErrInvalidCommand or ErrAnswerTooLarge
	// (wrapped; the last two in a *CommandError); nothing was applied.
	Err error
	// Duplicate reports an answer from the request-id table: an earlier
	// entry applied the command and this one applied nothing.
	Duplicate bool
}

// FSM is cubekv's raft.FSM: it applies committed log entries to a storage
// engine, remembers request ids for exactly-once writes, and takes and
// restores snapshots.
//
// Locking: mu guards engine (the pointer and its contents), dur, requests
// (the request-id table), members, leases, history and the dirty sets.
// Apply and ApplyBatch take the write lock once per log entry, so one
// command, transaction or batch entry is atomic to readers, and with a
// durable engine once more to commit; Snapshot and Digest take it only to
// capture a copy-on-write view (Snapshot, with a durable engine, after
// committing and syncing it; Digest's is of what is committed); Restore
// only to swap in the state it built (and install a durable one). Get,
// Scan, Len, Bytes, EngineName and RememberedClients take the read lock.
// applied is atomic and is written under mu for command entries, so a
// reader holding mu sees the index its state was applied at. waitMu
// guards waitCh only.
type FSM struct {
	cfg    Config
	logger *slog.Logger

	mu       sync.RWMutex
	engine   storage.Engine
	requests *requestTable     // the request-id table
	members  map[string]Member // the replicated members table, by node id
	history  *history          // recent changes, for watches (history.go)
	leases   *leaseTable       // leases and their keys (lease.go)

	// With a durable engine (durable.go): dir is set at construction and
	// never changes; dur is engine as a storage.Durable (mu guards it);
	// dirtyMembers collects the member ids changed since the last commit;
	// metaKey, metaVal and metaEnc are scratch for staging meta records.
	// All nil with an in-memory engine.
	dir          storage.DurableDir
	dur          storage.Durable
	dirtyMembers map[string]struct{}
	metaKey      []byte
	metaVal      []byte
	metaEnc      resultEncoder

	applied atomic.Uint64
	// delivered is the highest index Raft has handed Apply or ApplyBatch
	// since the FSM was opened or restored, skipped entries included (with
	// a durable engine; see Snapshot).
	delivered atomic.Uint64

	waitMu sync.Mutex
	waitCh chan struct{} // closed when applied advances; nil when nobody waits
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// New returns an empty FSM on an in-memory engine of cfg.Engine's kind. A
// nil cfg means DefaultConfig. (NewDurable opens one on a durable engine.)
func New(cfg *Config) (*FSM, error) {
	f, err := newEmpty(cfg)
	if err != nil {
		return nil, err
	}
	eng, err := storage.New(f.cfg.Engine)
	if err != nil {
		return nil, fmt.Errorf("new fsm: %w", err)
	}
	f.engine = eng
	return f, nil
}

// newEmpty returns an FSM with cfg's defaults filled in and empty tables,
// without an engine.
func newEmpty(cfg *Config) (*FSM, error) {
	if cfg == nil {
		cfg = DefaultConfig()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := *cfg
	if c.Engine == "" {
		c.Engine = storage.KindDefault
	}
	if c.ClientTTL == 0 {
		c.ClientTTL = DefaultClientTTL
	}
	if c.MaxClients == 0 {
		c.MaxClients = DefaultMaxClients
	}
	if c.HistoryBytes == 0 {
		c.HistoryBytes = DefaultHistoryBytes
	}
	logger := c.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c.Logger = nil
	return &FSM{
		cfg:      c,
		logger:   logger.With("component", "fsm"),
		requests: newRequestTable(c.ClientTTL, c.MaxClients),
		members:  make(map[string]Member),
		history:  newHistory(c.HistoryBytes),
		leases:   newLeaseTable(),
	}, nil
}

// Apply applies one committed log entry. It returns a *Result for an
// EntryCommand entry, a []*Result for an EntryBatch entry, and nil for an
// ignorable unknown entry type, a log that is not a raft.LogCommand, or,
// with a durable engine, an entry at or below AppliedIndex() (already
// applied and kept: it changes nothing; see NewDurable). It panics on an
// entry that does not decode: a node must crash rather than diverge from
// its peers. With a durable engine it commits the entry's changes, and
// panics if that fails, for the same reason.
func (f *FSM) Apply(l *raft.Log) interface{} {
	out := f.apply(l)
	if f.dir != nil {
		f.commit()
	}
	return out
}

// apply is Apply without the durable engine's commit.
func (f *FSM) apply(l *raft.Log) interface{} {
	if f.dir != nil {
		if l.Index > f.delivered.Load() {
			f.delivered.Store(l.Index)
		}
		if l.Index <= f.applied.Load() {
			return nil
		}
	}
	if l.Type != raft.LogCommand {
		f.setApplied(l.Index)
		return nil
	}
	cmds, batch, err := DecodeEntry(l.Data)
	if err != nil {
		f.logger.Error("undecodable log entry", "raft_index", l.Index, "err", err)
		panic(fmt.Sprintf("fsm: cannot apply raft log %d: %v", l.Index, err))
	}
	if cmds == nil {
		f.setApplied(l.Index)
		return nil
	}
	f.mu.Lock()
	f.requests.expire(l.Index)
	results := make([]*Result, len(cmds))
	for i, c := range cmds {
		results[i] = f.applyCommand(l.Index, c)
	}
	f.applied.Store(l.Index)
	f.mu.Unlock()
	f.wake()
	if batch {
		return results
	}
	return results[0]
}

// ApplyBatch applies committed log entries in order, as Apply does for each,
// and returns one response per log. With a durable engine it commits once,
// after the last.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	for i, l := range logs {
		out[i] = f.apply(l)
	}
	if f.dir != nil {
		f.commit()
	}
	return out
}

// setApplied records idx as applied for a log that changes no state, and
// wakes waiters.
func (f *FSM) setApplied(idx uint64) {
	f.applied.Store(idx)
	f.wake()
}

// wake releases every WaitApplied call blocked on the current channel.
func (f *FSM) wake() {
	f.waitMu.Lock()
	if f.waitCh != nil {
		close(f.waitCh)
		f.waitCh = nil
	}
	f.waitMu.Unlock()
}

// AppliedIndex returns the highest Raft index passed to Apply or ApplyBatch
// (of any log type) or restored from a snapshot.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// WaitApplied returns nil once AppliedIndex() >= idx, or ctx.Err() if ctx
// ends first.
func (f *FSM) WaitApplied(ctx context.Context, idx uint64) error {
	for {
		f.waitMu.Lock()
		if f.applied.Load() >= idx {
			f.waitMu.Unlock()
			return nil
		}
		if f.waitCh == nil {
			f.waitCh = make(chan struct{})
		}
		ch := f.waitCh
		f.waitMu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Get returns the entry for key, whether it exists, and the applied index
// the answer reflects. The entry's slices must not be modified.
func (f *FSM) Get(key []byte) (e storage.Entry, found bool, applied uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	e, found = f.engine.Get(key)
	return e, found, f.applied.Load()
}

// scanBufSize is the size of the buffers Scan copies entries into; one
// allocation serves many small entries.
const scanBufSize = 4 << 10

// Scan returns up to limit entries with start <= key < end (a nil bound is
// open) in ascending key order, or descending when reverse is true; limit <=
// 0 means no limit. more reports whether further entries exist beyond the
// last one returned. keysOnly leaves Value nil. applied is the index the
// answer reflects. The entries' slices must not be modified.
func (f *FSM) Scan(start, end []byte, reverse bool, limit int, keysOnly bool) (entries []storage.Entry, more bool, applied uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.scanLocked(start, end, reverse, limit, keysOnly)
}

// scanLocked is Scan for a caller holding f.mu.
func (f *FSM) scanLocked(start, end []byte, reverse bool, limit int, keysOnly bool) (entries []storage.Entry, more bool, applied uint64) {
	// An engine's scanned slices may be valid only during the callback: then
	// copy what the answer keeps, packed into shared buffers. btree's and
	// hash's outlive it and are kept as they are.
	_, stable := f.engine.(storage.StableScanner)
	var buf []byte
	f.engine.Scan(start, end, reverse, func(e storage.Entry) bool {
		if limit > 0 && len(entries) == limit {
			more = true
			return false
		}
		if keysOnly {
			e.Value = nil
		}
		if stable {
			entries = append(entries, e)
			return true
		}
		if n := len(e.Key) + len(e.Value); n > cap(buf)-len(buf) {
			buf = make([]byte, 0, max(n, scanBufSize))
		}
		k := len(buf)
		buf = append(append(buf, e.Key...), e.Value...)
		e.Key = buf[k : k+len(e.Key) : k+len(e.Key)]
		if e.Value != nil {
			e.Value = buf[k+len(e.Key) : len(buf) : len(buf)]
		}
		entries = append(entries, e)
		return true
	})
	return entries, more, f.applied.Load()
}

// Len returns the number of keys.
func (f *FSM) Len() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.engine.Len()
}

// Bytes returns the total size of all keys and values, in bytes.
func (f *FSM) Bytes() int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.engine.Bytes()
}

// EngineName returns the storage engine's kind.
func (f *FSM) EngineName() string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.engine.Name()
}

// RememberedClients returns the number of client ids in the request-id table.
func (f *FSM) RememberedClients() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.requests.len()
}

// Digest returns a SHA-256 over every (key, create index, mod index, value)
// in key order, and the applied index it was taken at. Equal states give
// equal digests on every node and with either engine. The hash is computed
// on a snapshot view, so Apply is blocked only while the view is taken.
// Digest changes no state. With a durable engine it covers the committed
// state (a view holds nothing staged) and returns the index that state is
// at, the Durable's Applied(), which is below AppliedIndex() while staged
// entries wait for their commit (doc.go, "Durable engines").
func (f *FSM) Digest() (applied uint64, sum [32]byte) {
	f.mu.Lock()
	view := f.engine.Snapshot()
	if f.dur != nil {
		applied = f.dur.Applied()
	} else {
		applied = f.applied.Load()
	}
	f.mu.Unlock()
	defer storage.Release(view)

	h := sha256.New()
	var buf []byte
	view.Scan(nil, nil, false, func(e storage.Entry) bool {
		buf = buf[:0]
		buf = binary.AppendUvarint(buf, uint64(len(e.Key)))
		buf = append(buf, e.Key...)
		buf = binary.AppendUvarint(buf, e.CreateIndex)
		buf = binary.AppendUvarint(buf, e.ModIndex)
		buf = binary.AppendUvarint(buf, uint64(len(e.Value)))
		h.Write(buf)
		h.Write(e.Value)
		return true
	})
	h.Sum(sum[:0])
	return applied, sum
}
