package fsm

import (
	"errors"
	"reflect"
	"testing"

	"github.com/cubekv/cubekv/thrift/kv"
)

// sampleCommands covers every field of kv.Command.
func sampleCommands() []*kv.Command {
	ge := kv.CompareOp_GREATER
	return []*kv.Command{
		{Op: kv.CommandOp_NOOP},
		withID(putCmd("key", "value"), 42, 7),
		{Op: kv.CommandOp_PUT, Key: []byte("k"), Value: []byte{}, ReturnPrevious: boolp(true)},
		{Op: kv.CommandOp_DELETE, Key: []byte{0, 1, 2}, ReturnPrevious: boolp(false)},
		{Op: kv.CommandOp_CAS_PUT, Key: []byte("c"), Value: []byte("n"), ExpectedValue: []byte("o")},
		{Op: kv.CommandOp_CAS_DELETE, Key: []byte("c"), ExpectedModIndex: i64(0)},
		withID(&kv.Command{Op: kv.CommandOp_TXN,
			Compares: []*kv.Compare{
				{Key: []byte("a"), Target: kv.CompareTarget_VALUE, Value: []byte("x")},
				{Key: []byte("b"), Target: kv.CompareTarget_MOD_INDEX, Op: &ge, Index: i64(3)},
				{Key: []byte("c"), Target: kv.CompareTarget_EXISTS, Exists: boolp(false)},
			},
			Success: []*kv.Op{{Type: kv.OpType_PUT, Key: []byte("a"), Value: []byte("y")}, {Type: kv.OpType_GET, Key: []byte("b")}},
			Failure: []*kv.Op{{Type: kv.OpType_DELETE, Key: []byte("c")}},
		}, -1, 1<<62),
	}
}

func TestCodec_RoundTrip(t *testing.T) {
	for _, c := range sampleCommands() {
		b := mustEncode(t, c)
		if b[0] != EntryCommand {
			t.Fatalf("type byte %d", b[0])
		}
		got, batch, err := DecodeEntry(b)
		if err != nil || batch || len(got) != 1 {
			t.Fatalf("DecodeEntry(%v): %v %v %v", c, got, batch, err)
		}
		if !reflect.DeepEqual(got[0], c) {
			t.Fatalf("round trip\n got %v\nwant %v", got[0], c)
		}
		// The decoded command does not alias the payload.
		for i := range b {
			b[i] = 0
		}
		if !reflect.DeepEqual(got[0], c) {
			t.Fatal("decoded command aliases its payload")
		}
	}
	cmds := sampleCommands()
	b, err := EncodeBatch(cmds)
	if err != nil {
		t.Fatal(err)
	}
	got, batch, err := DecodeEntry(b)
	if err != nil || !batch || !reflect.DeepEqual(got, cmds) {
		t.Fatalf("batch round trip: batch=%v err=%v\n got %v\nwant %v", batch, err, got, cmds)
	}
}

func TestCodec_Errors(t *testing.T) {
	if _, err := EncodeCommand(nil); err == nil {
		t.Fatal("EncodeCommand(nil) succeeded")
	}
	if _, err := EncodeBatch([]*kv.Command{putCmd("a", "b"), nil}); err == nil {
		t.Fatal("EncodeBatch with nil command succeeded")
	}
	good := mustEncode(t, sampleCommands()[6])
	for i := 0; i < len(good); i++ {
		if _, _, err := DecodeEntry(good[:i]); !errors.Is(err, ErrCorruptEntry) {
			t.Fatalf("DecodeEntry(truncated to %d) err = %v", i, err)
		}
	}
	for _, typ := range []byte{0, 3, 0x7f} {
		if _, _, err := DecodeEntry(append([]byte{typ}, good[1:]...)); !errors.Is(err, ErrCorruptEntry) {
			t.Fatalf("type %d: err = %v", typ, err)
		}
	}
	for _, typ := range []byte{FlagIgnorable, FlagIgnorable | EntryCommand, 0xff} {
		cmds, batch, err := DecodeEntry([]byte{typ, 1, 2, 3})
		if err != nil || cmds != nil || batch {
			t.Fatalf("ignorable type %#x: %v %v %v", typ, cmds, batch, err)
		}
	}
}

func BenchmarkEncodeCommand(b *testing.B) {
	c := withID(putCmd("user/0000001234", string(make([]byte, 128))), 99, 1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeCommand(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeEntry(b *testing.B) {
	data := mustEncode(b, withID(putCmd("user/0000001234", string(make([]byte, 128))), 99, 1))
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, _, err := DecodeEntry(data); err != nil {
			b.Fatal(err)
		}
	}
}
