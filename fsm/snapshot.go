package fsm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"time"

	"github.com/hashicorp/raft"
	"github.com/tidwall/btree"

	"github.com/cubekv/cubekv/storage"
	"github.com/cubekv/cubekv/thrift/kv"
)

// Hard limits of the state machine. Apply refuses (ErrInvalidCommand) any
// command with a longer key or value, so every state it can reach can be
// snapshotted and restored; the front door's limits must not exceed them.
const (
	MaxKeySize   = 64 << 10 // longest key, bytes
	MaxValueSize = 64 << 20 // longest value, bytes
	// maxRememberedResult bounds the keys and values one remembered result
	// may hold; a larger result is remembered without its entries (index,
	// outcome and op types only), so a retry still learns the outcome.
	maxRememberedResult = 16 << 20
)

// Snapshot format constants; the layout is described in doc.go.
const (
	snapshotMagic = "CUBEKVS\x00"
	// snapshotVersion is what Persist writes; Restore also reads version 1
	// (no members table) and 2 (no leases).
	snapshotVersion = 3

	maxSnapshotKey    = MaxKeySize   // longest key accepted by Restore, bytes
	maxSnapshotValue  = MaxValueSize // longest value accepted by Restore, bytes
	maxSnapshotResult = 256 << 20    // longest encoded WriteResult accepted by Restore, bytes
)

// castagnoli is the CRC-32C table.
func castagnoli() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) }

// Snapshot captures the current state for raft: an engine view (O(1) for
// the arena and btree engines; Release gives it back) and a copy of the
// request-id table, and O(1) copies of the lease tables, taken under the
// write lock. All I/O happens in Persist, which may run while Apply
// continues. With a durable engine it first commits what Apply staged and
// syncs the engine, so the snapshot never covers state the engine could
// lose in a crash (raft may compact its log up to the snapshot's index);
// an error there is returned, wrapped.
//
// With a durable engine Snapshot also refuses (ErrReplaying) while Raft is
// still re-delivering entries the engine already holds after a restart:
// Raft records a snapshot at the last index it delivered, and a state
// further on, recorded at that index, would make any FSM that installs it
// apply the entries in between a second time. Raft tries again at its next
// snapshot check.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	if d, a := f.delivered.Load(), f.applied.Load(); f.dur != nil && d < a {
		return nil, fmt.Errorf("%w: the state holds raft index %d, raft has delivered up to %d", ErrReplaying, a, d)
	}
	return f.snapshot()
}

// snapshot is Snapshot without the replay check: a backup (WriteSnapshot)
// carries its own applied index and is never recorded at Raft's.
func (f *FSM) snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dur != nil {
		if err := f.commitLocked(); err != nil {
			return nil, fmt.Errorf("snapshot: commit raft index %d: %w", f.applied.Load(), err)
		}
		if err := f.dur.Sync(); err != nil {
			return nil, fmt.Errorf("snapshot: sync raft index %d: %w", f.applied.Load(), err)
		}
	}
	return &fsmSnapshot{
		view:    f.engine.Snapshot(),
		applied: f.applied.Load(),
		records: f.requests.copyRecords(),
		members: sortedMembers(f.members),
		leases:  f.leases.leases.Copy(),
		leaseKs: f.leases.attached.Copy(),
		logger:  f.logger,
	}, nil
}

// fsmSnapshot is a point-in-time copy of an FSM's state. It is immutable,
// so Persist needs no lock.
type fsmSnapshot struct {
	view    storage.View
	applied uint64
	records []clientRecord // the request-id table, oldest touched first
	members []Member       // sorted by id
	leases  *btree.BTreeG[Lease]
	leaseKs *btree.BTreeG[leaseKey] // attachments, by lease then key
	logger  *slog.Logger
}

var _ raft.FSMSnapshot = (*fsmSnapshot)(nil)

// Persist writes the snapshot to sink in the format described in doc.go and
// closes it, or cancels it on error.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	start := time.Now()
	n, err := s.writeTo(sink)
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("persist snapshot: close sink: %w", err)
	}
	s.logger.Info("snapshot persisted", "raft_index", s.applied, "count", s.view.Len(),
		"bytes", n, "duration", time.Since(start))
	return nil
}

