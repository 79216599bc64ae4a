package fsm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/thrift/kv"
)

var update = flag.Bool("update", false, "rewrite testdata/snapshot-v3.bin")

// goldenPathV1 and goldenPathV2 pin format versions 1 (no members table)
// and 2 (no leases), which Restore must keep reading; goldenPath pins the
// version Persist writes.
const (
	goldenPathV1 = "testdata/snapshot-v1.bin"
	goldenPathV2 = "testdata/snapshot-v2.bin"
	goldenPath   = "testdata/snapshot-v3.bin"
)

// goldenCommands is the fixed command sequence behind the golden snapshot:
// overwrites, deletes, an empty value, a binary key, and request ids with
// PUT, CAS and TXN results to remember.
func goldenCommands() []*kv.Command {
	return []*kv.Command{
		putCmd("alpha", "1"),
		putCmd("beta", "2"),
		putCmd("alpha", "one"),
		withID(putCmd("gamma", ""), 11, 1),
		delCmd("beta"),
		{Op: kv.CommandOp_PUT, Key: []byte{0, 0xff, 'k'}, Value: []byte{1, 2, 3}},
		withID(&kv.Command{Op: kv.CommandOp_CAS_PUT, Key: []byte("alpha"), Value: []byte("x"), ExpectedModIndex: i64(1)}, -22, 5),
		withID(&kv.Command{Op: kv.CommandOp_TXN,
			Compares: []*kv.Compare{{Key: []byte("gamma"), Target: kv.CompareTarget_EXISTS, Exists: boolp(true)}},
			Success: []*kv.Op{
				{Type: kv.OpType_PUT, Key: []byte("delta"), Value: []byte("4")},
				{Type: kv.OpType_GET, Key: []byte("alpha")},
			}}, 33, 2),
		withID(putCmd("gamma", "3"), 11, 2),
		{Op: kv.CommandOp_NOOP},
	}
}

// mustGoldenState applies goldenCommands at indexes 1.. and returns the FSM.
func mustGoldenState(t testing.TB, engine string) *FSM {
	t.Helper()
	f := mustNew(t, engine)
	for i, c := range goldenCommands() {
		if r := mustApply(t, f, uint64(i+1), c); r.Err != nil {
			t.Fatalf("golden command %d: %v", i+1, r.Err)
		}
	}
	f.Apply(&raft.Log{Index: 11, Type: raft.LogConfiguration})
	return f
}

// goldenMemberCommands follow the golden state at indexes 12..15 in the
// version 2 golden snapshot: three members set out of order, one removed.
func goldenMemberCommands() []*kv.Command {
	return []*kv.Command{
		memberSetCmd(Member{ID: "n2", ThriftAddr: "10.0.0.2:9090", RaftAddr: "10.0.0.2:7000", GossipAddr: "10.0.0.2:7946", AdminAddr: "127.0.0.1:9100"}),
		memberSetCmd(Member{ID: "n1", ThriftAddr: "10.0.0.1:9090", RaftAddr: "10.0.0.1:7000"}),
		memberSetCmd(Member{ID: "n3", ThriftAddr: "10.0.0.3:9090", RaftAddr: "10.0.0.3:7000"}),
		{Op: kv.CommandOp_MEMBER_REMOVE, Member: &kv.MemberAddrs{NodeID: "n3"}},
	}
}

// mustGoldenStateV2 is mustGoldenState plus goldenMemberCommands.
func mustGoldenStateV2(t testing.TB, engine string) *FSM {
	t.Helper()
	f := mustGoldenState(t, engine)
	for i, c := range goldenMemberCommands() {
		if r := mustApply(t, f, uint64(12+i), c); r.Err != nil {
			t.Fatalf("golden member command %d: %v", 12+i, r.Err)
		}
	}
	return f
}

// goldenLeaseCommands follow the version 2 golden state at indexes 16..23
// in the version 3 golden snapshot: a lease with two keys, a key with a
// lease of its own, an empty lease, and a revoked lease.
func goldenLeaseCommands() []*kv.Command {
	return []*kv.Command{
		grantCmd(5000),                  // 16
		leasePutCmd("lease/b", "b", 16), // 17
		leasePutCmd("lease/a", "a", 16), // 18
		ttlPutCmd("ttl", "t", 3000),     // 19
		grantCmd(1000),                  // 20
		grantCmd(2000),                  // 21
		leasePutCmd("gone", "g", 21),    // 22
		revokeCmd(21),                   // 23
	}
}

