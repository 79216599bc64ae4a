package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/thrift/kv"
)

// kvnodeBin is the kvnode binary built by TestMain.
var kvnodeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cubekv-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "temp dir:", err)
		os.Exit(1)
	}
	kvnodeBin = filepath.Join(dir, "kvnode")
	args := []string{"build", "-o", kvnodeBin}
	if raceBuild {
		args = append(args, "-race")
	}
	args = append(args, "github.com/cubekv/cubekv/cmd/kvnode")
	cmd := exec.Command("go", args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build kvnode:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is one kvnode process that can be killed and restarted with the same
// flags and data directory.
type proc struct {
	t          *testing.T
	id         string
	dataDir    string
	thriftAddr string
	raftAddr   string
	adminAddr  string
	gossipAddr string
	extra      []string
	logPath    string
	cmd        *exec.Cmd
	exited     chan error
	starts     int
	// adminTLS, when set, is the client TLS configuration for the admin
	// port (which speaks only TLS when the node has certificates).
	adminTLS *tls.Config
	// env is added to the environment the process inherits (a later
	// setting of a variable wins).
	env []string
	// onLaunch, when set, is called with the pid of every process launched.
	onLaunch func(pid int)
}

// admin returns an HTTP client and base URL for the node's admin port.
func (p *proc) admin() (*http.Client, string) {
	if p.adminTLS != nil {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: p.adminTLS}}, "https://" + p.adminAddr
	}
	return &http.Client{Timeout: 5 * time.Second}, "http://" + p.adminAddr
}

// newProc allocates a node with fresh ports and data directory; it does not
// start it.
func newProc(t *testing.T, id string, extra ...string) *proc {
	t.Helper()
	dir := t.TempDir()
	p := &proc{
		t:          t,
		id:         id,
		dataDir:    filepath.Join(dir, "data"),
		thriftAddr: testutil.FreeAddr(t),
		raftAddr:   testutil.FreeAddr(t),
		adminAddr:  testutil.FreeAddr(t),
		gossipAddr: testutil.FreeAddr(t),
		extra:      extra,
		logPath:    filepath.Join(dir, "kvnode.log"),
	}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			if b, err := os.ReadFile(p.logPath); err == nil {
				t.Logf("kvnode %s log:\n%s", p.id, lastLines(string(b), 80))
			}
		}
	})
	return p
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (p *proc) args() []string {
	return append([]string{
		"--id", p.id,
		"--data-dir", p.dataDir,
		"--thrift-addr", p.thriftAddr,
		"--raft-addr", p.raftAddr,
		"--admin-addr", p.adminAddr,
		"--gossip-addr", p.gossipAddr,
	}, p.extra...)
}

// start launches the process and waits until its admin /ready answers 200.
func (p *proc) start() {
	p.t.Helper()
	p.launch()
	p.waitReady(30 * time.Second)
}

// launch starts the process without waiting for it.
func (p *proc) launch() {
	p.t.Helper()
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatalf("open log: %v", err)
	}
	fmt.Fprintf(logf, "=== start %d: %s %s\n", p.starts, kvnodeBin, strings.Join(p.args(), " "))
	p.starts++
	cmd := exec.Command(kvnodeBin, p.args()...)
	if len(p.env) > 0 {
		cmd.Env = append(os.Environ(), p.env...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		p.t.Fatalf("start kvnode: %v", err)
	}
	p.cmd = cmd
	if p.onLaunch != nil {
		p.onLaunch(cmd.Process.Pid)
	}
	p.exited = make(chan error, 1)
	go func() {
		p.exited <- cmd.Wait()
		logf.Close()
	}()
}

// waitReady polls /ready until it answers 200, the process exits, or the
// timeout passes.
func (p *proc) waitReady(timeout time.Duration) {
	p.t.Helper()
	hc, base := p.admin()
	eventually(p.t, timeout, "kvnode "+p.id+" ready", func() (bool, string) {
		select {
		case err := <-p.exited:
			p.exited <- err
			p.t.Fatalf("kvnode %s exited before ready: %v", p.id, err)
		default:
		}
		resp, err := hc.Get(base + "/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// kill sends SIGKILL and waits for the process to exit.
func (p *proc) kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p.cmd = nil
}

// stop sends SIGTERM and returns the exit error (nil for status 0).
func (p *proc) stop(timeout time.Duration) error {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case err := <-p.exited:
		p.cmd = nil
		return err
	case <-time.After(timeout):
		p.t.Fatalf("kvnode %s did not exit within %v of SIGTERM", p.id, timeout)
		return nil
	}
}

func (p *proc) alive() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case err := <-p.exited:
		p.exited <- err
		return false
	default:
		return true
	}
}

func mustClient(t *testing.T, endpoints ...string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// mustPutSeq writes n keys through c: key i is fmt.Sprintf(keyFormat, i) and its value
// fmt.Sprintf(valueFormat, i).
func mustPutSeq(t *testing.T, ctx context.Context, c *client.Client, n int, keyFormat, valueFormat string) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := c.Put(ctx, []byte(fmt.Sprintf(keyFormat, i)), []byte(fmt.Sprintf(valueFormat, i))); err != nil {
			t.Fatal(err)
		}
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustStatus(t *testing.T, c *client.Client, addr string) *kv.StatusResponse {
	t.Helper()
	st, err := c.Status(ctxTimeout(t, 5*time.Second), addr)
	if err != nil {
		t.Fatalf("status %s: %v", addr, err)
	}
	return st
}

// eventually polls cond until it reports true or timeout passes, then fails
// the test with what and the detail cond last gave.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	testutil.Eventually(t, timeout, what, func() error {
		if ok, detail := cond(); !ok {
			return fmt.Errorf("last: %s", detail)
		}
		return nil
	})
}
