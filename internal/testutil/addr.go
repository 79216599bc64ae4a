package testutil

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
)

// Ports come from portBase up to portBase+portSpan-1: below Linux's
// ephemeral range (32768-60999), so the kernel does not hand a port to an
// outgoing connection between a test picking it and a process binding it.
const (
	portBase = 20000
	portSpan = 12768
)

// pickPort draws a candidate port; tests of this package replace it.
var pickPort = func() int { return portBase + rand.IntN(portSpan) }

// handedOut holds every port returned in this test binary: a port is
// never returned twice, so two nodes (or a node and a dead address) never
// share one, even after the first was closed.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreePort returns a loopback port that was free for both TCP and UDP
// (gossip needs both) a moment ago and has not been returned before in
// this test binary.
func FreePort(tb testing.TB) int {
	tb.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for i := 0; i < 1000; i++ {
		port := pickPort()
		if handedOut.ports[port] {
			continue
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			l.Close()
			continue
		}
		u.Close()
		l.Close()
		handedOut.ports[port] = true
		return port
	}
	tb.Fatal("no free loopback port")
	return 0
}

// FreeAddr returns "127.0.0.1:port" for a FreePort.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(tb))
}

// DeadAddr returns a loopback address nothing listens on: a FreeAddr that
// the test does not bind. Since no later FreeAddr returns it, it stays
// dead for the rest of the test binary unless another process takes it.
func DeadAddr(tb testing.TB) string {
	tb.Helper()
	return FreeAddr(tb)
}
