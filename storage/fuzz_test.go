package storage_test

import (
	"testing"

	"github.com/cubekv/cubekv/storage"
	"github.com/cubekv/cubekv/storage/storagetest"
)

// FuzzEngine applies decoded op sequences to every engine (the arena with
// both of its chunk sources) and checks each against the reference model.
func FuzzEngine(f *testing.F) {
	// put a=xy, scan all, delete a, snapshot, put a=z, reverse scan with
	// limit 1, check views.
	f.Add([]byte{0, 1, 2, 'x', 'y', 11, 0xff, 0xff, 6, 1, 14, 0, 1, 1, 'z', 0x9b, 0xff, 0xff, 15})
	// put ""="", put ""=q at the same index, delete "", bounded scans, views.
	f.Add([]byte{0, 0, 0, 0x80, 0, 1, 'q', 6, 0, 11, 0, 0xf0, 14, 11, 3, 0, 15})
	// snapshot first, then deletes, gets and puts of several keys.
	f.Add([]byte{14, 15, 6, 1, 1, 2, 2, 'b', 'c', 9, 39, 2, 39, 0, 0x8b, 0xf0, 0x10, 15})
	f.Fuzz(func(t *testing.T, data []byte) {
		ops := storagetest.DecodeOps(data)
		for _, kind := range storage.Kinds {
			if err := storagetest.Check(mustNew(t, kind), ops); err != nil {
				t.Fatalf("%s: %v", kind, err)
			}
		}
		if err := storagetest.Check(storage.NewArenaMmap(), ops); err != nil {
			t.Fatalf("arena (mmap): %v", err)
		}
	})
}
