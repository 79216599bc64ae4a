package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/thrift/kv"
)

type written struct {
	value       []byte
	createIndex int64
	modIndex    int64
}

// TestKVNode_KillNineRecoversEverything writes 10,000 keys (some twice, some
// then deleted) through the client, waits for a snapshot so that recovery
// needs snapshot plus log, kill -9s the node, restarts it and reads every key
// back with its value, create_index and mod_index, with each log store.
func TestKVNode_KillNineRecoversEverything(t *testing.T) {
	for _, store := range []string{"bolt", "wal"} {
		t.Run(store, func(t *testing.T) { testKillNineRecoversEverything(t, store) })
	}
}

func testKillNineRecoversEverything(t *testing.T, store string) {
	p := newProc(t, "n1", "--log-store", store, "--snapshot-threshold", "2048", "--snapshot-interval", "100ms", "--trailing-logs", "1024")
	p.start()
	c := mustClient(t, p.thriftAddr)
	ctx := ctxTimeout(t, 3*time.Minute)

	const keys, workers = 10000, 16
	var mu sync.Mutex
	want := make(map[string]written, keys)
	deleted := map[string]bool{}
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < keys; i += workers {
				key := fmt.Sprintf("key-%05d", i)
				val := []byte(fmt.Sprintf("value-%d-first", i))
				r, err := c.Put(ctx, []byte(key), val)
				if err != nil {
					errc <- fmt.Errorf("put %s: %w", key, err)
					return
				}
				rec := written{value: val, createIndex: r.CreateIndex, modIndex: r.Index}
				if i%7 == 0 { // overwrite: mod_index moves, create_index stays
					val = []byte(fmt.Sprintf("value-%d-second", i))
					r, err = c.Put(ctx, []byte(key), val)
					if err != nil {
						errc <- fmt.Errorf("overwrite %s: %w", key, err)
						return
					}
					if r.CreateIndex != rec.createIndex {
						errc <- fmt.Errorf("overwrite %s changed create_index %d -> %d", key, rec.createIndex, r.CreateIndex)
						return
					}
					rec = written{value: val, createIndex: rec.createIndex, modIndex: r.Index}
				}
				mu.Lock()
				want[key] = rec
				mu.Unlock()
				if i%101 == 0 {
					if _, err := c.Delete(ctx, []byte(key)); err != nil {
						errc <- fmt.Errorf("delete %s: %w", key, err)
						return
					}
					mu.Lock()
					delete(want, key)
					deleted[key] = true
					mu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	t.Logf("wrote %d keys (%d live, %d deleted) in %v with %d writers", keys, len(want), len(deleted), elapsed, workers)

	// Recovery must need a snapshot plus the log after it.
	var snapIdx int64
	eventually(t, 20*time.Second, "a snapshot taken", func() (bool, string) {
		snapIdx = mustStatus(t, c, p.thriftAddr).SnapshotIndex
		return snapIdx > 0, "none yet"
	})
	last, err := c.Put(ctx, []byte("after-snapshot"), []byte("tail"))
	if err != nil {
		t.Fatal(err)
	}
	want["after-snapshot"] = written{value: []byte("tail"), createIndex: last.Index, modIndex: last.Index}
	if last.Index <= snapIdx {
		t.Fatalf("last write at %d is not after snapshot %d", last.Index, snapIdx)
	}

	p.kill()
	restart := time.Now()
	p.start()
	t.Logf("snapshot at %d, last write at %d; restart to ready took %v", snapIdx, last.Index, time.Since(restart))

	c2 := mustClient(t, p.thriftAddr)
	for key, w := range want {
		r, err := c2.Get(ctx, []byte(key))
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		if !r.Found {
			t.Fatalf("key %s lost after kill -9", key)
		}
		if !bytes.Equal(r.Entry.Value, w.value) || r.Entry.ModIndex != w.modIndex || r.Entry.CreateIndex != w.createIndex {
			t.Fatalf("key %s = (%q, create %d, mod %d), want (%q, create %d, mod %d)",
				key, r.Entry.Value, r.Entry.CreateIndex, r.Entry.ModIndex, w.value, w.createIndex, w.modIndex)
		}
	}
	for key := range deleted {
		r, err := c2.Get(ctx, []byte(key))
		if err != nil || r.Found {
			t.Fatalf("deleted key %s: found=%v err=%v", key, r.GetFound(), err)
		}
	}
	st := mustStatus(t, c2, p.thriftAddr)
	if st.Keys != int64(len(want)) {
		t.Fatalf("node holds %d keys, want %d", st.Keys, len(want))
	}
}

// TestKVNode_SIGTERMShutsDownCleanly checks that SIGTERM exits 0 promptly and
// that the data is there after a restart.
func TestKVNode_SIGTERMShutsDownCleanly(t *testing.T) {
	p := newProc(t, "n1", "--engine", "hash")
	p.start()
	c := mustClient(t, p.thriftAddr)
	ctx := ctxTimeout(t, time.Minute)
	for i := 0; i < 100; i++ {
		if _, err := c.Put(ctx, []byte(fmt.Sprintf("k%03d", i)), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.stop(15 * time.Second); err != nil {
		t.Fatalf("kvnode exited with %v after SIGTERM, want status 0", err)
	}
	p.start()
	r, err := mustClient(t, p.thriftAddr).Scan(ctx, &kv.ScanRequest{Prefix: []byte("k")})
	if err != nil || len(r.Entries) != 100 {
		t.Fatalf("scan after restart: %d entries, %v", len(r.GetEntries()), err)
	}
	if st := mustStatus(t, c, p.thriftAddr); st.Engine != "hash" {
		t.Fatalf("engine = %q, want hash", st.Engine)
	}
}

// TestKVNode_ArenaEngineSurvivesKill runs the arena engine through
// snapshots (a low threshold makes several while keys are overwritten),
// kill -9 and a restart that restores the latest snapshot and replays the
// log after it.
func TestKVNode_ArenaEngineSurvivesKill(t *testing.T) {
	p := newProc(t, "n1", "--engine", "arena", "--snapshot-threshold", "64", "--trailing-logs", "16",
		"--snapshot-interval", "100ms")
	p.start()
	c := mustClient(t, p.thriftAddr)
	ctx := ctxTimeout(t, time.Minute)
	for round := 0; round < 3; round++ {
		for i := 0; i < 100; i++ {
			v := fmt.Sprintf("v%d-%03d", round, i)
			if _, err := c.Put(ctx, []byte(fmt.Sprintf("k%03d", i)), []byte(v)); err != nil {
				t.Fatal(err)
			}
		}
	}
	p.kill()
	p.start()
	r, err := mustClient(t, p.thriftAddr).Scan(ctx, &kv.ScanRequest{Prefix: []byte("k")})
	if err != nil || len(r.Entries) != 100 {
		t.Fatalf("scan after restart: %d entries, %v", len(r.GetEntries()), err)
	}
	for i, e := range r.Entries {
		if want := fmt.Sprintf("v2-%03d", i); string(e.Value) != want {
			t.Fatalf("entry %q = %q after restart, want %q", e.Key, e.Value, want)
		}
	}
	if st := mustStatus(t, c, p.thriftAddr); st.Engine != "arena" {
		t.Fatalf("engine = %q, want arena", st.Engine)
	}
}

// waitClosed reads from conn until the server closes it.
func waitClosed(t *testing.T, conn net.Conn, what string) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: connection still open after 10s", what)
	}
}

// TestKVNode_BadInputKeepsServing sends non-Thrift bytes, a frame header
// claiming 2 GiB, a value over the value limit and a value over the frame
// limit, while another client writes without pause: the bad connections get
// InvalidArgument or are closed, the writer never fails, nothing is lost.
func TestKVNode_BadInputKeepsServing(t *testing.T) {
	p := newProc(t, "n1")
	p.start()
	good := mustClient(t, p.thriftAddr)
	ctx := ctxTimeout(t, 2*time.Minute)

	var ackMu sync.Mutex // guards acked
	var acked []string
	ackedLen := func() int { ackMu.Lock(); defer ackMu.Unlock(); return len(acked) }
	var writerErr atomic.Value
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			key := fmt.Sprintf("good-%06d", i)
			if _, err := good.Put(ctx, []byte(key), []byte("v")); err != nil {
				writerErr.Store(err)
				return
			}
			ackMu.Lock()
			acked = append(acked, key)
			ackMu.Unlock()
		}
	}()

	dial := func() net.Conn {
		conn, err := net.DialTimeout("tcp", p.thriftAddr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}

	// Bytes that are not Thrift at all.
	conn := dial()
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: cubekv\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, conn, "HTTP request")

	// A frame header claiming 2 GiB, followed by a little data.
	conn = dial()
	if _, err := conn.Write(append([]byte{0x7f, 0xff, 0xff, 0xff}, bytes.Repeat([]byte{1}, 64)...)); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, conn, "2 GiB frame header")

	// A value one byte over the 1 MiB limit: InvalidArgument, nothing applied.
	bad := mustClient(t, p.thriftAddr)
	_, err := bad.Put(ctx, []byte("too-big"), bytes.Repeat([]byte("x"), 1<<20+1))
	var ia *client.InvalidArgumentError
	if !errors.As(err, &ia) || ia.Field != "value" {
		t.Fatalf("oversize value: err = %v, want InvalidArgument on field value", err)
	}
	// A value larger than the 8 MiB frame limit: that connection is closed.
	if _, err := bad.Put(ctx, []byte("way-too-big"), bytes.Repeat([]byte("x"), 9<<20)); err == nil {
		t.Fatalf("9 MiB value accepted")
	}
	// The same client still works on a new connection.
	if _, err := bad.Put(ctx, []byte("after-bad"), []byte("ok")); err != nil {
		t.Fatalf("put after bad input: %v", err)
	}

	// Keep the writer going a little longer, then stop it.
	target := ackedLen() + 200
	eventually(t, 30*time.Second, "200 more writes from the well-behaved client", func() (bool, string) {
		return writerErr.Load() != nil || ackedLen() >= target, fmt.Sprintf("%d of %d", ackedLen(), target)
	})
	close(stop)
	<-done
	if e := writerErr.Load(); e != nil {
		t.Fatalf("the well-behaved client failed during bad input: %v", e)
	}
	if !p.alive() {
		t.Fatalf("kvnode died")
	}
	for _, key := range append(acked, "after-bad") {
		r, err := good.Get(ctx, []byte(key))
		if err != nil || !r.Found {
			t.Fatalf("acked key %s: found=%v err=%v", key, r.GetFound(), err)
		}
	}
	for _, key := range []string{"too-big", "way-too-big"} {
		r, err := good.Get(ctx, []byte(key))
		if err != nil || r.Found {
			t.Fatalf("rejected key %s: found=%v err=%v", key, r.GetFound(), err)
		}
	}
	t.Logf("well-behaved client wrote %d keys during the bad input, none failed", len(acked))
}

