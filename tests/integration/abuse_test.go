package integration

import (
	"bytes"
	"fmt"
	"math/rand"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rssKiB reads a process's resident set size.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			n, _ := strconv.Atoi(strings.Fields(line)[1])
			return n
		}
	}
	t.Fatalf("no VmRSS for %d", pid)
	return 0
}

// latencies runs put+get pairs through a fresh client for d and returns the
// sorted round-trip times; any failed request fails the test.
func latencies(t *testing.T, addr string, d time.Duration, tag string) []time.Duration {
	t.Helper()
	c := mustClient(t, addr)
	ctx := ctxTimeout(t, d+30*time.Second)
	var out []time.Duration
	for end, i := time.Now().Add(d), 0; time.Now().Before(end); i++ {
		key := []byte(fmt.Sprintf("%s-%d", tag, i))
		start := time.Now()
		if _, err := c.Put(ctx, key, []byte("v")); err != nil {
			t.Fatalf("%s: put: %v", tag, err)
		}
		if r, err := c.Get(ctx, key); err != nil || !r.Found {
			t.Fatalf("%s: get: %+v %v", tag, r, err)
		}
		out = append(out, time.Since(start))
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func pct(ds []time.Duration, p float64) time.Duration {
	return ds[int(float64(len(ds)-1)*p)]
}

// TestAbuse_IdleConnectionsSlowSenderAndGarbage holds 2,000 idle
// connections open, drips a request one byte at a time, and floods the node
// with malformed frames, while a normal client keeps writing and reading.
// Figures (latency before and during, memory) are logged.
func TestAbuse_IdleConnectionsSlowSenderAndGarbage(t *testing.T) {
	p := newProc(t, "n1", "--max-conns", "2500", "--read-timeout", "1s", "--idle-timeout", "2m")
	p.start()
	pid := p.cmd.Process.Pid
	before := latencies(t, p.thriftAddr, 2*time.Second, "before")
	rssBefore := rssKiB(t, pid)

	// 2,000 idle connections.
	var idle []net.Conn
	t.Cleanup(func() {
		for _, c := range idle {
			c.Close()
		}
	})
	for i := 0; i < 2000; i++ {
		c, err := net.DialTimeout("tcp", p.thriftAddr, 5*time.Second)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		idle = append(idle, c)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	// A slow sender: a valid frame header, then one byte every 100 ms.
	slowDropped := make(chan time.Duration, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := net.Dial("tcp", p.thriftAddr)
		if err != nil {
			return
		}
		defer c.Close()
		start := time.Now()
		msg := append([]byte{0, 0, 0, 64}, bytes.Repeat([]byte{0x80}, 64)...)
		for _, b := range msg {
			if _, err := c.Write([]byte{b}); err != nil {
				slowDropped <- time.Since(start)
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	// A flood of malformed frames from 4 connections at a time.
	var garbage atomic.Int64
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", p.thriftAddr, time.Second)
				if err != nil {
					continue
				}
				junk := make([]byte, 16+rng.Intn(512))
				rng.Read(junk)
				switch rng.Intn(3) {
				case 0: // a frame header claiming up to 2 GiB
					copy(junk, []byte{0x7f, byte(rng.Intn(256)), 0xff, 0xff})
				case 1: // a small frame of garbage
					copy(junk, []byte{0, 0, 0, byte(len(junk) - 4)})
				}
				_, _ = c.Write(junk)
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				_, _ = c.Read(make([]byte, 64))
				c.Close()
				garbage.Add(1)
			}
		}(w)
	}

	during := latencies(t, p.thriftAddr, 3*time.Second, "during")
	rssDuring := rssKiB(t, pid)
	var dropped time.Duration
	select {
	case dropped = <-slowDropped:
	case <-time.After(10 * time.Second):
		t.Fatalf("the slow sender was not dropped within 10s (read timeout 1s)")
	}
	close(stop)
	wg.Wait()
	if !p.alive() {
		t.Fatalf("node died")
	}
	t.Logf("normal client put+get round trip: before p50 %v p99 %v max %v (%d ops); during abuse p50 %v p99 %v max %v (%d ops)",
		pct(before, .5), pct(before, .99), before[len(before)-1], len(before),
		pct(during, .5), pct(during, .99), during[len(during)-1], len(during))
	t.Logf("node RSS %d KiB before, %d KiB with 2,000 idle connections and the flood; %d malformed connections; slow sender dropped after %v",
		rssBefore, rssDuring, garbage.Load(), dropped.Round(time.Millisecond))
	if during[len(during)-1] > 2*time.Second {
		t.Errorf("a normal request took %v during the abuse", during[len(during)-1])
	}
	// The race detector multiplies memory several times over.
	limit := 128 << 10
	if raceBuild {
		limit = 512 << 10
	}
	if rssDuring > limit {
		t.Errorf("RSS %d KiB with 2,000 idle connections, want at most %d KiB", rssDuring, limit)
	}
	if garbage.Load() < 10 {
		t.Errorf("only %d malformed connections were made", garbage.Load())
	}
}

// TestAbuse_ConnectionCapRefusesTheRest opens more connections than the cap:
// the extra ones are closed at once, the held ones work.
func TestAbuse_ConnectionCapRefusesTheRest(t *testing.T) {
	p := newProc(t, "n1", "--max-conns", "50")
	p.start()
	c := mustClient(t, p.thriftAddr)
	ctx := ctxTimeout(t, 30*time.Second)
	if _, err := c.Put(ctx, []byte("warm"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	defer func() {
		for _, h := range held {
			h.Close()
		}
	}()
	closed := 0
	for i := 0; i < 100; i++ {
		h, err := net.Dial("tcp", p.thriftAddr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, h)
	}
	for _, h := range held {
		_ = h.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := h.Read(make([]byte, 1)); err != nil {
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				closed++
			}
		}
	}
	// The client's pooled connection was among the first 50.
	if closed < 50 {
		t.Fatalf("%d of 100 extra connections closed at once, want at least 50 (cap 50, one held by the client)", closed)
	}
	if _, err := c.Put(ctx, []byte("still"), []byte("served")); err != nil {
		t.Fatalf("the client holding a connection was not served: %v", err)
	}
}
