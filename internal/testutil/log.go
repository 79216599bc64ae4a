package testutil

import (
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// Logger returns a logger that writes records at level and above to
// tb.Log, so they show only when the test fails (or under -v). It goes
// quiet when the test ends: components log from goroutines that may
// outlive it, and logging to a finished test panics.
func Logger(tb testing.TB, level slog.Level) *slog.Logger {
	tb.Helper()
	return slog.New(slog.NewTextHandler(Writer(tb), &slog.HandlerOptions{Level: level}))
}

// Writer returns an io.Writer that sends each write to tb.Log until the
// test ends, and discards it afterwards: for loggers that take a writer
// (hclog, log.Logger).
func Writer(tb testing.TB) io.Writer {
	w := &tbWriter{tb: tb}
	tb.Cleanup(w.stop)
	return w
}

type tbWriter struct {
	mu   sync.Mutex
	tb   testing.TB
	done bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.tb.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tbWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}
