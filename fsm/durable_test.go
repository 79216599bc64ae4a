package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/thrift/kv"
)

// durableCfg keeps the request-id table small, so that the random logs
// evict by count and by age.
func durableCfg(t testing.TB) *Config {
	return &Config{Logger: testLogger(t), MaxClients: 4, ClientTTL: 40}
}

func mustNewDurable(t testing.TB, dir *fakeDir, cfg *Config) *FSM {
	t.Helper()
	f, err := NewDurable(cfg, dir)
	if err != nil {
		t.Fatalf("NewDurable: %v", err)
	}
	return f
}

// randomLog returns n log entries at indexes 1..n: puts and deletes over
// a small key space, CAS, transactions, leases granted (by a grant or a
// put with ttl_ms, sometimes twice in one entry), attached, revoked (an expiry is a revoke the leader
// proposes), members set and removed, batch entries, raft entries that
// are not commands, request ids from a few clients, and retries of
// earlier commands with their client and sequence (duplicates, stale).
func randomLog(t testing.TB, rng *rand.Rand, n int) []*raft.Log {
	t.Helper()
	key := func() []byte { return fmt.Appendf(nil, "k%02d", rng.IntN(16)) }
	val := func() []byte { return fmt.Appendf(nil, "v%d", rng.IntN(1000)) }
	var leases []int64 // indexes that may have granted a lease
	lease := func() int64 {
		if len(leases) == 0 || rng.IntN(8) == 0 {
			return 1 + rng.Int64N(1000) // most likely none
		}
		return leases[rng.IntN(len(leases))]
	}
	seqs := map[int64]int64{}
	var sent []*kv.Command // commands with request ids, for retries
	command := func(idx uint64) *kv.Command {
		if len(sent) > 0 && rng.IntN(7) == 0 {
			return sent[rng.IntN(len(sent))]
		}
		var c *kv.Command
		switch rng.IntN(12) {
		case 0, 1, 2:
			c = &kv.Command{Op: kv.CommandOp_PUT, Key: key(), Value: val()}
			switch rng.IntN(5) {
			case 0:
				c.LeaseID = i64(lease())
			case 1:
				c.TTLMs = i64(1000)
				leases = append(leases, int64(idx))
			}
		case 3:
			c = &kv.Command{Op: kv.CommandOp_DELETE, Key: key()}
		case 4:
			c = &kv.Command{Op: kv.CommandOp_CAS_PUT, Key: key(), Value: val(), ExpectedModIndex: i64(rng.Int64N(int64(idx)))}
			if rng.IntN(3) == 0 {
				c.LeaseID = i64(lease())
			}
		case 5:
			c = &kv.Command{Op: kv.CommandOp_CAS_DELETE, Key: key(), ExpectedModIndex: i64(rng.Int64N(int64(idx)))}
		case 6:
			c = &kv.Command{Op: kv.CommandOp_TXN,
				Compares: []*kv.Compare{{Key: key(), Target: kv.CompareTarget_EXISTS, Exists: boolp(rng.IntN(2) == 0)}},
				Success: []*kv.Op{
					{Type: kv.OpType_PUT, Key: key(), Value: val(), LeaseID: func() *int64 {
						if rng.IntN(3) == 0 {
							return i64(lease())
						}
						return nil
					}()},
					{Type: kv.OpType_GET, Key: key()},
				},
				Failure: []*kv.Op{{Type: kv.OpType_DELETE, Key: key()}}}
		case 7:
			c = grantCmd(1 + rng.Int64N(5000))
			leases = append(leases, int64(idx))
		case 8:
			c = revokeCmd(lease())
		case 9:
			id := fmt.Sprintf("n%d", rng.IntN(4))
			c = memberSetCmd(Member{ID: id, ThriftAddr: fmt.Sprintf("10.0.0.%d:9090", rng.IntN(9)), RaftAddr: "r"})
		case 10:
			c = &kv.Command{Op: kv.CommandOp_MEMBER_REMOVE, Member: &kv.MemberAddrs{NodeID: fmt.Sprintf("n%d", rng.IntN(4))}}
		default:
			c = &kv.Command{Op: kv.CommandOp_NOOP}
		}
		if rng.IntN(3) != 0 {
			client := 1 + rng.Int64N(7)
			seqs[client]++
			withID(c, client, seqs[client])
			sent = append(sent, c)
		}
		return c
	}
	logs := make([]*raft.Log, n)
	for i := range logs {
		idx := uint64(i + 1)
		l := &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand}
		switch rng.IntN(10) {
		case 0:
			l.Type = raft.LogConfiguration
		case 1, 2:
			// The proposer puts at most one command that grants a lease in
			// an entry (a grant's id is the entry's index); a log written
			// before that rule may hold two, which some entries do.
			cmds := make([]*kv.Command, 1+rng.IntN(4))
			granted, twice := false, rng.IntN(4) == 0
			for j := range cmds {
				c := command(idx)
				for granted && !twice && GrantsLease(c) {
					c = command(idx)
				}
				granted = granted || GrantsLease(c)
				cmds[j] = c
			}
			data, err := EncodeBatch(cmds)
			if err != nil {
				t.Fatalf("EncodeBatch: %v", err)
			}
			l.Data = data
		default:
			l.Data = mustEncode(t, command(idx))
		}
		logs[i] = l
	}
	return logs
}

