package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/thrift/kv"
)

func TestFSM_WriteSnapshotVerifiesAndRestores(t *testing.T) {
	f, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 50; i++ {
		data, err := EncodeCommand(&kv.Command{Op: kv.CommandOp_PUT, Key: []byte(fmt.Sprintf("k%02d", i)), Value: []byte("v")})
		if err != nil {
			t.Fatal(err)
		}
		f.Apply(&raft.Log{Index: uint64(i), Type: raft.LogCommand, Data: data})
	}
	var buf bytes.Buffer
	info, n, err := f.WriteSnapshot(&buf)
	if err != nil || n != int64(buf.Len()) || info.AppliedIndex != 50 || info.Entries != 50 {
		t.Fatalf("WriteSnapshot = %+v, %d, %v (buffer %d bytes)", info, n, err, buf.Len())
	}
	got, err := VerifySnapshot(bytes.NewReader(buf.Bytes()))
	if err != nil || got != info {
		t.Fatalf("VerifySnapshot = %+v, %v; want %+v", got, err, info)
	}
	bad := append([]byte(nil), buf.Bytes()...)
	bad[len(bad)/2] ^= 0x40
	if _, err := VerifySnapshot(bytes.NewReader(bad)); !errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("VerifySnapshot of a flipped byte = %v, want ErrCorruptSnapshot", err)
	}
	if _, err := VerifySnapshot(bytes.NewReader(buf.Bytes()[:buf.Len()-1])); !errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("VerifySnapshot of a truncated stream = %v, want ErrCorruptSnapshot", err)
	}
	g, _ := New(DefaultConfig())
	if err := g.Restore(nopCloser{bytes.NewReader(buf.Bytes())}); err != nil {
		t.Fatal(err)
	}
	_, a := f.Digest()
	_, b := g.Digest()
	if a != b {
		t.Fatalf("restored digest differs")
	}
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

func TestFSM_RefusesWhatASnapshotCouldNotRestore(t *testing.T) {
	f, _ := New(DefaultConfig())
	cases := []*kv.Command{
		{Op: kv.CommandOp_PUT, Key: bytes.Repeat([]byte("k"), MaxKeySize+1), Value: []byte("v")},
		{Op: kv.CommandOp_TXN, Compares: []*kv.Compare{}, Success: []*kv.Op{{Type: kv.OpType_PUT, Key: bytes.Repeat([]byte("k"), MaxKeySize+1), Value: []byte("v")}}, Failure: []*kv.Op{}},
	}
	for i, c := range cases {
		data, err := EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		r := f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: data}).(*Result)
		if !errors.Is(r.Err, ErrInvalidCommand) {
			t.Fatalf("case %d: err = %v, want ErrInvalidCommand", i, r.Err)
		}
	}
	if f.Len() != 0 {
		t.Fatalf("%d keys stored", f.Len())
	}
}

func TestFSM_HugeResultsAreRememberedWithoutEntries(t *testing.T) {
	f, _ := New(DefaultConfig())
	big := bytes.Repeat([]byte("v"), 5<<20)
	var idx uint64
	apply := func(c *kv.Command) *Result {
		idx++
		data, err := EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		return f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: data}).(*Result)
	}
	var gets []*kv.Op
	for i := 0; i < 4; i++ {
		k := []byte(fmt.Sprintf("big%d", i))
		apply(&kv.Command{Op: kv.CommandOp_PUT, Key: k, Value: big})
		gets = append(gets, &kv.Op{Type: kv.OpType_GET, Key: k})
	}
	client, seq := int64(9), int64(1)
	txn := &kv.Command{Op: kv.CommandOp_TXN, Compares: []*kv.Compare{}, Success: gets, Failure: []*kv.Op{}, ClientID: &client, Sequence: &seq}
	first := apply(txn)
	if first.Err != nil || len(first.Write.Results) != 4 || len(first.Write.Results[0].Entry.Value) != len(big) {
		t.Fatalf("txn result = %+v", first)
	}
	again := apply(txn)
	if !again.Duplicate || again.Write.Index != first.Write.Index || len(again.Write.Results) != 4 || again.Write.Results[0].Entry != nil || !again.Write.Results[0].Found {
		t.Fatalf("retry = %+v, want the outcome without the 20 MiB of entries", again.Write)
	}
	var buf bytes.Buffer
	if _, _, err := f.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifySnapshot(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("snapshot with the remembered result does not verify: %v", err)
	}
}
