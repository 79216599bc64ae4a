package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/internal/testutil"
)

var logStoreKinds = []string{LogStoreBolt, LogStoreWAL}

func testHCLog(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: testutil.Writer(t), Level: hclog.Warn})
}

func mustOpenStores(t *testing.T, dir, kind string) *logStores {
	t.Helper()
	st, err := openLogStores(dir, kind, testHCLog(t))
	if err != nil {
		t.Fatalf("open %s: %v", kind, err)
	}
	return st
}

func entry(i, term uint64) *raft.Log {
	typ := raft.LogCommand
	if i%50 == 0 {
		typ = raft.LogConfiguration
	}
	return &raft.Log{Index: i, Term: term, Type: typ, Data: []byte(fmt.Sprintf("data-%d", i)), Extensions: []byte(fmt.Sprintf("ext-%d", i%3))}
}

// setVote writes what raft keeps in its stable store: the current term and
// the last vote.
func setVote(t *testing.T, st *logStores, term, voteTerm uint64, cand string) {
	t.Helper()
	if err := st.stable.SetUint64([]byte("CurrentTerm"), term); err != nil {
		t.Fatal(err)
	}
	if err := st.stable.SetUint64([]byte("LastVoteTerm"), voteTerm); err != nil {
		t.Fatal(err)
	}
	if err := st.stable.Set([]byte("LastVoteCand"), []byte(cand)); err != nil {
		t.Fatal(err)
	}
}

func checkRange(t *testing.T, ls raft.LogStore, first, last uint64) {
	t.Helper()
	f, err := ls.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	l, err := ls.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	if f != first || l != last {
		t.Fatalf("log holds %d..%d, want %d..%d", f, l, first, last)
	}
	for i := first; i <= last && last > 0; i++ {
		var got raft.Log
		if err := ls.GetLog(i, &got); err != nil {
			t.Fatalf("get %d: %v", i, err)
		}
		want := entry(i, got.Term)
		if got.Index != i || got.Type != want.Type || string(got.Data) != string(want.Data) || string(got.Extensions) != string(want.Extensions) {
			t.Fatalf("entry %d = %+v, want %+v", i, got, want)
		}
	}
	var past raft.Log
	if err := ls.GetLog(last+1, &past); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("get %d past the end: err %v, want ErrLogNotFound", last+1, err)
	}
	if first > 1 {
		var below raft.Log
		if err := ls.GetLog(first-1, &below); !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("get %d below the first index: err %v, want ErrLogNotFound", first-1, err)
		}
	}
}

// TestLogStores_Conformance runs what hashicorp/raft asks of a LogStore and
// StableStore against both kinds: appends one and many, reads, head
// truncation (compaction), tail truncation (a follower's conflicting
// suffix), appends after each, the stable store's values and its "not set"
// answers, and all of it again after a close and reopen.
func TestLogStores_Conformance(t *testing.T) {
	for _, kind := range logStoreKinds {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			st := mustOpenStores(t, dir, kind)
			if st.kind != kind {
				t.Fatalf("opened %s, want %s", st.kind, kind)
			}
			checkRange(t, st.log, 0, 0)
			var l raft.Log
			if err := st.log.GetLog(1, &l); !errors.Is(err, raft.ErrLogNotFound) {
				t.Fatalf("get from an empty log: %v", err)
			}
			if v, err := st.stable.GetUint64([]byte("CurrentTerm")); err == nil && v != 0 {
				t.Fatalf("unset uint64 = %d", v)
			}
			if v, err := st.stable.Get([]byte("LastVoteCand")); err == nil && len(v) != 0 {
				t.Fatalf("unset key = %q", v)
			}

			if err := st.log.StoreLog(entry(1, 1)); err != nil {
				t.Fatal(err)
			}
			var batch []*raft.Log
			for i := uint64(2); i <= 300; i++ {
				batch = append(batch, entry(i, 1+i/100))
			}
			if err := st.log.StoreLogs(batch); err != nil {
				t.Fatal(err)
			}
			checkRange(t, st.log, 1, 300)

			// Compaction removes a prefix.
			if err := st.log.DeleteRange(1, 120); err != nil {
				t.Fatal(err)
			}
			checkRange(t, st.log, 121, 300)
			// A follower drops a conflicting suffix and appends a new one.
			if err := st.log.DeleteRange(251, 300); err != nil {
				t.Fatal(err)
			}
			checkRange(t, st.log, 121, 250)
			batch = batch[:0]
			for i := uint64(251); i <= 400; i++ {
				batch = append(batch, entry(i, 9))
			}
			if err := st.log.StoreLogs(batch); err != nil {
				t.Fatal(err)
			}
			checkRange(t, st.log, 121, 400)

			setVote(t, st, 9, 8, "n2")
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}

			st = mustOpenStores(t, dir, kind)
			defer st.Close()
			checkRange(t, st.log, 121, 400)
			var got raft.Log
			if err := st.log.GetLog(300, &got); err != nil || got.Term != 9 {
				t.Fatalf("entry 300 after the suffix was replaced: term %d err %v, want term 9", got.Term, err)
			}
			if v, err := st.stable.GetUint64([]byte("CurrentTerm")); err != nil || v != 9 {
				t.Fatalf("CurrentTerm = %d, %v", v, err)
			}
			if v, err := st.stable.GetUint64([]byte("LastVoteTerm")); err != nil || v != 8 {
				t.Fatalf("LastVoteTerm = %d, %v", v, err)
			}
			if v, err := st.stable.Get([]byte("LastVoteCand")); err != nil || string(v) != "n2" {
				t.Fatalf("LastVoteCand = %q, %v", v, err)
			}
		})
	}
}