// mustGoldenStateV3 is mustGoldenStateV2 plus goldenLeaseCommands.
func mustGoldenStateV3(t testing.TB, engine string) *FSM {
	t.Helper()
	f := mustGoldenStateV2(t, engine)
	for i, c := range goldenLeaseCommands() {
		if r := mustApply(t, f, uint64(16+i), c); r.Err != nil {
			t.Fatalf("golden lease command %d: %v", 16+i, r.Err)
		}
	}
	return f
}

// fsmState is everything Restore must reproduce.
type fsmState struct {
	applied uint64
	digest  [32]byte
	entries string
	clients string
	len     int
	bytes   int64
	members string
	leases  string
}

func stateOf(t testing.TB, f *FSM) fsmState {
	t.Helper()
	var s fsmState
	s.applied, s.digest = f.Digest()
	var b bytes.Buffer
	for _, e := range dump(f) {
		b.WriteString(toKV(e).String())
	}
	s.entries = b.String()
	s.clients = clientState(f)
	f.mu.RLock()
	for _, ss := range f.requests.copyRecords() {
		b, err := encodeStruct(nil, 64, ss.result)
		if err != nil {
			t.Fatalf("encode result: %v", err)
		}
		s.clients += fmt.Sprintf("%x ", b)
	}
	f.mu.RUnlock()
	s.len, s.bytes = f.Len(), f.Bytes()
	s.members = fmt.Sprint(f.Members())
	s.leases = leaseState(f)
	return s
}

func wantState(t *testing.T, got, want fsmState) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("state\n got %+v\nwant %+v", got, want)
	}
}

func TestSnapshot_RoundTrip(t *testing.T) {
	for _, from := range engines {
		for _, to := range engines {
			t.Run(from+"_to_"+to, func(t *testing.T) {
				src := mustGoldenState(t, from)
				data := mustPersist(t, src)
				dst := mustNew(t, to)
				mustWrite(t, dst, 1, putCmd("stale", "state")) // discarded by Restore
				mustRestore(t, dst, data)
				wantState(t, stateOf(t, dst), stateOf(t, src))
				if dst.EngineName() != to || dst.AppliedIndex() != 11 || dst.RememberedClients() != 3 {
					t.Fatalf("engine %q applied %d clients %d", dst.EngineName(), dst.AppliedIndex(), dst.RememberedClients())
				}
				if again := mustPersist(t, dst); !bytes.Equal(again, data) {
					t.Fatal("persisting the restored state gives different bytes")
				}
				// The request-id table behaves the same on both.
				for _, f := range []*FSM{src, dst} {
					dup := mustApply(t, f, 12, withID(&kv.Command{Op: kv.CommandOp_CAS_PUT, Key: []byte("alpha"), Value: []byte("x"), ExpectedModIndex: i64(1)}, -22, 5))
					if !dup.Duplicate || dup.Write.Index != 7 || dup.Write.Succeeded {
						t.Fatalf("duplicate after restore: %+v %v", dup, dup.Write)
					}
					if r := mustApply(t, f, 13, withID(putCmd("x", "y"), 11, 1)); !errors.Is(r.Err, ErrStaleSequence) {
						t.Fatalf("stale after restore: %+v", r)
					}
				}
				wantState(t, stateOf(t, dst), stateOf(t, src))
			})
		}
	}
}

func TestSnapshot_Isolation(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			f := mustGoldenState(t, eng)
			want := stateOf(t, f)
			snap, err := f.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			mustWrite(t, f, 12, putCmd("alpha", "after"))
			mustWrite(t, f, 13, delCmd("gamma"))
			mustWrite(t, f, 14, withID(putCmd("new", "after"), 44, 1))
			var s sink
			if err := snap.Persist(&s); err != nil {
				t.Fatal(err)
			}
			snap.Release()
			g := mustNew(t, eng)
			mustRestore(t, g, s.Bytes())
			wantState(t, stateOf(t, g), want)
		})
	}
}

