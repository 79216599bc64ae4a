package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/fsm"
	"github.com/cubekv/cubekv/internal/logging"
	"github.com/cubekv/cubekv/storage/pebbleng"
)

// ErrNothingToRecover means ForceNewCluster found no Raft state in the data
// directory.
var ErrNothingToRecover = errors.New("no raft state to recover")

// ForceNewCluster rewrites the Raft configuration stored in cfg.DataDir so
// that this node is the only voter, for recovery after a majority of the
// cluster is lost for good. It keeps every entry in the local log, which
// raft then treats as committed, including any that were still being
// replicated when the others died. It must run while the node is stopped;
// start the node normally afterwards and add fresh members with kvctl.
func ForceNewCluster(cfg *Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	dir := filepath.Join(cfg.DataDir, "raft")
	logger := cfg.Logger
	if logger == nil {
		logger = logging.Discard()
	}
	hlog := logging.HCLog(logger.With("component", logging.ComponentRaft))
	kind, err := DetectLogStore(dir)
	if err != nil {
		return err
	}
	if kind == "" {
		return fmt.Errorf("%w in %s: no raft log", ErrNothingToRecover, dir)
	}
	st, err := openLogStores(dir, kind, hlog)
	if err != nil {
		return err
	}
	defer st.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, cfg.snapshotRetain(), hlog)
	if err != nil {
		return fmt.Errorf("open snapshot store: %w", err)
	}
	existing, err := raft.HasExistingState(st.log, st.stable, snaps)
	if err != nil {
		return fmt.Errorf("check raft state: %w", err)
	}
	if !existing {
		return fmt.Errorf("%w in %s", ErrNothingToRecover, dir)
	}
	addr := cfg.RaftAdvertise
	if addr == "" {
		addr = cfg.RaftAddr
	}
	// RecoverCluster replays the log through an FSM to snapshot it; that
	// FSM is thrown away afterwards, as raft asks. For a durable engine it
	// is a second pebble state in a scratch directory, removed afterwards:
	// the node's own state must not change here (raft stores the snapshot
	// at its last index and empties the log, so at the next start the
	// state is behind that snapshot and raft restores it, or holds that
	// very index already and is kept, engine.go), and an in-memory copy
	// of a state larger than memory would not fit.
	fcfg := fsm.DefaultConfig()
	fcfg.Logger = logger
	var scratch *fsm.FSM
	if cfg.durable() {
		tmp, err := os.MkdirTemp(cfg.DataDir, "recover-state-")
		if err != nil {
			return fmt.Errorf("create a scratch state for the recovery: %w", err)
		}
		defer os.RemoveAll(tmp)
		scratch, err = fsm.NewDurable(fcfg, pebbleng.NewDir(tmp, pebbleng.Options{
			CacheBytes: cfg.PebbleCacheBytes, MemTableBytes: cfg.PebbleMemTableBytes,
		}))
		if err != nil {
			return fmt.Errorf("open a scratch state for the recovery: %w", err)
		}
		defer scratch.Close()
	} else {
		fcfg.Engine = cfg.Engine
		if scratch, err = fsm.New(fcfg); err != nil {
			return err
		}
	}
	_, trans := raft.NewInmemTransport(raft.ServerAddress(addr))
	rc := cfg.raftConfig()
	rc.Logger = hlog
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(cfg.ID), Address: raft.ServerAddress(addr)}}}
	if err := raft.RecoverCluster(rc, scratch, st.log, st.stable, snaps, trans, conf); err != nil {
		return fmt.Errorf("recover cluster: %w", err)
	}
	logger.Warn("forced a new one-node cluster from the local state", "raft_index", scratch.AppliedIndex(), "count", scratch.Len())
	return nil
}
