package pebbleng

import (
	"runtime"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cubekv/cubekv/storage"
)

// view is a storage.View over a pebble snapshot of the committed state.
// Its reads copy every entry they return, so the entries stay valid after
// the iterator moves on, until the caller drops them.
type view struct {
	*viewState
}

// viewState is what a view's cleanup needs: the snapshot and the engine
// reference, released once.
type viewState struct {
	e        *Engine
	snap     *pebble.Snapshot
	n        int
	size     int64
	released atomic.Bool
}

// Snapshot returns a view of the committed state. Changes staged and not
// committed would not show in it: Snapshot panics with ErrStaged if any
// change is staged (the caller commits first). The view holds
// the engine's files open until it is released, or found unreachable by
// the garbage collector.
func (e *Engine) Snapshot() storage.View {
	e.mustOpen()
	if e.overlay.Len() > 0 {
		panic(ErrStaged)
	}
	e.mu.Lock()
	e.refs++
	e.mu.Unlock()
	v := &view{&viewState{e: e, snap: e.db.NewSnapshot(), n: e.committedLen, size: e.committedBytes}}
	runtime.AddCleanup(v, func(s *viewState) { s.release() }, v.viewState)
	return v
}

// Release closes the snapshot; the last release after Close closes the DB.
func (v *view) Release() { v.release() }

func (s *viewState) release() {
	if !s.released.CompareAndSwap(false, true) {
		return
	}
	if err := s.snap.Close(); err != nil {
		s.e.mu.Lock()
		s.e.closeErr = err
		s.e.mu.Unlock()
	}
	if err := s.e.unref(); err != nil {
		s.e.logErr("close after the last view", err)
	}
}

func (v *view) mustLive() {
	if v.released.Load() {
		panic("pebble engine: read of a released view")
	}
}

// Get returns the committed entry for key as of the view.
func (v *view) Get(key []byte) (storage.Entry, bool) {
	v.mustLive()
	pk := withPrefix(prefixKey, key)
	val, ok := dbGet(v.snap, pk)
	if !ok {
		runtime.KeepAlive(v)
		return storage.Entry{}, false
	}
	runtime.KeepAlive(v) // its cleanup must not close the snapshot mid-read
	en, err := decodeEntry(pk, val)
	if err != nil {
		panic(err)
	}
	return en, true
}

// Scan calls fn for each entry of the view with start <= key < end; the
// entries are copies, valid for as long as the caller holds them.
func (v *view) Scan(start, end []byte, reverse bool, fn func(storage.Entry) bool) {
	v.mustLive()
	lo, hi := keyBounds(start, end)
	merge(v.snap, nil, lo, hi, reverse, func(k, val []byte) bool {
		en, err := decodeEntry(k, val)
		if err != nil {
			panic(err)
		}
		return fn(copyEntry(en))
	})
	runtime.KeepAlive(v)
}

// Len returns the number of keys in the view.
func (v *view) Len() int { return v.n }

// Bytes returns the size of the view's keys and values.
func (v *view) Bytes() int64 { return v.size }
