package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cubekv/cubekv/internal/testutil"
)

// mustVerifyRoot builds a minimal filesystem root for systemd-analyze
// verify --root: the host's system units (for the targets the unit refers
// to), the unit under test in /etc/systemd/system, an executable at
// /usr/local/bin/kvnode (the real binary when withBinary) and a kvnode user.
func mustVerifyRoot(t *testing.T, unit []byte, withBinary bool) string {
	t.Helper()
	root := t.TempDir()
	var sysUnits string
	for _, d := range []string{"/usr/lib/systemd/system", "/lib/systemd/system"} {
		if _, err := os.Stat(filepath.Join(d, "multi-user.target")); err == nil {
			sysUnits = d
			break
		}
	}
	if sysUnits == "" {
		t.Fatal("no system unit directory with multi-user.target on this host")
	}
	if err := os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", sysUnits, filepath.Join(root, "usr/lib/systemd/system")).CombinedOutput(); err != nil {
		t.Fatalf("copy system units: %v\n%s", err, out)
	}
	files := map[string][]byte{
		"etc/systemd/system/kvnode.service": unit,
		"etc/passwd":                        []byte("root:x:0:0:root:/root:/bin/sh\nkvnode:x:999:999::/var/lib/kvnode:/usr/sbin/nologin\n"),
		"etc/group":                         []byte("root:x:0:\nkvnode:x:999:\n"),
		"etc/kvnode/kvnode.env":             []byte("KVNODE_ID=n1\n"),
	}
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if withBinary {
		bin := mustBuild(t, t.TempDir(), "linux", runtime.GOARCH, "./cmd/kvnode")
		dst := filepath.Join(root, "usr/local/bin/kvnode")
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("cp", bin, dst).CombinedOutput(); err != nil {
			t.Fatalf("copy kvnode: %v\n%s", err, out)
		}
	}
	return root
}

// verifyUnit runs systemd-analyze verify on the unit inside root. Any output
// counts as a finding: verify exits 0 on unknown keys and bad values, which
// it only reports.
func verifyUnit(t *testing.T, analyze, root string) (string, error) {
	t.Helper()
	out, err := exec.Command(analyze, "verify", "--root="+root, "--man=no", "--generators=no",
		"/etc/systemd/system/kvnode.service").CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestSystemdUnit_Verify checks deploy/systemd/kvnode.service with
// systemd-analyze verify in a temporary root holding the real kvnode binary,
// and checks that the same verification rejects a broken copy of the unit
// and a missing binary, so a pass means something.
func TestSystemdUnit_Verify(t *testing.T) {
	analyze := testutil.LookPath(t, "systemd-analyze", "the Debian package systemd")
	unit, err := os.ReadFile(filepath.Join(mustRepoRoot(t), "deploy/systemd/kvnode.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"User=kvnode", "StateDirectory=kvnode", "ProtectSystem=strict", "ProtectHome=yes",
		"NoNewPrivileges=yes", "PrivateTmp=yes", "Restart=on-failure", "RestartSec=",
		"LimitNOFILE=65536", "EnvironmentFile=/etc/kvnode/kvnode.env", "TimeoutStopSec=",
		"Environment=GOMEMLIMIT=", "ExecStart=/usr/local/bin/kvnode",
	} {
		if !strings.Contains(string(unit), "\n"+want) {
			t.Errorf("unit lacks a line starting %q", want)
		}
	}

	t.Run("unit", func(t *testing.T) {
		out, err := verifyUnit(t, analyze, mustVerifyRoot(t, unit, true))
		if err != nil || out != "" {
			t.Fatalf("systemd-analyze verify: err=%v, output:\n%s", err, out)
		}
	})
	t.Run("broken copy is reported", func(t *testing.T) {
		broken := strings.Replace(string(unit), "ProtectHome=yes", "ProtectHome=bogus\nRestartSecs=2s", 1)
		out, _ := verifyUnit(t, analyze, mustVerifyRoot(t, []byte(broken), true))
		if !strings.Contains(out, "protect home value") || !strings.Contains(out, "RestartSecs") {
			t.Fatalf("verify did not report the broken lines; output:\n%s", out)
		}
	})
	t.Run("missing binary is reported", func(t *testing.T) {
		out, err := verifyUnit(t, analyze, mustVerifyRoot(t, unit, false))
		if err == nil || !strings.Contains(out, "/usr/local/bin/kvnode") {
			t.Fatalf("verify accepted a unit whose binary is missing: err=%v, output:\n%s", err, out)
		}
	})
}