func TestSnapshot_Empty(t *testing.T) {
	f := mustNew(t, "")
	data := mustPersist(t, f)
	if len(data) != 8+4+8+8+8+8+8+4 {
		t.Fatalf("empty snapshot is %d bytes", len(data))
	}
	g := mustGoldenState(t, "")
	mustRestore(t, g, data)
	wantState(t, stateOf(t, g), stateOf(t, f))
}

// errSink fails every write.
type errSink struct{ sink }

func (s *errSink) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestSnapshot_PersistErrorCancels(t *testing.T) {
	f := mustGoldenState(t, "")
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var s errSink
	if err := snap.Persist(&s); err == nil {
		t.Fatal("Persist to a failing sink succeeded")
	}
	if !s.cancelled || s.closed {
		t.Fatalf("cancelled=%v closed=%v, want cancelled only", s.cancelled, s.closed)
	}
}

// mustRestoreFails restores data into f and checks it fails with
// ErrCorruptSnapshot and leaves f exactly as it was.
func mustRestoreFails(t *testing.T, f *FSM, data []byte, what string) {
	t.Helper()
	before := stateOf(t, f)
	err := f.Restore(io.NopCloser(bytes.NewReader(data)))
	if !errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("%s: Restore err = %v, want ErrCorruptSnapshot", what, err)
	}
	if after := stateOf(t, f); !reflect.DeepEqual(after, before) {
		t.Fatalf("%s: failed Restore changed the state", what)
	}
}

func TestSnapshot_RestoreCorrupt(t *testing.T) {
	data := mustPersist(t, mustGoldenState(t, ""))
	f := mustNew(t, "hash")
	mustWrite(t, f, 3, withID(putCmd("keep", "me"), 8, 1))
	for i := 0; i < len(data); i++ {
		mustRestoreFails(t, f, data[:i], "truncated")
	}
	for i := 0; i < len(data); i++ {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			bad := bytes.Clone(data)
			bad[i] ^= mask
			mustRestoreFails(t, f, bad, "flipped byte")
		}
	}
	mustRestoreFails(t, f, append(bytes.Clone(data), 0), "trailing byte")
}