// describe renders Apply's answer for one entry.
func describe(t testing.TB, out interface{}) string {
	t.Helper()
	one := func(r *Result) string {
		if r.Err != nil {
			return "error " + r.Err.Error()
		}
		b, err := encodeStruct(nil, 64, r.Write)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("ok %x dup=%v", b, r.Duplicate)
	}
	switch v := out.(type) {
	case nil:
		return "nil"
	case *Result:
		return one(v)
	case []*Result:
		parts := make([]string, len(v))
		for i, r := range v {
			parts[i] = one(r)
		}
		return strings.Join(parts, "; ")
	}
	t.Fatalf("Apply returned %T", out)
	return ""
}

// fullState renders stateOf (snapshot_test.go): the applied index, the
// digest and every entry, the request-id table in its order with the
// results it answers retries with, the members, the leases and their keys.
func fullState(t testing.TB, f *FSM) string {
	t.Helper()
	return fmt.Sprintf("%+v", stateOf(t, f))
}

// reference applies logs one at a time to an in-memory FSM and returns
// the answer to each (want[i] for logs[i]) and the state after each index
// (states[0] is the empty state's).
func reference(t testing.TB, cfg *Config, logs []*raft.Log) (f *FSM, want []string, states []string) {
	t.Helper()
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	states = append(states, fullState(t, f))
	for _, l := range logs {
		want = append(want, describe(t, f.Apply(l)))
		states = append(states, fullState(t, f))
	}
	return f, want, states
}

// snapshotBytes persists a snapshot of f and returns it with its index.
func snapshotBytes(t testing.TB, f *FSM) ([]byte, uint64) {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Release()
	var s sink
	if err := snap.Persist(&s); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	return s.Bytes(), snap.(*fsmSnapshot).applied
}

// TestDurable_CrashAndReplayReachTheSameState is the durable engine's
// model test. A random log is applied to an in-memory FSM, the reference,
// one entry at a time. The same log goes to an FSM on a fake Durable as
// Raft would deliver it: in ApplyBatch calls of random sizes, with
// snapshots (which sync) taken at random, and crashes at random that lose
// any part of what was committed after the last sync. After each crash
// the FSM reopens from the Durable and must hold exactly the reference's
// state at its applied index, no older than the last snapshot; Raft then
// re-delivers the log from the last snapshot's index (the FSM skips what
// it holds), or, sometimes, the node restores that snapshot first. Every
// entry applied must answer as the reference did (duplicates, stale
// sequences and refusals included), and the final state must be the
// reference's.
func TestDurable_CrashAndReplayReachTheSameState(t *testing.T) {
	for seed := uint64(1); seed <= 12; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			logs := randomLog(t, rng, 400)
			cfg := durableCfg(t)
			_, want, states := reference(t, cfg, logs)

			dir := newFakeDir()
			dir.loadEntries = seed%2 == 0 // restores take either path
			f := mustNewDurable(t, dir, cfg)
			var snap []byte
			var snapIdx uint64
			next := uint64(1) // the index raft delivers next
			crashes, restores, skipped := 0, 0, 0
			for next <= uint64(len(logs)) {
				end := min(next+uint64(rng.IntN(8)), uint64(len(logs)))
				batch := logs[next-1 : end]
				before := f.AppliedIndex()
				out := f.ApplyBatch(batch)
				// ApplyBatch commits all it applied.
				if n := len(dir.open.staged); n != 0 || dir.open.Applied() != f.AppliedIndex() {
					t.Fatalf("after ApplyBatch to %d: %d changes staged, committed at %d", f.AppliedIndex(), n, dir.open.Applied())
				}
				for i, l := range batch {
					got := describe(t, out[i])
					if l.Index <= before {
						skipped++
						if got != "nil" {
							t.Fatalf("entry %d at or below applied %d answered %s", l.Index, before, got)
						}
						continue
					}
					if got != want[l.Index-1] {
						t.Fatalf("entry %d answered\n %s\nwant\n %s", l.Index, got, want[l.Index-1])
					}
				}
				next = end + 1
				if rng.IntN(10) == 0 {
					// Raft records a snapshot at the last index it
					// delivered (next-1): while it re-delivers what the
					// state holds, a snapshot would be further on.
					if next-1 < f.AppliedIndex() {
						if _, err := f.Snapshot(); !errors.Is(err, ErrReplaying) {
							t.Fatalf("Snapshot with raft at %d and the state at %d = %v, want ErrReplaying", next-1, f.AppliedIndex(), err)
						}
					} else if snap, snapIdx = snapshotBytes(t, f); snapIdx != next-1 {
						t.Fatalf("snapshot of the state at %d, raft at %d", snapIdx, next-1)
					}
				}
				if rng.IntN(12) == 0 {
					crashes++
					dir.crash(rng)
					f = mustNewDurable(t, dir, cfg)
					got := f.AppliedIndex()
					if got < snapIdx {
						t.Fatalf("reopened at %d, below the snapshot at %d", got, snapIdx)
					}
					if floor, _ := f.HistoryRange(); floor != got || f.EngineName() != "fake" {
						t.Fatalf("reopened at %d: history floor %d, engine %q", got, floor, f.EngineName())
					}
					if s := fullState(t, f); s != states[got] {
						t.Fatalf("reopened at %d:\n%s\nwant\n%s", got, s, states[got])
					}
					if snap != nil && rng.IntN(4) == 0 {
						restores++
						mustRestore(t, f, snap)
					}
					next = snapIdx + 1
				}
			}
			if s := fullState(t, f); s != states[len(logs)] {
				t.Fatalf("final state:\n%s\nwant\n%s", s, states[len(logs)])
			}
			// The state is durable as applied: one more reopen after a
			// clean close changes nothing.
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			f = mustNewDurable(t, dir, cfg)
			if s := fullState(t, f); s != states[len(logs)] {
				t.Fatalf("after close and reopen:\n%s\nwant\n%s", s, states[len(logs)])
			}
			t.Logf("%d crashes, %d restores, %d entries skipped", crashes, restores, skipped)
		})
	}
}

