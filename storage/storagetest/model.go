package storagetest

import (
	"bytes"
	"fmt"
	"maps"
	"slices"

	"github.com/cubekv/cubekv/storage"
)

// OpKind says what an Op does.
type OpKind uint8

// Operations Check can apply. The zero value is invalid.
const (
	// OpPut puts Key = Value.
	OpPut OpKind = iota + 1
	// OpDelete deletes Key.
	OpDelete
	// OpGet gets Key.
	OpGet
	// OpScan scans [Start, End), Reverse, stopping after Limit entries.
	OpScan
	// OpSnapshot takes a View and remembers what it must hold.
	OpSnapshot
	// OpCheckViews checks every live View and every entry kept from
	// earlier reads against what they held when taken.
	OpCheckViews
)

// Op is one step of a sequence that Check applies to an engine and to a
// trivial reference model.
type Op struct {
	Kind OpKind
	// Key is the key of OpPut, OpDelete and OpGet.
	Key []byte
	// Value is the value of OpPut.
	Value []byte
	// SameIndex makes an OpPut or OpDelete reuse the Raft index of the
	// previous write instead of the next one, as a transaction does.
	SameIndex bool
	// Start and End bound an OpScan; nil is unbounded.
	Start, End []byte
	// Reverse makes an OpScan descend.
	Reverse bool
	// Limit stops an OpScan after that many entries; 0 means no limit.
	Limit int
}

// String formats the op for failure messages.
func (o Op) String() string {
	switch o.Kind {
	case OpPut:
		return fmt.Sprintf("put(%q, %q, same_index=%t)", o.Key, o.Value, o.SameIndex)
	case OpDelete:
		return fmt.Sprintf("delete(%q, same_index=%t)", o.Key, o.SameIndex)
	case OpGet:
		return fmt.Sprintf("get(%q)", o.Key)
	case OpScan:
		return fmt.Sprintf("scan(%s, %s, reverse=%t, limit=%d)", bound(o.Start), bound(o.End), o.Reverse, o.Limit)
	case OpSnapshot:
		return "snapshot()"
	case OpCheckViews:
		return "check_views()"
	default:
		return fmt.Sprintf("op(%d)", o.Kind)
	}
}

func bound(b []byte) string {
	if b == nil {
		return "nil"
	}
	return fmt.Sprintf("%q", b)
}

// maxViews is how many views Check keeps alive at once; taking one more
// checks, releases (storage.Release) and drops the oldest, so an engine that
// reuses memory once a view is released does so while the others live.
const maxViews = 4

// maxKept is how many entries returned by Get Check keeps to re-check that
// the engine never changes a slice it handed out.
const maxKept = 64

// Check applies ops in order to e (which must be empty) and to a reference
// model, and returns an error naming the first op whose result differs.
// Writes use Raft index 1, 2, 3, ... (SameIndex reuses the last one). After
// every op it compares Len and Bytes; at the end it compares every key,
// full scans both ways, every live view and every kept entry.
func Check(e storage.Engine, ops []Op) error {
	c := checker{e: e, m: newModel()}
	for i, op := range ops {
		if err := c.apply(op); err != nil {
			return fmt.Errorf("op %d of %d, %v: %w", i, len(ops), op, err)
		}
		if err := sameCounts(e, c.m); err != nil {
			return fmt.Errorf("op %d of %d, %v: %w", i, len(ops), op, err)
		}
	}
	if err := sameContents(e, c.m); err != nil {
		return fmt.Errorf("after %d ops: engine: %w", len(ops), err)
	}
	if err := c.checkViews(); err != nil {
		return fmt.Errorf("after %d ops: %w", len(ops), err)
	}
	return nil
}

// checker holds the state of one Check run.
type checker struct {
	e     storage.Engine
	m     *model
	idx   uint64
	views []frozenView
	kept  []keptEntry
}

// frozenView is a view with the model state it must show forever, and the
// entries its first full scan handed out, which must keep their bytes until
// the view is released.
type frozenView struct {
	v    storage.View
	m    *model
	held []keptEntry
}