func TestSnapshot_RestoreInvalidRecords(t *testing.T) {
	type rec struct {
		key          string
		create, mod  uint64
		value        string
		keyLen, vLen uint64 // when non-zero, written instead of the real length
	}
	type clientRec struct {
		id            uint64
		seq, touched  uint64
		result        []byte
		resultLenOver uint64
	}
	okResult, err := encodeStruct(nil, 8, &kv.WriteResult_{Index: 5})
	if err != nil {
		t.Fatal(err)
	}
	build := func(magic string, version uint32, applied uint64, count uint64, recs []rec, nclients uint64, clients []clientRec) []byte {
		var out bytes.Buffer
		w := &snapshotWriter{crc: crc32.New(castagnoli())}
		w.w = bufio.NewWriter(&out)
		w.write([]byte(magic))
		w.u32(version)
		w.u64(applied)
		w.u64(count)
		for _, r := range recs {
			kl, vl := uint64(len(r.key)), uint64(len(r.value))
			if r.keyLen != 0 {
				kl = r.keyLen
			}
			if r.vLen != 0 {
				vl = r.vLen
			}
			w.uvarint(kl)
			w.write([]byte(r.key))
			w.uvarint(r.create)
			w.uvarint(r.mod)
			w.uvarint(vl)
			w.write([]byte(r.value))
		}
		w.u64(nclients)
		for _, s := range clients {
			w.u64(s.id)
			w.uvarint(s.seq)
			w.uvarint(s.touched)
			l := uint64(len(s.result))
			if s.resultLenOver != 0 {
				l = s.resultLenOver
			}
			w.uvarint(l)
			w.write(s.result)
		}
		w.u32(w.crc.Sum32())
		if err := w.w.Flush(); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	good := []rec{{key: "a", create: 1, mod: 2, value: "x"}, {key: "b", create: 3, mod: 3, value: ""}}
	goodClients := []clientRec{{id: 1, seq: 1, touched: 2, result: okResult}, {id: 2, seq: 4, touched: 5, result: okResult}}

	// build writes a snapshot by hand with a valid CRC, to reach the checks
	// behind it. The builder itself produces a snapshot Restore accepts.
	f := mustNew(t, "")
	mustRestore(t, f, build(snapshotMagic, 1, 5, 2, good, 2, goodClients))
	if f.Len() != 2 || f.RememberedClients() != 2 || f.AppliedIndex() != 5 {
		t.Fatalf("hand-built snapshot: len %d clients %d applied %d", f.Len(), f.RememberedClients(), f.AppliedIndex())
	}
	wantEntry(t, f, "a", entry("a", "x", 1, 2))

	f = mustNew(t, "")
	mustWrite(t, f, 1, withID(putCmd("keep", "me"), 8, 1))
	tests := []struct {
		name string
		data []byte
	}{
		{"bad magic", build("CUBEKVX\x00", 1, 5, 2, good, 2, goodClients)},
		{"version 0", build(snapshotMagic, 0, 5, 2, good, 2, goodClients)},
		{"version 2", build(snapshotMagic, 2, 5, 2, good, 2, goodClients)},
		{"count too high", build(snapshotMagic, 1, 5, 3, good, 2, goodClients)},
		{"count too low", build(snapshotMagic, 1, 5, 1, good, 2, goodClients)},
		{"keys out of order", build(snapshotMagic, 1, 5, 2, []rec{good[1], good[0]}, 0, nil)},
		{"duplicate key", build(snapshotMagic, 1, 5, 2, []rec{good[0], good[0]}, 0, nil)},
		{"empty key", build(snapshotMagic, 1, 5, 1, []rec{{key: "", create: 1, mod: 1}}, 0, nil)},
		{"absurd key length", build(snapshotMagic, 1, 5, 1, []rec{{key: "a", create: 1, mod: 1, keyLen: 1 << 40}}, 0, nil)},
		{"absurd value length", build(snapshotMagic, 1, 5, 1, []rec{{key: "a", create: 1, mod: 1, vLen: 1 << 40}}, 0, nil)},
		{"value length beyond data", build(snapshotMagic, 1, 5, 1, []rec{{key: "a", create: 1, mod: 1, vLen: 32 << 20}}, 0, nil)},
		{"create zero", build(snapshotMagic, 1, 5, 1, []rec{{key: "a", create: 0, mod: 1}}, 0, nil)},
		{"create after mod", build(snapshotMagic, 1, 5, 1, []rec{{key: "a", create: 3, mod: 2}}, 0, nil)},
		{"mod after applied", build(snapshotMagic, 1, 5, 1, []rec{{key: "a", create: 3, mod: 6}}, 0, nil)},
		{"client count too high", build(snapshotMagic, 1, 5, 2, good, 3, goodClients)},
		{"client id zero", build(snapshotMagic, 1, 5, 0, nil, 1, []clientRec{{id: 0, seq: 1, touched: 1, result: okResult}})},
		{"sequence zero", build(snapshotMagic, 1, 5, 0, nil, 1, []clientRec{{id: 1, seq: 0, touched: 1, result: okResult}})},
		{"sequence beyond int64", build(snapshotMagic, 1, 5, 0, nil, 1, []clientRec{{id: 1, seq: 1 << 63, touched: 1, result: okResult}})},
		{"touched after applied", build(snapshotMagic, 1, 5, 0, nil, 1, []clientRec{{id: 1, seq: 1, touched: 6, result: okResult}})},
		{"touched out of order", build(snapshotMagic, 1, 5, 0, nil, 2, []clientRec{goodClients[1], goodClients[0]})},
		{"repeated client", build(snapshotMagic, 1, 5, 0, nil, 2, []clientRec{goodClients[0], goodClients[0]})},
		{"empty result", build(snapshotMagic, 1, 5, 0, nil, 1, []clientRec{{id: 1, seq: 1, touched: 1}})},
		{"absurd result length", build(snapshotMagic, 1, 5, 0, nil, 1, []clientRec{{id: 1, seq: 1, touched: 1, result: okResult, resultLenOver: 1 << 40}})},
		{"undecodable result", build(snapshotMagic, 1, 5, 0, nil, 1, []clientRec{{id: 1, seq: 1, touched: 1, result: []byte{0xff, 0xff}}})},
		{"result missing required field", build(snapshotMagic, 1, 5, 0, nil, 1, []clientRec{{id: 1, seq: 1, touched: 1, result: []byte{0}}})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mustRestoreFails(t, f, tc.data, tc.name)
		})
	}
}

