package testutil

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a testing.TB that records how a helper ended the test:
// Fatal and Skip end the calling goroutine, as they do on a real test.
type recorder struct {
	testing.TB
	mu      sync.Mutex
	fatal   string
	skipped string
	errs    []string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.fatal = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *recorder) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

func (r *recorder) Skipf(format string, args ...any) {
	r.mu.Lock()
	r.skipped = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *recorder) Error(args ...any) {
	r.mu.Lock()
	r.errs = append(r.errs, fmt.Sprint(args...))
	r.mu.Unlock()
}

func (r *recorder) FailNow() { r.Fatalf("FailNow") }

// run calls fn with a recorder in its own goroutine and returns the
// recorder once fn returned or ended the test.
func run(t *testing.T, fn func(tb testing.TB)) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(r)
	}()
	<-done
	return r
}

func TestEventually_FailsWithTheLastError(t *testing.T) {
	calls := 0
	r := run(t, func(tb testing.TB) {
		Eventually(tb, 30*time.Millisecond, "the thing", func() error {
			calls++
			return fmt.Errorf("attempt %d", calls)
		})
	})
	if !strings.Contains(r.fatal, "the thing") || !strings.Contains(r.fatal, fmt.Sprintf("attempt %d", calls)) || calls < 2 {
		t.Fatalf("failure = %q after %d calls, want what and the last error after several calls", r.fatal, calls)
	}
	r = run(t, func(tb testing.TB) {
		n := 0
		Eventually(tb, time.Second, "the thing", func() error {
			if n++; n < 3 {
				return errors.New("not yet")
			}
			return nil
		})
	})
	if r.fatal != "" {
		t.Fatalf("a condition met on the third call failed: %q", r.fatal)
	}
}

func TestWaitFor_FailsNamingWhat(t *testing.T) {
	r := run(t, func(tb testing.TB) { WaitFor(tb, 20*time.Millisecond, "the flag", func() bool { return false }) })
	if !strings.Contains(r.fatal, "the flag") {
		t.Fatalf("failure = %q, want it to name the flag", r.fatal)
	}
}

func TestReceive(t *testing.T) {
	ch := make(chan int, 1)
	ch <- 7
	if got := Receive(t, time.Second, "a value", ch); got != 7 {
		t.Fatalf("Receive = %d, want 7", got)
	}
	r := run(t, func(tb testing.TB) { Receive(tb, 20*time.Millisecond, "a value", ch) })
	if !strings.Contains(r.fatal, "a value") {
		t.Fatalf("failure = %q, want it to name what it waited for", r.fatal)
	}
}

func TestFreePort_NeverTwiceAndFree(t *testing.T) {
	seen := map[int]bool{}
	for i := 0; i < 50; i++ {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		if p < portBase || p >= portBase+portSpan {
			t.Fatalf("port %d outside %d-%d", p, portBase, portBase+portSpan-1)
		}
	}
	// Even when the draw keeps offering a port handed out before, it is
	// never returned again.
	again := FreePort(t)
	pickPort = func() int { return again }
	r := run(t, func(tb testing.TB) { FreePort(tb) })
	pickPort = func() int { return portBase + rand.IntN(portSpan) }
	if r.fatal == "" {
		t.Fatalf("port %d handed out twice", again)
	}

	addr := FreeAddr(t)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on the free address %s: %v", addr, err)
	}
	l.Close()
	dead := DeadAddr(t)
	if c, err := net.DialTimeout("tcp", dead, time.Second); err == nil {
		c.Close()
		t.Fatalf("something listens on the dead address %s", dead)
	}
}

func TestUnmet_SkipsButFailsUnderCI(t *testing.T) {
	t.Setenv("CI", "")
	r := run(t, func(tb testing.TB) { Unmet(tb, "no %s", "tool") })
	if r.skipped == "" || r.fatal != "" || !strings.Contains(r.skipped, "no tool") {
		t.Fatalf("outside CI: skipped %q, fatal %q; want a skip naming the tool", r.skipped, r.fatal)
	}
	t.Setenv("CI", "true")
	r = run(t, func(tb testing.TB) { Unmet(tb, "no %s", "tool") })
	if r.fatal == "" || r.skipped != "" || !strings.Contains(r.fatal, "no tool") {
		t.Fatalf("under CI: skipped %q, fatal %q; want a failure naming the tool", r.skipped, r.fatal)
	}
	r = run(t, func(tb testing.TB) { LookPath(tb, "cubekv-no-such-tool", "nothing") })
	if r.fatal == "" {
		t.Fatal("a missing command did not fail under CI")
	}
	if p := LookPath(t, "go", "Go"); p == "" {
		t.Fatal("LookPath found no go")
	}
}

func TestConcurrently_ReportsEveryError(t *testing.T) {
	var mu sync.Mutex
	ran := map[int]bool{}
	r := run(t, func(tb testing.TB) {
		Concurrently(tb, 4, func(i int) error {
			mu.Lock()
			ran[i] = true
			mu.Unlock()
			if i%2 == 1 {
				return fmt.Errorf("worker %d", i)
			}
			return nil
		})
	})
	if len(ran) != 4 || len(r.errs) != 2 || r.fatal == "" {
		t.Fatalf("ran %v, errors %q, fatal %q; want 4 workers, 2 errors, a failure", ran, r.errs, r.fatal)
	}
}

func TestPoll(t *testing.T) {
	calls := 0
	if err := Poll(time.Second, func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || calls != 3 {
		t.Fatalf("Poll = %v after %d calls, want nil after 3", err, calls)
	}
	last := errors.New("still down")
	err := Poll(20*time.Millisecond, func() error { return last })
	if !errors.Is(err, last) || !strings.Contains(err.Error(), "not within 20ms") {
		t.Fatalf("Poll = %v, want the last error wrapped with the timeout", err)
	}
}
