package pebbleng_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/cubekv/cubekv/storage"
	"github.com/cubekv/cubekv/storage/pebbleng"
)

func mustDirOpen(t *testing.T, fs vfs.FS) (*pebbleng.Dir, storage.Durable) {
	t.Helper()
	d := pebbleng.NewDir("root", pebbleng.Options{FS: fs})
	e, err := d.Open()
	if err != nil {
		t.Fatalf("Dir.Open: %v", err)
	}
	return d, e
}

// fill puts n keys named prefix<i> at index idx and commits.
func fill(t *testing.T, d storage.Durable, idx uint64, prefix string, n int) contents {
	t.Helper()
	c := newContents()
	for i := range n {
		k := fmt.Sprintf("%s%03d", prefix, i)
		d.Put(idx, []byte(k), []byte(strings.Repeat(prefix, 50)))
		c.put(idx, k, strings.Repeat(prefix, 50))
	}
	d.SetMeta([]byte("state"), []byte(prefix))
	c.meta["state"] = prefix
	if err := d.Commit(idx); err != nil {
		t.Fatal(err)
	}
	return c
}

func listRoot(t *testing.T, fs vfs.FS) []string {
	t.Helper()
	names, err := fs.List("root")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

func TestDir_FreshInstallDiscard(t *testing.T) {
	fs := vfs.NewMem()
	d, old := mustDirOpen(t, fs)
	if old.Applied() != 0 || old.Len() != 0 {
		t.Fatalf("new Dir: Applied %d Len %d", old.Applied(), old.Len())
	}
	oldC := fill(t, old, 10, "old", 20)

	// A discarded fresh state leaves nothing behind.
	f, err := d.Fresh()
	if err != nil {
		t.Fatal(err)
	}
	fill(t, f, 5, "gone", 3)
	if err := d.Discard(f); err != nil {
		t.Fatal(err)
	}
	if got := listRoot(t, fs); fmt.Sprint(got) != "[CURRENT state-000001]" {
		t.Fatalf("after Discard the root holds %v", got)
	}
	if err := d.Install(f); !errors.Is(err, pebbleng.ErrNotFresh) {
		t.Fatalf("Install of a discarded state = %v, want ErrNotFresh", err)
	}

	f, err = d.Fresh()
	if err != nil {
		t.Fatal(err)
	}
	newC := fill(t, f, 30, "new", 10)
	// A view of the old state outlives Install until it is released.
	v := old.Snapshot()
	if err := d.Install(f); err != nil {
		t.Fatal(err)
	}
	mustHold(t, "view of the replaced state", v, oldC)
	if got := listRoot(t, fs); !slices.Contains(got, "state-000001") {
		t.Fatalf("replaced state removed while a view lives: %v", got)
	}
	storage.Release(v)
	if got := listRoot(t, fs); fmt.Sprint(got) != "[CURRENT state-000002]" {
		t.Fatalf("after the last view of the replaced state went, the root holds %v", got)
	}
	mustHold(t, "installed", f, newC)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	_, e := mustDirOpen(t, fs)
	defer e.Close()
	mustHold(t, "reopened after Install", e, newC)
	if e.Applied() != 30 {
		t.Fatalf("Applied() = %d, want 30", e.Applied())
	}
}

func TestDir_OpenRemovesLeftovers(t *testing.T) {
	fs := vfs.NewMem()
	d, e := mustDirOpen(t, fs)
	c := fill(t, e, 3, "cur", 5)
	f, err := d.Fresh()
	if err != nil {
		t.Fatal(err)
	}
	fill(t, f, 4, "left", 5)
	if err := f.Close(); err != nil { // a crash before Install
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	_, e = mustDirOpen(t, fs)
	defer e.Close()
	mustHold(t, "current after a fresh state was left", e, c)
	if got := listRoot(t, fs); fmt.Sprint(got) != "[CURRENT state-000001]" {
		t.Fatalf("leftover not removed: %v", got)
	}
}

func TestDir_CorruptIsAnError(t *testing.T) {
	for _, tt := range []struct {
		name    string
		current string
	}{
		{name: "garbage", current: "xyz\n"},
		{name: "no_newline", current: "state-000001"},
		{name: "missing_state", current: "state-000009\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs := vfs.NewMem()
			_, e := mustDirOpen(t, fs)
			fill(t, e, 1, "x", 1)
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			f, err := fs.Create("root/CURRENT", vfs.WriteCategoryUnspecified)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write([]byte(tt.current)); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if _, err := pebbleng.NewDir("root", pebbleng.Options{FS: fs}).Open(); !errors.Is(err, pebbleng.ErrCorrupt) {
				t.Fatalf("Open with CURRENT %q = %v, want ErrCorrupt", tt.current, err)
			}
			if got := listRoot(t, fs); fmt.Sprint(got) != "[CURRENT state-000001]" {
				t.Fatalf("Open of a corrupt root removed the state: %v", got)
			}
		})
	}
}

// crashPoints is a file system that takes a crash copy of a crashable
// MemFS before every change to the name space and every sync, while on.
type crashPoints struct {
	vfs.FS
	mem    *vfs.MemFS
	mu     sync.Mutex
	on     bool
	copies []*vfs.MemFS
}

func (c *crashPoints) point() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.on {
		c.copies = append(c.copies, c.mem.CrashClone(vfs.CrashCloneCfg{}))
	}
}