func TestSnapshot_Golden(t *testing.T) {
	f := mustGoldenStateV3(t, "")
	data := mustPersist(t, f)
	if *update {
		if err := os.MkdirAll(filepath.Dir(goldenPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("read golden snapshot (run with -update to create it): %v", err)
	}
	if !bytes.Equal(data, golden) {
		t.Fatalf("persisting the golden state gives %d bytes that differ from %s (%d bytes)", len(data), goldenPath, len(golden))
	}
	goldenV1, err := os.ReadFile(goldenPathV1)
	if err != nil {
		t.Fatal(err)
	}
	goldenV2, err := os.ReadFile(goldenPathV2)
	if err != nil {
		t.Fatal(err)
	}
	members := "[{n1 10.0.0.1:9090 10.0.0.1:7000  } {n2 10.0.0.2:9090 10.0.0.2:7000 10.0.0.2:7946 127.0.0.1:9100}]"
	for _, tc := range []struct {
		path    string
		data    []byte
		version uint32
		applied uint64
		members string
		leases  string
		extra   []*kv.Entry // entries beyond the version 1 state
		want    *FSM        // the state it was taken from
	}{
		{goldenPathV1, goldenV1, 1, 11, "[]", "", nil, mustGoldenState(t, "")},
		{goldenPathV2, goldenV2, 2, 15, members, "", nil, mustGoldenStateV2(t, "")},
		{goldenPath, golden, 3, 23, members, "16:5000[lease/a lease/b] 19:3000[ttl] 20:1000[] ",
			[]*kv.Entry{entry("lease/a", "a", 18, 18), entry("lease/b", "b", 17, 17), entry("ttl", "t", 19, 19)}, f},
	} {
		if v := binary.BigEndian.Uint32(tc.data[8:12]); string(tc.data[:8]) != snapshotMagic || v != tc.version {
			t.Fatalf("%s: header %q version %d", tc.path, tc.data[:8], v)
		}
		for _, eng := range engines {
			t.Run(fmt.Sprintf("v%d/%s", tc.version, eng), func(t *testing.T) {
				g := mustNew(t, eng)
				mustRestore(t, g, tc.data)
				if g.AppliedIndex() != tc.applied {
					t.Fatalf("applied %d, want %d", g.AppliedIndex(), tc.applied)
				}
				var got []*kv.Entry
				for _, e := range dump(g) {
					got = append(got, toKV(e))
				}
				want := []*kv.Entry{
					{Key: []byte{0, 0xff, 'k'}, Value: []byte{1, 2, 3}, CreateIndex: 6, ModIndex: 6},
					entry("alpha", "one", 1, 3),
					entry("delta", "4", 8, 8),
					entry("gamma", "3", 4, 9),
				}
				want = append(want, tc.extra...)
				slices.SortFunc(want, func(a, b *kv.Entry) int { return bytes.Compare(a.Key, b.Key) })
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("entries\n got %v\nwant %v", got, want)
				}
				if got, want := clientState(g), "-22:5@7 33:2@8 11:2@9 "; got != want {
					t.Fatalf("clients %q, want %q", got, want)
				}
				g.mu.RLock()
				cas := g.requests.lookup(-22).result
				txn := g.requests.lookup(33).result
				g.mu.RUnlock()
				wantWrite(t, cas, &kv.WriteResult_{Index: 7, Entry: entry("alpha", "one", 1, 3)})
				wantWrite(t, txn, &kv.WriteResult_{Index: 8, Succeeded: true, Results: []*kv.OpResult_{
					{Type: kv.OpType_PUT},
					{Type: kv.OpType_GET, Found: true, Entry: entry("alpha", "one", 1, 3)},
				}})
				if _, sum := g.Digest(); sum != stateOf(t, tc.want).digest {
					t.Fatal("digest of the restored golden state differs")
				}
				if got := fmt.Sprint(g.Members()); got != tc.members {
					t.Fatalf("members %s, want %s", got, tc.members)
				}
				if got := leaseState(g); got != tc.leases {
					t.Fatalf("leases %q, want %q", got, tc.leases)
				}
			})
		}
	}
}
