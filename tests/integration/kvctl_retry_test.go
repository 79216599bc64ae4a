package integration

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lossyProxy stands between a client and a node's Thrift port, speaking the framed transport. It
// forwards each request frame and the answer, except that it answers no topology request (the
// client then talks to the proxy, its only endpoint) and, while dropping is on, it lets the node
// answer each put and then closes the client's connection instead of passing the answer on: the
// write is applied, but its outcome is unknown to the client.
type lossyProxy struct {
	t        *testing.T
	ln       net.Listener
	target   string
	dropping atomic.Bool
	puts     atomic.Int64 // put requests forwarded to the node
	dropped  atomic.Int64 // put answers withheld
	wg       sync.WaitGroup
}

func startLossyProxy(t *testing.T, target string) *lossyProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &lossyProxy{t: t, ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *lossyProxy) addr() string { return p.ln.Addr().String() }

func (p *lossyProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(c)
		}()
	}
}

// serve relays one client connection, one request and its answer at a time (a Thrift client waits
// for each answer before it sends the next request).
func (p *lossyProxy) serve(client net.Conn) {
	defer client.Close()
	node, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	defer node.Close()
	for {
		req, err := readFrame(client)
		if err != nil {
			return
		}
		method := frameMethod(req)
		if strings.HasSuffix(method, "topology") {
			return
		}
		if _, err := node.Write(req); err != nil {
			return
		}
		isPut := method == "put" || method == "KV:put"
		if isPut {
			p.puts.Add(1)
		}
		resp, err := readFrame(node)
		if err != nil {
			return
		}
		if isPut && p.dropping.Load() {
			p.dropped.Add(1)
			return
		}
		if _, err := client.Write(resp); err != nil {
			return
		}
	}
}

// readFrame reads one frame of the framed transport, its length prefix included.
func readFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > 16<<20 {
		return nil, errors.New("frame too large")
	}
	buf := make([]byte, 4+n)
	copy(buf, hdr[:])
	_, err := io.ReadFull(r, buf[4:])
	return buf, err
}

// frameMethod returns the method name of a request frame in the strict binary protocol, "" when it
// cannot tell.
func frameMethod(frame []byte) string {
	msg := frame[4:]
	if len(msg) < 8 || msg[0]&0x80 == 0 {
		return ""
	}
	n := int(binary.BigEndian.Uint32(msg[4:8]))
	if n < 0 || 8+n > len(msg) {
		return ""
	}
	return string(msg[8 : 8+n])
}

// TestKvctl_PutRequestIDRetryAppliesOnce: a kvctl put whose answers are all lost ends with "outcome
// unknown" (exit 4) and prints its request id, although the node applied it. After another write
// changes the key, `kvctl put --request-id` with the printed id answers with the first application's
// index and does not apply again: the key keeps the later value and its mod_index. Without the id
// (a fresh one) the retry would write the old value back.
func TestKvctl_PutRequestIDRetryAppliesOnce(t *testing.T) {
	p := newProc(t, "n1")
	p.start()
	proxy := startLossyProxy(t, p.thriftAddr)
	proxy.dropping.Store(true)
	key := "retry/key"

	code, stdout, stderr := runKvctl(t, "--endpoints", proxy.addr(), "--timeout", "5s", "put", key, "first")
	if code != exitCodeUnknown {
		t.Fatalf("put through the lossy proxy: exit %d, want %d (outcome unknown)\nstdout: %s\nstderr: %s", code, exitCodeUnknown, stdout, stderr)
	}
	m := regexp.MustCompile(`(?m)^request id: (-?\d+:\d+)$`).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no request id in stderr %q", stderr)
	}
	requestID := m[1]
	if proxy.dropped.Load() == 0 {
		t.Fatalf("the proxy withheld no put answer (puts forwarded: %d)", proxy.puts.Load())
	}

	c := mustClient(t, p.thriftAddr)
	first, err := c.Get(ctxTimeout(t, 5*time.Second), []byte(key))
	if err != nil || !first.Found || string(first.Entry.Value) != "first" {
		t.Fatalf("after the lost put: %+v, %v; want the value applied", first, err)
	}
	later, err := c.Put(ctxTimeout(t, 5*time.Second), []byte(key), []byte("later"))
	if err != nil {
		t.Fatalf("later put: %v", err)
	}

	// The retry, straight to the node, with the printed id.
	code, stdout, stderr = runKvctl(t, "--endpoints", p.thriftAddr, "-o", "json", "put", "--request-id", requestID, key, "first")
	if code != 0 {
		t.Fatalf("retry: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	var retry struct{ Index int64 }
	if err := json.Unmarshal([]byte(stdout), &retry); err != nil {
		t.Fatalf("retry output %q: %v", stdout, err)
	}
	if retry.Index != first.Entry.ModIndex {
		t.Errorf("retry answered index %d, want the first application's %d", retry.Index, first.Entry.ModIndex)
	}
	now, err := c.Get(ctxTimeout(t, 5*time.Second), []byte(key))
	if err != nil || !now.Found {
		t.Fatalf("after the retry: %+v, %v", now, err)
	}
	if string(now.Entry.Value) != "later" || now.Entry.ModIndex != later.Index {
		t.Fatalf("after the retry the key is %q at mod_index %d, want %q at %d: the retry applied the put again",
			now.Entry.Value, now.Entry.ModIndex, "later", later.Index)
	}
}

// exitCodeUnknown is kvctl's exit code for a write whose outcome is unknown.
const exitCodeUnknown = 4
