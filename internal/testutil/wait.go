package testutil

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// Polling starts every minPoll and slows down to every maxPoll, so that a
// condition met at once costs little wait and an expensive one (an HTTP
// request, a process listing) is not run in a tight loop.
const (
	minPoll = 5 * time.Millisecond
	maxPoll = 100 * time.Millisecond
)

// Poll calls cond until it returns nil, and returns nil. Once timeout has
// passed it returns an error naming cond's last error. It is for callers
// that report a timeout themselves (a fault scenario's result, a helper
// returning an error) rather than failing a test.
func Poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	wait := minPoll
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v: %w", timeout, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, maxPoll)
	}
}

// Eventually calls cond until it returns nil. Once timeout has passed it
// fails tb, naming what it waited for and cond's last error.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() error) {
	tb.Helper()
	if err := Poll(timeout, cond); err != nil {
		tb.Fatalf("%s: %v", what, err)
	}
}

// WaitFor calls cond until it holds. Once timeout has passed it fails tb,
// naming what it waited for.
func WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	Eventually(tb, timeout, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

var errNotYet = errors.New("condition not met")

// Receive returns the next value from ch. If none arrives within timeout
// it fails tb, naming what it waited for.
func Receive[T any](tb testing.TB, timeout time.Duration, what string, ch <-chan T) T {
	tb.Helper()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case v := <-ch:
		return v
	case <-t.C:
		tb.Fatalf("%s: not within %v", what, timeout)
		var zero T
		return zero
	}
}
