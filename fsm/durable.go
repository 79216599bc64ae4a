package fsm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/cubekv/cubekv/storage"
	"github.com/cubekv/cubekv/thrift/kv"
)

// The FSM on a durable engine (storage.Durable): the key space lives in the
// engine, the request-id, members and lease tables in its meta records,
// and each ApplyBatch commits both with the applied index in one batch
// (doc.go, "Durable engines"). Nothing here runs for an in-memory engine.

// ErrCorruptState is returned by NewDurable for meta records it cannot
// read back: an unknown layout version, a record that does not decode or
// is out of range, an attachment to a missing lease or key.
var ErrCorruptState = errors.New("corrupt durable state")

// ErrReplaying is Snapshot's error while Raft re-delivers, after a restart,
// entries a durable engine already holds: a snapshot then would be recorded
// at an index below its state's.
var ErrReplaying = errors.New("replaying entries the durable state holds")

// Meta record keys (doc.go): one byte naming the table, then the record's
// id.
const (
	metaVersionKey = "v"     // the layout version, one uvarint
	metaClient     = 'c'     // + client id, 8 bytes big-endian
	metaMember     = 'm'     // + node id
	metaLease      = 'l'     // + lease id, 8 bytes big-endian
	metaAttached   = 'a'     // + lease id, 8 bytes big-endian, + key
	metaVersion    = 1       // the layout this file writes and reads
	restoreChunk   = 4 << 20 // bytes Restore stages into a fresh Durable between commits
)

// NewDurable returns an FSM on the current Durable of dir, opened with
// its state: the key space, the request-id, members and lease tables, and
// AppliedIndex() = the Durable's Applied(). The change history starts
// empty with its floor at that index. cfg.Engine is ignored (EngineName
// is the Durable's Name). The FSM owns the Durable and dir: Restore builds
// a new state with dir.Fresh and installs it, and Close closes it.
//
// Apply and ApplyBatch skip every entry at or below AppliedIndex(), so a
// node may let Raft re-deliver the log after its latest snapshot instead
// of restoring that snapshot (raft's NoSnapshotRestoreOnStart), provided
// that, before raft starts:
//   - AppliedIndex() is at least raft's index of its latest snapshot
//     (raft.SnapshotMeta.Index). Otherwise start raft without
//     NoSnapshotRestoreOnStart, so that it restores the snapshot (Restore
//     builds and installs a fresh Durable): the log may no longer hold the
//     entries in between, and after a restore raft had recorded but the
//     FSM had not finished (a backup's, whose index raft sets above every
//     index it had, or a leader's), the engine still holds the state the
//     snapshot replaces. The snapshot's own applied index (in its stream)
//     may be lower than raft's by entries the FSM never sees; comparing
//     with it instead would miss that second case.
//   - AppliedIndex() is at most raft's last index (the log's, or the
//     latest snapshot's when the log is empty). A higher one means the
//     engine is not this log's state (a raft directory replaced or lost):
//     the node must refuse to start, or the FSM would skip entries it
//     never applied.
//
// Snapshot syncs the engine, so after a plain restart AppliedIndex() is at
// least the FSM's index at the latest snapshot. That may still be below
// raft's index of it: raft's LogNoop and LogBarrier entries never reach
// the FSM, so when the last entries before the snapshot were such (an
// election's no-op on an idle cluster) the FSM's index is behind raft's
// until it applies a later entry, and a restart before that (idle, or a
// crash that lost the later batches) finds it behind. The node must then
// restore, which costs time, not correctness; the node has the leader
// apply a NOOP command after it is elected, so that the FSM's index
// follows raft's.
func NewDurable(cfg *Config, dir storage.DurableDir) (*FSM, error) {
	c := *DefaultConfig()
	if cfg != nil {
		c = *cfg
	}
	c.Engine = ""
	f, err := newEmpty(&c)
	if err != nil {
		return nil, err
	}
	d, err := dir.Open()
	if err != nil {
		return nil, fmt.Errorf("open durable state: %w", err)
	}
	if err := f.load(d); err != nil {
		_ = d.Close()
		return nil, fmt.Errorf("open durable state: %w", err)
	}
	f.cfg.Engine = d.Name()
	f.dir = dir
	f.dur = d
	f.engine = d
	f.track()
	applied := d.Applied()
	f.applied.Store(applied)
	f.history.reset(applied)
	f.logger.Info("durable state opened", "raft_index", applied, "count", d.Len(),
		"clients", f.requests.len(), "leases", f.leases.leases.Len())
	return f, nil
}