// TestLogStores_RefuseOtherKind: a data directory holding one kind must not
// be opened as the other (that would start from an empty log and forget the
// term and vote), nor when it holds both.
func TestLogStores_RefuseOtherKind(t *testing.T) {
	for _, kind := range logStoreKinds {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			st := mustOpenStores(t, dir, kind)
			if err := st.log.StoreLog(entry(1, 1)); err != nil {
				t.Fatal(err)
			}
			st.Close()
			other := LogStoreWAL
			if kind == LogStoreWAL {
				other = LogStoreBolt
			}
			if _, err := openLogStores(dir, other, testHCLog(t)); !errors.Is(err, ErrLogStoreMismatch) {
				t.Fatalf("opening a %s dir as %s: %v, want ErrLogStoreMismatch", kind, other, err)
			}
			if found, err := DetectLogStore(dir); err != nil || found != kind {
				t.Fatalf("detect = %q, %v", found, err)
			}
			// Both present (a migration cut short between its renames).
			mustOpenStores(t, t.TempDir(), other).Close()
			if err := os.MkdirAll(filepath.Dir(logStorePath(dir, other)), 0o700); err != nil {
				t.Fatal(err)
			}
			var err error
			if other == LogStoreWAL {
				err = os.Mkdir(logStorePath(dir, other), 0o700)
			} else {
				err = os.WriteFile(logStorePath(dir, other), nil, 0o600)
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := openLogStores(dir, kind, testHCLog(t)); !errors.Is(err, ErrLogStoreMismatch) {
				t.Fatalf("opening a dir with both kinds: %v, want ErrLogStoreMismatch", err)
			}
		})
	}
}

// TestLogStores_SecondProcessFails: a store held by another process (a
// running node) makes open fail within the lock wait instead of hanging or
// sharing it. The holder is a child process running this test binary.
func TestLogStores_SecondProcessFails(t *testing.T) {
	if dir := os.Getenv("CUBEKV_HOLD_STORE_DIR"); dir != "" {
		st, err := openLogStores(dir, os.Getenv("CUBEKV_HOLD_STORE_KIND"), hclog.NewNullLogger())
		if err != nil {
			fmt.Println("open failed:", err)
			os.Exit(1)
		}
		defer st.Close()
		fmt.Println("holding")
		_, _ = os.Stdin.Read(make([]byte, 1)) // until the parent closes stdin
		return
	}
	for _, kind := range logStoreKinds {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			mustOpenStores(t, dir, kind).Close()
			cmd := exec.Command(os.Args[0], "-test.run", "^TestLogStores_SecondProcessFails$")
			cmd.Env = append(os.Environ(), "CUBEKV_HOLD_STORE_DIR="+dir, "CUBEKV_HOLD_STORE_KIND="+kind)
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { stdin.Close(); _ = cmd.Wait() }()
			buf := make([]byte, 7)
			if _, err := stdout.Read(buf); err != nil || string(buf) != "holding" {
				t.Fatalf("holder said %q, %v", buf, err)
			}
			type result struct {
				st  *logStores
				err error
			}
			done := make(chan result, 1)
			go func() {
				st, err := openLogStores(dir, kind, testHCLog(t))
				done <- result{st, err}
			}()
			select {
			case r := <-done:
				if r.err == nil {
					r.st.Close()
					t.Fatalf("opened a %s store another process holds", kind)
				}
			case <-time.After(10 * lockWait):
				t.Fatalf("opening a %s store another process holds still blocks after %v", kind, 10*lockWait)
			}
		})
	}
}

