package pebbleng_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/cubekv/cubekv/storage"
	"github.com/cubekv/cubekv/storage/pebbleng"
)

// contents is everything a Durable holds: entries and meta records.
type contents struct {
	entries map[string]storage.Entry
	meta    map[string]string
	bytes   int64
}

func newContents() contents {
	return contents{entries: map[string]storage.Entry{}, meta: map[string]string{}}
}

func (c contents) clone() contents {
	out := newContents()
	for k, v := range c.entries {
		out.entries[k] = v
	}
	for k, v := range c.meta {
		out.meta[k] = v
	}
	out.bytes = c.bytes
	return out
}

// put applies a Put to c the way an engine does.
func (c *contents) put(idx uint64, key, value string) {
	e := storage.Entry{Key: []byte(key), Value: []byte(value), CreateIndex: idx, ModIndex: idx}
	if prev, ok := c.entries[key]; ok {
		e.CreateIndex = prev.CreateIndex
		c.bytes -= int64(len(prev.Key) + len(prev.Value))
	}
	c.entries[key] = e
	c.bytes += int64(len(key) + len(value))
}

func (c *contents) del(key string) {
	if prev, ok := c.entries[key]; ok {
		c.bytes -= int64(len(prev.Key) + len(prev.Value))
		delete(c.entries, key)
	}
}

// mustHold fails t unless r holds exactly c's entries (and, for a Durable,
// c's meta records).
func mustHold(t *testing.T, what string, r storage.Reader, c contents) {
	t.Helper()
	if r.Len() != len(c.entries) || r.Bytes() != c.bytes {
		t.Fatalf("%s: Len %d Bytes %d, want %d and %d", what, r.Len(), r.Bytes(), len(c.entries), c.bytes)
	}
	n := 0
	var last []byte
	r.Scan(nil, nil, false, func(e storage.Entry) bool {
		want, ok := c.entries[string(e.Key)]
		if !ok || !bytes.Equal(e.Value, want.Value) || e.CreateIndex != want.CreateIndex || e.ModIndex != want.ModIndex {
			t.Fatalf("%s: scan gave %q=%q (%d,%d), want %+v (present %t)", what, e.Key, e.Value, e.CreateIndex, e.ModIndex, want, ok)
		}
		if last != nil && bytes.Compare(last, e.Key) >= 0 {
			t.Fatalf("%s: scan out of order: %q after %q", what, e.Key, last)
		}
		last = bytes.Clone(e.Key)
		n++
		return true
	})
	if n != len(c.entries) {
		t.Fatalf("%s: scan gave %d entries, want %d", what, n, len(c.entries))
	}
	for k, want := range c.entries {
		got, ok := r.Get([]byte(k))
		if !ok || !bytes.Equal(got.Value, want.Value) || got.CreateIndex != want.CreateIndex || got.ModIndex != want.ModIndex {
			t.Fatalf("%s: Get(%q) = %+v %t, want %+v", what, k, got, ok, want)
		}
	}
	d, ok := r.(storage.Durable)
	if !ok {
		return
	}
	got := map[string]string{}
	d.ScanMeta(nil, func(k, v []byte) bool {
		got[string(k)] = string(v)
		return true
	})
	if len(got) != len(c.meta) {
		t.Fatalf("%s: %d meta records %v, want %v", what, len(got), got, c.meta)
	}
	for k, v := range c.meta {
		if got[k] != v {
			t.Fatalf("%s: meta %q = %q, want %q", what, k, got[k], v)
		}
		if mv, ok := d.Meta([]byte(k)); !ok || string(mv) != v {
			t.Fatalf("%s: Meta(%q) = %q %t, want %q", what, k, mv, ok, v)
		}
	}
}

