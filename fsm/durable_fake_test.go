package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/cubekv/cubekv/storage"
)

// fakeDisk is what a fakeDurable keeps on "disk": the batches committed,
// in order, and how many of them are synced. A crash keeps the synced
// ones and any number of those after them.
type fakeDisk struct {
	batches []fakeBatch
	synced  int
	// forget drops batches instead of keeping them (benchmarks, which
	// never reopen).
	forget bool
}

// fakeBatch is one Commit: the changes staged before it and its index.
type fakeBatch struct {
	ops     []fakeOp
	applied uint64
}

// fakeOp is one staged change.
type fakeOp struct {
	kind     byte // 'p' Put, 'd' Delete, 's' SetMeta, 'x' DeleteMeta
	idx      uint64
	key, val []byte
}

// crash drops the batches after the synced ones, keeping a random number
// of them.
func (d *fakeDisk) crash(rng *rand.Rand) {
	keep := d.synced + rng.IntN(len(d.batches)-d.synced+1)
	d.batches = d.batches[:keep]
	d.synced = keep
}

// fakeDurable is a storage.Durable over an in-memory btree engine and a
// map of meta records, both holding the committed state with the staged
// changes on top, as the contract has reads see them. Commit appends the
// staged changes to its disk as one batch; opening replays the batches.
// It takes no locks: the race detector checks that the FSM serialises
// mutators with reads, as the contract asks.
type fakeDurable struct {
	disk    *fakeDisk
	eng     storage.Engine
	meta    map[string][]byte
	staged  []fakeOp
	applied uint64
	// err makes the Durable broken: Commit and Sync return it. failCommit
	// and failSync, when set, are the error the next Commit or Sync fails
	// with (and then keep).
	err                  error
	failCommit, failSync error
	closed               bool
}

var _ storage.Durable = (*fakeDurable)(nil)

// openFake opens the state disk holds.
func openFake(disk *fakeDisk) *fakeDurable {
	d := &fakeDurable{disk: disk, eng: storage.NewBTree(), meta: make(map[string][]byte)}
	for _, b := range disk.batches {
		for _, op := range b.ops {
			d.do(op)
		}
		d.applied = b.applied
	}
	return d
}

func (d *fakeDurable) do(op fakeOp) (storage.Entry, bool) {
	switch op.kind {
	case 'p':
		return d.eng.Put(op.idx, op.key, op.val)
	case 'd':
		return d.eng.Delete(op.idx, op.key)
	case 's':
		d.meta[string(op.key)] = op.val
	case 'x':
		delete(d.meta, string(op.key))
	}
	return storage.Entry{}, false
}

func (d *fakeDurable) stage(op fakeOp) (storage.Entry, bool) {
	if d.closed {
		panic("fake durable: write after close")
	}
	op.key, op.val = bytes.Clone(op.key), bytes.Clone(op.val)
	if op.val == nil && op.kind == 's' {
		op.val = []byte{}
	}
	d.staged = append(d.staged, op)
	return d.do(op)
}

func (d *fakeDurable) Get(key []byte) (storage.Entry, bool) { return d.eng.Get(key) }
func (d *fakeDurable) Scan(start, end []byte, reverse bool, fn func(storage.Entry) bool) {
	d.eng.Scan(start, end, reverse, fn)
}
func (d *fakeDurable) Len() int     { return d.eng.Len() }
func (d *fakeDurable) Bytes() int64 { return d.eng.Bytes() }
func (d *fakeDurable) Name() string { return "fake" }

func (d *fakeDurable) Put(idx uint64, key, value []byte) (storage.Entry, bool) {
	return d.stage(fakeOp{kind: 'p', idx: idx, key: key, val: value})
}

func (d *fakeDurable) Delete(idx uint64, key []byte) (storage.Entry, bool) {
	return d.stage(fakeOp{kind: 'd', idx: idx, key: key})
}