// TestDurable_SnapshotsInteroperate restores a durable FSM's snapshot into
// an in-memory FSM and the other way round: the streams are byte for byte
// the ones the other engine writes at the same index, the states equal,
// and a durable FSM that restored one holds it after a crash and applies
// the rest of the log as the reference does.
func TestDurable_SnapshotsInteroperate(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	logs := randomLog(t, rng, 300)
	cfg := durableCfg(t)
	ref, _, states := reference(t, cfg, logs[:200])

	dir := newFakeDir()
	d := mustNewDurable(t, dir, cfg)
	d.ApplyBatch(logs[:120])
	d.ApplyBatch(logs[120:200])
	fromDurable, _ := snapshotBytes(t, d)
	fromMemory, _ := snapshotBytes(t, ref)
	if !bytes.Equal(fromDurable, fromMemory) {
		t.Fatalf("snapshots at 200 differ: %d bytes from the durable FSM, %d from the in-memory one", len(fromDurable), len(fromMemory))
	}

	for _, eng := range engines {
		m := mustNew(t, eng, func(c *Config) { c.MaxClients, c.ClientTTL = cfg.MaxClients, cfg.ClientTTL })
		mustRestore(t, m, fromDurable)
		if s := fullState(t, m); s != states[200] {
			t.Fatalf("%s restored from the durable FSM:\n%s\nwant\n%s", eng, s, states[200])
		}
	}

	// A durable FSM elsewhere in the log restores the in-memory snapshot.
	dir2 := newFakeDir()
	d2 := mustNewDurable(t, dir2, cfg)
	d2.ApplyBatch(logs[:50])
	mustRestore(t, d2, fromMemory)
	if s := fullState(t, d2); s != states[200] {
		t.Fatalf("durable restored from memory:\n%s\nwant\n%s", s, states[200])
	}
	if len(dir2.fresh) != 0 || dir2.discards != 0 {
		t.Fatalf("fresh Durables left %d, discarded %d", len(dir2.fresh), dir2.discards)
	}
	dir2.crash(rng)
	d2 = mustNewDurable(t, dir2, cfg)
	if s := fullState(t, d2); s != states[200] {
		t.Fatalf("reopened after restoring:\n%s\nwant\n%s", s, states[200])
	}
	for i, l := range logs[200:] {
		got := describe(t, d2.Apply(l))
		if w := describe(t, ref.Apply(l)); got != w {
			t.Fatalf("entry %d after restore answered %s, want %s", 201+i, got, w)
		}
	}
	if a, b := fullState(t, d2), fullState(t, ref); a != b {
		t.Fatalf("after the rest of the log:\n%s\nwant\n%s", a, b)
	}
}

