package deploy

import (
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cubekv/cubekv/internal/testutil"
)

// TestQEMU_VersionOnARM cross-builds kvnode and kvctl for linux/arm (GOARM=7)
// and linux/arm64 and runs --version under qemu-user.
func TestQEMU_VersionOnARM(t *testing.T) {
	for _, tc := range []struct{ goarch, emulator string }{
		{"arm", "qemu-arm-static"},
		{"arm64", "qemu-aarch64-static"},
	} {
		t.Run(tc.goarch, func(t *testing.T) {
			emu := testutil.LookPath(t, tc.emulator, "the Debian package qemu-user-static")
			dir := t.TempDir()
			for _, pkg := range []string{"./cmd/kvnode", "./cmd/kvctl"} {
				bin := mustBuild(t, dir, "linux", tc.goarch, pkg)
				if out, err := exec.Command("file", bin).Output(); err == nil {
					t.Logf("%s", strings.TrimSpace(string(out)))
				}
				out, err := exec.Command(emu, bin, "--version").CombinedOutput()
				if err != nil {
					t.Fatalf("%s %s --version: %v\n%s", tc.emulator, pkg, err, out)
				}
				got := strings.TrimSpace(string(out))
				want := "kvctl " + testVersion
				if strings.HasSuffix(pkg, "kvnode") {
					want = "kvnode " + testVersion + " (commit " + testVersion + ", built " + testVersion + ")"
				}
				if got != want {
					t.Fatalf("%s --version under %s = %q, want %q", pkg, tc.emulator, got, want)
				}
			}
		})
	}
}

// TestQEMU_ARMv7NodeSurvivesKill9 runs a single linux/arm (GOARM=7) kvnode
// under qemu-arm-static, writes 500 keys through the Go client, kills it with
// SIGKILL, restarts it and reads every key back. 32-bit ARM is where an
// unaligned 64-bit atomic faults. It logs the node's idle RSS (the emulator
// process, which includes qemu's own memory).
func TestQEMU_ARMv7NodeSurvivesKill9(t *testing.T) {
	emu := testutil.LookPath(t, "qemu-arm-static", "the Debian package qemu-user-static")
	bin := mustBuild(t, t.TempDir(), "linux", "arm", "./cmd/kvnode")
	rss := runKillRestartScenario(t, 2*time.Minute, emu, bin)
	t.Logf("idle RSS of kvnode linux/arm under qemu-arm-static: %.1f MiB (%d bytes)", float64(rss)/(1<<20), rss)
}

// TestNative_NodeSurvivesKill9 is the same scenario with a native (amd64 here)
// static build, for the RSS comparison.
func TestNative_NodeSurvivesKill9(t *testing.T) {
	bin := mustBuild(t, t.TempDir(), "linux", runtime.GOARCH, "./cmd/kvnode")
	rss := runKillRestartScenario(t, time.Minute, bin)
	t.Logf("idle RSS of kvnode linux/%s (native): %.1f MiB (%d bytes)", runtime.GOARCH, float64(rss)/(1<<20), rss)
}

// TestQEMU_ARMv7PebbleNodeSurvivesKill9 is the kill -9 scenario with
// --engine pebble on linux/arm (GOARM=7) under qemu-arm-static: pebble's
// files must reopen after the kill on a 32-bit build, and the restarted
// node must start from them (its log says it opened a state holding keys,
// and raft restores no snapshot) rather than rebuild the state. The state
// may hold fewer than every acknowledged key: pebble's batches are not
// synced, and raft's log replays the rest.
func TestQEMU_ARMv7PebbleNodeSurvivesKill9(t *testing.T) {
	emu := testutil.LookPath(t, "qemu-arm-static", "the Debian package qemu-user-static")
	bin := mustBuild(t, t.TempDir(), "linux", "arm", "./cmd/kvnode")
	n := newSingleNode(t, emu, bin, "--engine", "pebble")
	n.mustStart(t, 2*time.Minute)
	c := mustClient(t, n.thrift)
	mustPutKeys(t, c, "k", 0, nodeKeys)
	n.kill9(t)

	n.mustStart(t, 2*time.Minute)
	mustGetKeys(t, c, "k", 0, nodeKeys)
	b, err := os.ReadFile(n.logPath)
	if err != nil {
		t.Fatal(err)
	}
	opened := regexp.MustCompile(`msg="durable state opened".* count=(\d+)`).FindAllStringSubmatch(string(b), -1)
	if len(opened) != 2 {
		t.Fatalf("want two starts on the pebble state; log has %v", opened)
	}
	if kept, _ := strconv.Atoi(opened[1][1]); kept == 0 || kept > nodeKeys {
		t.Fatalf("the restart opened a state of %d keys, want 1 to %d", kept, nodeKeys)
	}
	if strings.Contains(string(b), "raft restores it") {
		t.Fatal("the restart restored a snapshot instead of keeping the pebble state")
	}
	t.Logf("after kill -9 the pebble state held %s of the %d acknowledged keys; raft's log replayed the rest", opened[1][1], nodeKeys)
	mustPutKeys(t, c, "after", 0, 50)
	mustGetKeys(t, c, "after", 0, 50)
}
