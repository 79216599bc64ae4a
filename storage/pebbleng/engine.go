package pebbleng

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/tidwall/btree"

	"github.com/cubekv/cubekv/storage"
)

// Name is the engine's kind.
const Name = "pebble"

// Errors the engine produces; they come wrapped with %w.
var (
	// ErrCorrupt reports state on disk the engine cannot read: a state
	// record or value record it cannot decode, a missing state directory,
	// a CURRENT file it cannot parse, or an error pebble reports on open.
	ErrCorrupt = errors.New("pebble engine: corrupt state")
	// ErrClosed is returned by Commit, Sync and Close after Close, and
	// panicked with by a read after Close.
	ErrClosed = errors.New("pebble engine: closed")
	// ErrApplied is returned by Commit for an applied index below
	// Applied().
	ErrApplied = errors.New("pebble engine: applied index goes backwards")
	// ErrIO wraps an error pebble returned on a commit, sync or read.
	ErrIO = errors.New("pebble engine: I/O error")
)

// Options bound the engine's memory and say where its files go. The zero
// value is usable: every zero field takes its default.
type Options struct {
	// CacheBytes is the size of the block cache (default 32 MiB).
	CacheBytes int64
	// MemTableBytes is the size of one memtable (default 4 MiB).
	MemTableBytes uint64
	// MemTables is how many memtables, the one being written and those
	// waiting for a flush, may exist before writes stall (default 2).
	MemTables int
	// FS is the file system (default vfs.Default, the operating system's).
	// Tests use vfs.NewCrashableMem to simulate crashes.
	FS vfs.FS
	// Logger receives pebble's errors (default slog.Default()).
	Logger *slog.Logger
}

// Defaults of Options.
const (
	DefaultCacheBytes    = 32 << 20
	DefaultMemTableBytes = 4 << 20
	DefaultMemTables     = 2
)

func (o Options) withDefaults() Options {
	if o.CacheBytes <= 0 {
		o.CacheBytes = DefaultCacheBytes
	}
	if o.MemTableBytes == 0 {
		o.MemTableBytes = DefaultMemTableBytes
	}
	if o.MemTables <= 0 {
		o.MemTables = DefaultMemTables
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// staged is one change in the overlay: a pebble key (with its prefix) and
// the record to write, or its deletion. Its slices are never modified once
// staged, so reads may hand them out.
type staged struct {
	key   []byte
	value []byte
	del   bool
}

func lessStaged(a, b staged) bool { return bytes.Compare(a.key, b.key) < 0 }

// Engine is the pebble engine: a storage.Durable. See the package
// documentation for its layout and locking.
type Engine struct {
	db  *pebble.DB
	dir string
	log *slog.Logger

	// overlay holds the changes staged since the last Commit. Only
	// mutators change it; reads only read it (no locks: reads never run
	// with mutators).
	overlay *btree.BTreeG[staged]
	// applied, n and size describe the state with the staged changes on
	// top; the committed* fields describe the committed state, which views
	// see.
	applied        uint64
	n              int
	size           int64
	committedLen   int
	committedBytes int64
	// err is the error that broke the engine (see Commit).
	err    error
	closed bool

	// mu guards refs, closeErr and onClose: views are released from any
	// goroutine.
	mu sync.Mutex
	// refs counts the engine itself until Close, and every live view;
	// the DB is closed when it drops to zero.
	refs     int
	closeErr error
	// onClose runs after the DB is closed (Dir removes a replaced state's
	// directory).
	onClose func()
}

var (
	_ storage.EntryLoader = (*Engine)(nil)
	_ storage.Durable     = (*Engine)(nil)
	_ storage.View        = (*view)(nil)
)

// Open opens the engine in dir, creating an empty one if dir holds none.
func Open(dir string, opts Options) (*Engine, error) {
	return open(dir, opts, openAny)
}

// openMode says whether open may create the DB, must create it, or must
// find it.
type openMode int

const (
	openAny openMode = iota
	openCreate
	openExisting
)

func open(dir string, opts Options, mode openMode) (*Engine, error) {
	opts = opts.withDefaults()
	cache := pebble.NewCache(opts.CacheBytes)
	defer cache.Unref()
	popts := &pebble.Options{
		FS:                          opts.FS,
		Cache:                       cache,
		MemTableSize:                opts.MemTableBytes,
		MemTableStopWritesThreshold: opts.MemTables,
		FormatMajorVersion:          pebble.FormatNewest,
		Logger:                      logger{opts.Logger},
		ErrorIfExists:               mode == openCreate,
		ErrorIfNotExists:            mode == openExisting,
	}
	// Bloom filters (10 bits a key) let a Get skip the tables that do
	// not hold its key; Put reads before it writes, so writes gain too.
	for i := range popts.Levels {
		popts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		popts.Levels[i].FilterType = pebble.TableFilter
	}
	db, err := pebble.Open(dir, popts)
	if err != nil {
		if mode == openExisting || errors.Is(err, pebble.ErrCorruption) {
			return nil, fmt.Errorf("%w: open %s: %w", ErrCorrupt, dir, err)
		}
		return nil, fmt.Errorf("pebble engine: open %s: %w", dir, err)
	}
	e := &Engine{
		db:      db,
		dir:     dir,
		log:     opts.Logger,
		overlay: btree.NewBTreeGOptions(lessStaged, btree.Options{NoLocks: true}),
		refs:    1,
	}
	if err := e.load(); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	return e, nil
}

// load reads the state record. A DB without one must be empty: nothing
// was ever committed to it.
func (e *Engine) load() error {
	v, closer, err := e.db.Get(stateKey)
	if errors.Is(err, pebble.ErrNotFound) {
		it, err := e.db.NewIter(nil)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrIO, err)
		}
		nonEmpty := it.First()
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			return fmt.Errorf("%w: %w", ErrIO, err)
		}
		if nonEmpty {
			return fmt.Errorf("%w: %s holds records but no state record", ErrCorrupt, e.dir)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: read state record: %w", ErrIO, err)
	}
	s, err := decodeState(v)
	closer.Close()
	if err != nil {
		return err
	}
	e.applied = s.applied
	e.n, e.committedLen = int(s.len), int(s.len)
	e.size, e.committedBytes = int64(s.bytes), int64(s.bytes)
	return nil
}