type syncPoint struct {
	vfs.File
	c *crashPoints
}

func (f syncPoint) Sync() error {
	f.c.point()
	err := f.File.Sync()
	f.c.point()
	return err
}

func (c *crashPoints) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	c.point()
	f, err := c.FS.Create(name, cat)
	if err != nil {
		return nil, err
	}
	return syncPoint{f, c}, nil
}

func (c *crashPoints) OpenDir(name string) (vfs.File, error) {
	f, err := c.FS.OpenDir(name)
	if err != nil {
		return nil, err
	}
	return syncPoint{f, c}, nil
}

func (c *crashPoints) Rename(from, to string) error {
	c.point()
	defer c.point()
	return c.FS.Rename(from, to)
}

func (c *crashPoints) RemoveAll(name string) error {
	c.point()
	defer c.point()
	return c.FS.RemoveAll(name)
}

func (c *crashPoints) Remove(name string) error {
	c.point()
	defer c.point()
	return c.FS.Remove(name)
}

// TestDir_CrashDuringInstall crashes at every file system step of Install
// (with only synced data surviving): each copy opens to the old state or
// the fresh one, whole.
func TestDir_CrashDuringInstall(t *testing.T) {
	mem := vfs.NewCrashableMem()
	fs := &crashPoints{FS: mem, mem: mem}
	d, old := mustDirOpen(t, fs)
	oldC := fill(t, old, 7, "old", 30)
	if err := old.Sync(); err != nil {
		t.Fatal(err)
	}
	f, err := d.Fresh()
	if err != nil {
		t.Fatal(err)
	}
	newC := fill(t, f, 9, "new", 40) // committed, not synced until Install
	fs.on = true
	if err := d.Install(f); err != nil {
		t.Fatal(err)
	}
	fs.point()
	fs.on = false
	if len(fs.copies) < 4 {
		t.Fatalf("only %d crash points in Install", len(fs.copies))
	}
	sawOld, sawNew := false, false
	for i, cp := range fs.copies {
		_, e := mustDirOpen(t, cp)
		switch e.Applied() {
		case 7:
			sawOld = true
			mustHold(t, fmt.Sprintf("crash point %d (old)", i), e, oldC)
		case 9:
			sawNew = true
			mustHold(t, fmt.Sprintf("crash point %d (new)", i), e, newC)
		default:
			t.Fatalf("crash point %d: Applied() = %d, want 7 or 9", i, e.Applied())
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if !sawOld || !sawNew {
		t.Fatalf("crash points saw old %t, new %t: want both", sawOld, sawNew)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