// newFrozenView takes a view of e, which must hold what m holds.
func newFrozenView(e storage.Engine, m *model) frozenView {
	fv := frozenView{v: e.Snapshot(), m: m.clone()}
	fv.v.Scan(nil, nil, false, func(en storage.Entry) bool {
		fv.held = append(fv.held, keptEntry{got: en, want: cloneEntry(en)})
		return true
	})
	return fv
}

// keptEntry is an entry an engine returned, with a private copy of what it
// held then.
type keptEntry struct {
	got, want storage.Entry
}

func (c *checker) apply(op Op) error {
	switch op.Kind {
	case OpPut, OpDelete:
		if !op.SameIndex || c.idx == 0 {
			c.idx++
		}
		var got, want storage.Entry
		var gotOK, wantOK bool
		if op.Kind == OpPut {
			got, gotOK = c.e.Put(c.idx, clone(op.Key), clone(op.Value))
			want, wantOK = c.m.put(c.idx, op.Key, op.Value)
		} else {
			got, gotOK = c.e.Delete(c.idx, clone(op.Key))
			want, wantOK = c.m.delete(op.Key)
		}
		if err := sameResult(got, gotOK, want, wantOK); err != nil {
			return fmt.Errorf("previous entry: %w", err)
		}
		c.keep(got, gotOK)
	case OpGet:
		got, gotOK := c.e.Get(op.Key)
		want, wantOK := c.m.get(op.Key)
		if err := sameResult(got, gotOK, want, wantOK); err != nil {
			return err
		}
		c.keep(got, gotOK)
	case OpScan:
		got, err := collect(c.e, op.Start, op.End, op.Reverse, op.Limit)
		if err != nil {
			return err
		}
		if err := sameEntries(got, c.m.scan(op.Start, op.End, op.Reverse, op.Limit)); err != nil {
			return err
		}
	case OpSnapshot:
		if len(c.views) == maxViews {
			if err := c.views[0].check(); err != nil {
				return fmt.Errorf("oldest view: %w", err)
			}
			storage.Release(c.views[0].v)
			c.views = slices.Delete(c.views, 0, 1)
		}
		c.views = append(c.views, newFrozenView(c.e, c.m))
	case OpCheckViews:
		return c.checkViews()
	default:
		return fmt.Errorf("unknown op kind %d", op.Kind)
	}
	return nil
}

// keep remembers a returned entry so later checks can prove it unchanged.
func (c *checker) keep(got storage.Entry, ok bool) {
	if !ok {
		return
	}
	if len(c.kept) == maxKept {
		c.kept = slices.Delete(c.kept, 0, 1)
	}
	c.kept = append(c.kept, keptEntry{got: got, want: cloneEntry(got)})
}

func (c *checker) checkViews() error {
	for i, fv := range c.views {
		if err := fv.check(); err != nil {
			return fmt.Errorf("view %d of %d: %w", i, len(c.views), err)
		}
	}
	for _, k := range c.kept {
		if err := sameEntry(k.got, k.want); err != nil {
			return fmt.Errorf("entry returned earlier changed: %w", err)
		}
	}
	return nil
}

func (fv frozenView) check() error {
	for _, k := range fv.held {
		if err := sameEntry(k.got, k.want); err != nil {
			return fmt.Errorf("entry the view returned changed before its release: %w", err)
		}
	}
	if err := sameCounts(fv.v, fv.m); err != nil {
		return err
	}
	return sameContents(fv.v, fv.m)
}

// sameCounts compares Len and Bytes.
func sameCounts(r storage.Reader, m *model) error {
	if got, want := r.Len(), m.len(); got != want {
		return fmt.Errorf("Len() = %d, want %d", got, want)
	}
	if got, want := r.Bytes(), m.bytes; got != want {
		return fmt.Errorf("Bytes() = %d, want %d", got, want)
	}
	return nil
}