// TestDurable_CorruptRestoreLeavesTheStateAlone restores bad streams into
// a durable FSM: each fails with ErrCorruptSnapshot, the fresh Durable is
// discarded, and the state, the applied index and the current disk are
// as they were, also after a crash.
func TestDurable_CorruptRestoreLeavesTheStateAlone(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	logs := randomLog(t, rng, 150)
	cfg := durableCfg(t)
	src, _, _ := reference(t, cfg, logs)
	good, _ := snapshotBytes(t, src)

	dir := newFakeDir()
	f := mustNewDurable(t, dir, cfg)
	f.ApplyBatch(logs[:90])
	snapshotBytes(t, f) // syncs: a crash keeps all of it
	before := fullState(t, f)
	disk, batches := dir.cur, len(dir.cur.batches)

	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x40
	for name, b := range map[string][]byte{
		"crc":       flipped,
		"truncated": good[:len(good)-9],
		"magic":     append([]byte("NOTCUBE!"), good[8:]...),
	} {
		err := f.Restore(io.NopCloser(bytes.NewReader(b)))
		if !errors.Is(err, ErrCorruptSnapshot) {
			t.Fatalf("%s: Restore = %v, want ErrCorruptSnapshot", name, err)
		}
		if s := fullState(t, f); s != before {
			t.Fatalf("%s: state changed:\n%s\nwant\n%s", name, s, before)
		}
		if dir.cur != disk || len(dir.cur.batches) != batches || len(dir.fresh) != 0 {
			t.Fatalf("%s: disk changed or fresh Durable left", name)
		}
	}
	if dir.discards != 3 {
		t.Fatalf("%d fresh Durables discarded, want 3", dir.discards)
	}
	dir.crash(rng)
	f = mustNewDurable(t, dir, cfg)
	if s := fullState(t, f); s != before {
		t.Fatalf("after a crash:\n%s\nwant\n%s", s, before)
	}

	// A failing Install leaves it alone as well.
	dir.failInstall = errors.New("rename failed")
	if err := f.Restore(io.NopCloser(bytes.NewReader(good))); err == nil || !strings.Contains(err.Error(), "rename failed") {
		t.Fatalf("Restore with a failing install = %v", err)
	}
	if s := fullState(t, f); s != before || len(dir.fresh) != 0 {
		t.Fatalf("state changed or fresh Durable left after a failed install")
	}
}

// TestDurable_SkipsWhatItHolds re-delivers applied entries: they answer nil
// and change nothing, and the entries after them apply.
func TestDurable_SkipsWhatItHolds(t *testing.T) {
	dir := newFakeDir()
	f := mustNewDurable(t, dir, durableCfg(t))
	mustWrite(t, f, 1, withID(putCmd("a", "1"), 5, 1))
	mustWrite(t, f, 2, putCmd("b", "2"))
	before := fullState(t, f)
	for _, idx := range []uint64{1, 2} {
		if out := f.Apply(makeLog(t, idx, putCmd("a", "again"))); out != nil {
			t.Fatalf("re-delivered entry %d answered %v", idx, out)
		}
	}
	if out := f.ApplyBatch([]*raft.Log{makeLog(t, 2, delCmd("b")), makeLog(t, 3, putCmd("c", "3"))}); out[0] != nil {
		t.Fatalf("re-delivered entry 2 in a batch answered %v", out[0])
	}
	if _, ok := mustGet(t, f, "b"); !ok {
		t.Fatal("a skipped delete removed the key")
	}
	if e, ok := mustGet(t, f, "c"); !ok || e.ModIndex != 3 {
		t.Fatalf("entry 3 not applied: %+v %v", e, ok)
	}
	if before == fullState(t, f) {
		t.Fatal("state did not change at all")
	}
	// An in-memory FSM applies what it is given, as before.
	m := mustNew(t, "")
	mustWrite(t, m, 1, putCmd("a", "1"))
	mustWrite(t, m, 1, putCmd("a", "2"))
	if e, _ := mustGet(t, m, "a"); string(e.Value) != "2" {
		t.Fatalf("in-memory FSM skipped an entry: %q", e.Value)
	}
}

// TestDurable_CommitFailurePanics: a node whose engine cannot commit must
// stop rather than apply on; Snapshot returns the engine's error.
func TestDurable_CommitFailurePanics(t *testing.T) {
	dir := newFakeDir()
	f := mustNewDurable(t, dir, durableCfg(t))
	mustWrite(t, f, 1, putCmd("a", "1"))

	dir.open.failSync = errors.New("fsync: input/output error")
	if _, err := f.Snapshot(); err == nil || !strings.Contains(err.Error(), "input/output error") {
		t.Fatalf("Snapshot with a failing sync = %v", err)
	}
	dir.open.err, dir.open.failSync = nil, nil

	dir.open.failCommit = errors.New("disk full")
	func() {
		defer func() {
			p := recover()
			if p == nil || !strings.Contains(fmt.Sprint(p), "disk full") || !strings.Contains(fmt.Sprint(p), "raft index 2") {
				t.Fatalf("Apply with a failing commit: panic %v", p)
			}
		}()
		f.Apply(makeLog(t, 2, putCmd("b", "2")))
	}()
	if _, err := f.Snapshot(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Snapshot on a broken engine = %v", err)
	}
}

