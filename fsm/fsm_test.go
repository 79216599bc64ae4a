package fsm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/thrift/kv"
)

func TestFSM_New(t *testing.T) {
	if _, err := New(&Config{Engine: "lsm"}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New(lsm) err = %v, want ErrInvalidConfig", err)
	}
	if _, err := New(&Config{MaxClients: -1}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New(MaxClients -1) err = %v, want ErrInvalidConfig", err)
	}
	f, err := New(nil)
	if err != nil {
		t.Fatalf("New(nil): %v", err)
	}
	if f.EngineName() != "arena" || f.cfg.ClientTTL != DefaultClientTTL || f.cfg.MaxClients != DefaultMaxClients {
		t.Fatalf("defaults: engine %q cfg %+v", f.EngineName(), f.cfg)
	}
	if f.AppliedIndex() != 0 || f.Len() != 0 || f.RememberedClients() != 0 {
		t.Fatal("new FSM is not empty")
	}
}

func TestFSM_RequestIDDuplicate(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			f := mustNew(t, eng)
			mustWrite(t, f, 1, putCmd("k", "v1"))
			cas := withID(&kv.Command{Op: kv.CommandOp_CAS_PUT, Key: []byte("k"), Value: []byte("v2"), ExpectedValue: []byte("v1")}, 7, 1)
			first := mustApply(t, f, 2, cas)
			if first.Err != nil || first.Duplicate || !first.Write.Succeeded {
				t.Fatalf("first CAS: %+v", first)
			}
			// Another client changes the key back; a retry of the CAS must
			// return the first answer and not apply again.
			mustWrite(t, f, 3, putCmd("k", "v1"))
			retry := mustApply(t, f, 4, cas)
			if retry.Err != nil || !retry.Duplicate {
				t.Fatalf("retry: %+v, want duplicate", retry)
			}
			wantWrite(t, retry.Write, first.Write)
			wantEntry(t, f, "k", entry("k", "v1", 1, 3))

			// A lower sequence is stale and applies nothing.
			mustWrite(t, f, 5, withID(putCmd("k", "seq2"), 7, 2))
			stale := mustApply(t, f, 6, withID(putCmd("k", "seq1"), 7, 1))
			if !errors.Is(stale.Err, ErrStaleSequence) || stale.Write != nil {
				t.Fatalf("stale: %+v", stale)
			}
			wantEntry(t, f, "k", entry("k", "seq2", 1, 5))

			// An error result is not remembered: the same sequence, fixed,
			// applies.
			bad := mustApply(t, f, 7, withID(putCmd("", "x"), 7, 3))
			if !errors.Is(bad.Err, ErrInvalidCommand) {
				t.Fatalf("bad: %+v", bad)
			}
			good := mustApply(t, f, 8, withID(putCmd("k", "seq3"), 7, 3))
			if good.Err != nil || good.Duplicate {
				t.Fatalf("good: %+v", good)
			}
			wantEntry(t, f, "k", entry("k", "seq3", 1, 8))

			// Other clients are independent; client 0 has no record.
			mustWrite(t, f, 9, withID(putCmd("other", "1"), -3, 1))
			mustWrite(t, f, 10, withID(putCmd("other", "2"), 0, 1))
			mustWrite(t, f, 11, withID(putCmd("other", "3"), 0, 1))
			wantEntry(t, f, "other", entry("other", "3", 9, 11))
			if f.RememberedClients() != 2 {
				t.Fatalf("RememberedClients = %d, want 2", f.RememberedClients())
			}
		})
	}
}

// clientState returns client ids in table order with their sequences.
func clientState(f *FSM) string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var b strings.Builder
	for _, s := range f.requests.copyRecords() {
		fmt.Fprintf(&b, "%d:%d@%d ", s.clientID, s.seq, s.touched)
	}
	return b.String()
}

func TestFSM_RequestIDEvictionTTL(t *testing.T) {
	f := mustNew(t, "", func(c *Config) { c.ClientTTL = 10 })
	mustWrite(t, f, 1, withID(putCmd("a", "1"), 1, 1))
	mustWrite(t, f, 2, withID(putCmd("b", "1"), 2, 1))
	mustWrite(t, f, 5, withID(putCmd("c", "1"), 3, 1))
	// A duplicate touches its record.
	if r := mustApply(t, f, 8, withID(putCmd("a", "1"), 1, 1)); !r.Duplicate {
		t.Fatalf("want duplicate, got %+v", r)
	}
	if got, want := clientState(f), "2:1@2 3:1@5 1:1@8 "; got != want {
		t.Fatalf("clients %q, want %q", got, want)
	}
	// At 11, client 2 (touched at 2) is 9 old: kept. At 12 it is 10: evicted.
	mustWrite(t, f, 11, &kv.Command{Op: kv.CommandOp_NOOP})
	if got, want := clientState(f), "2:1@2 3:1@5 1:1@8 "; got != want {
		t.Fatalf("at 11: clients %q, want %q", got, want)
	}
	mustWrite(t, f, 12, &kv.Command{Op: kv.CommandOp_NOOP})
	if got, want := clientState(f), "3:1@5 1:1@8 "; got != want {
		t.Fatalf("at 12: clients %q, want %q", got, want)
	}
	// Evicted, client 2's old sequence applies again; it is no longer known.
	r := mustApply(t, f, 13, withID(putCmd("b", "again"), 2, 1))
	if r.Duplicate || r.Err != nil {
		t.Fatalf("after eviction: %+v", r)
	}
	wantEntry(t, f, "b", entry("b", "again", 2, 13))
	// Non-command logs do not evict; the next command entry does.
	f.Apply(&raft.Log{Index: 30, Type: raft.LogConfiguration})
	if got, want := clientState(f), "3:1@5 1:1@8 2:1@13 "; got != want {
		t.Fatalf("at 30 (configuration): clients %q, want %q", got, want)
	}
	mustWrite(t, f, 31, &kv.Command{Op: kv.CommandOp_NOOP})
	if f.RememberedClients() != 0 {
		t.Fatalf("at 31: clients %q, want none", clientState(f))
	}
}

