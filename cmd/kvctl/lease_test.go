package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client/clienttest"
	"github.com/cubekv/cubekv/internal/testutil"
)

func TestKvctl_LeaseCommands(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	ep := []string{"--endpoints", srv.Addr, "--timeout", "5s"}
	run := func(want int, args ...string) string {
		t.Helper()
		code, out, errOut := mustRun(t, "", append(ep, args...)...)
		if code != want {
			t.Fatalf("kvctl %v: exit %d, want %d\n%s%s", args, code, want, out, errOut)
		}
		return out
	}
	if out := run(0, "lease", "grant", "30s"); out != "lease 1 granted with TTL 30s\n" {
		t.Fatalf("grant: %q", out)
	}
	if out := run(0, "put", "--lease", "1", "svc/a", "x"); out != "OK index=2 lease=1\n" {
		t.Fatalf("put --lease: %q", out)
	}
	if out := run(0, "put", "--ttl", "10s", "svc/b", "y"); out != "OK index=3 lease=3\n" {
		t.Fatalf("put --ttl: %q", out)
	}
	if out := run(0, "lease", "info", "--keys", "1"); out != "lease 1 ttl=30s remaining=30s keys=1\nsvc/a\n" {
		t.Fatalf("info: %q", out)
	}
	if out := run(0, "lease", "keep-alive", "--once", "1"); out != "lease 1 kept alive, TTL 30s\n" {
		t.Fatalf("keep-alive: %q", out)
	}
	if out := run(0, "-o", "json", "lease", "list"); out != `[{"lease_id":1,"ttl_ms":30000,"remaining_ms":30000,"key_count":1},{"lease_id":3,"ttl_ms":10000,"remaining_ms":10000,"key_count":1}]`+"\n" {
		t.Fatalf("list: %q", out)
	}
	if out := run(0, "lease", "revoke", "1"); out != "lease 1 revoked at index 4\n" {
		t.Fatalf("revoke: %q", out)
	}
	if _, ok := srv.Value("svc/a"); ok {
		t.Fatal("svc/a survived its lease")
	}
	run(1, "lease", "keep-alive", "--once", "1")
	run(1, "put", "--lease", "1", "svc/c", "z")
	run(2, "put", "--lease", "1", "--ttl", "1s", "svc/c", "z")
	run(2, "lease", "grant", "soon")
	run(2, "lease", "info", "-3")
}

func TestKvctl_LockRunsCommandWithToken(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	ep := []string{"--endpoints", srv.Addr}
	code, out, errOut := mustRun(t, "", append(ep, "lock", "job", "--", "sh", "-c", `echo "token=$CUBEKV_LOCK_TOKEN key=$CUBEKV_LOCK_KEY"; exit 3`)...)
	if code != 3 || !strings.HasPrefix(out, "token=") || !strings.Contains(out, " key=lock/job\n") {
		t.Fatalf("lock: exit %d, %q %s", code, out, errOut)
	}
	// Released: the key is gone and the lock can be taken again.
	if _, ok := srv.Value("lock/job"); ok {
		t.Fatal("lock key left after the command exited")
	}
	code, out, errOut = mustRun(t, "", append(ep, "lock", "job", "--", "true")...)
	if code != 0 {
		t.Fatalf("second lock: exit %d %s%s", code, out, errOut)
	}
	code, _, _ = mustRun(t, "", append(ep, "lock", "job", "true")...)
	if code != 2 {
		t.Fatalf("lock without --: exit %d, want 2", code)
	}
}

