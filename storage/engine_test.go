package storage_test

import (
	"errors"
	"testing"

	"github.com/cubekv/cubekv/storage"
	"github.com/cubekv/cubekv/storage/storagetest"
)

// mustNew returns a new engine of kind, failing t if New does.
func mustNew(tb testing.TB, kind string) storage.Engine {
	tb.Helper()
	e, err := storage.New(kind)
	if err != nil {
		tb.Fatalf("New(%q): %v", kind, err)
	}
	return e
}

func TestBTree_Conformance(t *testing.T) {
	storagetest.Run(t, func() storage.Engine { return mustNew(t, storage.KindBTree) })
}

func TestHash_Conformance(t *testing.T) {
	storagetest.Run(t, func() storage.Engine { return mustNew(t, storage.KindHash) })
}

func TestNew_Kinds(t *testing.T) {
	tests := []struct {
		kind     string
		wantName string
	}{
		{kind: "", wantName: storage.KindArena},
		{kind: storage.KindArena, wantName: storage.KindArena},
		{kind: storage.KindBTree, wantName: storage.KindBTree},
		{kind: storage.KindHash, wantName: storage.KindHash},
	}
	for _, tt := range tests {
		t.Run("kind_"+tt.kind, func(t *testing.T) {
			e := mustNew(t, tt.kind)
			if e.Name() != tt.wantName {
				t.Fatalf("New(%q).Name() = %q, want %q", tt.kind, e.Name(), tt.wantName)
			}
			if e.Len() != 0 || e.Bytes() != 0 {
				t.Fatalf("New(%q) is not empty: Len() = %d, Bytes() = %d", tt.kind, e.Len(), e.Bytes())
			}
		})
	}
}

func TestNew_UnknownKind(t *testing.T) {
	for _, kind := range []string{"lsm", "BTree", " btree"} {
		t.Run(kind, func(t *testing.T) {
			e, err := storage.New(kind)
			if !errors.Is(err, storage.ErrUnknownEngine) {
				t.Fatalf("New(%q) error = %v, want ErrUnknownEngine", kind, err)
			}
			if e != nil {
				t.Fatalf("New(%q) returned engine %v with an error", kind, e)
			}
		})
	}
}

func TestArena_Conformance(t *testing.T) {
	storagetest.Run(t, func() storage.Engine { return mustNew(t, storage.KindArena) })
}

// Only the engines that never reuse a record's memory say their scanned
// entries outlive the callback; fsm keeps such entries without copying.
func TestStableScanner_OnlyEnginesThatNeverReuseMemory(t *testing.T) {
	for _, kind := range storage.Kinds {
		_, stable := mustNew(t, kind).(storage.StableScanner)
		if want := kind != storage.KindArena; stable != want {
			t.Errorf("%s: StableScanner %v, want %v", kind, stable, want)
		}
	}
}