// TestMigrateLogStore_BothWays copies a log with a compacted prefix and a
// stable store from bolt to wal and back, checking every entry and key
// after each step and that the old store was moved aside.
func TestMigrateLogStore_BothWays(t *testing.T) {
	data := t.TempDir()
	raftDir := filepath.Join(data, "raft")
	st := mustOpenStores(t, raftDir, LogStoreBolt)
	var batch []*raft.Log
	for i := uint64(1); i <= 500; i++ {
		batch = append(batch, entry(i, 3))
	}
	if err := st.log.StoreLogs(batch); err != nil {
		t.Fatal(err)
	}
	if err := st.log.DeleteRange(1, 99); err != nil {
		t.Fatal(err)
	}
	setVote(t, st, 3, 3, "n1")
	st.Close()

	for _, to := range []string{LogStoreWAL, LogStoreBolt} {
		res, err := MigrateLogStore(data, to, testHCLog(t))
		if err != nil {
			t.Fatalf("migrate to %s: %v", to, err)
		}
		if res.To != to || res.First != 100 || res.Last != 500 {
			t.Fatalf("migrate to %s: %+v", to, res)
		}
		if _, err := os.Stat(res.Old); err != nil {
			t.Fatalf("old store not kept aside: %v", err)
		}
		if found, err := DetectLogStore(raftDir); err != nil || found != to {
			t.Fatalf("after migrating to %s the dir holds %q (%v)", to, found, err)
		}
		st := mustOpenStores(t, raftDir, to)
		checkRange(t, st.log, 100, 500)
		for k, want := range map[string]uint64{"CurrentTerm": 3, "LastVoteTerm": 3} {
			if v, err := st.stable.GetUint64([]byte(k)); err != nil || v != want {
				t.Fatalf("%s after migrating to %s = %d, %v", k, to, v, err)
			}
		}
		if v, err := st.stable.Get([]byte("LastVoteCand")); err != nil || string(v) != "n1" {
			t.Fatalf("LastVoteCand after migrating to %s = %q, %v", to, v, err)
		}
		st.Close()
		if _, err := MigrateLogStore(data, to, testHCLog(t)); !errors.Is(err, ErrNothingToMigrate) {
			t.Fatalf("migrating to the kind already there: %v", err)
		}
	}
	if _, err := MigrateLogStore(t.TempDir(), LogStoreWAL, testHCLog(t)); !errors.Is(err, ErrNothingToMigrate) {
		t.Fatalf("migrating an empty dir: %v", err)
	}
}

// TestNode_WALStoreSurvivesRestart runs a one-node cluster on raft-wal,
// writes, closes it, and reopens it from the same directory.
func TestNode_WALStoreSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	open := func() *Node {
		cfg := DefaultConfig()
		cfg.ID = "n1"
		cfg.DataDir = dir
		cfg.LogStoreKind = LogStoreWAL
		cfg.Bootstrap = true
		cfg.HeartbeatTimeout = 100 * time.Millisecond
		cfg.ElectionTimeout = 100 * time.Millisecond
		cfg.LeaderLeaseTimeout = 100 * time.Millisecond
		_, trans := raft.NewInmemTransport("")
		cfg.Transport = trans
		cfg.Logger = testLogger(t, "n1")
		n, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Open(); err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := open()
	(&cluster{nodes: []*Node{n}}).mustLeader(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 20; i++ {
		if _, err := n.Apply(ctx, put(fmt.Sprintf("k%d", i), "v")); err != nil {
			t.Fatal(err)
		}
	}
	applied := n.FSM().AppliedIndex()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if found, _ := DetectLogStore(filepath.Join(dir, "raft")); found != LogStoreWAL {
		t.Fatalf("data dir holds %q, want wal", found)
	}
	n = open()
	defer n.Close()
	(&cluster{nodes: []*Node{n}}).mustLeader(t)
	if got := n.FSM().AppliedIndex(); got < applied {
		t.Fatalf("applied %d after restart, want at least %d", got, applied)
	}
	if n.FSM().Len() != 20 {
		t.Fatalf("%d keys after restart, want 20", n.FSM().Len())
	}
}