// A lost lock stops the command's whole process group at once: SIGTERM,
// then SIGKILL after --kill-after when it is ignored, with a warning and
// exit code 5.
func TestKvctl_LockLostStopsCommandGroup(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	dir := t.TempDir()
	// The shell ignores SIGTERM (and so does the sleep it starts, which
	// inherits that): only SIGKILL to the group ends both.
	script := `trap "" TERM; sleep 1000 & echo $! > ` + dir + `/sleep; echo $$ > ` + dir + `/sh; echo $CUBEKV_LOCK_LEASE > ` + dir + `/lease; wait`
	type result struct {
		code        int
		out, errOut string
	}
	res := make(chan result, 1)
	go func() {
		code, out, errOut := mustRun(t, "", "--endpoints", srv.Addr, "lock", "--ttl", "1s", "--kill-after", "100ms", "job", "--", "sh", "-c", script)
		res <- result{code, out, errOut}
	}()
	readInt := func(name string) (int, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return 0, err
		}
		return strconv.Atoi(strings.TrimSpace(string(b)))
	}
	var lease int
	testutil.Eventually(t, 20*time.Second, "command started", func() (err error) {
		lease, err = readInt("lease")
		return err
	})
	shPid, err := readInt("sh")
	if err != nil {
		t.Fatal(err)
	}
	// Leave nothing behind if kvctl fails to stop the group.
	t.Cleanup(func() { _ = syscall.Kill(-shPid, syscall.SIGKILL) })
	sleepPid, err := readInt("sleep")
	if err != nil {
		t.Fatal(err)
	}
	if !srv.ExpireLease(int64(lease)) {
		t.Fatalf("lease %d not found", lease)
	}
	r := testutil.Receive(t, 30*time.Second, "kvctl lock to exit", res)
	if r.code != exitLockLost {
		t.Fatalf("exit %d, want %d\n%s%s", r.code, exitLockLost, r.out, r.errOut)
	}
	if !strings.Contains(r.errOut, "kvctl: lock job lost") || !strings.Contains(r.errOut, "sending SIGKILL") {
		t.Fatalf("stderr %q lacks the warnings", r.errOut)
	}
	for _, pid := range []int{shPid, sleepPid} {
		testutil.Eventually(t, 20*time.Second, fmt.Sprintf("pid %d gone", pid), func() error {
			return processGone(pid)
		})
	}
}

// processGone is nil when pid no longer runs (absent, or a zombie waiting
// to be reaped).
func processGone(pid int) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	// The state follows the command name in parentheses.
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && strings.HasPrefix(string(b[i:]), ") Z") {
		return nil
	}
	return fmt.Errorf("pid %d still running", pid)
}

// kvctl lease keep-alive counts the TTL from when its first keep-alive was
// sent: one whose reply came after the TTL may have been too late.
func TestKvctl_LeaseKeepAliveCountsFromFirstSend(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	ep := []string{"--endpoints", srv.Addr, "--timeout", "5s"}
	if code, out, errOut := mustRun(t, "", append(ep, "lease", "grant", "100ms")...); code != 0 {
		t.Fatalf("grant: exit %d %s%s", code, out, errOut)
	}
	var mu sync.Mutex
	first := true
	srv.SetHook(func(ctx context.Context, call clienttest.Call) error {
		mu.Lock()
		slow := first && call.Method == "keep_alive"
		first = first && !slow
		mu.Unlock()
		if !slow {
			return nil
		}
		// The first keep-alive is answered only after the lease's TTL.
		start := time.Now()
		return testutil.Poll(10*time.Second, func() error {
			if time.Since(start) <= 100*time.Millisecond {
				return errors.New("TTL not yet passed")
			}
			return nil
		})
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		code        int
		out, errOut string
	}
	res := make(chan result, 1)
	go func() {
		var stdout, stderr bytes.Buffer
		code := run(ctx, append(ep, "lease", "keep-alive", "1"), strings.NewReader(""), &stdout, &stderr)
		res <- result{code, stdout.String(), stderr.String()}
	}()
	r := testutil.Receive(t, 10*time.Second, "keep-alive to give up", res)
	if r.code != exitServerError || !strings.Contains(r.errOut, "lease may have expired") {
		t.Fatalf("exit %d, want %d with ErrLeaseExpired\n%s%s", r.code, exitServerError, r.out, r.errOut)
	}
}
