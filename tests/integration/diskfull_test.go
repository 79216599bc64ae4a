package integration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/thrift/kv"
)

// mustTmpfs mounts a tmpfs of size bytes and unmounts it when the test
// ends (after the nodes started later are killed). It needs root: outside
// CI a test without it is skipped saying so; with CI=true it fails.
func mustTmpfs(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testutil.Unmet(t, "mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		testutil.Unmet(t, "mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fillDisk writes dir/filler until the file system is full and returns its
// path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			t.Fatal(err)
		}
	}
	for _, n := range []int{4096, 512, 1} { // the last partial blocks
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
		}
	}
	return path
}

// freeBytes shortens the filler by n bytes (all of it when n < 0).
func freeBytes(t *testing.T, filler string, n int64) {
	t.Helper()
	fi, err := os.Stat(filler)
	if err != nil {
		t.Fatal(err)
	}
	size := fi.Size() - n
	if n < 0 || size < 0 {
		size = 0
	}
	if err := os.Truncate(filler, size); err != nil {
		t.Fatal(err)
	}
}

// diskFlags: small snapshots so a node that falls behind needs a snapshot
// install, free-space thresholds that fit a small tmpfs.
var diskFlags = []string{
	"--snapshot-threshold", "128", "--trailing-logs", "64", "--snapshot-interval", "1s",
	"--min-free-space", "1048576", "--low-space-warning", "4194304",
}

// startDiskCluster starts three nodes, each with its data dir on its own
// tmpfs of size bytes, and returns the cluster and each node's mount.
func startDiskCluster(t *testing.T, size int) (*testCluster, map[string]string) {
	t.Helper()
	mounts := map[string]string{}
	for i := 1; i <= 3; i++ {
		mounts[fmt.Sprintf("n%d", i)] = mustTmpfs(t, size)
	}
	c := startClusterWith(t, 3, func(p *proc) {
		p.dataDir = filepath.Join(mounts[p.id], "data")
	}, diskFlags...)
	return c, mounts
}

// tmpSnapshots returns the node's unfinished snapshot folders.
func tmpSnapshots(t *testing.T, p *proc) []string {
	_, tmp := snapshots(t, p)
	return tmp
}

// TestDiskFull_FollowerCatchesUpBySelf fills a follower's disk under
// writes: the other two keep committing, the full node logs one clear
// error and reports not ready (/ready and cubekv_storage_failing), and once
// some space returns (first less than a snapshot, then more) it catches up
// by itself, without a restart and without leaving unfinished snapshots.
func TestDiskFull_FollowerCatchesUpBySelf(t *testing.T) {
	c, mounts := startDiskCluster(t, 24<<20)
	leader := c.waitLeader(20 * time.Second)
	cl := mustClient(t, leader.thriftAddr)
	acked := writeKeys(t, cl, "a", 500, 1000, 4)
	f := c.followers(leader)[0]
	waitDigests(t, c, 60*time.Second)
	pid := f.cmd.Process.Pid

	filler := fillDisk(t, mounts[f.id])
	for k, v := range writeKeys(t, cl, "b", 1500, 1000, 4) { // the other two commit these
		acked[k] = v
	}
	eventually(t, 30*time.Second, f.id+" reports not ready and storage failing", func() (bool, string) {
		m := scrape(t, f)
		code := readyStatus(t, f)
		return code == http.StatusServiceUnavailable && m["cubekv_storage_failing"] == 1, fmt.Sprintf("ready %d, failing %v", code, m["cubekv_storage_failing"])
	})
	if !f.logContains("storage write failed") {
		t.Errorf("%s did not log the failed write", f.id)
	}
	lst, err := adminStatus(leader)
	if err != nil {
		t.Fatal(err)
	}
	if fst, err := adminStatus(f); err != nil || fst["applied_index"].(float64) >= lst["commit_index"].(float64) {
		t.Fatalf("%s kept up on a full disk? %v %v", f.id, fst, err)
	}

	// Less than one snapshot's worth: the node keeps failing, and what it
	// leaves of each failed snapshot is removed.
	freeBytes(t, filler, 256<<10)
	before := scrape(t, f)["cubekv_storage_write_failures_total"]
	eventually(t, 30*time.Second, f.id+" still retrying with a little space", func() (bool, string) {
		now := scrape(t, f)["cubekv_storage_write_failures_total"]
		return now > before, fmt.Sprintf("failures %v -> %v", before, now)
	})

	freeBytes(t, filler, -1)
	eventually(t, 60*time.Second, f.id+" ready again", func() (bool, string) {
		code := readyStatus(t, f)
		return code == http.StatusOK, fmt.Sprint(code)
	})
	waitDigests(t, c, 60*time.Second)
	if f.cmd.Process.Pid != pid || !f.alive() {
		t.Fatalf("%s was restarted or died", f.id)
	}
	if m := scrape(t, f); m["cubekv_storage_failing"] != 0 {
		t.Errorf("cubekv_storage_failing %v after recovery", m["cubekv_storage_failing"])
	}
	eventually(t, 30*time.Second, "no unfinished snapshot left on "+f.id, func() (bool, string) {
		tmp := tmpSnapshots(t, f)
		return len(tmp) == 0, strings.Join(tmp, ",")
	})
	checkValues(t, f, acked)
}

