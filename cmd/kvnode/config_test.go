package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cubekv/cubekv/fsm"
	"github.com/cubekv/cubekv/node"
	"github.com/cubekv/cubekv/storage/pebbleng"
)

func TestNodeConfig_PebbleFlags(t *testing.T) {
	none := func(string) string { return "" }
	c, err := parseConfig([]string{"--engine", "pebble", "--data-dir", t.TempDir()}, none)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := c.nodeConfig()
	if err != nil {
		t.Fatal(err)
	}
	if nc.Engine != node.EnginePebble || nc.PebbleCacheBytes != pebbleng.DefaultCacheBytes || nc.PebbleMemTableBytes != pebbleng.DefaultMemTableBytes {
		t.Fatalf("defaults: engine %q cache %d memtable %d", nc.Engine, nc.PebbleCacheBytes, nc.PebbleMemTableBytes)
	}
	c, err = parseConfig([]string{"--engine", "pebble", "--pebble-cache-bytes", "1048576", "--pebble-memtable-bytes", "2097152"}, none)
	if err != nil {
		t.Fatal(err)
	}
	if nc, err = c.nodeConfig(); err != nil || nc.PebbleCacheBytes != 1<<20 || nc.PebbleMemTableBytes != 2<<20 {
		t.Fatalf("given sizes: %+v, %v", nc, err)
	}
	c, err = parseConfig([]string{"--pebble-cache-bytes", "0"}, none)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.nodeConfig(); !errors.Is(err, errUsage) {
		t.Fatalf("a zero cache = %v, want a usage error", err)
	}
}

// A pebble state that is not this log's, or that does not read back, is
// the operator's to fix: kvnode exits 2 so a supervisor does not restart it.
func TestExitCode_DurableStateRefusals(t *testing.T) {
	for _, err := range []error{node.ErrForeignState, fsm.ErrCorruptState, pebbleng.ErrCorrupt} {
		wrapped := errors.Join(fmt.Errorf("open node: %w", err), nil)
		if got := exitCode(wrapped); got != 2 {
			t.Errorf("exit code for %v = %d, want 2", err, got)
		}
	}
}
