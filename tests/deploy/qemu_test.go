package deploy

import (
	"os/exec"
	"runtime"
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