// TestDurable_OpenRefusesCorruptMeta: meta records NewDurable cannot read
// back are ErrCorruptState, not a panic or a silently wrong table.
func TestDurable_OpenRefusesCorruptMeta(t *testing.T) {
	for name, rec := range map[string][2]string{
		"version":        {"v", "\x07"},
		"client":         {"c\x00\x00\x00\x00\x00\x00\x00\x01", "\x01"},
		"lease ttl":      {"l\x00\x00\x00\x00\x00\x00\x00\x01", "\x00"},
		"lease id":       {"l\x00\x00\x00\x00\x00\x00\x00\x09", "\x01"},
		"orphan key":     {"a\x00\x00\x00\x00\x00\x00\x00\x05k", ""},
		"member id":      {"mn1", "\x02n2\x00\x00\x00\x00"},
		"missing leased": {"a\x00\x00\x00\x00\x00\x00\x00\x02zz", ""},
	} {
		t.Run(name, func(t *testing.T) {
			dir := newFakeDir()
			f := mustNewDurable(t, dir, durableCfg(t))
			mustWrite(t, f, 1, grantCmd(1000))
			mustWrite(t, f, 2, grantCmd(1000))
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := NewDurable(durableCfg(t), dir); err != nil {
				t.Fatalf("reopen before the change: %v", err)
			}
			dir.cur.batches = append(dir.cur.batches, fakeBatch{applied: 2,
				ops: []fakeOp{{kind: 's', key: []byte(rec[0]), val: []byte(rec[1])}}})
			if _, err := NewDurable(durableCfg(t), dir); !errors.Is(err, ErrCorruptState) {
				t.Fatalf("NewDurable = %v, want ErrCorruptState", err)
			}
		})
	}
}

// TestDurable_SnapshotsWhileApplying takes snapshots and digests while
// batches apply: every snapshot restores to the reference's state at its
// index (its key space, taken from the committed view, agrees with its
// tables), every digest is the reference's at the index it reports, and
// the race detector checks the engine is never read while written.
func TestDurable_SnapshotsWhileApplying(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	logs := randomLog(t, rng, 600)
	ref, _, states := reference(t, durableCfg(t), nil)
	digests := [][32]byte{}
	for _, l := range logs {
		_, sum := ref.Digest()
		digests = append(digests, sum)
		ref.Apply(l)
		states = append(states, fullState(t, ref))
	}
	_, sum := ref.Digest()
	digests = append(digests, sum)
	dir := newFakeDir()
	f := mustNewDurable(t, dir, durableCfg(t))
	done := make(chan struct{})
	snaps := 0
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			snap, err := f.Snapshot()
			if err != nil {
				t.Errorf("Snapshot: %v", err)
				return
			}
			var s sink
			err = snap.Persist(&s)
			idx := snap.(*fsmSnapshot).applied
			snap.Release()
			if err != nil {
				t.Errorf("Persist: %v", err)
				return
			}
			m, err := New(durableCfg(t))
			if err == nil {
				err = m.Restore(io.NopCloser(bytes.NewReader(s.Bytes())))
			}
			if err != nil {
				t.Errorf("restore the snapshot at %d: %v", idx, err)
				return
			}
			snaps++
			if got := fullState(t, m); got != states[idx] {
				t.Errorf("snapshot at %d restores to\n%s\nwant\n%s", idx, got, states[idx])
				return
			}
			if idx, sum := f.Digest(); sum != digests[idx] {
				t.Errorf("digest at %d differs from the reference's", idx)
				return
			}
			f.Get([]byte("k01"))
			f.Scan(nil, nil, false, 0, false)
		}
	}()
	for i := 0; i < len(logs); i += 16 {
		f.ApplyBatch(logs[i:min(i+16, len(logs))])
	}
	close(done)
	wg.Wait()
	t.Logf("%d snapshots restored", snaps)
	if s := fullState(t, f); s != states[len(logs)] {
		t.Fatalf("final state:\n%s\nwant\n%s", s, states[len(logs)])
	}
}

