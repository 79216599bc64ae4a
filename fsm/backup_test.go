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