// Name returns "pebble".
func (e *Engine) Name() string { return Name }

// Dir returns the directory the engine's files are in.
func (e *Engine) Dir() string { return e.dir }

// Applied returns the index of the last Commit.
func (e *Engine) Applied() uint64 { return e.applied }

// Len returns the number of keys, staged changes included.
func (e *Engine) Len() int { return e.n }

// Bytes returns the size of all keys and values, staged changes included.
func (e *Engine) Bytes() int64 { return e.size }

// mustOpen panics if the engine is closed: a read or write after Close is
// a caller's bug.
func (e *Engine) mustOpen() {
	if e.closed {
		panic(ErrClosed)
	}
}

// getRaw returns the record at pebble key pk, staged or committed. The
// slice is the caller's (a staged record's slices are never modified).
func (e *Engine) getRaw(pk []byte) ([]byte, bool) {
	if e.overlay.Len() > 0 {
		if s, ok := e.overlay.Get(staged{key: pk}); ok {
			return s.value, !s.del
		}
	}
	return dbGet(e.db, pk)
}

// dbGet reads pk from r and copies the value; a read error panics (see
// storage.Durable).
func dbGet(r pebble.Reader, pk []byte) ([]byte, bool) {
	v, closer, err := r.Get(pk)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false
	}
	if err != nil {
		panic(fmt.Errorf("%w: get: %w", ErrIO, err))
	}
	out := bytes.Clone(v)
	if out == nil {
		out = []byte{}
	}
	closer.Close()
	return out, true
}

// get returns the entry for key, staged or committed, valid for as long
// as the caller holds it.
func (e *Engine) get(key []byte) (storage.Entry, bool) {
	pk := withPrefix(prefixKey, key)
	v, ok := e.getRaw(pk)
	if !ok {
		return storage.Entry{}, false
	}
	en, err := decodeEntry(pk, v)
	if err != nil {
		panic(err)
	}
	return en, true
}

// Get returns the entry for key, staged or committed.
func (e *Engine) Get(key []byte) (storage.Entry, bool) {
	e.mustOpen()
	return e.get(key)
}