// Release lets the engine reuse the memory the view holds (see
// storage.Releaser); engines without such memory leave the view to the
// garbage collector.
func (s *fsmSnapshot) Release() { storage.Release(s.view) }

// snapshotWriter buffers output and keeps a running CRC-32C of it.
type snapshotWriter struct {
	w   *bufio.Writer
	crc hash.Hash32
	n   int64
	tmp []byte
	err error
}

func (w *snapshotWriter) write(b []byte) {
	if w.err != nil {
		return
	}
	w.crc.Write(b)
	var n int
	n, w.err = w.w.Write(b)
	w.n += int64(n)
}

func (w *snapshotWriter) uvarint(v uint64) {
	w.tmp = binary.AppendUvarint(w.tmp[:0], v)
	w.write(w.tmp)
}

func (w *snapshotWriter) u64(v uint64) {
	w.tmp = binary.BigEndian.AppendUint64(w.tmp[:0], v)
	w.write(w.tmp)
}

func (w *snapshotWriter) u32(v uint32) {
	w.tmp = binary.BigEndian.AppendUint32(w.tmp[:0], v)
	w.write(w.tmp)
}

// writeTo writes the snapshot to out and returns the number of bytes written.
func (s *fsmSnapshot) writeTo(out io.Writer) (int64, error) {
	w := &snapshotWriter{w: bufio.NewWriterSize(out, 64<<10), crc: crc32.New(castagnoli())}
	w.write([]byte(snapshotMagic))
	w.u32(snapshotVersion)
	w.u64(s.applied)
	count := s.view.Len()
	w.u64(uint64(count))
	written := 0
	s.view.Scan(nil, nil, false, func(e storage.Entry) bool {
		w.uvarint(uint64(len(e.Key)))
		w.write(e.Key)
		w.uvarint(e.CreateIndex)
		w.uvarint(e.ModIndex)
		w.uvarint(uint64(len(e.Value)))
		w.write(e.Value)
		written++
		return w.err == nil
	})
	if w.err == nil && written != count {
		return w.n, fmt.Errorf("engine view scanned %d entries, reports %d", written, count)
	}
	w.u64(uint64(len(s.records)))
	var buf []byte
	for i := range s.records {
		var err error
		if buf, err = appendClientFields(buf[:0], &s.records[i], nil); err != nil {
			return w.n, err
		}
		w.u64(uint64(s.records[i].clientID))
		w.write(buf)
	}
	w.u64(uint64(len(s.members)))
	for _, m := range s.members {
		buf = appendMember(buf[:0], m)
		w.write(buf)
	}
	s.writeLeases(w)
	w.u32(w.crc.Sum32())
	if w.err == nil {
		w.err = w.w.Flush()
	}
	return w.n, w.err
}

// appendClientFields appends a client record as the snapshot holds it
// after the client id: sequence, touched index, result length and result.
// enc, when not nil, encodes the result into its reused buffer.
func appendClientFields(dst []byte, r *clientRecord, enc *resultEncoder) ([]byte, error) {
	var res []byte
	var err error
	if enc != nil {
		res, err = enc.encode(r.result)
	} else {
		res, err = encodeStruct(nil, 64, r.result)
	}
	if err != nil {
		return dst, fmt.Errorf("encode result of client %d: %w", r.clientID, err)
	}
	dst = binary.AppendUvarint(dst, uint64(r.seq))
	dst = binary.AppendUvarint(dst, r.touched)
	dst = binary.AppendUvarint(dst, uint64(len(res)))
	return append(dst, res...), nil
}

// appendMember appends a member as the snapshot holds it: each of its five
// fields' length and bytes.
func appendMember(dst []byte, m Member) []byte {
	for _, field := range m.fields() {
		dst = binary.AppendUvarint(dst, uint64(len(field)))
		dst = append(dst, field...)
	}
	return dst
}