// TestDurable_RestoreCommitsInChunks restores a snapshot of more than
// twice restoreChunk into a durable FSM: the fresh Durable is committed at
// least twice before the snapshot's index (so a restore's memory does not
// grow with the snapshot), and the state equals an in-memory restore's,
// also after a crash. Older format versions restore alike.
func TestDurable_RestoreCommitsInChunks(t *testing.T) {
	src := mustNew(t, "")
	big := strings.Repeat("x", 1<<20)
	for i := range 2*restoreChunk>>20 + 1 {
		mustWrite(t, src, uint64(i+1), withID(putCmd(fmt.Sprintf("big%d", i), big), int64(i+1), 1))
	}
	streams := map[string][]byte{"large": mustPersist(t, src)}
	for _, p := range []string{goldenPathV1, goldenPathV2, goldenPath} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		streams[p] = b
	}
	// Digest covers every entry; fullState would render 9 MiB of values.
	state := func(f *FSM) string {
		applied, sum := f.Digest()
		return fmt.Sprintf("%d %x %s %v %s", applied, sum, clientState(f), f.Members(), leaseState(f))
	}
	for name, b := range streams {
		t.Run(name, func(t *testing.T) {
			m := mustNew(t, "")
			mustRestore(t, m, b)
			want := state(m)

			dir := newFakeDir()
			f := mustNewDurable(t, dir, nil)
			mustWrite(t, f, 1, putCmd("old", "state"))
			mustRestore(t, f, b)
			if s := state(f); s != want {
				t.Fatalf("durable restore:\n%s\nwant\n%s", s, want)
			}
			if name == "large" {
				atZero := 0
				for _, batch := range dir.cur.batches {
					if batch.applied == 0 {
						atZero++
					}
				}
				if atZero < 2 {
					t.Fatalf("%d batches, %d committed before the snapshot's index, want 2 or more", len(dir.cur.batches), atZero)
				}
			}
			dir.crash(rand.New(rand.NewPCG(1, 1)))
			f = mustNewDurable(t, dir, nil)
			if s := state(f); s != want {
				t.Fatalf("after a crash:\n%s\nwant\n%s", s, want)
			}
		})
	}
}