// sameContents compares every key and full scans in both directions.
func sameContents(r storage.Reader, m *model) error {
	for _, reverse := range []bool{false, true} {
		got, err := collect(r, nil, nil, reverse, 0)
		if err != nil {
			return err
		}
		if err := sameEntries(got, m.scan(nil, nil, reverse, 0)); err != nil {
			return fmt.Errorf("full scan (reverse=%t): %w", reverse, err)
		}
	}
	for _, want := range m.entries {
		got, ok := r.Get(want.Key)
		if err := sameResult(got, ok, want, true); err != nil {
			return fmt.Errorf("get(%q): %w", want.Key, err)
		}
	}
	return nil
}

// collect scans r, stopping after limit entries (0: no limit), and fails if
// Scan calls fn again after it returned false. It keeps copies: an engine's
// Scan entries are valid only during fn.
func collect(r storage.Reader, start, end []byte, reverse bool, limit int) ([]storage.Entry, error) {
	var got []storage.Entry
	stopped := false
	var err error
	r.Scan(start, end, reverse, func(e storage.Entry) bool {
		if stopped {
			err = fmt.Errorf("scan called fn for %q after fn returned false", e.Key)
			return false
		}
		got = append(got, cloneEntry(e))
		stopped = limit > 0 && len(got) >= limit
		return !stopped
	})
	return got, err
}

func sameResult(got storage.Entry, gotOK bool, want storage.Entry, wantOK bool) error {
	if gotOK != wantOK {
		return fmt.Errorf("found = %t, want %t (got %s)", gotOK, wantOK, format(got))
	}
	if !wantOK {
		return nil
	}
	return sameEntry(got, want)
}

func sameEntries(got, want []storage.Entry) error {
	for i := 0; i < len(got) && i < len(want); i++ {
		if err := sameEntry(got[i], want[i]); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
	}
	if len(got) != len(want) {
		return fmt.Errorf("got %d entries, want %d", len(got), len(want))
	}
	return nil
}

func sameEntry(got, want storage.Entry) error {
	if !bytes.Equal(got.Key, want.Key) || !bytes.Equal(got.Value, want.Value) ||
		got.CreateIndex != want.CreateIndex || got.ModIndex != want.ModIndex {
		return fmt.Errorf("got %s, want %s", format(got), format(want))
	}
	return nil
}

func format(e storage.Entry) string {
	return fmt.Sprintf("{key %q value %q create %d mod %d}", e.Key, e.Value, e.CreateIndex, e.ModIndex)
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return bytes.Clone(b)
}

func cloneEntry(e storage.Entry) storage.Entry {
	e.Key = bytes.Clone(e.Key)
	e.Value = bytes.Clone(e.Value)
	return e
}

// model is the reference: a map, sorted on every scan.
type model struct {
	entries map[string]storage.Entry
	bytes   int64
}

func newModel() *model {
	return &model{entries: make(map[string]storage.Entry)}
}

func (m *model) clone() *model {
	return &model{entries: maps.Clone(m.entries), bytes: m.bytes}
}

func (m *model) len() int { return len(m.entries) }

func (m *model) get(key []byte) (storage.Entry, bool) {
	e, ok := m.entries[string(key)]
	return e, ok
}

func (m *model) put(idx uint64, key, value []byte) (storage.Entry, bool) {
	prev, ok := m.entries[string(key)]
	e := storage.Entry{Key: bytes.Clone(key), Value: bytes.Clone(value), CreateIndex: idx, ModIndex: idx}
	if ok {
		e.CreateIndex = prev.CreateIndex
		m.bytes -= int64(len(prev.Key) + len(prev.Value))
	}
	m.entries[string(key)] = e
	m.bytes += int64(len(e.Key) + len(e.Value))
	return prev, ok
}

func (m *model) delete(key []byte) (storage.Entry, bool) {
	prev, ok := m.entries[string(key)]
	if ok {
		delete(m.entries, string(key))
		m.bytes -= int64(len(prev.Key) + len(prev.Value))
	}
	return prev, ok
}

func (m *model) scan(start, end []byte, reverse bool, limit int) []storage.Entry {
	var out []storage.Entry
	for _, e := range m.entries {
		if (start == nil || bytes.Compare(e.Key, start) >= 0) && (end == nil || bytes.Compare(e.Key, end) < 0) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b storage.Entry) int { return bytes.Compare(a.Key, b.Key) })
	if reverse {
		slices.Reverse(out)
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}
