package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"
)

func FuzzDecodeEntry(f *testing.F) {
	for _, c := range sampleCommands() {
		f.Add(mustEncode(f, c))
	}
	b, err := EncodeBatch(sampleCommands())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{FlagIgnorable | 5, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		cmds, batch, err := DecodeEntry(data)
		if err != nil {
			if !errors.Is(err, ErrCorruptEntry) || cmds != nil {
				t.Fatalf("error %v with %d commands", err, len(cmds))
			}
			return
		}
		if cmds == nil {
			if data[0]&FlagIgnorable == 0 {
				t.Fatalf("type %d decoded to nothing", data[0])
			}
			return
		}
		if !batch && len(cmds) != 1 {
			t.Fatalf("command entry decoded to %d commands", len(cmds))
		}
		// A decodable entry applies without panicking (invalid commands are
		// error results) and re-encodes to an entry that decodes the same.
		fsm := mustNew(t, "")
		fsm.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data})
		var again []byte
		if batch {
			again, err = EncodeBatch(cmds)
		} else {
			again, err = EncodeCommand(cmds[0])
		}
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		cmds2, _, err := DecodeEntry(again)
		if err != nil || !reflect.DeepEqual(cmds, cmds2) {
			t.Fatalf("re-encoded entry decodes to %v, %v", cmds2, err)
		}
	})
}

func FuzzRestore(f *testing.F) {
	golden, err := os.ReadFile(goldenPath)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	goldenV1, err := os.ReadFile(goldenPathV1)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(goldenV1)
	f.Add(mustPersist(f, mustNew(f, "")))
	f.Add(golden[:40])
	f.Fuzz(func(t *testing.T, data []byte) {
		fsm := mustNew(t, "")
		mustApply(t, fsm, 3, withID(putCmd("keep", "me"), 8, 1))
		before := stateOf(t, fsm)
		err := fsm.Restore(io.NopCloser(bytes.NewReader(data)))
		if err != nil {
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("Restore error %v does not wrap ErrCorruptSnapshot", err)
			}
			if after := stateOf(t, fsm); !reflect.DeepEqual(after, before) {
				t.Fatal("failed Restore changed the state")
			}
			return
		}
		// An accepted snapshot of the current version persists back to the
		// same bytes; an older one to a snapshot of the same state.
		again := mustPersist(t, fsm)
		if binary.BigEndian.Uint32(data[8:12]) == snapshotVersion {
			if !bytes.Equal(again, data) {
				t.Fatalf("accepted snapshot re-persists differently:\n%x\n%x", data, again)
			}
			return
		}
		g := mustNew(t, "")
		if err := g.Restore(io.NopCloser(bytes.NewReader(again))); err != nil {
			t.Fatalf("re-persisted snapshot refused: %v", err)
		}
		if !reflect.DeepEqual(stateOf(t, g), stateOf(t, fsm)) {
			t.Fatal("re-persisted snapshot restores a different state")
		}
	})
}
