package gossip

import (
	"testing"
	"time"

	"github.com/cubekv/cubekv/internal/logging/logtest"
)

// kvnode hands gossip a logger that already carries node_id; every line,
// memberlist's included, must carry node_id and component once each.
func TestGossip_LogsEachAttributeOnce(t *testing.T) {
	log := newTestLogger(t)
	rec, recLog := logtest.New()
	cfgA := testConfig(t, log, "n1")
	cfgA.Logger = recLog.With("node_id", "n1")
	a := mustStart(t, cfgA)
	cfgB := testConfig(t, log, "n2")
	cfgB.Join = []string{a.LocalAddr()}
	b := mustStart(t, cfgB)
	waitFor(t, 5*time.Second, func() string { return seesAlive(a, a, b) })
	if err := b.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() string { return seesState(a, "n2", StateLeft) })
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if got := rec.Repeated("node_id", "component"); got != "" {
		t.Fatalf("records with a repeated or missing attribute:\n%s", got)
	}
}
