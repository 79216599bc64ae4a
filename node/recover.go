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
func ForceNewCluster(cfg *Config) (err error) {
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
		// A fixed name: a recovery killed part way leaves it behind, and
		// the next one removes it first.
		tmp := filepath.Join(cfg.DataDir, recoverStateDir)
		if err := os.RemoveAll(tmp); err != nil {
			return fmt.Errorf("remove the scratch state of an earlier recovery: %w", err)
		}
		defer os.RemoveAll(tmp)
		if scratch, err = fsm.NewDurable(fcfg, pebbleng.NewDir(tmp, pebbleng.Options{
			CacheBytes: cfg.PebbleCacheBytes, MemTableBytes: cfg.PebbleMemTableBytes,
		})); err != nil {
			return fmt.Errorf("open a scratch state for the recovery: %w", err)
		}
		defer func() {
			if cerr := scratch.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("close the scratch state of the recovery: %w", cerr)
			}
		}()
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
	if err := recoverCluster(rc, releasingFSM{scratch}, st.log, st.stable, snaps, trans, conf); err != nil {
		return fmt.Errorf("recover cluster: %w", err)
	}
	logger.Warn("forced a new one-node cluster from the local state", "raft_index", scratch.AppliedIndex(), "count", scratch.Len())
	return nil
}

// recoverStateDir is the scratch state a pebble node's ForceNewCluster
// replays into, under DataDir.
const recoverStateDir = "recover-state"

// recoverCluster is raft.RecoverCluster with the FSM's panics (a write the
// disk refuses: the FSM has no other way to fail an entry) returned as
// errors, so the command ends with a message; nothing it wrote is used.
func recoverCluster(rc *raft.Config, f raft.FSM, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore, trans raft.Transport, conf raft.Configuration) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("replaying the log failed: %v", r)
		}
	}()
	return raft.RecoverCluster(rc, f, logs, stable, snaps, trans, conf)
}

// releasingFSM releases each snapshot once it is persisted: raft's
// RecoverCluster never calls Release, and a durable FSM's snapshot holds a
// view of the state that keeps it open.
type releasingFSM struct{ *fsm.FSM }

func (f releasingFSM) Snapshot() (raft.FSMSnapshot, error) {
	s, err := f.FSM.Snapshot()
	if err != nil {
		return nil, err
	}
	return releasingSnapshot{s}, nil
}

type releasingSnapshot struct{ raft.FSMSnapshot }

func (s releasingSnapshot) Persist(sink raft.SnapshotSink) error {
	defer s.FSMSnapshot.Release()
	return s.FSMSnapshot.Persist(sink)
}