// Put stages key = value at index idx and returns the previous entry.
func (e *Engine) Put(idx uint64, key, value []byte) (storage.Entry, bool) {
	e.mustOpen()
	prev, existed := e.get(key)
	create := idx
	if existed {
		create = prev.CreateIndex
		e.size -= int64(len(prev.Key) + len(prev.Value))
	} else {
		e.n++
	}
	e.size += int64(len(key) + len(value))
	e.overlay.Set(staged{key: withPrefix(prefixKey, key), value: encodeValue(create, idx, value)})
	return prev, existed
}

// LoadEntry stages en as it is, create and mod index included
// (storage.EntryLoader): a restore writes each entry once. It is for keys
// that do not exist yet; a key that does is replaced.
func (e *Engine) LoadEntry(en storage.Entry) {
	e.mustOpen()
	if prev, existed := e.get(en.Key); existed {
		e.size -= int64(len(prev.Key) + len(prev.Value))
	} else {
		e.n++
	}
	e.size += int64(len(en.Key) + len(en.Value))
	e.overlay.Set(staged{key: withPrefix(prefixKey, en.Key), value: encodeValue(en.CreateIndex, en.ModIndex, en.Value)})
}

// Delete stages the removal of key and returns the removed entry.
func (e *Engine) Delete(idx uint64, key []byte) (storage.Entry, bool) {
	e.mustOpen()
	prev, existed := e.get(key)
	if !existed {
		return storage.Entry{}, false
	}
	e.n--
	e.size -= int64(len(prev.Key) + len(prev.Value))
	e.overlay.Set(staged{key: withPrefix(prefixKey, key), del: true})
	return prev, true
}

// SetMeta stages the meta record key = value.
func (e *Engine) SetMeta(key, value []byte) {
	e.mustOpen()
	v := bytes.Clone(value)
	if v == nil {
		v = []byte{}
	}
	e.overlay.Set(staged{key: withPrefix(prefixMeta, key), value: v})
}

// DeleteMeta stages the removal of the meta record key.
func (e *Engine) DeleteMeta(key []byte) {
	e.mustOpen()
	e.overlay.Set(staged{key: withPrefix(prefixMeta, key), del: true})
}

// Meta returns the meta record for key, staged or committed.
func (e *Engine) Meta(key []byte) ([]byte, bool) {
	e.mustOpen()
	v, ok := e.getRaw(withPrefix(prefixMeta, key))
	if !ok {
		return nil, false
	}
	// A staged value stays in the overlay: the caller gets a copy.
	return append(make([]byte, 0, len(v)), v...), true
}

// ScanMeta calls fn for every meta record whose key starts with prefix.
func (e *Engine) ScanMeta(prefix []byte, fn func(key, value []byte) bool) {
	e.mustOpen()
	lo := withPrefix(prefixMeta, prefix)
	merge(e.db, e.overlay, lo, prefixEnd(lo), false, func(k, v []byte) bool {
		return fn(k[1:len(k):len(k)], v[:len(v):len(v)])
	})
}

// Scan calls fn for each entry with start <= key < end, staged or
// committed. The entry's slices are valid only until fn returns.
func (e *Engine) Scan(start, end []byte, reverse bool, fn func(storage.Entry) bool) {
	e.mustOpen()
	lo, hi := keyBounds(start, end)
	merge(e.db, e.overlay, lo, hi, reverse, func(k, v []byte) bool {
		en, err := decodeEntry(k, v)
		if err != nil {
			panic(err)
		}
		return fn(en)
	})
}

