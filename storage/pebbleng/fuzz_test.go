package pebbleng_test

import (
	"testing"

	"github.com/cubekv/cubekv/storage/storagetest"
)

// FuzzEngine applies decoded op sequences (storagetest.DecodeOps) to the
// engine and checks them against the reference model. The first byte
// chooses how often the writes are committed (0-7: every that many writes,
// 0 only before a Snapshot), so reads run over staged changes, committed
// ones and both.
func FuzzEngine(f *testing.F) {
	// put a=xy, scan all, delete a, snapshot, put a=z, reverse scan with
	// limit 1, check views.
	f.Add([]byte{0, 0, 1, 2, 'x', 'y', 11, 0xff, 0xff, 6, 1, 14, 0, 1, 1, 'z', 0x9b, 0xff, 0xff, 15})
	// commit every write: put ""="", put ""=q at the same index, delete "",
	// bounded scans, views.
	f.Add([]byte{1, 0, 0, 0, 0x80, 0, 1, 'q', 6, 0, 11, 0, 0xf0, 14, 11, 3, 0, 15})
	// commit every third write: snapshot first, then deletes, gets and puts.
	f.Add([]byte{3, 14, 15, 6, 1, 1, 2, 2, 'b', 'c', 9, 39, 2, 39, 0, 0x8b, 0xf0, 0x10, 15})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		every := int(data[0] % 8)
		e := newMemEngine(t)
		if err := storagetest.Check(storagetest.Committing(e, every), storagetest.DecodeOps(data[1:])); err != nil {
			t.Fatalf("commit every %d: %v", every, err)
		}
	})
}