// TestKVNode_NoFlagsIsASingleNodeCluster runs kvnode with no flags and no
// KVNODE_* variables in an empty directory: it serves Thrift on
// 127.0.0.1:9090 and keeps its data in ./kvnode-data.
func TestKVNode_NoFlagsIsASingleNodeCluster(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:9090", "127.0.0.1:9091", "127.0.0.1:9092"} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("default port %s is taken on this machine: %v", addr, err)
		}
		l.Close()
	}
	dir := t.TempDir()
	cmd := exec.Command(kvnodeBin)
	cmd.Dir = dir
	cmd.Env = filterEnv(os.Environ())
	mustStartKVNodeCmd(t, cmd)
	c := mustClient(t, "127.0.0.1:9090")
	ctx := ctxTimeout(t, 30*time.Second)
	eventually(t, 20*time.Second, "a put to the default node", func() (bool, string) {
		_, err := c.Put(ctx, []byte("hello"), []byte("world"))
		return err == nil, fmt.Sprint(err)
	})
	st := mustStatus(t, c, "127.0.0.1:9090")
	if st.Role != kv.Role_LEADER || st.NodeID != "node1" || st.Engine != "arena" {
		t.Fatalf("status = %+v", st)
	}
	if _, err := os.Stat(filepath.Join(dir, "kvnode-data", "raft", "raft.db")); err != nil {
		t.Fatalf("default data dir: %v", err)
	}
}