// Close commits what Apply staged and closes the Durable (which syncs it);
// for an in-memory engine it does nothing. The FSM must not be used
// afterwards.
func (f *FSM) Close() error {
	if f.dir == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.commitLocked(); err != nil {
		return fmt.Errorf("close durable state: %w", err)
	}
	if err := f.dur.Close(); err != nil {
		return fmt.Errorf("close durable state: %w", err)
	}
	return nil
}

// track gives the tables the dirty sets that collect their changes
// between commits.
func (f *FSM) track() {
	f.requests.dirty = make(map[int64]struct{})
	f.leases.dirtyLeases = make(map[uint64]struct{})
	f.leases.dirtyKeys = make(map[leaseKey]struct{})
	f.dirtyMembers = make(map[string]struct{})
}

// markMember records that member id was set or removed, when a durable
// engine keeps the table.
func (f *FSM) markMember(id string) {
	if f.dirtyMembers != nil {
		f.dirtyMembers[id] = struct{}{}
	}
}

// commit commits what Apply staged, panicking if the Durable fails: the
// node must stop rather than apply on without it.
func (f *FSM) commit() {
	f.mu.Lock()
	err := f.commitLocked()
	applied := f.applied.Load()
	f.mu.Unlock()
	if err != nil {
		f.logger.Error("durable commit failed", "raft_index", applied, "err", err)
		panic(fmt.Sprintf("fsm: cannot commit raft index %d to the durable engine: %v", applied, err))
	}
}

// commitLocked stages the tables' changes since the last commit as meta
// records and commits them, with the key changes Apply staged, at the
// applied index. It does nothing when nothing was applied since. The
// caller holds f.mu for writing.
func (f *FSM) commitLocked() error {
	applied := f.applied.Load()
	if applied == f.dur.Applied() && len(f.requests.dirty) == 0 && len(f.dirtyMembers) == 0 &&
		len(f.leases.dirtyLeases) == 0 && len(f.leases.dirtyKeys) == 0 {
		return nil
	}
	if err := f.stageTables(); err != nil {
		return err
	}
	return f.dur.Commit(applied)
}

// stageTables writes, for every record a dirty set names, its current
// value or its removal, and empties the sets.
func (f *FSM) stageTables() error {
	d, k, v := f.dur, f.metaKey[:0], f.metaVal[:0]
	var err error
	for id := range f.requests.dirty {
		k = clientMetaKey(k[:0], id)
		if r := f.requests.lookup(id); r != nil {
			if v, err = appendClientMeta(v[:0], r, &f.metaEnc); err != nil {
				return err
			}
			d.SetMeta(k, v)
		} else {
			d.DeleteMeta(k)
		}
	}
	clear(f.requests.dirty)
	for id := range f.dirtyMembers {
		k = append(append(k[:0], metaMember), id...)
		if m, ok := f.members[id]; ok {
			v = appendMember(v[:0], m)
			d.SetMeta(k, v)
		} else {
			d.DeleteMeta(k)
		}
	}
	clear(f.dirtyMembers)
	for id := range f.leases.dirtyLeases {
		k = leaseMetaKey(k[:0], metaLease, id)
		if l, ok := f.leases.get(id); ok {
			v = binary.AppendUvarint(v[:0], uint64(l.TTL))
			d.SetMeta(k, v)
		} else {
			d.DeleteMeta(k)
		}
	}
	clear(f.leases.dirtyLeases)
	for lk := range f.leases.dirtyKeys {
		k = append(leaseMetaKey(k[:0], metaAttached, lk.id), lk.key...)
		if _, ok := f.leases.attached.Get(lk); ok {
			d.SetMeta(k, nil)
		} else {
			d.DeleteMeta(k)
		}
	}
	clear(f.leases.dirtyKeys)
	f.metaKey, f.metaVal = k, v
	return nil
}

