package node

import (
	"log/slog"
	"time"

	"github.com/hashicorp/raft"
)

// InmemConfig returns DefaultConfig for node id on trans with in-memory log,
// stable and snapshot stores and 100 ms Raft timeouts, as hashicorp/raft's
// own tests use. It is the preset of in-process clusters (node's tests and
// node/nodetest), never the configuration of a node whose data must
// survive: nothing it stores reaches a disk.
func InmemConfig(id string, trans raft.Transport, logger *slog.Logger) *Config {
	c := DefaultConfig()
	c.ID = id
	c.HeartbeatTimeout = 100 * time.Millisecond
	c.ElectionTimeout = 100 * time.Millisecond
	c.LeaderLeaseTimeout = 100 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.Transport = trans
	store := raft.NewInmemStore()
	c.LogStore, c.StableStore = store, store
	c.SnapshotStore = raft.NewInmemSnapshotStore()
	c.Logger = logger
	return c
}
