package pebbleng_test

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/cubekv/cubekv/storage"
	"github.com/cubekv/cubekv/storage/pebbleng"
	"github.com/cubekv/cubekv/storage/storagetest"
)

// mustOpen opens an engine in dir on fs with the default options.
func mustOpen(tb testing.TB, fs vfs.FS, dir string) *pebbleng.Engine {
	tb.Helper()
	return mustOpenWith(tb, dir, pebbleng.Options{FS: fs})
}

// smallOptions are options for tests that open many engines: small
// memtables also make pebble flush them often.
func smallOptions(fs vfs.FS) pebbleng.Options {
	return pebbleng.Options{FS: fs, CacheBytes: 1 << 20, MemTableBytes: 256 << 10}
}

func mustOpenWith(tb testing.TB, dir string, opts pebbleng.Options) *pebbleng.Engine {
	tb.Helper()
	e, err := pebbleng.Open(dir, opts)
	if err != nil {
		tb.Fatalf("Open(%q): %v", dir, err)
	}
	return e
}

// newMemEngine returns an engine on a memory file system of its own,
// closed when tb ends.
func newMemEngine(tb testing.TB) *pebbleng.Engine {
	tb.Helper()
	e := mustOpenWith(tb, "db", smallOptions(vfs.NewMem()))
	tb.Cleanup(func() { _ = e.Close() })
	return e
}

func TestConformance(t *testing.T) {
	for _, every := range []int{0, 7} {
		t.Run(fmt.Sprintf("commit_every_%d", every), func(t *testing.T) {
			storagetest.Run(t, func() storage.Engine {
				return storagetest.Committing(newMemEngine(t), every)
			})
		})
	}
}

func TestConformance_OnDisk(t *testing.T) {
	storagetest.Run(t, func() storage.Engine {
		e := mustOpen(t, vfs.Default, t.TempDir())
		t.Cleanup(func() { _ = e.Close() })
		return storagetest.Committing(e, 3)
	})
}