// TestDurable_TwoGrantsInOneEntry replays an entry with two lease grants
// at one index, as a log written before the proposer kept grants apart
// may hold: the second grant replaces the TTL and keeps the keys the
// first attached, so the in-memory FSM, the durable one and the durable
// one reopened agree, and both persist a snapshot.
func TestDurable_TwoGrantsInOneEntry(t *testing.T) {
	data, err := EncodeBatch([]*kv.Command{ttlPutCmd("a", "1", 1000), ttlPutCmd("b", "2", 2000), grantCmd(3000)})
	if err != nil {
		t.Fatal(err)
	}
	logs := []*raft.Log{
		{Index: 1, Term: 1, Type: raft.LogCommand, Data: data},
		makeLog(t, 2, putCmd("a", "3")), // detaches a
	}
	cfg := durableCfg(t)
	m, _, states := reference(t, cfg, logs)
	dir := newFakeDir()
	f := mustNewDurable(t, dir, cfg)
	f.ApplyBatch(logs[:1])
	if got, want := leaseState(f), "1:3000[a b] "; got != want {
		t.Fatalf("leases %q, want %q", got, want)
	}
	if s := fullState(t, f); s != states[1] {
		t.Fatalf("durable:\n%s\nwant\n%s", s, states[1])
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f = mustNewDurable(t, dir, cfg)
	if s := fullState(t, f); s != states[1] {
		t.Fatalf("durable reopened:\n%s\nwant\n%s", s, states[1])
	}
	f.ApplyBatch(logs[1:])
	if s := fullState(t, f); s != states[2] {
		t.Fatalf("after detaching:\n%s\nwant\n%s", s, states[2])
	}
	a, _ := snapshotBytes(t, m)
	b, _ := snapshotBytes(t, f)
	if !bytes.Equal(a, b) {
		t.Fatalf("snapshots differ: %d and %d bytes", len(a), len(b))
	}
}

// TestDurable_DigestChangesNothing: Digest on a durable FSM with entries
// applied but not committed (an ApplyBatch under way) hashes the committed
// state and reports its index, and leaves the staged changes staged.
func TestDurable_DigestChangesNothing(t *testing.T) {
	logs := []*raft.Log{makeLog(t, 1, putCmd("a", "1")), makeLog(t, 2, putCmd("b", "2")), makeLog(t, 3, delCmd("a"))}
	ref := mustNew(t, "")
	ref.Apply(logs[0])
	idx1, sum1 := ref.Digest()

	dir := newFakeDir()
	f := mustNewDurable(t, dir, durableCfg(t))
	f.ApplyBatch(logs[:1])
	f.apply(logs[1]) // as ApplyBatch does before its commit
	f.apply(logs[2])
	staged := len(dir.open.staged)
	if idx, sum := f.Digest(); idx != idx1 || sum != sum1 {
		t.Fatalf("Digest = %d %x, want the committed %d %x", idx, sum, idx1, sum1)
	}
	if n := len(dir.open.staged); n != staged || n == 0 || dir.open.Applied() != 1 || f.AppliedIndex() != 3 {
		t.Fatalf("after Digest: %d changes staged (was %d), committed at %d, applied %d",
			n, staged, dir.open.Applied(), f.AppliedIndex())
	}
	f.commit()
	ref.ApplyBatch(logs[1:])
	if a, b := fullState(t, f), fullState(t, ref); a != b {
		t.Fatalf("after the commit:\n%s\nwant\n%s", a, b)
	}
}

// TestDurable_InstallErrors restores a snapshot while Install fails in
// each way its contract allows. Before the switch (the rename, the fresh
// state's sync) Restore returns the error, the fresh Durable is discarded,
// and the old state is intact and goes on applying, also across a crash.
// A cleanup failure after the switch is not Restore's: the snapshot's
// state is current. A failing sync of the switch panics, and a crash then
// finds one of the two states whole.
func TestDurable_InstallErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	logs := randomLog(t, rng, 200)
	cfg := durableCfg(t)
	_, _, states := reference(t, cfg, logs)
	src, _, _ := reference(t, cfg, logs[:150])
	good, _ := snapshotBytes(t, src)

	// at90 returns a durable FSM at index 90, synced.
	at90 := func(t *testing.T) (*fakeDir, *FSM) {
		dir := newFakeDir()
		f := mustNewDurable(t, dir, cfg)
		f.ApplyBatch(logs[:90])
		snapshotBytes(t, f)
		return dir, f
	}
	restore := func(f *FSM) error { return f.Restore(io.NopCloser(bytes.NewReader(good))) }

	for name, set := range map[string]func(*fakeDir){
		"rename":     func(d *fakeDir) { d.failInstall = errors.New("rename: no space left") },
		"fresh sync": func(d *fakeDir) { d.failFreshSync = errors.New("fsync: no space left") },
	} {
		t.Run("before the switch: "+name, func(t *testing.T) {
			dir, f := at90(t)
			disk := dir.cur
			set(dir)
			if err := restore(f); err == nil || !strings.Contains(err.Error(), "no space left") {
				t.Fatalf("Restore = %v", err)
			}
			if len(dir.fresh) != 0 || dir.discards != 1 || dir.cur != disk {
				t.Fatalf("fresh left %d, discarded %d, disk replaced %v", len(dir.fresh), dir.discards, dir.cur != disk)
			}
			if s := fullState(t, f); s != states[90] {
				t.Fatalf("state after the failed restore:\n%s\nwant\n%s", s, states[90])
			}
			f.ApplyBatch(logs[90:120])
			snapshotBytes(t, f)
			dir.crash(rng)
			f = mustNewDurable(t, dir, cfg)
			if s := fullState(t, f); s != states[120] {
				t.Fatalf("applied on and reopened:\n%s\nwant\n%s", s, states[120])
			}
		})
	}

	t.Run("cleanup after the switch", func(t *testing.T) {
		dir, f := at90(t)
		dir.failCleanup = errors.New("remove old state: input/output error")
		if err := restore(f); err != nil {
			t.Fatalf("Restore = %v", err)
		}
		if s := fullState(t, f); s != states[150] || dir.cleanupErrs != 1 {
			t.Fatalf("restored (%d cleanup errors):\n%s\nwant\n%s", dir.cleanupErrs, s, states[150])
		}
		dir.crash(rng)
		f = mustNewDurable(t, dir, cfg)
		f.ApplyBatch(logs[150:])
		if s := fullState(t, f); s != states[200] {
			t.Fatalf("reopened and applied on:\n%s\nwant\n%s", s, states[200])
		}
	})

	t.Run("sync of the switch", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(8, 8)) // its own: the subtests above run in map order
		seen := map[uint64]bool{}
		for i := 0; i < 8; i++ {
			dir, f := at90(t)
			dir.failSwitch = errors.New("fsync root: input/output error")
			func() {
				defer func() {
					if p := recover(); p == nil || !strings.Contains(fmt.Sprint(p), "input/output error") {
						t.Fatalf("Restore with a failing switch: panic %v", p)
					}
				}()
				_ = restore(f)
			}()
			// The FSM is not used again: the node stops.
			dir.crash(rng)
			f = mustNewDurable(t, dir, cfg)
			got := f.AppliedIndex()
			if s := fullState(t, f); (got != 90 && got != 150) || s != states[got] {
				t.Fatalf("reopened at %d after a failed switch:\n%s", got, s)
			}
			seen[got] = true
		}
		if len(seen) != 2 {
			t.Fatalf("a crash after the failed switch found only the states at %v", seen)
		}
	})
}