// merge calls fn for every record of r with lo <= key < hi (hi nil is
// unbounded), with the staged changes in overlay on top (overlay may be
// nil), in ascending order or descending when reverse is true, until fn
// returns false. The slices are valid only until fn returns. A read error
// panics.
func merge(r pebble.Reader, overlay *btree.BTreeG[staged], lo, hi []byte, reverse bool, fn func(k, v []byte) bool) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		panic(fmt.Errorf("%w: new iterator: %w", ErrIO, err))
	}
	defer func() {
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			panic(fmt.Errorf("%w: iterate: %w", ErrIO, err))
		}
	}()
	var ot btree.IterG[staged]
	ok := false // whether ot is at a staged change within [lo, hi)
	if overlay != nil && overlay.Len() > 0 {
		ot = overlay.Iter()
		defer ot.Release()
		if !reverse {
			ok = ot.Seek(staged{key: lo}) && (hi == nil || bytes.Compare(ot.Item().key, hi) < 0)
		} else {
			if hi == nil {
				ok = ot.Last()
			} else if ot.Seek(staged{key: hi}) {
				ok = ot.Prev()
			} else {
				ok = ot.Last()
			}
			ok = ok && bytes.Compare(ot.Item().key, lo) >= 0
		}
	}
	step := func() {
		if !reverse {
			ok = ot.Next() && (hi == nil || bytes.Compare(ot.Item().key, hi) < 0)
		} else {
			ok = ot.Prev() && bytes.Compare(ot.Item().key, lo) >= 0
		}
	}
	var valid bool
	if reverse {
		valid = it.Last()
	} else {
		valid = it.First()
	}
	advance := func() {
		if reverse {
			valid = it.Prev()
		} else {
			valid = it.Next()
		}
	}
	for valid || ok {
		c := 0 // < 0: the DB's record comes first; > 0: the staged one
		switch {
		case !ok:
			c = -1
		case !valid:
			c = 1
		default:
			c = bytes.Compare(it.Key(), ot.Item().key)
			if reverse {
				c = -c
			}
		}
		if c < 0 {
			v, err := it.ValueAndErr()
			if err != nil {
				panic(fmt.Errorf("%w: read value: %w", ErrIO, err))
			}
			if !fn(it.Key(), v) {
				return
			}
			advance()
			continue
		}
		s := ot.Item()
		if c == 0 {
			advance()
		}
		step()
		if !s.del && !fn(s.key, s.value) {
			return
		}
	}
}

// Commit writes everything staged, with applied and the counters, as one
// pebble batch, without syncing it.
func (e *Engine) Commit(applied uint64) error {
	if e.closed {
		return ErrClosed
	}
	if e.err != nil {
		return e.err
	}
	if applied < e.applied {
		return fmt.Errorf("%w: commit at %d after %d", ErrApplied, applied, e.applied)
	}
	if e.overlay.Len() == 0 && applied == e.applied {
		return nil
	}
	b := e.db.NewBatch()
	var err error
	e.overlay.Scan(func(s staged) bool {
		if s.del {
			err = b.Delete(s.key, nil)
		} else {
			err = b.Set(s.key, s.value, nil)
		}
		return err == nil
	})
	if err == nil {
		st := state{applied: applied, len: uint64(e.n), bytes: uint64(e.size)}
		err = b.Set(stateKey, st.encode(), nil)
	}
	if err == nil {
		err = b.Commit(pebble.NoSync)
	}
	err = errors.Join(err, b.Close())
	if err != nil {
		e.err = fmt.Errorf("%w: commit at %d: %w", ErrIO, applied, err)
		return e.err
	}
	e.overlay.Clear()
	e.applied = applied
	e.committedLen, e.committedBytes = e.n, e.size
	return nil
}

// Sync makes every committed batch durable: a synced write of an empty
// log record, which pebble writes after every earlier batch and syncs
// with them (a log pebble rotated away from was synced when it was
// closed).
func (e *Engine) Sync() error {
	if e.closed {
		return ErrClosed
	}
	if e.err != nil {
		return e.err
	}
	if err := e.db.LogData(nil, pebble.Sync); err != nil {
		e.err = fmt.Errorf("%w: sync: %w", ErrIO, err)
		return e.err
	}
	return nil
}

// Close syncs the engine and drops what is staged. Views taken earlier stay
// readable; the DB is closed when the last is released.
func (e *Engine) Close() error {
	if e.closed {
		return ErrClosed
	}
	err := e.Sync()
	e.closed = true
	e.overlay.Clear()
	return errors.Join(err, e.unref())
}

// unref drops one reference and closes the DB when it was the last. It
// returns the error of closing the DB, if it did.
func (e *Engine) unref() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.refs--
	if e.refs > 0 {
		return nil
	}
	if err := e.db.Close(); err != nil {
		e.closeErr = fmt.Errorf("%w: close %s: %w", ErrIO, e.dir, err)
	}
	if e.onClose != nil {
		e.onClose()
	}
	return e.closeErr
}
