package testutil

import (
	"testing"
	"time"
)

// pollInterval is how often Eventually and WaitFor check their condition.
const pollInterval = 10 * time.Millisecond

// Eventually calls cond until it returns nil. Once timeout has passed it
// fails tb, naming what it waited for and cond's last error.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// WaitFor calls cond until it holds. Once timeout has passed it fails tb,
// naming what it waited for.
func WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(pollInterval)
	}
}