func clientMetaKey(dst []byte, id int64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, metaClient), uint64(id))
}

func leaseMetaKey(dst []byte, table byte, id uint64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, table), id)
}

// appendClientMeta appends a client record's meta value: its rank
// (uvarint), then the record as the snapshot writes it after the client
// id.
func appendClientMeta(dst []byte, r *clientRecord, enc *resultEncoder) ([]byte, error) {
	return appendClientFields(binary.AppendUvarint(dst, r.rank), r, enc)
}

// resultEncoder encodes WriteResults into one reused buffer, so staging
// the request-id rows of a batch allocates nothing per row.
type resultEncoder struct {
	buf *thrift.TMemoryBuffer
	p   *thrift.TCompactProtocol
}

// encode returns r's compact encoding, valid until the next call.
func (e *resultEncoder) encode(r *kv.WriteResult_) ([]byte, error) {
	if e.buf == nil {
		e.buf = thrift.NewTMemoryBufferLen(256)
		e.p = thrift.NewTCompactProtocolConf(e.buf, nil)
	}
	e.buf.Reset()
	ctx := context.Background()
	err := r.Write(ctx, e.p)
	if err == nil {
		err = e.p.Flush(ctx)
	}
	if err != nil {
		e.buf, e.p = nil, nil // the protocol's state is unknown: start afresh
		return nil, err
	}
	return e.buf.Bytes(), nil
}

// stageAllTables stages every record of st's tables into d, committing
// at index 0 whenever restoreChunk bytes are staged (a fresh Durable is
// not current until Install, so partial commits are invisible).
func stageAllTables(d storage.Durable, st *restored) error {
	var k, v []byte
	var enc resultEncoder
	staged := 0
	set := func() error {
		d.SetMeta(k, v)
		if staged += len(k) + len(v); staged >= restoreChunk {
			staged = 0
			return d.Commit(0)
		}
		return nil
	}
	v = binary.AppendUvarint(v[:0], metaVersion)
	k = append(k[:0], metaVersionKey...)
	if err := set(); err != nil {
		return err
	}
	var err error
	for el := st.requests.order.Front(); el != nil; el = el.Next() {
		r := el.Value.(*clientRecord)
		k = clientMetaKey(k[:0], r.clientID)
		if v, err = appendClientMeta(v[:0], r, &enc); err != nil {
			return err
		}
		if err := set(); err != nil {
			return err
		}
	}
	for _, m := range st.members {
		k = append(append(k[:0], metaMember), m.ID...)
		v = appendMember(v[:0], m)
		if err := set(); err != nil {
			return err
		}
	}
	st.leases.leases.Scan(func(l Lease) bool {
		k = leaseMetaKey(k[:0], metaLease, l.ID)
		v = binary.AppendUvarint(v[:0], uint64(l.TTL))
		err = set()
		return err == nil
	})
	if err != nil {
		return err
	}
	st.leases.attached.Scan(func(lk leaseKey) bool {
		k = append(leaseMetaKey(k[:0], metaAttached, lk.id), lk.key...)
		v = v[:0]
		err = set()
		return err == nil
	})
	return err
}

// bytesReader reads one meta value with the snapshot's field readers.
func bytesReader(b []byte) *snapshotReader {
	return &snapshotReader{r: bufio.NewReaderSize(bytes.NewReader(b), 16), crc: crc32.New(castagnoli())}
}

// atEnd reports an error unless r has nothing left.
func atEnd(r *snapshotReader) error {
	if _, err := r.r.ReadByte(); err != io.EOF {
		return errors.New("trailing bytes")
	}
	return nil
}

