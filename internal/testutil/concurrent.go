package testutil

import (
	"sync"
	"testing"
)

// Concurrently runs fn(0), …, fn(n-1) in n goroutines, waits for all of
// them, and then fails tb with every error they returned. fn must not call
// tb.Fatal (it runs outside the test's goroutine); it returns the error
// instead.
func Concurrently(tb testing.TB, n int, fn func(i int) error) {
	tb.Helper()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = fn(i)
		}(i)
	}
	wg.Wait()
	failed := false
	for _, err := range errs {
		if err != nil {
			tb.Error(err)
			failed = true
		}
	}
	if failed {
		tb.FailNow()
	}
}
