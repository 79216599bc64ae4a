package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cubekv/cubekv/internal/testutil"
)

// composeProject is one copy of deploy/docker-compose.yml under a unique
// project name, subnet and host ports.
type composeProject struct {
	cmd     []string // "docker compose" or "docker-compose"
	file    string
	name    string
	env     []string
	thrift  map[string]string // service -> published 127.0.0.1:port
	admin   map[string]string
	subnetB string // the first three octets of the /24
}

// mustComposeCommand returns the compose command that works here: the
// docker compose plugin, else docker-compose.
func mustComposeCommand(t *testing.T) []string {
	t.Helper()
	docker := testutil.LookPath(t, "docker", "the Debian package docker.io")
	if out, err := exec.Command(docker, "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		testutil.Unmet(t, "docker daemon not reachable: %v\n%s", err, out)
	}
	if exec.Command(docker, "compose", "version").Run() == nil {
		return []string{docker, "compose"}
	}
	return []string{testutil.LookPath(t, "docker-compose", "the Debian package docker-compose")}
}

func (p *composeProject) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	full := append(append(append([]string{}, p.cmd[1:]...), "-f", p.file, "-p", p.name), args...)
	cmd := exec.Command(p.cmd[0], full...)
	cmd.Env = append(os.Environ(), p.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (p *composeProject) mustRun(t *testing.T, args ...string) {
	t.Helper()
	if out, err := p.run(t, args...); err != nil {
		t.Fatalf("compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

type digest struct {
	NodeID       string `json:"node_id"`
	AppliedIndex uint64 `json:"applied_index"`
	Keys         int    `json:"keys"`
	Digest       string `json:"digest"`
}

func (p *composeProject) digest(svc string) (digest, error) {
	var d digest
	body, err := httpGet("http://" + p.admin[svc] + "/digest")
	if err != nil {
		return d, err
	}
	if err := json.Unmarshal(body, &d); err != nil {
		return d, fmt.Errorf("decode /digest of %s: %w", svc, err)
	}
	return d, nil
}

// mustImage builds the kvnode image from deploy/Dockerfile the way `make
// docker` does (static binaries built on the host are the whole context, so
// no registry is needed) under a unique tag, removed at cleanup.
func mustImage(t *testing.T, docker, tag string) {
	t.Helper()
	ctxDir := t.TempDir()
	for _, pkg := range []string{"./cmd/kvnode", "./cmd/kvctl"} {
		bin := mustBuild(t, t.TempDir(), "linux", runtime.GOARCH, pkg)
		if err := os.Rename(bin, filepath.Join(ctxDir, filepath.Base(pkg))); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(ctxDir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(docker, "build", "-q", "-f", filepath.Join(mustRepoRoot(t), "deploy/Dockerfile"), "-t", tag, ctxDir).CombinedOutput()
	if err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(docker, "rmi", "-f", tag).Run() })
}

// TestCompose_ThreeNodesSurviveOneStopped builds the FROM scratch image,
// brings up deploy/docker-compose.yml (three nodes, fixed IPs on a private
// network, ports published on 127.0.0.1), writes and reads through the
// published ports with the Go client, stops one node, shows the other two
// still take writes, starts it again and waits until its /digest (applied
// index and state hash) matches the others', then tears everything down.
func TestCompose_ThreeNodesSurviveOneStopped(t *testing.T) {
	compose := mustComposeCommand(t)
	docker := testutil.LookPath(t, "docker", "the Debian package docker.io")
	id := fmt.Sprintf("%d%04d", os.Getpid(), rand.IntN(10000))
	p := &composeProject{
		cmd:     compose,
		file:    filepath.Join(mustRepoRoot(t), "deploy/docker-compose.yml"),
		name:    "cubekvtest" + id,
		thrift:  map[string]string{},
		admin:   map[string]string{},
		subnetB: fmt.Sprintf("10.%d.%d", 200+rand.IntN(50), rand.IntN(256)),
	}
	tag := "cubekv/kvnode:test" + id
	mustImage(t, docker, tag)
	p.env = []string{"CUBEKV_IMAGE=" + tag, "CUBEKV_SUBNET=" + p.subnetB}
	services := []string{"n1", "n2", "n3"}
	for _, svc := range services {
		tp, ap := testutil.FreePort(t), testutil.FreePort(t)
		up := strings.ToUpper(svc)
		p.env = append(p.env, fmt.Sprintf("CUBEKV_%s_THRIFT=%d", up, tp), fmt.Sprintf("CUBEKV_%s_ADMIN=%d", up, ap))
		p.thrift[svc] = "127.0.0.1:" + strconv.Itoa(tp)
		p.admin[svc] = "127.0.0.1:" + strconv.Itoa(ap)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := p.run(t, "logs", "--no-color", "--tail", "40")
			t.Logf("compose logs:\n%s", out)
		}
		if out, err := p.run(t, "down", "-v", "--remove-orphans", "-t", "10"); err != nil {
			t.Errorf("compose down: %v\n%s", err, out)
		}
	})
	p.mustRun(t, "up", "-d")

	for _, svc := range services {
		testutil.Eventually(t, 60*time.Second, svc+" /ready", func() error {
			_, err := httpGet("http://" + p.admin[svc] + "/ready")
			return err
		})
	}
	c := mustClient(t, p.thrift["n1"], p.thrift["n2"], p.thrift["n3"])
	mustPutKeys(t, c, "a", 0, 100)
	for _, svc := range services {
		mustGetKeys(t, mustClient(t, p.thrift[svc]), "a", 0, 100)
	}

	p.mustRun(t, "stop", "-t", "10", "n1")
	testutil.Eventually(t, 30*time.Second, "n1 admin port closed", func() error {
		if _, err := httpGet("http://" + p.admin["n1"] + "/health"); err == nil {
			return fmt.Errorf("n1 still answers")
		}
		return nil
	})
	mustPutKeys(t, c, "b", 0, 100)
	mustGetKeys(t, mustClient(t, p.thrift["n2"], p.thrift["n3"]), "b", 0, 100)

	p.mustRun(t, "start", "n1")
	testutil.Eventually(t, 90*time.Second, "n1 catches up", func() error {
		ds := make([]digest, len(services))
		for i, svc := range services {
			d, err := p.digest(svc)
			if err != nil {
				return err
			}
			ds[i] = d
		}
		for _, d := range ds[1:] {
			if d.AppliedIndex != ds[0].AppliedIndex || d.Digest != ds[0].Digest || d.Keys != ds[0].Keys {
				return fmt.Errorf("digests differ: %+v", ds)
			}
		}
		if ds[0].Keys != 200 {
			return fmt.Errorf("%d keys, want 200", ds[0].Keys)
		}
		return nil
	})
	// n1 serves what was written while it was stopped.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mustGetKeys(t, mustClient(t, p.thrift["n1"]), "b", 0, 100)
	if _, err := mustClient(t, p.thrift["n1"]).Put(ctx, []byte("after-restart"), []byte("ok")); err != nil {
		t.Fatalf("put through n1 after restart: %v", err)
	}

	if out, err := p.run(t, "down", "-v", "--remove-orphans", "-t", "10"); err != nil {
		t.Fatalf("compose down -v: %v\n%s", err, out)
	}
	out, err := exec.Command(docker, "volume", "ls", "-q", "--filter", "name="+p.name).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("volumes left after down -v: %v %s", err, out)
	}
}