func (d *fakeDurable) Snapshot() storage.View {
	if len(d.staged) != 0 {
		panic(fmt.Sprintf("fake durable: Snapshot with %d changes staged", len(d.staged)))
	}
	return d.eng.Snapshot()
}

func (d *fakeDurable) Applied() uint64 { return d.applied }

func (d *fakeDurable) SetMeta(key, value []byte) { d.stage(fakeOp{kind: 's', key: key, val: value}) }
func (d *fakeDurable) DeleteMeta(key []byte)     { d.stage(fakeOp{kind: 'x', key: key}) }

func (d *fakeDurable) Meta(key []byte) ([]byte, bool) {
	v, ok := d.meta[string(key)]
	return bytes.Clone(v), ok
}

func (d *fakeDurable) ScanMeta(prefix []byte, fn func(key, value []byte) bool) {
	var keys []string
	for k := range d.meta {
		if strings.HasPrefix(k, string(prefix)) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !fn([]byte(k), d.meta[k]) {
			return
		}
	}
}

func (d *fakeDurable) Commit(applied uint64) error {
	if d.err == nil && d.failCommit != nil {
		d.err = d.failCommit
	}
	if d.err != nil {
		return d.err
	}
	if applied < d.applied {
		return fmt.Errorf("fake durable: commit at %d below %d", applied, d.applied)
	}
	if d.disk.forget {
		d.staged = d.staged[:0]
	} else {
		d.disk.batches = append(d.disk.batches, fakeBatch{ops: d.staged, applied: applied})
		d.staged = nil
	}
	d.applied = applied
	return nil
}

func (d *fakeDurable) Sync() error {
	if d.err == nil && d.failSync != nil {
		d.err = d.failSync
	}
	if d.err != nil {
		return d.err
	}
	d.disk.synced = len(d.disk.batches)
	return nil
}

func (d *fakeDurable) Close() error {
	if d.closed {
		return errors.New("fake durable: closed twice")
	}
	err := d.Sync()
	d.closed = true
	return err
}

// fakeDir is a storage.DurableDir of fakeDurables: cur is the current
// disk, fresh the Durables Fresh returned that are neither installed nor
// discarded.
type fakeDir struct {
	cur         *fakeDisk
	open        *fakeDurable // what Open or Install made current
	fresh       map[*fakeDurable]bool
	discards    int
	failInstall error
}

var _ storage.DurableDir = (*fakeDir)(nil)

func newFakeDir() *fakeDir {
	return &fakeDir{cur: &fakeDisk{}, fresh: make(map[*fakeDurable]bool)}
}

func (fd *fakeDir) Open() (storage.Durable, error) {
	fd.open = openFake(fd.cur)
	return fd.open, nil
}

func (fd *fakeDir) Fresh() (storage.Durable, error) {
	d := openFake(&fakeDisk{})
	fd.fresh[d] = true
	return d, nil
}

func (fd *fakeDir) Install(fresh storage.Durable) error {
	d := fresh.(*fakeDurable)
	if !fd.fresh[d] {
		return errors.New("fake dir: install of a Durable Fresh did not return")
	}
	if fd.failInstall != nil {
		return fd.failInstall
	}
	if err := d.Sync(); err != nil {
		return err
	}
	delete(fd.fresh, d)
	fd.cur = d.disk
	fd.open.closed = true
	fd.open = d
	return nil
}

func (fd *fakeDir) Discard(fresh storage.Durable) error {
	d := fresh.(*fakeDurable)
	if !fd.fresh[d] {
		return errors.New("fake dir: discard of a Durable Fresh did not return")
	}
	delete(fd.fresh, d)
	d.closed = true
	fd.discards++
	return nil
}

// crash loses what the current disk has not synced (any suffix of it);
// Durables open before it must not be used again.
func (fd *fakeDir) crash(rng *rand.Rand) {
	fd.cur.crash(rng)
	fd.open = nil
	clear(fd.fresh)
}
