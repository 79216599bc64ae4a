package integration

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cubekv/cubekv/internal/testutil"
)

// runRefused runs kvnode with args to its end (it must exit within 60 s) and
// returns its exit code and everything it printed.
func runRefused(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, kvnodeBin, args...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("kvnode %v still running after 60s (it should have refused to start); output:\n%s", args, lastLines(string(out), 30))
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	default:
		t.Fatalf("run kvnode: %v", err)
		return 0, ""
	}
}

// assertRefusal checks a refusal: exit code 2 and exactly one line, which
// contains every part of want.
func assertRefusal(t *testing.T, code int, out string, want ...string) {
	t.Helper()
	out = strings.TrimRight(out, "\n")
	if code != 2 {
		t.Fatalf("exit code %d, want 2; output:\n%s", code, lastLines(out, 30))
	}
	if strings.Count(out, "\n") != 0 || !strings.HasPrefix(out, "kvnode: ") {
		t.Fatalf("want one line starting with \"kvnode: \", got:\n%s", lastLines(out, 30))
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("message %q lacks %q", out, w)
		}
	}
}

// dirState lists every file under dir with its size and modification
// time, to show a refusal wrote nothing.
func dirState(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		lines = append(lines, fmt.Sprintf("%s %d %d", path, fi.Size(), fi.ModTime().UnixNano()))
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// otherPorts returns p's arguments with fresh ports, so a refusal is not
// caused by a port p (or its previous run) holds.
func otherPorts(t *testing.T, p *proc) []string {
	t.Helper()
	q := *p
	q.thriftAddr, q.raftAddr, q.adminAddr, q.gossipAddr = testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	return q.args()
}

// TestDataDir_SecondProcessRefused starts a second kvnode on a running
// node's data dir: it must exit 2 at once naming the directory and the
// running node's pid, without joining gossip, and the first node must
// keep serving.
func TestDataDir_SecondProcessRefused(t *testing.T) {
	p := newProc(t, "n1")
	p.start()
	cl := mustClient(t, p.thriftAddr)
	ctx := ctxTimeout(t, time.Minute)
	if _, err := cl.Put(ctx, []byte("k"), []byte("v1")); err != nil {
		t.Fatal(err)
	}
	code, out := runRefused(t, otherPorts(t, p)...)
	assertRefusal(t, code, out, "data dir in use", p.dataDir, fmt.Sprintf("pid %d", p.cmd.Process.Pid))
	if strings.Contains(out, "gossip") {
		t.Errorf("the refused process started gossip: %s", out)
	}
	r, err := cl.Get(ctx, []byte("k"))
	if err != nil || !r.Found || string(r.Entry.Value) != "v1" {
		t.Fatalf("first node after the refused start: %+v, %v", r, err)
	}
}

// TestDataDir_WrongIDRefused restarts a stopped node's data dir under
// another --id: it must exit 2 naming both ids, write nothing, and the node
// must start again under its own id with its data.
func TestDataDir_WrongIDRefused(t *testing.T) {
	p := newProc(t, "n2")
	p.start()
	cl := mustClient(t, p.thriftAddr)
	ctx := ctxTimeout(t, time.Minute)
	if _, err := cl.Put(ctx, []byte("k"), []byte("v2")); err != nil {
		t.Fatal(err)
	}
	if err := p.stop(30 * time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	before := dirState(t, p.dataDir)
	wrong := *p
	wrong.id = "n9"
	code, out := runRefused(t, otherPorts(t, &wrong)...)
	assertRefusal(t, code, out, `node "n2", not "n9"`, "--id n2", p.dataDir)
	if after := dirState(t, p.dataDir); after != before {
		t.Fatalf("the refused start changed the data dir:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	p.start()
	r, err := mustClient(t, p.thriftAddr).Get(ctx, []byte("k"))
	if err != nil || !r.Found || string(r.Entry.Value) != "v2" {
		t.Fatalf("after restart under the right id: %+v, %v", r, err)
	}
}

// TestDataDir_DamagedIdentityRefused damages identity.json: kvnode must
// exit 2 naming the file and how to restore it, writing nothing.
func TestDataDir_DamagedIdentityRefused(t *testing.T) {
	p := newProc(t, "n1")
	p.start()
	if err := p.stop(30 * time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	path := filepath.Join(p.dataDir, "identity.json")
	if err := os.WriteFile(path, []byte("{\"node_"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := dirState(t, p.dataDir)
	code, out := runRefused(t, otherPorts(t, p)...)
	assertRefusal(t, code, out, path, "damaged", `{"node_id":"ID"}`)
	if after := dirState(t, p.dataDir); after != before {
		t.Fatalf("the refused start changed the data dir:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestDataDir_AddressInUseRefused starts a node whose --raft-addr another
// node holds: exit 2 naming the flag, before its new data dir gets any Raft
// file.
func TestDataDir_AddressInUseRefused(t *testing.T) {
	p := newProc(t, "n1")
	p.start()
	q := newProc(t, "n2")
	q.raftAddr = p.raftAddr
	code, out := runRefused(t, q.args()...)
	assertRefusal(t, code, out, "--raft-addr "+p.raftAddr, "in use")
	if _, err := os.Stat(filepath.Join(q.dataDir, "raft")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused start created %s/raft (%v)", q.dataDir, err)
	}
}

// TestDataDir_InitialClusterIgnoredSaidPlainly restarts a cluster member
// with an --initial-cluster that names other members: the node starts from
// its state and says at start that the list is ignored.
func TestDataDir_InitialClusterIgnoredSaidPlainly(t *testing.T) {
	c := startCluster(t, 3)
	p := c.procs[2]
	if err := p.stop(30 * time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	for i, a := range p.extra {
		if a == "--initial-cluster" {
			p.extra[i+1] = p.id + "=" + p.raftAddr + ",n7=127.0.0.1:1"
		}
	}
	p.start()
	if !p.logContains("initial cluster ignored: the data dir holds Raft state whose members differ") {
		t.Fatalf("no plain word that --initial-cluster was ignored")
	}
}
