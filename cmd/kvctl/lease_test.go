package main

import (
	"strings"
	"testing"

	"github.com/cubekv/cubekv/client/clienttest"
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