func TestReadsSeeStagedChanges(t *testing.T) {
	e := newMemEngine(t)
	c := newContents()
	e.Put(1, []byte("a"), []byte("1"))
	e.Put(1, []byte("b"), []byte("2"))
	e.SetMeta([]byte("m/x"), []byte("mx"))
	c.put(1, "a", "1")
	c.put(1, "b", "2")
	c.meta["m/x"] = "mx"
	mustHold(t, "staged", e, c)
	if err := e.Commit(1); err != nil {
		t.Fatal(err)
	}
	mustHold(t, "committed", e, c)

	// Staged changes over committed ones: overwrite, delete, new keys on
	// both sides of the committed ones, a meta delete.
	prev, ok := e.Put(2, []byte("a"), []byte("one"))
	if !ok || string(prev.Value) != "1" {
		t.Fatalf("Put over committed a: prev %+v %t", prev, ok)
	}
	prev, ok = e.Delete(2, []byte("b"))
	if !ok || string(prev.Value) != "2" {
		t.Fatalf("Delete committed b: prev %+v %t", prev, ok)
	}
	if _, ok := e.Delete(2, []byte("b")); ok {
		t.Fatal("second Delete of staged-deleted b found it")
	}
	e.Put(2, []byte("0"), []byte("z"))
	e.Put(2, []byte("c"), []byte("3"))
	e.DeleteMeta([]byte("m/x"))
	e.SetMeta([]byte("m/y"), nil)
	c.put(2, "a", "one")
	c.del("b")
	c.put(2, "0", "z")
	c.put(2, "c", "3")
	delete(c.meta, "m/x")
	c.meta["m/y"] = ""
	mustHold(t, "staged over committed", e, c)

	var rev []string
	e.Scan([]byte("0"), []byte("c"), true, func(en storage.Entry) bool {
		rev = append(rev, string(en.Key))
		return true
	})
	if fmt.Sprint(rev) != "[a 0]" {
		t.Fatalf("reverse scan [0, c) = %v, want [a 0]", rev)
	}
	if err := e.Commit(2); err != nil {
		t.Fatal(err)
	}
	mustHold(t, "second commit", e, c)
	if e.Applied() != 2 {
		t.Fatalf("Applied() = %d, want 2", e.Applied())
	}
}

func TestMetaInvisibleToKeySpace(t *testing.T) {
	e := newMemEngine(t)
	e.SetMeta([]byte("a"), []byte("meta"))
	e.SetMeta([]byte("b/1"), []byte("x"))
	e.SetMeta([]byte("b/2"), []byte("y"))
	e.SetMeta([]byte("c"), []byte("z"))
	check := func(what string) {
		t.Helper()
		if _, ok := e.Get([]byte("a")); ok {
			t.Fatalf("%s: Get sees a meta record", what)
		}
		if e.Len() != 0 || e.Bytes() != 0 {
			t.Fatalf("%s: Len %d Bytes %d with only meta records", what, e.Len(), e.Bytes())
		}
		e.Scan(nil, nil, false, func(en storage.Entry) bool {
			t.Fatalf("%s: Scan sees %q", what, en.Key)
			return false
		})
		var got []string
		e.ScanMeta([]byte("b/"), func(k, v []byte) bool {
			got = append(got, string(k)+"="+string(v))
			return true
		})
		if fmt.Sprint(got) != "[b/1=x b/2=y]" {
			t.Fatalf("%s: ScanMeta(b/) = %v", what, got)
		}
	}
	check("staged")
	if err := e.Commit(1); err != nil {
		t.Fatal(err)
	}
	check("committed")
	v := e.Snapshot()
	defer storage.Release(v)
	if _, ok := v.Get([]byte("a")); ok || v.Len() != 0 || v.Bytes() != 0 {
		t.Fatal("view sees meta records")
	}
	v.Scan(nil, nil, true, func(en storage.Entry) bool {
		t.Fatalf("view Scan sees %q", en.Key)
		return false
	})
}

func TestCommit_AppliedBackwardsRefused(t *testing.T) {
	e := newMemEngine(t)
	if err := e.Commit(5); err != nil {
		t.Fatal(err)
	}
	e.Put(6, []byte("k"), []byte("v"))
	if err := e.Commit(4); !errors.Is(err, pebbleng.ErrApplied) {
		t.Fatalf("Commit(4) after 5 = %v, want ErrApplied", err)
	}
	if err := e.Commit(6); err != nil {
		t.Fatalf("Commit(6) after a refused one: %v", err)
	}
}

func TestSnapshot_WithStagedChangesPanics(t *testing.T) {
	e := newMemEngine(t)
	e.Put(1, []byte("k"), []byte("v"))
	defer func() {
		if r := recover(); r != pebbleng.ErrStaged {
			t.Fatalf("Snapshot with a staged Put: recovered %v, want ErrStaged", r)
		}
	}()
	e.Snapshot()
}