// load reads d's meta records into f's tables (empty, untracked), checking
// each against the key space and the applied index. A Durable without a
// version record must be new (no keys, nothing applied); it gets one.
func (f *FSM) load(d storage.Durable) error {
	applied := d.Applied()
	v, ok := d.Meta([]byte(metaVersionKey))
	if !ok {
		var found bool
		d.ScanMeta(nil, func(_, _ []byte) bool { found = true; return false })
		if found || applied != 0 || d.Len() != 0 {
			return fmt.Errorf("state without a meta layout version: %w", ErrCorruptState)
		}
		d.SetMeta([]byte(metaVersionKey), binary.AppendUvarint(nil, metaVersion))
		return d.Commit(applied)
	}
	if ver, n := binary.Uvarint(v); n != len(v) || ver != metaVersion {
		return fmt.Errorf("meta layout version %x, want %d: %w", v, metaVersion, ErrCorruptState)
	}
	bad := func(what string, key []byte, err error) error {
		return fmt.Errorf("meta record %q: %s: %v: %w", key, what, err, ErrCorruptState)
	}
	var err error

	var recs []clientRecord
	d.ScanMeta([]byte{metaClient}, func(k, v []byte) bool {
		if len(k) != 9 {
			err = bad("client key", k, errors.New("not 8 bytes"))
			return false
		}
		r := bytesReader(v)
		rank, e := r.uvarint()
		if e != nil {
			err = bad("rank", k, e)
			return false
		}
		rec, e := readClientFields(r, int64(binary.BigEndian.Uint64(k[1:])), applied, 0)
		if e == nil {
			e = atEnd(r)
		}
		if e != nil || rec.clientID == 0 {
			err = bad("client record", k, e)
			return false
		}
		rec.rank = rank
		recs = append(recs, rec)
		return true
	})
	if err != nil {
		return err
	}
	slices.SortFunc(recs, func(a, b clientRecord) int {
		switch {
		case a.rank < b.rank:
			return -1
		case a.rank > b.rank:
			return 1
		}
		return 0
	})
	for i, rec := range recs {
		if i > 0 && (rec.rank == recs[i-1].rank || rec.touched < recs[i-1].touched) {
			return fmt.Errorf("client %d: rank %d touched %d out of order: %w", rec.clientID, rec.rank, rec.touched, ErrCorruptState)
		}
		f.requests.appendLoaded(rec)
	}

	d.ScanMeta([]byte{metaMember}, func(k, v []byte) bool {
		r := bytesReader(v)
		m, e := readMember(r)
		if e == nil {
			e = atEnd(r)
		}
		if e == nil && (m.ID == "" || m.ID != string(k[1:])) {
			e = errors.New("id differs from the key")
		}
		if e != nil {
			err = bad("member", k, e)
			return false
		}
		f.members[m.ID] = m
		return true
	})
	if err != nil {
		return err
	}

	d.ScanMeta([]byte{metaLease}, func(k, v []byte) bool {
		var id uint64
		if len(k) == 9 {
			id = binary.BigEndian.Uint64(k[1:])
		}
		ttl, n := binary.Uvarint(v)
		if id == 0 || id > applied || n != len(v) || ttl == 0 || ttl > MaxLeaseTTL {
			err = bad("lease", k, fmt.Errorf("id %d ttl %d out of range", id, ttl))
			return false
		}
		f.leases.leases.Set(Lease{ID: id, TTL: int64(ttl)})
		return true
	})
	if err != nil {
		return err
	}
	d.ScanMeta([]byte{metaAttached}, func(k, v []byte) bool {
		if len(k) < 10 || len(v) != 0 {
			err = bad("attachment", k, errors.New("malformed"))
			return false
		}
		id, key := binary.BigEndian.Uint64(k[1:9]), k[9:]
		if _, ok := f.leases.get(id); !ok {
			err = bad("attachment", k, fmt.Errorf("lease %d does not exist", id))
			return false
		}
		if _, ok := f.leases.ofKey[string(key)]; ok {
			err = bad("attachment", k, errors.New("key attached to two leases"))
			return false
		}
		if _, ok := d.Get(key); !ok {
			err = bad("attachment", k, errors.New("key does not exist"))
			return false
		}
		f.leases.attach(key, id)
		return true
	})
	return err
}