// TestDurable_OpenRefusesClientsOutOfOrder: the request-id records'
// ranks must order the table as its touched indexes do, one rank per
// record; swapped or duplicated ranks are ErrCorruptState, while ranks
// that keep the order (however far apart) load.
func TestDurable_OpenRefusesClientsOutOfOrder(t *testing.T) {
	for name, tc := range map[string]struct {
		rank1, rank2 uint64
		ok           bool
	}{
		"in order":   {5, 100, true},
		"swapped":    {1, 0, false},
		"duplicated": {3, 3, false},
	} {
		t.Run(name, func(t *testing.T) {
			dir := newFakeDir()
			f := mustNewDurable(t, dir, durableCfg(t))
			mustWrite(t, f, 1, withID(putCmd("a", "1"), 1, 1))
			mustWrite(t, f, 2, withID(putCmd("b", "2"), 2, 1))
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			want := clientState(mustNewDurable(t, dir, durableCfg(t)))
			// Rewrite both records with the ranks given.
			d := openFake(dir.cur)
			var ops []fakeOp
			for id, rank := range map[int64]uint64{1: tc.rank1, 2: tc.rank2} {
				k := clientMetaKey(nil, id)
				v, ok := d.Meta(k)
				if !ok {
					t.Fatalf("no meta record for client %d", id)
				}
				_, n := binary.Uvarint(v)
				ops = append(ops, fakeOp{kind: 's', key: k, val: append(binary.AppendUvarint(nil, rank), v[n:]...)})
			}
			dir.cur.batches = append(dir.cur.batches, fakeBatch{applied: 2, ops: ops})
			g, err := NewDurable(durableCfg(t), dir)
			switch {
			case tc.ok && err != nil:
				t.Fatalf("NewDurable = %v", err)
			case tc.ok && clientState(g) != want:
				t.Fatalf("clients %q, want %q", clientState(g), want)
			case !tc.ok && !errors.Is(err, ErrCorruptState):
				t.Fatalf("NewDurable = %v, want ErrCorruptState", err)
			}
		})
	}
}

// TestDurable_RestoreWritesEachEntryOnce restores one snapshot into a
// Durable that is a storage.EntryLoader and into one that is not: the
// states are the snapshot's, also after a crash, and the loader gets one
// write per entry where the other gets two for every entry changed after
// its creation.
func TestDurable_RestoreWritesEachEntryOnce(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	logs := randomLog(t, rng, 300)
	cfg := durableCfg(t)
	src, _, states := reference(t, cfg, logs)
	snap, _ := snapshotBytes(t, src)
	changed := 0
	for _, e := range dump(src) {
		if e.ModIndex != e.CreateIndex {
			changed++
		}
	}
	if changed == 0 {
		t.Fatal("no entry changed after its creation: the log tests nothing")
	}
	for _, load := range []bool{false, true} {
		t.Run(fmt.Sprint("EntryLoader=", load), func(t *testing.T) {
			dir := newFakeDir()
			dir.loadEntries = load
			f := mustNewDurable(t, dir, cfg)
			mustRestore(t, f, snap)
			if s := fullState(t, f); s != states[300] {
				t.Fatalf("restored:\n%s\nwant\n%s", s, states[300])
			}
			writes := map[byte]int{}
			for _, b := range dir.cur.batches {
				for _, op := range b.ops {
					writes[op.kind]++
				}
			}
			want := map[byte]int{'p': src.Len() + changed}
			if load {
				want = map[byte]int{'l': src.Len()}
			}
			if writes['p'] != want['p'] || writes['l'] != want['l'] {
				t.Fatalf("%d Puts and %d LoadEntrys, want %d and %d", writes['p'], writes['l'], want['p'], want['l'])
			}
			dir.crash(rng)
			f = mustNewDurable(t, dir, cfg)
			if s := fullState(t, f); s != states[300] {
				t.Fatalf("reopened:\n%s\nwant\n%s", s, states[300])
			}
		})
	}
}

// TestDurable_RestoreWhileApplying restores snapshots while entries apply,
// in memory and on a durable engine: the race detector checks that
// Restore reads nothing of the engine it swapped in once Apply may write
// it.
func TestDurable_RestoreWhileApplying(t *testing.T) {
	src := mustNew(t, "")
	for i := uint64(1); i <= 10; i++ {
		mustWrite(t, src, i, putCmd(fmt.Sprint("k", i), "v"))
	}
	snap := mustPersist(t, src)
	for _, durable := range []bool{false, true} {
		t.Run(fmt.Sprint("durable=", durable), func(t *testing.T) {
			f := mustNew(t, "")
			if durable {
				f = mustNewDurable(t, newFakeDir(), durableCfg(t))
			}
			done := make(chan error)
			go func() {
				var err error
				for i := 0; i < 20 && err == nil; i++ {
					err = f.Restore(io.NopCloser(bytes.NewReader(snap)))
				}
				done <- err
			}()
			for idx := uint64(11); ; idx++ {
				select {
				case err := <-done:
					if err != nil {
						t.Fatalf("Restore: %v", err)
					}
					return
				default:
				}
				f.Apply(makeLog(t, idx, putCmd("x", "y")))
			}
		})
	}
}
