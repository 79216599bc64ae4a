package logtest

import (
	"log/slog"
	"strings"
	"testing"
)

func TestRecorder_FindsRepeatedKeys(t *testing.T) {
	rec, l := New()
	if got := rec.Repeated("node_id"); got != "no records" {
		t.Fatalf("Repeated before any record = %q, want %q", got, "no records")
	}
	l = l.With("node_id", "n1")
	l.Info("once", "component", "x")
	l.With("component", "x").Info("twice", "component", "y")
	l.WithGroup("g").Info("grouped", "component", "z", slog.Group("h", "node_id", "n2"))

	got := rec.Repeated("component", "node_id")
	for _, want := range []string{`"twice" has component 2 times`, `"grouped" has component 0 times`} {
		if !strings.Contains(got, want) {
			t.Errorf("Repeated() = %q, want it to contain %q", got, want)
		}
	}
	if strings.Contains(got, `"once"`) {
		t.Errorf("Repeated() = %q reports the record with each key once", got)
	}
	if keys := rec.Records()[2].Keys; strings.Join(keys, ",") != "node_id,g.component,g.h.node_id" {
		t.Errorf("grouped record keys = %v", keys)
	}
}
