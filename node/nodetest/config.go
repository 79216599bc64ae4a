package nodetest

import (
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/internal/testutil"
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

// Logger returns a logger for node id that writes to tb.Log (info and
// above), with the node_id attribute.
func Logger(tb testing.TB, id string) *slog.Logger {
	tb.Helper()
	return testutil.Logger(tb, slog.LevelInfo).With("node_id", id)
}
