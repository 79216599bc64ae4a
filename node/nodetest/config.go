package nodetest

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/node"
)

// Config returns node's test preset for node id on trans: node.DefaultConfig
// with 100ms Raft timeouts (as raft's own tests use), in-memory log, stable
// and snapshot stores, and logs sent to tb.Log so they show only when the
// test fails.
func Config(tb testing.TB, id string, trans raft.Transport) *node.Config {
	c := node.DefaultConfig()
	c.ID = id
	c.HeartbeatTimeout = 100 * time.Millisecond
	c.ElectionTimeout = 100 * time.Millisecond
	c.LeaderLeaseTimeout = 100 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.Transport = trans
	store := raft.NewInmemStore()
	c.LogStore, c.StableStore = store, store
	c.SnapshotStore = raft.NewInmemSnapshotStore()
	c.Logger = Logger(tb, id)
	return c
}

// Logger returns a logger that writes to tb.Log, with the node_id
// attribute. It goes quiet when the test ends: raft logs from goroutines
// that may outlive it, and logging to a finished test panics.
func Logger(tb testing.TB, id string) *slog.Logger {
	tb.Helper()
	w := &tbWriter{tb: tb}
	tb.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node_id", id)
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
		w.tb.Log(string(p))
	}
	return len(p), nil
}

func (w *tbWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}
