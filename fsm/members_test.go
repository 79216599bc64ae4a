package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"strings"
	"testing"

	"github.com/cubekv/cubekv/thrift/kv"
)

func TestFSM_MembersTable(t *testing.T) {
	f := mustNew(t, "")
	n1 := Member{ID: "n1", ThriftAddr: "127.0.0.1:9090", RaftAddr: "127.0.0.1:7000", GossipAddr: "127.0.0.1:7946", AdminAddr: "127.0.0.1:9100"}
	n2 := Member{ID: "n2", ThriftAddr: "127.0.0.2:9090", RaftAddr: "127.0.0.2:7000"}
	if r := mustApply(t, f, 1, memberSetCmd(n2)); r.Err != nil || !r.Write.Succeeded {
		t.Fatalf("set n2: %+v", r)
	}
	if r := mustApply(t, f, 2, memberSetCmd(n1)); r.Err != nil || !r.Write.Succeeded {
		t.Fatalf("set n1: %+v", r)
	}
	// Setting the same addresses again changes nothing.
	if r := mustApply(t, f, 3, memberSetCmd(n1)); r.Err != nil || r.Write.Succeeded {
		t.Fatalf("set n1 again: %+v", r)
	}
	if got, ok := f.Member("n1"); !ok || got != n1 {
		t.Fatalf("Member(n1) = %+v, %v", got, ok)
	}
	moved := n2
	moved.ThriftAddr = "127.0.0.9:9090"
	if r := mustApply(t, f, 4, memberSetCmd(moved)); r.Err != nil || !r.Write.Succeeded {
		t.Fatalf("move n2: %+v", r)
	}
	if got := f.Members(); len(got) != 2 || got[0] != n1 || got[1] != moved {
		t.Fatalf("Members() = %+v", got)
	}
	rm := &kv.Command{Op: kv.CommandOp_MEMBER_REMOVE, Member: &kv.MemberAddrs{NodeID: "n1"}}
	if r := mustApply(t, f, 5, rm); r.Err != nil || !r.Write.Succeeded {
		t.Fatalf("remove n1: %+v", r)
	}
	if r := mustApply(t, f, 6, rm); r.Err != nil || r.Write.Succeeded {
		t.Fatalf("remove n1 again: %+v", r)
	}
	if _, ok := f.Member("n1"); ok {
		t.Fatal("n1 still in the table after its removal")
	}
	if f.AppliedIndex() != 6 {
		t.Fatalf("applied %d", f.AppliedIndex())
	}

	// The table survives a snapshot.
	g := mustNew(t, "")
	mustRestore(t, g, mustPersist(t, f))
	if got := g.Members(); len(got) != 1 || got[0] != moved {
		t.Fatalf("restored Members() = %+v", got)
	}
}

// A backup leaves the members table out: restored into another cluster, it
// must not point forwarding at the nodes it was taken from.
func TestFSM_BackupOmitsMembers(t *testing.T) {
	f := mustNew(t, "")
	mustApply(t, f, 1, memberSetCmd(Member{ID: "n1", ThriftAddr: "10.0.0.1:9090"}))
	mustApply(t, f, 2, putCmd("k", "v"))
	var buf bytes.Buffer
	if _, _, err := f.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	g := mustNew(t, "")
	mustApply(t, g, 1, memberSetCmd(Member{ID: "n7", ThriftAddr: "10.9.9.7:9090"}))
	mustRestore(t, g, buf.Bytes())
	if got := g.Members(); len(got) != 0 {
		t.Fatalf("restored backup has members %+v, want none", got)
	}
	if e, ok, _ := g.Get([]byte("k")); !ok || string(e.Value) != "v" {
		t.Fatal("restored backup lost its data")
	}
}

func TestFSM_MembersInvalid(t *testing.T) {
	long := strings.Repeat("x", MaxMemberField+1)
	for name, c := range map[string]*kv.Command{
		"no member":     {Op: kv.CommandOp_MEMBER_SET},
		"empty id":      memberSetCmd(Member{ThriftAddr: "a:1"}),
		"long id":       memberSetCmd(Member{ID: long}),
		"long address":  memberSetCmd(Member{ID: "n1", AdminAddr: long}),
		"remove no id":  {Op: kv.CommandOp_MEMBER_REMOVE, Member: &kv.MemberAddrs{}},
		"remove absent": {Op: kv.CommandOp_MEMBER_REMOVE},
	} {
		t.Run(name, func(t *testing.T) {
			f := mustNew(t, "")
			r := mustApply(t, f, 1, c)
			if !errors.Is(r.Err, ErrInvalidCommand) {
				t.Fatalf("result %+v, want ErrInvalidCommand", r)
			}
			if len(f.Members()) != 0 {
				t.Fatal("an invalid command changed the table")
			}
		})
	}
}

func TestSnapshot_CorruptMembers(t *testing.T) {
	f := mustNew(t, "")
	mustApply(t, f, 1, memberSetCmd(Member{ID: "n1"}))
	mustApply(t, f, 2, memberSetCmd(Member{ID: "n2"}))
	good := mustPersist(t, f)
	// The members section is the count, then for each member five
	// length-prefixed fields; with one-byte lengths and ids "n1" and "n2"
	// each member is 2+1+4 = 7 bytes, the last 14 bytes before the CRC.
	tail := len(good) - 4 - 14
	swapped := bytes.Clone(good)
	copy(swapped[tail:], good[tail+7:tail+14])
	copy(swapped[tail+7:], good[tail:tail+7])
	fixCRC(swapped)
	for name, data := range map[string][]byte{
		"ids out of order": swapped,
		"truncated":        good[:len(good)-6],
	} {
		t.Run(name, func(t *testing.T) {
			g := mustNew(t, "")
			err := g.Restore(io.NopCloser(bytes.NewReader(data)))
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("Restore: %v, want ErrCorruptSnapshot", err)
			}
		})
	}
}

// fixCRC rewrites the CRC trailer of a snapshot after an edit.
func fixCRC(data []byte) {
	body := data[:len(data)-4]
	binary.BigEndian.PutUint32(data[len(data)-4:], crc32.Checksum(body, castagnoli()))
}
