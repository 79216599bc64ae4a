package node

import (
	"testing"
	"time"
)

// A zero field and DefaultConfig's value give raft the same setting: the
// Default constants, not raft's own defaults (which differ for the lease,
// 500ms, and the snapshot interval, 120s).
func TestConfig_ZeroMeansTheNodeDefault(t *testing.T) {
	zero := (&Config{ID: "n1"}).raftConfig()
	def := DefaultConfig()
	def.ID = "n1"
	fromDefault := def.raftConfig()
	for _, c := range []struct {
		name      string
		zero, def any
		want      any
	}{
		{"heartbeat", zero.HeartbeatTimeout, fromDefault.HeartbeatTimeout, DefaultHeartbeatTimeout},
		{"election", zero.ElectionTimeout, fromDefault.ElectionTimeout, DefaultElectionTimeout},
		{"lease", zero.LeaderLeaseTimeout, fromDefault.LeaderLeaseTimeout, time.Second},
		{"commit", zero.CommitTimeout, fromDefault.CommitTimeout, DefaultCommitTimeout},
		{"max append", zero.MaxAppendEntries, fromDefault.MaxAppendEntries, DefaultMaxAppendEntries},
		{"snapshot threshold", zero.SnapshotThreshold, fromDefault.SnapshotThreshold, uint64(DefaultSnapshotThreshold)},
		{"snapshot interval", zero.SnapshotInterval, fromDefault.SnapshotInterval, 30 * time.Second},
		{"trailing logs", zero.TrailingLogs, fromDefault.TrailingLogs, uint64(DefaultTrailingLogs)},
	} {
		if c.zero != c.want || c.def != c.want {
			t.Errorf("%s: zero gives %v, DefaultConfig gives %v; want %v", c.name, c.zero, c.def, c.want)
		}
	}
	for _, c := range []struct {
		name      string
		zero, def int64
		want      int64
	}{
		{"inflight", int64((&Config{}).maxInflight()), int64(def.maxInflight()), DefaultMaxInflightEntries},
		{"entry bytes", int64((&Config{}).maxEntryBytes()), int64(def.maxEntryBytes()), DefaultMaxEntryBytes},
		{"log cache size", int64((&Config{}).logCacheSize()), int64(def.logCacheSize()), DefaultLogCacheSize},
		{"log cache bytes", (&Config{}).logCacheBytes(), def.logCacheBytes(), DefaultLogCacheBytes},
		{"snapshot retain", int64((&Config{}).snapshotRetain()), int64(def.snapshotRetain()), DefaultSnapshotRetain},
	} {
		if c.zero != c.want || c.def != c.want {
			t.Errorf("%s: zero gives %d, DefaultConfig gives %d; want %d", c.name, c.zero, c.def, c.want)
		}
	}
}
