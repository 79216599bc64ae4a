package jepsenlite

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cubekv/cubekv/internal/testutil"
)

// Naming: every object a run creates carries the prefix "jl<pid>" of the test
// process that created it:
//
//	<prefix>-hub       namespace holding the bridge br0
//	<prefix>-<node>    one namespace per node, its veth end renamed eth0
//	<prefix>h          the test process's veth in the root namespace (peer <prefix>hb on br0)
//	<prefix><node>     a node's veth end on br0 (peer <prefix><node>x moved into the node namespace)
//
// The subnet is 10.77.<octet>.0/24; the root end is .1 and node i is .(10+i).
// Nothing outside these names and this subnet is ever touched.

// prefixPattern matches the namespaces and links of any run, capturing the pid.
var prefixPattern = regexp.MustCompile(`^jl([0-9]+)(-|h|n)`)

// ErrNoNetns means this machine cannot create network namespaces for the suite.
var ErrNoNetns = errors.New("network namespaces unavailable")

// network is one run's private bridge and node namespaces.
type network struct {
	prefix string
	octet  int
	hubNS  string
	hostIP string
	// hosts is the namespace of each added host by name; written only by addHost, before traffic starts.
	hosts map[string]string
}

// sh runs a command and returns its error with the combined output.
func sh(args ...string) error {
	cmd := exec.Command(args[0], args[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// shOut runs a command and returns its standard output.
func shOut(args ...string) (string, error) {
	cmd := exec.Command(args[0], args[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// netnsSupport reports why the suite cannot build its network here, or nil.
func netnsSupport() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: not running as root", ErrNoNetns)
	}
	for _, tool := range []string{"ip", "iptables-restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%w: %s not found: %v", ErrNoNetns, tool, err)
		}
	}
	name := fmt.Sprintf("jl%d-probe", os.Getpid())
	if err := sh("ip", "netns", "add", name); err != nil {
		return fmt.Errorf("%w: %v", ErrNoNetns, err)
	}
	defer sh("ip", "netns", "del", name) //nolint:errcheck // best effort; a leftover is removed by the next run
	if err := sh("ip", "netns", "exec", name, "iptables-restore", "--version"); err != nil {
		return fmt.Errorf("%w: %v", ErrNoNetns, err)
	}
	return nil
}

// pidAlive reports whether pid is a live process that looks like a test
// binary. comm is cut to 15 bytes ("jepsen-lite.tes"), so the command line
// is what is checked.
func pidAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	exe, _, _ := strings.Cut(string(b), "\x00")
	return err == nil && strings.HasSuffix(exe, ".test")
}

// cleanupStale removes the namespaces and root links of earlier runs whose
// test process is gone, killing (by pid) any process left inside them.
func cleanupStale(t *testing.T) {
	t.Helper()
	out, err := shOut("ip", "netns", "list")
	if err != nil {
		t.Logf("list namespaces: %v", err)
		return
	}
	self := os.Getpid()
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		m := prefixPattern.FindStringSubmatch(f[0])
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == self || pidAlive(pid) {
			continue
		}
		if pids, err := shOut("ip", "netns", "pids", f[0]); err == nil {
			for _, p := range strings.Fields(pids) {
				if n, err := strconv.Atoi(p); err == nil {
					if proc, err := os.FindProcess(n); err == nil {
						_ = proc.Kill()
					}
				}
			}
		}
		if err := sh("ip", "netns", "del", f[0]); err != nil {
			t.Logf("remove stale namespace: %v", err)
		} else {
			t.Logf("removed stale namespace %s", f[0])
		}
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return
	}
	for _, ifc := range ifaces {
		m := prefixPattern.FindStringSubmatch(ifc.Name)
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == self || pidAlive(pid) {
			continue
		}
		if err := sh("ip", "link", "del", ifc.Name); err == nil {
			t.Logf("removed stale link %s", ifc.Name)
		}
	}
}

// usedOctets returns the third octets of 10.77.x.0/24 addresses in the root namespace.
func usedOctets() map[int]bool {
	used := map[int]bool{}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return used
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip := ipn.IP.To4()
		if ip != nil && ip[0] == 10 && ip[1] == 77 {
			used[int(ip[2])] = true
		}
	}
	return used
}