func TestFSM_RequestIDEvictionCount(t *testing.T) {
	f := mustNew(t, "", func(c *Config) { c.MaxClients = 3 })
	mustWrite(t, f, 1, withID(putCmd("k", "1"), 1, 1))
	mustWrite(t, f, 2, withID(putCmd("k", "2"), 2, 1))
	mustWrite(t, f, 3, withID(putCmd("k", "3"), 3, 1))
	mustWrite(t, f, 4, withID(putCmd("k", "4"), 1, 2)) // client 1 becomes newest
	mustWrite(t, f, 5, withID(putCmd("k", "5"), 4, 1)) // evicts client 2
	if got, want := clientState(f), "3:1@3 1:2@4 4:1@5 "; got != want {
		t.Fatalf("clients %q, want %q", got, want)
	}
	// In a batch, ties in touched index keep touch order.
	b, err := EncodeBatch([]*kv.Command{withID(putCmd("k", "6"), 5, 1), withID(putCmd("k", "7"), 6, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f.Apply(&raft.Log{Index: 6, Type: raft.LogCommand, Data: b})
	if got, want := clientState(f), "4:1@5 5:1@6 6:1@6 "; got != want {
		t.Fatalf("clients %q, want %q", got, want)
	}
	// Two FSMs fed the same log agree exactly.
	g := mustNew(t, "hash", func(c *Config) { c.MaxClients = 3 })
	for i := uint64(1); i <= 5; i++ {
		var c *kv.Command
		switch i {
		case 4:
			c = withID(putCmd("k", "4"), 1, 2)
		case 5:
			c = withID(putCmd("k", "5"), 4, 1)
		default:
			c = withID(putCmd("k", fmt.Sprint(i)), int64(i), 1)
		}
		mustWrite(t, g, i, c)
	}
	g.Apply(&raft.Log{Index: 6, Type: raft.LogCommand, Data: b})
	if clientState(g) != clientState(f) {
		t.Fatalf("diverged: %q vs %q", clientState(g), clientState(f))
	}
}

func TestFSM_ApplyBatchEntry(t *testing.T) {
	f := mustNew(t, "")
	cmds := []*kv.Command{
		withID(putCmd("a", "1"), 9, 1),
		withID(putCmd("a", "again"), 9, 1), // duplicate within the batch
		withID(putCmd("a", "0"), 9, 0),     // invalid
		withID(&kv.Command{Op: kv.CommandOp_CAS_PUT, Key: []byte("a"), Value: []byte("2"), ExpectedValue: []byte("1")}, 9, 2),
		delCmd("missing"),
	}
	b, err := EncodeBatch(cmds)
	if err != nil {
		t.Fatal(err)
	}
	out := f.Apply(&raft.Log{Index: 4, Type: raft.LogCommand, Data: b})
	rs, ok := out.([]*Result)
	if !ok || len(rs) != len(cmds) {
		t.Fatalf("Apply returned %T %v", out, out)
	}
	if rs[0].Err != nil || rs[0].Duplicate || rs[0].Write.Index != 4 {
		t.Fatalf("result 0: %+v", rs[0])
	}
	if !rs[1].Duplicate || rs[1].Write != rs[0].Write {
		t.Fatalf("result 1: %+v, want duplicate of 0", rs[1])
	}
	if !errors.Is(rs[2].Err, ErrInvalidCommand) {
		t.Fatalf("result 2: %+v", rs[2])
	}
	wantWrite(t, rs[3].Write, &kv.WriteResult_{Index: 4, Succeeded: true, Entry: entry("a", "2", 4, 4)})
	wantWrite(t, rs[4].Write, &kv.WriteResult_{Index: 4})
	wantEntry(t, f, "a", entry("a", "2", 4, 4))

	// An empty batch is valid and applies nothing.
	b, err = EncodeBatch(nil)
	if err != nil {
		t.Fatal(err)
	}
	if rs, ok := f.Apply(&raft.Log{Index: 5, Type: raft.LogCommand, Data: b}).([]*Result); !ok || len(rs) != 0 {
		t.Fatalf("empty batch: %v", rs)
	}
	if f.AppliedIndex() != 5 {
		t.Fatalf("AppliedIndex = %d", f.AppliedIndex())
	}
}

func TestFSM_ApplyBatch(t *testing.T) {
	f := mustNew(t, "")
	logs := []*raft.Log{
		makeLog(t, 1, putCmd("a", "1")),
		{Index: 2, Type: raft.LogConfiguration, Data: []byte{0, 1, 2}},
		makeLog(t, 3, putCmd("b", "2")),
		{Index: 4, Type: raft.LogConfiguration},
		{Index: 5, Type: raft.LogCommand, Data: []byte{EntryCommand | FlagIgnorable, 0xff}},
	}
	out := f.ApplyBatch(logs)
	if len(out) != len(logs) {
		t.Fatalf("%d responses for %d logs", len(out), len(logs))
	}
	for i, want := range []bool{true, false, true, false, false} {
		r, isResult := out[i].(*Result)
		if isResult != want || (!want && out[i] != nil) {
			t.Fatalf("response %d: %T %v", i, out[i], out[i])
		}
		if want && (r.Err != nil || r.Write.Index != int64(logs[i].Index)) {
			t.Fatalf("response %d: %+v", i, r)
		}
	}
	if f.AppliedIndex() != 5 || f.Len() != 2 {
		t.Fatalf("AppliedIndex %d Len %d", f.AppliedIndex(), f.Len())
	}
	f.Apply(&raft.Log{Index: 6, Type: raft.LogConfiguration})
	if f.AppliedIndex() != 6 {
		t.Fatalf("AppliedIndex %d after configuration log", f.AppliedIndex())
	}
}

func TestFSM_WaitApplied(t *testing.T) {
	f := mustNew(t, "")
	if err := f.WaitApplied(context.Background(), 0); err != nil {
		t.Fatalf("WaitApplied(0): %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- f.WaitApplied(context.Background(), 3) }()
	mustWrite(t, f, 1, putCmd("a", "1"))
	f.Apply(&raft.Log{Index: 2, Type: raft.LogConfiguration})
	select {
	case err := <-done:
		t.Fatalf("WaitApplied(3) returned %v at index 2", err)
	default:
	}
	mustWrite(t, f, 3, putCmd("a", "2"))
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WaitApplied(3): %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitApplied(3) not woken")
	}

	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- f.WaitApplied(ctx, 100) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("WaitApplied after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitApplied ignored ctx")
	}

	// Many concurrent waiters, woken by a restore.
	src := mustNew(t, "")
	mustWrite(t, src, 50, putCmd("x", "y"))
	snap := mustPersist(t, src)
	errs := make(chan error, 8)
	for i := 0; i < cap(errs); i++ {
		go func() { errs <- f.WaitApplied(context.Background(), 50) }()
	}
	mustRestore(t, f, snap)
	for i := 0; i < cap(errs); i++ {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("waiter not woken by Restore")
		}
	}
}

func TestFSM_ApplyCorruptPanics(t *testing.T) {
	good := mustEncode(t, putCmd("a", "1"))
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"type zero", append([]byte{0}, good[1:]...)},
		{"unknown type", append([]byte{3}, good[1:]...)},
		{"truncated", good[:len(good)-2]},
		{"trailing bytes", append(append([]byte{}, good...), 0)},
		{"garbage body", []byte{EntryCommand, 0xff, 0xff, 0xff}},
		{"missing required op", []byte{EntryCommand, 0}},
		{"batch of command", append([]byte{EntryBatch}, good[1:]...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := mustNew(t, "")
			defer func() {
				r := recover()
				if r == nil {
					t.Fatal("Apply did not panic")
				}
				if msg := fmt.Sprint(r); !strings.Contains(msg, "raft log 9") {
					t.Fatalf("panic message %q does not name the log", msg)
				}
				if f.AppliedIndex() != 0 || f.Len() != 0 {
					t.Fatal("a corrupt entry changed the state")
				}
			}()
			f.Apply(&raft.Log{Index: 9, Type: raft.LogCommand, Data: tc.data})
		})
	}
}

func TestFSM_ConcurrentReads(t *testing.T) {
	f := mustNew(t, "")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := uint64(1); i <= 300; i++ {
			// Each txn keeps a and b equal; readers must never see them differ.
			v := []byte(fmt.Sprint(i))
			f.Apply(makeLog(t, i, &kv.Command{Op: kv.CommandOp_TXN, Success: []*kv.Op{
				{Type: kv.OpType_PUT, Key: []byte("a"), Value: v},
				{Type: kv.OpType_PUT, Key: []byte("b"), Value: v},
			}}))
		}
	}()
	for {
		select {
		case <-done:
			if f.AppliedIndex() != 300 {
				t.Fatalf("AppliedIndex %d", f.AppliedIndex())
			}
			return
		default:
		}
		es, _, applied := f.Scan(nil, nil, false, 0, false)
		if len(es) == 2 && (string(es[0].Value) != string(es[1].Value) || es[0].ModIndex != applied) {
			t.Fatalf("torn read at %d: %q %q", applied, es[0].Value, es[1].Value)
		}
		f.Digest()
		f.Len()
	}
}