func TestReopenAfterClose(t *testing.T) {
	fs := vfs.NewMem()
	e := mustOpen(t, fs, "db")
	c := newContents()
	for i := range 200 {
		idx := uint64(i + 1)
		k := fmt.Sprintf("k%03d", i%50)
		e.Put(idx, []byte(k), []byte(fmt.Sprint(i)))
		c.put(idx, k, fmt.Sprint(i))
		if i%7 == 0 {
			e.Delete(idx, []byte(fmt.Sprintf("k%03d", (i+3)%50)))
			c.del(fmt.Sprintf("k%03d", (i+3)%50))
		}
		e.SetMeta([]byte(fmt.Sprintf("m%d", i%5)), []byte(fmt.Sprint(i)))
		c.meta[fmt.Sprintf("m%d", i%5)] = fmt.Sprint(i)
		if i%10 == 9 {
			if err := e.Commit(idx); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Staged and never committed: Close drops it.
	e.Put(1000, []byte("lost"), []byte("x"))
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Commit(1000); !errors.Is(err, pebbleng.ErrClosed) {
		t.Fatalf("Commit after Close = %v, want ErrClosed", err)
	}
	e = mustOpen(t, fs, "db")
	defer e.Close()
	if e.Applied() != 200 {
		t.Fatalf("Applied() after reopen = %d, want 200", e.Applied())
	}
	mustHold(t, "reopened", e, c)
}

// TestCrash_KeepsPrefixOfCommits commits batches, syncs part way, and
// opens copies of the file system as a crash would leave it (all synced
// data, and a random part of the rest): each must hold exactly the state
// after one committed batch, no earlier than the last one synced.
func TestCrash_KeepsPrefixOfCommits(t *testing.T) {
	const batches = 60
	fs := vfs.NewCrashableMem()
	e := mustOpen(t, fs, "db")
	states := []contents{newContents()}
	c := newContents()
	rng := rand.New(rand.NewPCG(1, 2))
	synced := uint64(0)
	var clones []*vfs.MemFS
	var syncedAt, committedAt []uint64
	for b := uint64(1); b <= batches; b++ {
		for range 1 + rng.IntN(40) {
			k := fmt.Sprintf("key%03d", rng.IntN(300))
			if rng.IntN(4) == 0 {
				e.Delete(b, []byte(k))
				c.del(k)
			} else {
				v := bytes.Repeat([]byte{byte('a' + b%26)}, rng.IntN(3000))
				e.Put(b, []byte(k), v)
				c.put(b, k, string(v))
			}
		}
		e.SetMeta([]byte("batch"), []byte(fmt.Sprint(b)))
		c.meta["batch"] = fmt.Sprint(b)
		if err := e.Commit(b); err != nil {
			t.Fatal(err)
		}
		states = append(states, c.clone())
		if b%15 == 0 {
			if err := e.Sync(); err != nil {
				t.Fatal(err)
			}
			synced = b
		}
		if b%5 == 0 {
			for _, pct := range []int{0, 50, 100} {
				clones = append(clones, fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rng}))
				syncedAt = append(syncedAt, synced)
				committedAt = append(committedAt, b)
			}
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	lost, keptUnsynced := false, false
	for i, clone := range clones {
		ce := mustOpen(t, clone, "db")
		a := ce.Applied()
		if a < syncedAt[i] || a > committedAt[i] {
			t.Fatalf("crash copy %d: Applied() = %d, want from the synced %d to the committed %d", i, a, syncedAt[i], committedAt[i])
		}
		lost = lost || a < committedAt[i]
		keptUnsynced = keptUnsynced || a > syncedAt[i]
		mustHold(t, fmt.Sprintf("crash copy %d at applied %d", i, a), ce, states[a])
		if err := ce.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// The copies are real crashes: some lost unsynced batches, some kept
	// a part of them.
	if !lost || !keptUnsynced {
		t.Fatalf("crash copies: some lost batches %t, some kept unsynced ones %t; want both", lost, keptUnsynced)
	}
}

func TestView_SurvivesClose(t *testing.T) {
	e := mustOpen(t, vfs.NewMem(), "db")
	e.Put(1, []byte("k"), []byte("v"))
	if err := e.Commit(1); err != nil {
		t.Fatal(err)
	}
	v := e.Snapshot()
	got, _ := v.Get([]byte("k"))
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if g, ok := v.Get([]byte("k")); !ok || string(g.Value) != "v" || string(got.Value) != "v" {
		t.Fatalf("view after Close: Get = %+v %t", g, ok)
	}
	storage.Release(v)
}

func TestMeta_ReturnsCallersCopy(t *testing.T) {
	e := newMemEngine(t)
	for _, commit := range []bool{false, true} {
		e.SetMeta([]byte("k"), []byte("value"))
		if commit {
			if err := e.Commit(1); err != nil {
				t.Fatal(err)
			}
		}
		v, _ := e.Meta([]byte("k"))
		v[0] = 'X'
		if got, _ := e.Meta([]byte("k")); string(got) != "value" {
			t.Fatalf("committed %t: Meta after the caller changed its value = %q", commit, got)
		}
	}
}
