package node

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hashicorp/raft"
)

// cleanSnapshotStore wraps raft's FileSnapshotStore to remove the
// temporary snapshot folders (snapshots/*.tmp) raft leaves behind
// (hashicorp/raft#714): when Create fails after making the folder, when a
// sink's Cancel fails to flush (a full disk), when Close fails to write
// meta.json, and after kill -9 during a snapshot. Each folder can hold a
// whole snapshot, so on a disk that filled once they would take every byte
// freed later and the node could never catch up.
//
// sweep removes every *.tmp folder no open sink is writing. It runs at open
// (before raft starts, nothing is writing) and after every failed snapshot.
// Safe for concurrent use.
type cleanSnapshotStore struct {
	*raft.FileSnapshotStore
	dir    string // the snapshots folder
	logger *slog.Logger
	health *storageHealth // learns of failed snapshot writes

	mu     sync.Mutex
	active map[string]bool // ids of sinks still open
}

func newCleanSnapshotStore(fs *raft.FileSnapshotStore, raftDir string, logger *slog.Logger, health *storageHealth) *cleanSnapshotStore {
	return &cleanSnapshotStore{
		FileSnapshotStore: fs,
		dir:               filepath.Join(raftDir, "snapshots"),
		logger:            logger,
		health:            health,
		active:            map[string]bool{},
	}
}

const tmpSnapshotSuffix = ".tmp"

// sweep removes the temporary folders no open sink owns and returns how
// many it removed.
func (s *cleanSnapshotStore) sweep() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return 0
	}
	removed := 0
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !strings.HasSuffix(name, tmpSnapshotSuffix) || s.active[strings.TrimSuffix(name, tmpSnapshotSuffix)] {
			continue
		}
		path := filepath.Join(s.dir, name)
		if err := os.RemoveAll(path); err != nil {
			s.logger.Warn("could not remove an unfinished snapshot", "path", path, "err", err)
			continue
		}
		removed++
		s.logger.Info("removed an unfinished snapshot", "path", path)
	}
	return removed
}

// Create starts a snapshot; a failure sweeps what it left.
func (s *cleanSnapshotStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration, configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.FileSnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		s.health.record(err)
		s.sweep()
		return nil, err
	}
	s.mu.Lock()
	s.active[sink.ID()] = true
	s.mu.Unlock()
	return &cleanSink{SnapshotSink: sink, store: s}, nil
}

type cleanSink struct {
	raft.SnapshotSink
	store *cleanSnapshotStore
	once  sync.Once
}

func (c *cleanSink) done(failed bool) {
	c.once.Do(func() {
		c.store.mu.Lock()
		delete(c.store.active, c.SnapshotSink.ID())
		c.store.mu.Unlock()
		if failed {
			c.store.sweep()
		}
	})
}

// Write reports a failed write (a full disk) to the node's storage health.
func (c *cleanSink) Write(p []byte) (int, error) {
	n, err := c.SnapshotSink.Write(p)
	if err != nil {
		c.store.health.record(err)
	}
	return n, err
}

// Close finishes the snapshot; on failure the folder is removed.
func (c *cleanSink) Close() error {
	err := c.SnapshotSink.Close()
	c.store.health.record(err)
	c.done(err != nil)
	return err
}

// Cancel abandons the snapshot and always removes its folder, even when
// raft's own Cancel fails to flush first.
func (c *cleanSink) Cancel() error {
	err := c.SnapshotSink.Cancel()
	c.done(true)
	return err
}