// snapshotReader reads snapshot fields and keeps a running CRC-32C of every
// byte read.
type snapshotReader struct {
	r   *bufio.Reader
	crc hash.Hash32
	one [1]byte
}

// ReadByte implements io.ByteReader for binary.ReadUvarint.
func (r *snapshotReader) ReadByte() (byte, error) {
	b, err := r.r.ReadByte()
	if err != nil {
		return 0, err
	}
	r.one[0] = b
	r.crc.Write(r.one[:])
	return b, nil
}

// Read implements io.Reader, for io.ReadFull and io.CopyN.
func (r *snapshotReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.crc.Write(p[:n])
	return n, err
}

func (r *snapshotReader) full(p []byte) error {
	_, err := io.ReadFull(r, p)
	return err
}

func (r *snapshotReader) u64() (uint64, error) {
	var b [8]byte
	if err := r.full(b[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b[:]), nil
}

func (r *snapshotReader) uvarint() (uint64, error) { return binary.ReadUvarint(r) }

// bytes reads n bytes, n already checked against a cap. Beyond 64 KiB the
// buffer grows as bytes arrive, so a truncated stream that claims a large
// length costs no more memory than it holds.
func (r *snapshotReader) bytes(n uint64) ([]byte, error) {
	if n <= 64<<10 {
		b := make([]byte, n)
		return b, r.full(b)
	}
	var buf bytes.Buffer
	if _, err := io.CopyN(&buf, r, int64(n)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// restored is the state Restore builds before swapping it in.
type restored struct {
	applied  uint64
	engine   storage.Engine
	requests *requestTable
	members  map[string]Member
	leases   *leaseTable
}

// corrupt wraps err (truncation included) as ErrCorruptSnapshot.
func corrupt(what string, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%s: %v: %w", what, err, ErrCorruptSnapshot)
}

// readSnapshot parses a whole snapshot stream into eng, empty, and fresh
// tables, checking every length, count and the CRC. A Durable eng gets
// the entries staged and committed (at index 0) every restoreChunk bytes;
// the caller stages the tables and commits the applied index.
func (f *FSM) readSnapshot(in io.Reader, eng storage.Engine) (*restored, error) {
	r := &snapshotReader{r: bufio.NewReaderSize(in, 64<<10), crc: crc32.New(castagnoli())}
	var head [12]byte
	if err := r.full(head[:]); err != nil {
		return nil, corrupt("read header", err)
	}
	if string(head[:8]) != snapshotMagic {
		return nil, fmt.Errorf("bad magic %q: %w", head[:8], ErrCorruptSnapshot)
	}
	version := binary.BigEndian.Uint32(head[8:])
	if version < 1 || version > snapshotVersion {
		return nil, fmt.Errorf("unknown format version %d (want 1 to %d): %w", version, snapshotVersion, ErrCorruptSnapshot)
	}
	applied, err := r.u64()
	if err != nil {
		return nil, corrupt("read applied index", err)
	}
	count, err := r.u64()
	if err != nil {
		return nil, corrupt("read entry count", err)
	}
	// storage.Load builds the engine bottom-up from the ascending entries
	// where the engine offers it (storage.BulkLoader).
	var sc entryScratch
	i := uint64(0)
	next := func() (storage.Entry, bool, error) {
		if i == count {
			return storage.Entry{}, false, nil
		}
		e, err := readEntry(r, applied, &sc)
		if err != nil {
			return e, false, fmt.Errorf("entry %d: %w", i, err)
		}
		i++
		return e, true, nil
	}
	if d, ok := eng.(storage.Durable); ok {
		err = loadDurable(d, next)
	} else {
		err = storage.Load(eng, next)
	}
	if err != nil {
		return nil, err
	}
	if uint64(eng.Len()) != count {
		return nil, fmt.Errorf("engine holds %d entries, snapshot counts %d: %w", eng.Len(), count, ErrCorruptSnapshot)
	}
	nclients, err := r.u64()
	if err != nil {
		return nil, corrupt("read client count", err)
	}
	table := newRequestTable(f.cfg.ClientTTL, f.cfg.MaxClients)
	var lastTouched uint64
	for i := uint64(0); i < nclients; i++ {
		s, err := readClientRecord(r, applied, lastTouched)
		if err != nil {
			return nil, fmt.Errorf("client record %d: %w", i, err)
		}
		if table.lookup(s.clientID) != nil {
			return nil, fmt.Errorf("client record %d: client %d repeated: %w", i, s.clientID, ErrCorruptSnapshot)
		}
		table.appendRestored(s)
		lastTouched = s.touched
	}
	members := make(map[string]Member)
	if version >= 2 {
		if err := readMembers(r, members); err != nil {
			return nil, err
		}
	}
	leases := newLeaseTable()
	if version >= 3 {
		if err := readLeases(r, eng, applied, leases); err != nil {
			return nil, err
		}
	}
	want := r.crc.Sum32()
	var trailer [4]byte
	if _, err := io.ReadFull(r.r, trailer[:]); err != nil {
		return nil, corrupt("read crc", err)
	}
	if got := binary.BigEndian.Uint32(trailer[:]); got != want {
		return nil, fmt.Errorf("crc %08x, computed %08x: %w", got, want, ErrCorruptSnapshot)
	}
	if _, err := r.r.ReadByte(); err != io.EOF {
		if err == nil {
			return nil, fmt.Errorf("trailing bytes after crc: %w", ErrCorruptSnapshot)
		}
		return nil, fmt.Errorf("read after crc: %w", err)
	}
	return &restored{applied: applied, engine: eng, requests: table, members: members, leases: leases}, nil
}

// loadDurable puts the entries next returns (keys ascending, checked by
// readEntry) into d, committing at index 0 whenever restoreChunk bytes
// are staged, so a restore's memory does not grow with the snapshot. An
// entry changed after its creation takes two Puts (at the create index,
// then at the mod index) unless d is a storage.EntryLoader.
func loadDurable(d storage.Durable, next func() (storage.Entry, bool, error)) error {
	loader, _ := d.(storage.EntryLoader)
	staged := 0
	for {
		e, ok, err := next()
		if err != nil || !ok {
			return err
		}
		if loader != nil {
			loader.LoadEntry(e)
		} else {
			d.Put(e.CreateIndex, e.Key, e.Value)
			if e.ModIndex != e.CreateIndex {
				d.Put(e.ModIndex, e.Key, e.Value)
				staged += len(e.Key) + len(e.Value)
			}
		}
		staged += len(e.Key) + len(e.Value)
		if staged >= restoreChunk {
			staged = 0
			if err := d.Commit(0); err != nil {
				return fmt.Errorf("commit restored entries: %w", err)
			}
		}
	}
}

// entryScratch holds the buffers readEntry reads keys and values into. The
// engine copies what Load is given, so restore reuses them instead of
// allocating two buffers per entry: the only memory a restore takes is the
// engine it builds.
type entryScratch struct {
	key, prevKey, value []byte
}

// readInto reads n bytes into *buf, growing it if needed, and returns them.
// Lengths above 64 KiB go through r.bytes, which grows only as bytes arrive.
func (r *snapshotReader) readInto(buf *[]byte, n uint64) ([]byte, error) {
	if n > 64<<10 {
		return r.bytes(n)
	}
	if uint64(cap(*buf)) < n {
		*buf = make([]byte, n, max(n, 256))
	}
	b := (*buf)[:n]
	return b, r.full(b)
}

// readEntry reads one entry record; its slices are sc's, valid until the
// next call. Keys must be strictly ascending, and 1 <= create <= mod <= applied.
func readEntry(r *snapshotReader, applied uint64, sc *entryScratch) (storage.Entry, error) {
	klen, err := r.uvarint()
	if err != nil {
		return storage.Entry{}, corrupt("read key length", err)
	}
	if klen == 0 || klen > maxSnapshotKey {
		return storage.Entry{}, fmt.Errorf("key length %d out of range: %w", klen, ErrCorruptSnapshot)
	}
	key, err := r.readInto(&sc.key, klen)
	if err != nil {
		return storage.Entry{}, corrupt("read key", err)
	}
	if sc.prevKey != nil && bytes.Compare(sc.prevKey, key) >= 0 {
		return storage.Entry{}, fmt.Errorf("keys out of order: %w", ErrCorruptSnapshot)
	}
	create, err := r.uvarint()
	if err != nil {
		return storage.Entry{}, corrupt("read create index", err)
	}
	mod, err := r.uvarint()
	if err != nil {
		return storage.Entry{}, corrupt("read mod index", err)
	}
	if create == 0 || create > mod || mod > applied {
		return storage.Entry{}, fmt.Errorf("indexes create %d mod %d applied %d out of order: %w", create, mod, applied, ErrCorruptSnapshot)
	}
	vlen, err := r.uvarint()
	if err != nil {
		return storage.Entry{}, corrupt("read value length", err)
	}
	if vlen > maxSnapshotValue {
		return storage.Entry{}, fmt.Errorf("value length %d out of range: %w", vlen, ErrCorruptSnapshot)
	}
	val, err := r.readInto(&sc.value, vlen)
	if err != nil {
		return storage.Entry{}, corrupt("read value", err)
	}
	sc.key, sc.prevKey = sc.prevKey, key
	return storage.Entry{Key: key, Value: val, CreateIndex: create, ModIndex: mod}, nil
}

// readClientRecord reads one request-id record. Touched indexes must be
// non-decreasing (the table's order) and not beyond applied.
func readClientRecord(r *snapshotReader, applied, lastTouched uint64) (clientRecord, error) {
	id, err := r.u64()
	if err != nil {
		return clientRecord{}, corrupt("read client id", err)
	}
	return readClientFields(r, int64(id), applied, lastTouched)
}

// readClientFields reads what follows the client id in a request-id
// record (appendClientFields).
func readClientFields(r *snapshotReader, clientID int64, applied, lastTouched uint64) (clientRecord, error) {
	var s clientRecord
	id := uint64(clientID)
	seq, err := r.uvarint()
	if err != nil {
		return s, corrupt("read sequence", err)
	}
	touched, err := r.uvarint()
	if err != nil {
		return s, corrupt("read touched index", err)
	}
	if id == 0 || seq == 0 || seq > math.MaxInt64 || touched < lastTouched || touched > applied {
		return s, fmt.Errorf("client %d sequence %d touched %d out of range: %w", int64(id), seq, touched, ErrCorruptSnapshot)
	}
	rlen, err := r.uvarint()
	if err != nil {
		return s, corrupt("read result length", err)
	}
	if rlen == 0 || rlen > maxSnapshotResult {
		return s, fmt.Errorf("result length %d out of range: %w", rlen, ErrCorruptSnapshot)
	}
	b, err := r.bytes(rlen)
	if err != nil {
		return s, corrupt("read result", err)
	}
	res := kv.NewWriteResult_()
	if err := decodeStruct(b, res); err != nil {
		return s, corrupt("decode result", err)
	}
	return clientRecord{clientID: int64(id), seq: int64(seq), touched: touched, result: res}, nil
}

// readMembers reads the members table: a count, then each member's id and
// addresses, ids strictly ascending.
func readMembers(r *snapshotReader, into map[string]Member) error {
	count, err := r.u64()
	if err != nil {
		return corrupt("read member count", err)
	}
	if count > maxSnapshotMembers {
		return fmt.Errorf("member count %d out of range: %w", count, ErrCorruptSnapshot)
	}
	prev := ""
	for i := uint64(0); i < count; i++ {
		m, err := readMember(r)
		if err != nil {
			return fmt.Errorf("member %d: %w", i, err)
		}
		if m.ID == "" || (i > 0 && m.ID <= prev) {
			return fmt.Errorf("member %d: ids empty or out of order: %w", i, ErrCorruptSnapshot)
		}
		prev = m.ID
		into[m.ID] = m
	}
	return nil
}

// readMember reads one member's five fields (appendMember).
func readMember(r *snapshotReader) (Member, error) {
	var f [5]string
	for j := range f {
		n, err := r.uvarint()
		if err != nil {
			return Member{}, corrupt("read length", err)
		}
		if n > MaxMemberField {
			return Member{}, fmt.Errorf("field length %d out of range: %w", n, ErrCorruptSnapshot)
		}
		b, err := r.bytes(n)
		if err != nil {
			return Member{}, corrupt("read field", err)
		}
		f[j] = string(b)
	}
	return Member{ID: f[0], ThriftAddr: f[1], RaftAddr: f[2], GossipAddr: f[3], AdminAddr: f[4]}, nil
}

// Restore replaces the FSM's state with the snapshot read from rc, which it
// closes. The snapshot is read completely into a fresh engine of the
// configured kind (with a durable engine, the DurableDir's Fresh one, which
// also gets the tables as meta records, is committed at the snapshot's
// index and installed) and fresh tables, and swapped in only once every
// count and the CRC check out; on any error (wrapping ErrCorruptSnapshot
// for bad input, or Install's while the old state is still current) the
// state, and a durable engine's directory, are left exactly as they were.
// An Install that cannot make its switch durable panics (the disk is
// failing; storage.DurableDir).
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	start := time.Now()
	var (
		st    *restored
		fresh storage.Durable
		err   error
	)
	if f.dir != nil {
		st, fresh, err = f.readDurable(rc)
	} else {
		var eng storage.Engine
		if eng, err = storage.New(f.cfg.Engine); err != nil {
			return fmt.Errorf("restore snapshot: new engine: %w", err)
		}
		st, err = f.readSnapshot(rc, eng)
	}
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	f.mu.Lock()
	if fresh != nil {
		if err := f.dir.Install(fresh); err != nil {
			f.mu.Unlock()
			f.discard(fresh)
			return fmt.Errorf("restore snapshot: install: %w", err)
		}
		f.dur = fresh
	}
	// Changes before the snapshot are not known. A snapshot at or below the
	// index already applied (a backup restored into a running cluster) is a
	// jump, not a step: what it undid has no events, so no watch may resume
	// from anywhere it could see before the restore.
	floor := st.applied
	if prev := f.applied.Load(); prev > 0 && floor <= prev {
		floor = prev + 1
	}
	f.engine = st.engine
	f.requests = st.requests
	f.members = st.members
	f.history.reset(floor)
	f.leases = st.leases
	if fresh != nil {
		f.track()
	}
	f.applied.Store(st.applied)
	f.delivered.Store(st.applied) // Raft goes on from the snapshot's index
	count := st.engine.Len()      // the engine is read under the lock: Apply may write it once unlocked
	f.mu.Unlock()
	f.wake()
	f.logger.Info("snapshot restored", "raft_index", st.applied, "count", count,
		"duration", time.Since(start))
	return nil
}

// readDurable reads a snapshot stream into a Fresh Durable of f.dir, with
// the tables as meta records, and commits it at the snapshot's index
// (Install syncs it). On error the fresh Durable is discarded.
func (f *FSM) readDurable(in io.Reader) (*restored, storage.Durable, error) {
	fresh, err := f.dir.Fresh()
	if err != nil {
		return nil, nil, fmt.Errorf("fresh durable state: %w", err)
	}
	st, err := f.readSnapshot(in, fresh)
	if err == nil {
		if err = stageAllTables(fresh, st); err != nil {
			err = fmt.Errorf("stage tables: %w", err)
		}
	}
	if err == nil {
		if err = fresh.Commit(st.applied); err != nil {
			err = fmt.Errorf("commit raft index %d: %w", st.applied, err)
		}
	}
	if err != nil {
		f.discard(fresh)
		return nil, nil, err
	}
	return st, fresh, nil
}

// discard gives up a Fresh Durable that will not be installed.
func (f *FSM) discard(fresh storage.Durable) {
	if err := f.dir.Discard(fresh); err != nil {
		f.logger.Error("discard fresh durable state", "err", err)
	}
}
