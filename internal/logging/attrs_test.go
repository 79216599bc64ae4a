package logging_test

import (
	"errors"
	"testing"

	"github.com/cubekv/cubekv/internal/logging"
	"github.com/cubekv/cubekv/internal/logging/logtest"
)

// A component logger derived as kvnode derives them carries node_id and
// component once each, through the raft and memberlist adapters too.
func TestAdapters_CarryEachAttributeOnce(t *testing.T) {
	rec, root := logtest.New()
	root = root.With("node_id", "n1")

	h := logging.HCLog(root.With("component", logging.ComponentRaft))
	h.Info("plain", "index", 3)
	h.Named("snapshots").With("id", "n2").Warn("named", "error", errors.New("boom"))
	logging.StdLog(root.With("component", logging.ComponentGossip)).Printf("[WARN] memberlist: something")
	root.With("component", logging.ComponentServer).Info("direct")

	if got := rec.Repeated("node_id", "component"); got != "" {
		t.Fatalf("records with a repeated or missing attribute:\n%s", got)
	}
	if n := len(rec.Records()); n != 4 {
		t.Fatalf("%d records, want 4", n)
	}
}
