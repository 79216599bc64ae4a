package node

import (
	"testing"

	"github.com/cubekv/cubekv/internal/logging/logtest"
)

// kvnode hands the node a logger that already carries node_id; every line of
// the node, raft and the FSM must carry node_id and component once each.
func TestNode_LogsEachAttributeOnce(t *testing.T) {
	rec, recLog := logtest.New()
	c := mustClusterWith(t, 1, func(_ int, cfg *Config) { cfg.Logger = recLog.With("node_id", cfg.ID) })
	n := c.mustLeader(t)
	if _, err := n.Apply(t.Context(), put("k", "v")); err != nil {
		t.Fatal(err)
	}
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	messages := map[string]bool{}
	for _, r := range rec.Records() {
		messages[r.Message] = true
	}
	if !messages["snapshot persisted"] {
		t.Fatalf("no FSM record among %d records", len(rec.Records()))
	}
	if got := rec.Repeated("node_id", "component"); got != "" {
		t.Fatalf("records with a repeated or missing attribute:\n%s", got)
	}
}