// newNetwork creates the hub namespace with its bridge and the root end, and
// registers their removal (with every host added later) in t.Cleanup.
func newNetwork(t *testing.T) *network {
	t.Helper()
	cleanupStale(t)
	prefix := fmt.Sprintf("jl%d", os.Getpid())
	used := usedOctets()
	octet := 0
	for i := 0; i < 200; i++ {
		o := 20 + (os.Getpid()+i)%200
		if !used[o] {
			octet = o
			break
		}
	}
	if octet == 0 {
		t.Fatalf("no free 10.77.x.0/24 subnet")
	}
	n := &network{
		prefix: prefix,
		octet:  octet,
		hubNS:  prefix + "-hub",
		hostIP: fmt.Sprintf("10.77.%d.1", octet),
		hosts:  map[string]string{},
	}
	t.Cleanup(n.teardown)
	hostLink, hubLink := prefix+"h", prefix+"hb"
	steps := [][]string{
		{"ip", "netns", "add", n.hubNS},
		{"ip", "-n", n.hubNS, "link", "set", "lo", "up"},
		{"ip", "-n", n.hubNS, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", n.hubNS, "link", "set", "br0", "up"},
		{"ip", "link", "add", hostLink, "type", "veth", "peer", "name", hubLink},
		{"ip", "link", "set", hubLink, "netns", n.hubNS},
		{"ip", "-n", n.hubNS, "link", "set", hubLink, "master", "br0", "up"},
		{"ip", "addr", "add", n.hostIP + "/24", "dev", hostLink},
		{"ip", "link", "set", hostLink, "up"},
	}
	for _, s := range steps {
		if err := sh(s...); err != nil {
			t.Fatalf("network: %v", err)
		}
	}
	return n
}

// addHost creates the namespace of host name number idx (1-based) and returns its IP.
func (n *network) addHost(t *testing.T, name string, idx int) string {
	t.Helper()
	ns := n.prefix + "-" + name
	hubEnd, nodeEnd := n.prefix+name, n.prefix+name+"x"
	ip := fmt.Sprintf("10.77.%d.%d", n.octet, 10+idx)
	steps := [][]string{
		{"ip", "netns", "add", ns},
		{"ip", "link", "add", hubEnd, "type", "veth", "peer", "name", nodeEnd},
		{"ip", "link", "set", hubEnd, "netns", n.hubNS},
		{"ip", "-n", n.hubNS, "link", "set", hubEnd, "master", "br0", "up"},
		{"ip", "link", "set", nodeEnd, "netns", ns},
		{"ip", "-n", ns, "link", "set", nodeEnd, "name", "eth0"},
		{"ip", "-n", ns, "addr", "add", ip + "/24", "dev", "eth0"},
		{"ip", "-n", ns, "link", "set", "eth0", "up"},
		{"ip", "-n", ns, "link", "set", "lo", "up"},
	}
	n.hosts[name] = ns
	for _, s := range steps {
		if err := sh(s...); err != nil {
			t.Fatalf("network host %s: %v", name, err)
		}
	}
	return ip
}

// teardown removes everything the run created. Processes must be gone already.
func (n *network) teardown() {
	_ = sh("ip", "link", "del", n.prefix+"h")
	names := make([]string, 0, len(n.hosts))
	for _, ns := range n.hosts {
		names = append(names, ns)
	}
	sort.Strings(names)
	for _, ns := range append(names, n.hubNS) {
		_ = sh("ip", "netns", "del", ns)
	}
	// Namespace removal is asynchronous in the kernel; wait until the root end is gone so the
	// next network can reuse the subnet.
	_ = testutil.Poll(5*time.Second, func() error {
		if _, err := net.InterfaceByName(n.prefix + "h"); err == nil {
			return errors.New("root end still present")
		}
		return nil
	})
}

// rules is the set of sources each host drops on input and the destinations it drops on output.
type rules struct {
	dropFrom map[string][]string // host -> IPs whose packets it drops on arrival
	dropTo   map[string][]string // host -> IPs it drops packets to
}

// apply replaces every host's filter table with the given drops (all
// protocols, all connection states, so established flows are cut too).
// Hosts absent from r get an empty table.
func (n *network) apply(r rules) error {
	for name, ns := range n.hosts {
		var b strings.Builder
		b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
		for _, ip := range r.dropFrom[name] {
			fmt.Fprintf(&b, "-A INPUT -s %s/32 -j DROP\n", ip)
		}
		for _, ip := range r.dropTo[name] {
			fmt.Fprintf(&b, "-A OUTPUT -d %s/32 -j DROP\n", ip)
		}
		b.WriteString("COMMIT\n")
		cmd := exec.Command("ip", "netns", "exec", ns, "iptables-restore")
		cmd.Stdin = strings.NewReader(b.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("iptables-restore in %s: %w: %s", ns, err, out)
		}
	}
	return nil
}

// heal removes every drop rule.
func (n *network) heal() error { return n.apply(rules{}) }
