// The served connection: its deadlines and its request size cap.

package transport

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
	"time"
)

// errRequestTooLarge is the read error of a connection whose current request has read more than
// MaxFrameSize bytes (plus a small read-ahead allowance); it closes the connection.
var errRequestTooLarge = errors.New("request exceeds the maximum frame size")

// deadlineConn owns a served connection's deadlines: while waiting for a request the read deadline is
// IdleTimeout from each read; once a request's first byte has arrived, the whole request must arrive by
// a fixed deadline ReadTimeout later, and it may read at most maxRequest bytes. Each write must finish
// within WriteTimeout. The Set*Deadline methods do nothing, so Thrift's socket cannot undo this.
//
// Read, Write and startRequest are called only by the connection's goroutine; its fields need no lock.
type deadlineConn struct {
	net.Conn
	idleTimeout  time.Duration
	readTimeout  time.Duration
	writeTimeout time.Duration
	maxRequest   int64

	inRequest       bool      // a byte of the current request has arrived
	requestDeadline time.Time // when the current request must have fully arrived
	requestBytes    int64     // bytes read since the current request started
}

// startRequest marks the start of waiting for the next request.
func (c *deadlineConn) startRequest() {
	c.inRequest = false
	c.requestBytes = 0
}

// Read reads under the idle or the request deadline and enforces the request byte cap.
func (c *deadlineConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return c.Conn.Read(p)
	}
	if c.inRequest {
		left := c.maxRequest - c.requestBytes
		if left <= 0 {
			return 0, errRequestTooLarge
		}
		if int64(len(p)) > left {
			p = p[:left]
		}
		if err := c.Conn.SetReadDeadline(c.requestDeadline); err != nil {
			return 0, err
		}
	} else if err := c.Conn.SetReadDeadline(time.Now().Add(c.idleTimeout)); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	if n > 0 && !c.inRequest {
		c.inRequest = true
		c.requestDeadline = time.Now().Add(c.readTimeout)
	}
	c.requestBytes += int64(n)
	return n, err
}

// Write writes under a deadline WriteTimeout from now.
func (c *deadlineConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// SetDeadline does nothing: deadlineConn manages the deadlines.
func (c *deadlineConn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline does nothing: deadlineConn manages the deadlines.
func (c *deadlineConn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline does nothing: deadlineConn manages the deadlines.
func (c *deadlineConn) SetWriteDeadline(time.Time) error { return nil }

// deadlineSyscallConn is a deadlineConn over a socket that exposes its file descriptor.
type deadlineSyscallConn struct {
	*deadlineConn
}

// SyscallConn returns the raw socket under the connection (under TLS when there is one).
func (c *deadlineSyscallConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := rawSyscallConn(c.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}

// rawSyscallConn returns the syscall.Conn under conn, looking through TLS.
func rawSyscallConn(conn net.Conn) (syscall.Conn, bool) {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	return sc, ok
}