// mustStartKVNodeCmd starts cmd, a kvnode process, and kills it when t ends, logging its output if
// t failed.
func mustStartKVNodeCmd(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("kvnode log:\n%s", logs.String())
		}
	})
}

// TestKVNode_EnvironmentConfig configures a node with KVNODE_* variables only.
func TestKVNode_EnvironmentConfig(t *testing.T) {
	dir := t.TempDir()
	thriftAddr := testutil.FreeAddr(t)
	cmd := exec.Command(kvnodeBin)
	cmd.Dir = dir
	cmd.Env = append(filterEnv(os.Environ()),
		"KVNODE_ID=env-node",
		"KVNODE_DATA_DIR="+filepath.Join(dir, "d"),
		"KVNODE_THRIFT_ADDR="+thriftAddr,
		"KVNODE_RAFT_ADDR="+testutil.FreeAddr(t),
		"KVNODE_ADMIN_ADDR=",
		"KVNODE_ENGINE=hash",
	)
	mustStartKVNodeCmd(t, cmd)
	c := mustClient(t, thriftAddr)
	ctx := ctxTimeout(t, 30*time.Second)
	var st *kv.StatusResponse
	eventually(t, 20*time.Second, "the node configured from the environment leads", func() (bool, string) {
		var err error
		st, err = c.Status(ctx, thriftAddr)
		return err == nil && st.Role == kv.Role_LEADER, fmt.Sprint(st, err)
	})
	if st.NodeID != "env-node" || st.Engine != "hash" {
		t.Fatalf("status = %+v; want leader env-node on hash", st)
	}
	if _, err := os.Stat(filepath.Join(dir, "d", "raft", "raft.db")); err != nil {
		t.Fatalf("data dir from KVNODE_DATA_DIR: %v", err)
	}
}

