package nodetest

import (
	"log/slog"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/node"
)

// Config returns node's in-memory test preset for node id on trans
// (node.InmemConfig: 100ms Raft timeouts, in-memory log, stable and snapshot
// stores) with logs sent to tb.Log, so they show only when the test fails.
func Config(tb testing.TB, id string, trans raft.Transport) *node.Config {
	return node.InmemConfig(id, trans, Logger(tb, id))
}

// Logger returns a logger for node id that writes to tb.Log (info and
// above), with the node_id attribute.
func Logger(tb testing.TB, id string) *slog.Logger {
	tb.Helper()
	return testutil.Logger(tb, slog.LevelInfo).With("node_id", id)
}
