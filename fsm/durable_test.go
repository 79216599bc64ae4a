package fsm

import (
	"bytes"
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
// put with ttl_ms), attached, revoked (an expiry is a revoke the leader
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
			// At most one command of an entry grants a lease: a grant's id
			// is the entry's index, so a second one would replace the
			// first (the proposer would have to keep them apart).
			cmds := make([]*kv.Command, 1+rng.IntN(4))
			granted := false
			for j := range cmds {
				c := command(idx)
				for granted && (c.Op == kv.CommandOp_LEASE_GRANT || c.TTLMs != nil) {
					c = command(idx)
				}
				granted = granted || c.Op == kv.CommandOp_LEASE_GRANT || c.TTLMs != nil
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
					snap, snapIdx = snapshotBytes(t, f)
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
// batches apply: every view is of committed state only (the fake panics
// otherwise), and the race detector checks the engine is never read while
// written.
func TestDurable_SnapshotsWhileApplying(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	logs := randomLog(t, rng, 600)
	dir := newFakeDir()
	f := mustNewDurable(t, dir, durableCfg(t))
	done := make(chan struct{})
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
			snap.Release()
			if err != nil {
				t.Errorf("Persist: %v", err)
				return
			}
			f.Digest()
			f.Get([]byte("k01"))
			f.Scan(nil, nil, false, 0, false)
		}
	}()
	for i := 0; i < len(logs); i += 16 {
		f.ApplyBatch(logs[i:min(i+16, len(logs))])
	}
	close(done)
	wg.Wait()
	_, _, states := reference(t, durableCfg(t), logs)
	if s := fullState(t, f); s != states[len(logs)] {
		t.Fatalf("final state:\n%s\nwant\n%s", s, states[len(logs)])
	}
}

// TestDurable_RestoreCommitsInChunks restores a snapshot larger than
// restoreChunk into a durable FSM: the fresh Durable is committed more
// than once before the snapshot's index (so a restore's memory does not
// grow with the snapshot), and the state equals an in-memory restore's,
// also after a crash. Older format versions restore alike.
func TestDurable_RestoreCommitsInChunks(t *testing.T) {
	src := mustNew(t, "")
	big := strings.Repeat("x", 1<<20)
	for i := range 6 {
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
	// Digest covers every entry; fullState would render 6 MiB of values.
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
				if atZero < 1 {
					t.Fatalf("%d batches, none committed before the snapshot's index", len(dir.cur.batches))
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
