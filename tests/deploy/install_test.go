package deploy

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cubekv/cubekv/internal/testutil"
)

// runInstall runs deploy/install.sh with args and extra environment and
// returns its stdout, stderr and exit code.
func runInstall(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	bash := testutil.LookPath(t, "bash", "the Debian package bash")
	root := mustRepoRoot(t)
	cmd := exec.Command(bash, append([]string{filepath.Join(root, "deploy/install.sh")}, args...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errb.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("run install.sh: %v", err)
	}
	return out.String(), errb.String(), 0
}

// TestInstall_DryRunPrintsCommands checks the exact commands install.sh
// --dry-run prints for a root login and for a sudo login, and that a second
// dry run prints the same commands: what it would do is the same every time.
func TestInstall_DryRunPrintsCommands(t *testing.T) {
	t.Run("root", func(t *testing.T) {
		out, errOut, code := runInstall(t, nil, "--dry-run", "root@192.0.2.11", "deploy/config/n1.env", "bin/linux-arm/kvnode")
		if code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", code, errOut)
		}
		want := []string{
			"ssh root@192.0.2.11 'install -d -m 0700 /var/tmp/kvnode-install'",
			"scp -q bin/linux-arm/kvnode root@192.0.2.11:/var/tmp/kvnode-install/kvnode",
			"scp -q deploy/config/n1.env root@192.0.2.11:/var/tmp/kvnode-install/kvnode.env",
			"scp -q " + filepath.Join(mustRepoRoot(t), "deploy/systemd/kvnode.service") + " root@192.0.2.11:/var/tmp/kvnode-install/kvnode.service",
			"ssh root@192.0.2.11 'getent passwd kvnode >/dev/null || useradd --system --user-group --home-dir /var/lib/kvnode --no-create-home --shell /usr/sbin/nologin kvnode'",
			"ssh root@192.0.2.11 'install -d -m 0750 -o root -g kvnode /etc/kvnode'",
			"ssh root@192.0.2.11 'install -m 0755 -o root -g root /var/tmp/kvnode-install/kvnode /usr/local/bin/.kvnode.new'",
			"ssh root@192.0.2.11 'mv -f /usr/local/bin/.kvnode.new /usr/local/bin/kvnode'",
			"ssh root@192.0.2.11 'install -m 0640 -o root -g kvnode /var/tmp/kvnode-install/kvnode.env /etc/kvnode/kvnode.env'",
			"ssh root@192.0.2.11 'install -m 0644 -o root -g root /var/tmp/kvnode-install/kvnode.service /etc/systemd/system/kvnode.service'",
			"ssh root@192.0.2.11 'rm -rf /var/tmp/kvnode-install'",
			"ssh root@192.0.2.11 'systemctl daemon-reload'",
			"ssh root@192.0.2.11 'systemctl enable kvnode.service'",
			"ssh root@192.0.2.11 'systemctl restart kvnode.service'",
			"ssh root@192.0.2.11 'systemctl is-active kvnode.service'",
		}
		got := strings.Split(strings.TrimRight(out, "\n"), "\n")
		if !slices.Equal(got, want) {
			t.Fatalf("dry run printed:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
		}
		again, _, code := runInstall(t, nil, "--dry-run", "root@192.0.2.11", "deploy/config/n1.env", "bin/linux-arm/kvnode")
		if code != 0 || again != out {
			t.Fatalf("second dry run differs (exit %d):\n%s", code, again)
		}
	})
	t.Run("sudo and ssh options", func(t *testing.T) {
		out, errOut, code := runInstall(t, []string{"SSH_OPTS=-p 2222 -o BatchMode=yes"},
			"--dry-run", "admin@192.0.2.12", "deploy/config/n2.env", "bin/linux-arm64/kvnode")
		if code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", code, errOut)
		}
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		for _, l := range lines {
			if !strings.HasPrefix(l, "ssh -p 2222 -o BatchMode=yes admin@192.0.2.12 ") && !strings.HasPrefix(l, "scp -p 2222 -o BatchMode=yes -q ") {
				t.Errorf("line without the ssh options: %s", l)
			}
		}
		// The staging directory belongs to the login user; everything after
		// the copies runs as root through sudo.
		if lines[0] != "ssh -p 2222 -o BatchMode=yes admin@192.0.2.12 'install -d -m 0700 /var/tmp/kvnode-install'" {
			t.Errorf("first line %q", lines[0])
		}
		for _, want := range []string{
			"admin@192.0.2.12 'getent passwd kvnode >/dev/null || sudo useradd --system",
			"admin@192.0.2.12 'sudo systemctl daemon-reload'",
			"admin@192.0.2.12 'sudo systemctl restart kvnode.service'",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("dry run lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("bad arguments", func(t *testing.T) {
		for _, args := range [][]string{
			{"--dry-run"},
			{"--dry-run", "root@192.0.2.11"},
			{"--dry-run", "root@192.0.2.11", "deploy/config/missing.env"},
			{"--dry-run", "--force", "root@192.0.2.11", "deploy/config/n1.env"},
			{"root@192.0.2.11", "deploy/config/n1.env", "bin/no-such/kvnode"},
		} {
			out, _, code := runInstall(t, nil, args...)
			if code != 2 || out != "" {
				t.Errorf("install.sh %v: exit %d, stdout %q; want exit 2 and nothing done", args, code, out)
			}
		}
	})
}

// TestInstall_RunsCommandsThroughSSH runs install.sh for real with ssh and
// scp replaced by a recorder, and checks it invokes exactly what --dry-run
// prints, in order.
func TestInstall_RunsCommandsThroughSSH(t *testing.T) {
	dir := t.TempDir()
	record := filepath.Join(dir, "calls")
	fake := filepath.Join(dir, "fake")
	script := "#!/usr/bin/env bash\nfor a in \"$@\"; do printf '%s\\x1f' \"$a\"; done >>" + record + "\necho >>" + record +
		"\n[[ $* == *is-active* ]] && echo active\nexit 0\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "kvnode")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"root@192.0.2.13", "deploy/config/n3.env", bin}
	dry, _, code := runInstall(t, nil, append([]string{"--dry-run"}, args...)...)
	if code != 0 {
		t.Fatalf("dry run exit %d", code)
	}
	out, errOut, code := runInstall(t, []string{"SSH=" + fake, "SCP=" + fake}, args...)
	if code != 0 {
		t.Fatalf("install exit %d; stdout %s; stderr %s", code, out, errOut)
	}
	if strings.TrimSpace(out) != "active" {
		t.Errorf("stdout %q, want the is-active answer", out)
	}
	f, err := os.Open(record)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var calls []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		calls = append(calls, strings.TrimSuffix(sc.Text(), "\x1f"))
	}
	dryLines := strings.Split(strings.TrimRight(dry, "\n"), "\n")
	if len(calls) != len(dryLines) {
		t.Fatalf("%d ssh/scp calls, dry run printed %d lines", len(calls), len(dryLines))
	}
	for i, c := range calls {
		words := strings.Split(c, "\x1f")
		// The dry-run line is the command name, then the same words quoted.
		if !strings.HasSuffix(dryLines[i], words[len(words)-1]) && !strings.HasSuffix(dryLines[i], "'"+words[len(words)-1]+"'") {
			t.Errorf("call %d %q does not match dry-run line %q", i, words, dryLines[i])
		}
		if words[0] != "root@192.0.2.13" && words[0] != "-q" {
			t.Errorf("call %d starts %q", i, words[0])
		}
	}
}

// TestConfig_ExampleEnvFiles checks the three boards' env files agree on the
// cluster and each names itself in it, and that kvnode accepts their
// settings: a node started with n1.env (addresses moved to loopback, as a
// single-node cluster) becomes ready and takes writes.
func TestConfig_ExampleEnvFiles(t *testing.T) {
	root := mustRepoRoot(t)
	var initial, join string
	var n1env map[string]string
	for i, id := range []string{"n1", "n2", "n3"} {
		env := map[string]string{}
		f, err := os.Open(filepath.Join(root, "deploy/config", id+".env"))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok || strings.ContainsAny(v, "\"'$ ") {
				t.Errorf("%s.env: line %q is not KEY=VALUE without quotes or spaces", id, line)
			}
			env[k] = v
		}
		f.Close()
		ip := fmt.Sprintf("192.0.2.1%d", i+1)
		for k, want := range map[string]string{
			"KVNODE_ID": id, "KVNODE_RAFT_ADDR": ip + ":9091", "KVNODE_GOSSIP_ADDR": ip + ":9093",
			"KVNODE_THRIFT_ADDR": ip + ":9090", "KVNODE_DATA_DIR": "/var/lib/kvnode",
		} {
			if env[k] != want {
				t.Errorf("%s.env: %s=%q, want %q", id, k, env[k], want)
			}
		}
		if !strings.Contains(env["KVNODE_INITIAL_CLUSTER"], id+"="+ip+":9091") {
			t.Errorf("%s.env: initial cluster %q lacks itself", id, env["KVNODE_INITIAL_CLUSTER"])
		}
		if i == 0 {
			initial, join = env["KVNODE_INITIAL_CLUSTER"], env["KVNODE_JOIN"]
			n1env = env
		} else if env["KVNODE_INITIAL_CLUSTER"] != initial || env["KVNODE_JOIN"] != join {
			t.Errorf("%s.env: cluster lists differ from n1.env", id)
		}
		for _, k := range []string{"GOMEMLIMIT", "KVNODE_SNAPSHOT_THRESHOLD", "KVNODE_TRAILING_LOGS", "KVNODE_SNAPSHOT_LOG_BYTES", "KVNODE_MAX_VALUE_SIZE", "KVNODE_MAX_FRAME_SIZE"} {
			if env[k] == "" {
				t.Errorf("%s.env: %s not set", id, k)
			}
		}
	}

	if t.Failed() {
		return
	}
	n := newSingleNode(t, mustBuild(t, t.TempDir(), "linux", runtime.GOARCH, "./cmd/kvnode"))
	for k, v := range n1env {
		switch k {
		case "KVNODE_INITIAL_CLUSTER", "KVNODE_JOIN": // a cluster of one here
		default:
			n.env = append(n.env, k+"="+v)
		}
	}
	n.mustStart(t, time.Minute)
	c := mustClient(t, n.thrift)
	mustPutKeys(t, c, "env", 0, 10)
	mustGetKeys(t, c, "env", 0, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	big := make([]byte, 65536+1)
	if _, err := c.Put(ctx, []byte("too-big"), big); err == nil {
		t.Fatal("a value one byte over KVNODE_MAX_VALUE_SIZE=65536 was accepted")
	}
}