// TestKVNode_BadFlagsExitTwo checks that configuration errors are usage
// errors with exit status 2 and a message naming the problem.
func TestKVNode_BadFlagsExitTwo(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--engine", "lsm"}, "lsm"},
		{[]string{"--bootstrap", "maybe"}, "bootstrap"},
		{[]string{"--initial-cluster", "n1"}, "initial-cluster"},
		{[]string{"--raft-addr", "0.0.0.0:9999"}, "unspecified"},
		{[]string{"--max-value-size", "0"}, "max-value-size"},
		{[]string{"--unsafe-local-reads"}, "canary"},
		{[]string{"--log-store", "leveldb"}, "leveldb"},
		{[]string{"migrate-log", "--to", "sqlite", "--data-dir", "/nonexistent"}, "--to"},
		{[]string{"migrate-log", "--to", "wal"}, "--data-dir"},
	} {
		args := append(tc.args, "--data-dir", t.TempDir(), "--thrift-addr", testutil.FreeAddr(t), "--admin-addr", "")
		if tc.args[0] == "migrate-log" {
			args = tc.args
		}
		cmd := exec.Command(kvnodeBin, args...)
		cmd.Env = filterEnv(os.Environ())
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("kvnode %v: err %v, want exit status 2\n%s", tc.args, err, out)
			continue
		}
		if !bytes.Contains(out, []byte(tc.want)) {
			t.Errorf("kvnode %v: output %q does not mention %q", tc.args, out, tc.want)
		}
	}
}

// filterEnv drops KVNODE_* variables so the test controls the configuration.
func filterEnv(env []string) []string {
	var out []string
	for _, e := range env {
		if !bytes.HasPrefix([]byte(e), []byte("KVNODE_")) {
			out = append(out, e)
		}
	}
	return out
}
