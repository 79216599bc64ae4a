//go:build unix

package transport

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// mustSockoptOn fails unless the socket option level/opt is non-zero on c.
func mustSockoptOn(t *testing.T, c net.Conn, level, opt int, name string) {
	t.Helper()
	tc, ok := c.(*net.TCPConn)
	if !ok {
		t.Fatalf("%T is not a *net.TCPConn", c)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatalf("getsockopt %s: %v", name, gerr)
	}
	if v == 0 {
		t.Fatalf("%s is off", name)
	}
}

func TestTCPStreamLayer_SocketOptions(t *testing.T) {
	a, b := mustStreamLayer(t, nil), mustStreamLayer(t, nil)
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := b.Accept()
		if err != nil {
			c = nil
		}
		acc <- c
	}()
	out, err := a.Dial(raft.ServerAddress(b.Addr().String()), 2*time.Second)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer out.Close()
	var in net.Conn
	select {
	case in = <-acc:
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return")
	}
	if in == nil {
		t.Fatal("Accept failed")
	}
	defer in.Close()
	if ac, ok := in.(*acceptedConn); ok {
		in = ac.raw
	}
	for _, c := range []net.Conn{out, in} {
		mustSockoptOn(t, c, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, "TCP_NODELAY")
		mustSockoptOn(t, c, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, "SO_KEEPALIVE")
	}
}