// TestDiskFull_LeaderStepsAside fills the leader's disk under writes:
// writes answer an error (Unavailable or Timeout, never a false success),
// leadership moves to a node that can write, reads continue, no
// acknowledged write is lost, and the node rejoins once space returns.
func TestDiskFull_LeaderStepsAside(t *testing.T) {
	c, mounts := startDiskCluster(t, 24<<20)
	leader := c.waitLeader(20 * time.Second)
	cl := mustClient(t, leader.thriftAddr)
	acked := writeKeys(t, cl, "a", 300, 1000, 4)
	waitDigests(t, c, 60*time.Second)

	filler := fillDisk(t, mounts[leader.id])
	// Write through the full leader's own front door until leadership has
	// moved; each write is acknowledged, or fails with Unavailable/Timeout.
	conn := rawConn(t, leader.thriftAddr)
	var failed int
	for i := 0; ; i++ {
		k := fmt.Sprintf("c%05d", i)
		_, err := kvCall(t, conn, 10*time.Second, func(ctx context.Context, k2 *kv.KVClient) (*kv.PutResponse, error) {
			return k2.Put(ctx, &kv.PutRequest{Key: []byte(k), Value: []byte(k)})
		})
		switch {
		case err == nil:
			acked[k] = k
		case isUnavailableOrTimeout(err):
			failed++
		default:
			var nl *kv.NotLeader
			if !errors.As(err, &nl) {
				t.Fatalf("write %s on the full leader: %v", k, err)
			}
		}
		if st, err := adminStatus(leader); err == nil && st["role"] != "leader" && failed > 0 {
			break
		}
		if i == 2000 {
			t.Fatalf("%s still leads after %d writes on a full disk (%d failed)", leader.id, i, failed)
		}
	}
	next := c.waitLeader(30*time.Second, leader)
	ncl := mustClient(t, next.thriftAddr)
	for k, v := range writeKeys(t, ncl, "d", 200, 100, 4) {
		acked[k] = v
	}
	ctx := ctxTimeout(t, time.Minute)
	if r, err := ncl.Get(ctx, []byte("a00001")); err != nil || !r.Found {
		t.Fatalf("linearizable read after the move: %+v, %v", r, err)
	}

	freeBytes(t, filler, -1)
	leader.waitReady(60 * time.Second)
	waitDigests(t, c, 60*time.Second)
	for _, p := range c.procs {
		checkValues(t, p, acked)
	}
}

func isUnavailableOrTimeout(err error) bool {
	var u *kv.Unavailable
	var to *kv.Timeout
	return errors.As(err, &u) || errors.As(err, &to)
}

// TestDiskSpace_MinFreeRefusedLowSpaceWarned starts kvnode on a small tmpfs
// with --min-free-space above what it has: exit 2 naming the path and the
// free bytes, nothing written. Started with room, it warns (log and
// cubekv_disk_low_space) once free space falls under --low-space-warning,
// before the disk is full, and clears the gauge when space returns.
func TestDiskSpace_MinFreeRefusedLowSpaceWarned(t *testing.T) {
	mount := mustTmpfs(t, 16<<20)
	p := newProc(t, "n1", "--min-free-space", "33554432", "--low-space-warning", "8388608")
	p.dataDir = filepath.Join(mount, "data")
	code, out := runRefused(t, p.args()...)
	assertRefusal(t, code, out, "not enough free disk space", p.dataDir, "bytes free, less than --min-free-space 33554432")
	if _, err := os.Stat(filepath.Join(p.dataDir, "raft")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused start created %s/raft (%v)", p.dataDir, err)
	}

	p.extra = []string{"--min-free-space", "1048576", "--low-space-warning", "8388608"}
	p.start()
	if m := scrape(t, p); m["cubekv_disk_low_space"] != 0 || m["cubekv_disk_free_bytes"] < 8<<20 {
		t.Fatalf("fresh 16 MiB disk: low_space=%v free=%v", m["cubekv_disk_low_space"], m["cubekv_disk_free_bytes"])
	}
	filler := filepath.Join(mount, "filler")
	if err := os.WriteFile(filler, make([]byte, 10<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "low-space warning", func() (bool, string) {
		m := scrape(t, p)
		return m["cubekv_disk_low_space"] == 1 && p.logContains("data dir is running out of disk space"), fmt.Sprintf("low_space=%v free=%v", m["cubekv_disk_low_space"], m["cubekv_disk_free_bytes"])
	})
	if _, err := mustClient(t, p.thriftAddr).Put(ctxTimeout(t, 10*time.Second), []byte("k"), []byte("v")); err != nil {
		t.Fatalf("write while low on space (not full): %v", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "low-space gauge cleared", func() (bool, string) {
		m := scrape(t, p)
		return m["cubekv_disk_low_space"] == 0, fmt.Sprint(m["cubekv_disk_low_space"])
	})
}
