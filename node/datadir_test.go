package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/internal/testutil"
)

func TestDataDir_LockRefusesSecondHolder(t *testing.T) {
	dir := t.TempDir()
	l1, err := LockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := l1.WritePID(); err != nil {
		t.Fatal(err)
	}
	_, err = LockDataDir(dir)
	if !errors.Is(err, ErrDataDirInUse) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second lock: %v", err)
	}
	if err := l1.Unlock(); err != nil {
		t.Fatal(err)
	}
	l2, err := LockDataDir(dir)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	l2.Unlock()
}

func TestDataDir_IdentityMismatchAndDamage(t *testing.T) {
	dir := t.TempDir()
	if _, found, err := CheckIdentity(dir, "n1"); err != nil || found {
		t.Fatalf("empty dir: found=%v err=%v", found, err)
	}
	if err := WriteIdentity(dir, Identity{NodeID: "n1", ClusterID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if id, found, err := CheckIdentity(dir, "n1"); err != nil || !found || id.ClusterID != "c1" {
		t.Fatalf("own id: %+v %v %v", id, found, err)
	}
	if _, _, err := CheckIdentity(dir, "n9"); !errors.Is(err, ErrIdentityMismatch) || !strings.Contains(err.Error(), `"n1", not "n9"`) {
		t.Fatalf("other id: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, identityFileName), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := CheckIdentity(dir, "n1"); !errors.Is(err, ErrCorruptStore) {
		t.Fatalf("damaged identity: %v", err)
	}
}

func TestDataDir_ClusterIDSameOnEveryInitialMember(t *testing.T) {
	a := ClusterIDFor([]Peer{{"n1", "a:1"}, {"n2", "b:1"}, {"n3", "c:1"}})
	b := ClusterIDFor([]Peer{{"n3", "c:1"}, {"n1", "a:1"}, {"n2", "b:1"}})
	c := ClusterIDFor([]Peer{{"n1", "a:1"}, {"n2", "b:1"}, {"n4", "c:1"}})
	if a != b || a == c || a == "" {
		t.Fatalf("cluster ids %q %q %q", a, b, c)
	}
	if ClusterIDFor(nil) == ClusterIDFor(nil) {
		t.Fatalf("a one-node bootstrap's cluster id is not random")
	}
}

// diskConfig is a one-node on-disk preset: bolt log store and file
// snapshots in dir, in-memory transport.
func diskConfig(t *testing.T, dir string) *Config {
	t.Helper()
	c := fastConfig(t, "n1", nil)
	_, c.Transport = raft.NewInmemTransport("")
	c.LogStore, c.StableStore, c.SnapshotStore = nil, nil, nil
	c.DataDir = dir
	c.Bootstrap = true
	return c
}

// runDiskNode opens a node on dir, applies n puts of size-byte values,
// takes a snapshot after every snapEvery puts (0: never), and closes it.
func runDiskNode(t *testing.T, cfg *Config, n, size, snapEvery int) {
	t.Helper()
	nd, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := nd.Open(); err != nil {
		t.Fatal(err)
	}
	c := &cluster{nodes: []*Node{nd}}
	c.mustLeader(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := 0; i < n; i++ {
		if _, err := nd.Apply(ctx, put(fmt.Sprintf("k%05d", i), strings.Repeat("v", size))); err != nil {
			t.Fatal(err)
		}
		if snapEvery > 0 && (i+1)%snapEvery == 0 {
			if err := nd.Snapshot(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := nd.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestPreflight_TruncatedRaftDB(t *testing.T) {
	dir := t.TempDir()
	cfg := diskConfig(t, dir)
	runDiskNode(t, cfg, 300, 4096, 0)
	if err := Preflight(cfg); err != nil {
		t.Fatalf("sound raft.db: %v", err)
	}
	db := filepath.Join(dir, "raft", "raft.db")
	fi, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(db, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	err = Preflight(cfg)
	if !errors.Is(err, ErrCorruptStore) || !strings.Contains(err.Error(), db) || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("truncated raft.db: %v", err)
	}
	// Open refuses too, before raft starts.
	nd, err := New(diskConfig(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := nd.Open(); !errors.Is(err, ErrCorruptStore) {
		t.Fatalf("Open on a truncated raft.db: %v", err)
	}
}

// snapshotDirs lists the finished snapshot folders, newest first.
func snapshotDirs(t *testing.T, dir string) []string {
	t.Helper()
	snaps, _, err := listSnapshots(filepath.Join(dir, "raft", "snapshots"), 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range snaps {
		out = append(out, s.dir)
	}
	return out
}

func TestPreflight_SnapshotFallbackAndLogGap(t *testing.T) {
	// A log that reaches back past the older snapshot: falling back works.
	long := t.TempDir()
	cfg := diskConfig(t, long)
	cfg.TrailingLogs = 1000
	runDiskNode(t, cfg, 60, 10, 30)
	dirs := snapshotDirs(t, long)
	if len(dirs) != 2 {
		t.Fatalf("snapshots %v", dirs)
	}
	testutil.FlipByte(t, filepath.Join(dirs[0], "state.bin"))
	if err := Preflight(cfg); err != nil {
		t.Fatalf("newest damaged, log reaches the older: %v", err)
	}
	nd, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := nd.Open(); err != nil {
		t.Fatalf("open falling back: %v", err)
	}
	(&cluster{nodes: []*Node{nd}}).mustLeader(t)
	if got := nd.FSM().Len(); got != 60 {
		t.Fatalf("%d keys after falling back, want 60", got)
	}
	nd.Close()

	// A log compacted past the older snapshot: refused, not a panic.
	short := t.TempDir()
	cfg = diskConfig(t, short)
	cfg.TrailingLogs = 5
	runDiskNode(t, cfg, 60, 10, 30)
	dirs = snapshotDirs(t, short)
	testutil.FlipByte(t, filepath.Join(dirs[0], "state.bin"))
	err = Preflight(cfg)
	if !errors.Is(err, ErrCannotRebuild) || !strings.Contains(err.Error(), "the newest good snapshot ends at index") {
		t.Fatalf("log gap: %v", err)
	}
	testutil.FlipByte(t, filepath.Join(dirs[1], "state.bin"))
	if err := Preflight(cfg); !errors.Is(err, ErrCannotRebuild) || !strings.Contains(err.Error(), "every snapshot") {
		t.Fatalf("every snapshot damaged: %v", err)
	}
}

func TestSnapClean_RemovesStaleAndFailedKeepsActive(t *testing.T) {
	dir := t.TempDir()
	fs, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "snapshots", "1-5-100.tmp")
	if err := os.MkdirAll(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	s := newCleanSnapshotStore(fs, dir, testLogger(t, "n1"), &storageHealth{logger: testLogger(t, "n1")})
	if n := s.sweep(); n != 1 {
		t.Fatalf("swept %d, want the stale folder", n)
	}
	_, tr := raft.NewInmemTransport("")
	active, err := s.Create(1, 10, 1, raft.Configuration{}, 1, tr)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(stale, 0o700); err != nil { // left by a crash meanwhile
		t.Fatal(err)
	}
	failed, err := s.Create(1, 11, 1, raft.Configuration{}, 1, tr)
	if err != nil {
		t.Fatal(err)
	}
	failed.Cancel()
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale folder after a failed snapshot: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "snapshots", active.ID()+".tmp")); err != nil {
		t.Fatalf("the open snapshot's folder was removed: %v", err)
	}
	if _, err := active.Write([]byte("state")); err != nil {
		t.Fatal(err)
	}
	if err := active.Close(); err != nil {
		t.Fatal(err)
	}
	if metas, err := s.List(); err != nil || len(metas) != 1 {
		t.Fatalf("snapshots after close: %v %v", metas, err)
	}
}

func TestNode_OpenSweepsStaleSnapshotFolders(t *testing.T) {
	dir := t.TempDir()
	cfg := diskConfig(t, dir)
	runDiskNode(t, cfg, 1, 1, 0)
	stale := filepath.Join(dir, "raft", "snapshots", "2-9-100.tmp")
	if err := os.MkdirAll(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	runDiskNode(t, cfg, 1, 1, 0)
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale snapshot folder after open: %v", err)
	}
}

func TestStorageHealth_FailsUntilAWriteSucceeds(t *testing.T) {
	h := &storageHealth{logger: testLogger(t, "n1")}
	n := &Node{health: h}
	if n.StorageError() != nil {
		t.Fatal("healthy at start")
	}
	h.record(errors.New("no space left on device"))
	h.record(errors.New("no space left on device"))
	if err := n.StorageError(); !errors.Is(err, ErrStorage) || n.StorageFailures() != 2 {
		t.Fatalf("after failures: %v, %d", err, n.StorageFailures())
	}
	h.record(nil)
	if err := n.StorageError(); err != nil {
		t.Fatalf("after a good write: %v", err)
	}
}
