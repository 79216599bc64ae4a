package fsm

import (
	"bytes"
	"io"
	"log/slog"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/storage"
	"github.com/cubekv/cubekv/thrift/kv"
)

var engines = storage.Kinds

// testLogger sends logs to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return testutil.Logger(t, slog.LevelDebug)
}

func mustNew(t testing.TB, engine string, mods ...func(*Config)) *FSM {
	t.Helper()
	cfg := &Config{Engine: engine, Logger: testLogger(t)}
	for _, m := range mods {
		m(cfg)
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return f
}

func mustEncode(t testing.TB, c *kv.Command) []byte {
	t.Helper()
	b, err := EncodeCommand(c)
	if err != nil {
		t.Fatalf("EncodeCommand: %v", err)
	}
	return b
}

func makeLog(t testing.TB, idx uint64, c *kv.Command) *raft.Log {
	t.Helper()
	return &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: mustEncode(t, c)}
}

// mustApply applies c at idx and returns its *Result.
func mustApply(t testing.TB, f *FSM, idx uint64, c *kv.Command) *Result {
	t.Helper()
	out := f.Apply(makeLog(t, idx, c))
	r, ok := out.(*Result)
	if !ok || r == nil {
		t.Fatalf("Apply(%d) returned %T %v, want *Result", idx, out, out)
	}
	if f.AppliedIndex() != idx {
		t.Fatalf("AppliedIndex = %d after applying %d", f.AppliedIndex(), idx)
	}
	return r
}

// mustWrite applies c at idx and fails the test unless it succeeded without
// error.
func mustWrite(t testing.TB, f *FSM, idx uint64, c *kv.Command) *kv.WriteResult_ {
	t.Helper()
	r := mustApply(t, f, idx, c)
	if r.Err != nil || r.Write == nil {
		t.Fatalf("apply %d: err %v write %v", idx, r.Err, r.Write)
	}
	if r.Write.Index != int64(idx) {
		t.Fatalf("apply %d: WriteResult.Index = %d", idx, r.Write.Index)
	}
	return r.Write
}

func mustGet(t testing.TB, f *FSM, key string) (storage.Entry, bool) {
	t.Helper()
	e, ok, applied := f.Get([]byte(key))
	if applied != f.AppliedIndex() {
		t.Fatalf("Get applied %d, AppliedIndex %d", applied, f.AppliedIndex())
	}
	return e, ok
}

func i64(v int64) *int64 { return &v }
func boolp(v bool) *bool { return &v }

func memberSetCmd(m Member) *kv.Command {
	return &kv.Command{Op: kv.CommandOp_MEMBER_SET, Member: m.ToKV()}
}

func putCmd(key, value string) *kv.Command {
	return &kv.Command{Op: kv.CommandOp_PUT, Key: []byte(key), Value: []byte(value)}
}

func delCmd(key string) *kv.Command {
	return &kv.Command{Op: kv.CommandOp_DELETE, Key: []byte(key)}
}

func withID(c *kv.Command, client, seq int64) *kv.Command {
	c.ClientID, c.Sequence = i64(client), i64(seq)
	return c
}

func entry(key, value string, create, mod int64) *kv.Entry {
	return &kv.Entry{Key: []byte(key), Value: []byte(value), CreateIndex: create, ModIndex: mod}
}

// sink is an in-memory raft.SnapshotSink.
type sink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *sink) ID() string    { return "test" }
func (s *sink) Cancel() error { s.cancelled = true; return nil }
func (s *sink) Close() error  { s.closed = true; return nil }

// mustPersist snapshots f and returns the persisted bytes.
func mustPersist(t testing.TB, f *FSM) []byte {
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
	if !s.closed || s.cancelled {
		t.Fatalf("sink closed=%v cancelled=%v", s.closed, s.cancelled)
	}
	return s.Bytes()
}

func mustRestore(t testing.TB, f *FSM, b []byte) {
	t.Helper()
	if err := f.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
}

// dump returns every entry of f in key order, values copied.
func dump(f *FSM) []storage.Entry {
	es, _, _ := f.Scan(nil, nil, false, 0, false)
	return es
}
