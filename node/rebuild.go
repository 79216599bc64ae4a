package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/raft"
	"golang.org/x/sys/unix"
)

// ErrCannotRebuild means no snapshot in the data directory, together with
// the log after it, rebuilds the node's state: raft would stop with a
// panic ("log not found") or fail on every start.
var ErrCannotRebuild = errors.New("local state cannot be rebuilt")

// storedSnapshot is one snapshot of raft's file snapshot store, read
// without the store (whose constructor writes a permission-test file).
type storedSnapshot struct {
	ID    string
	Term  uint64
	Index uint64
	dir   string
	crc   []byte
}

// verify reads the whole state file and compares its CRC-64 with the one
// in meta.json, as raft's FileSnapshotStore.Open does before a restore.
// Decoding it too would hold a second copy of the state in memory on a
// small board; the FSM's own CRC-32C still guards the restore itself.
func (s storedSnapshot) verify() error { return s.check(nil, false) }

// verifyUntil is verify in the background: stopped with errVerifyStopped
// once stop is closed, and reading past the page cache (it drops the pages
// it has read), so that it does not push the pages the node works with
// (raft.db, the state's files) out of a small board's memory. Preflight's
// verify keeps them: raft restores the same file right after it.
func (s storedSnapshot) verifyUntil(stop <-chan struct{}) error { return s.check(stop, true) }

// errVerifyStopped is verifyUntil's error when stop closed first.
var errVerifyStopped = errors.New("snapshot check stopped")

func (s storedSnapshot) check(stop <-chan struct{}, dropCache bool) error {
	f, err := os.Open(filepath.Join(s.dir, "state.bin"))
	if err != nil {
		return err
	}
	defer f.Close()
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	sr := stoppableReader{r: f, stop: stop}
	if dropCache {
		sr.f, sr.read = f, new(int64)
	}
	if _, err := io.Copy(h, sr); err != nil {
		return err
	}
	if !bytes.Equal(h.Sum(nil), s.crc) {
		return errors.New("CRC mismatch")
	}
	return nil
}

// listSnapshots returns the snapshots raft will try at start, newest first
// (raft's order: term, index, id), at most retain of them, and the folders
// whose meta.json cannot be read (raft skips those).
func listSnapshots(dir string, retain int) (snaps []storedSnapshot, unreadable []string, err error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list snapshots in %s: %w", dir, err)
	}
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), tmpSnapshotSuffix) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		var meta struct {
			raft.SnapshotMeta
			CRC []byte
		}
		b, err := os.ReadFile(filepath.Join(path, "meta.json"))
		if err == nil {
			err = json.Unmarshal(b, &meta)
		}
		if err != nil || meta.Version < raft.SnapshotVersionMin || meta.Version > raft.SnapshotVersionMax {
			unreadable = append(unreadable, fmt.Sprintf("%s (meta.json: %v)", e.Name(), err))
			continue
		}
		snaps = append(snaps, storedSnapshot{ID: meta.ID, Term: meta.Term, Index: meta.Index, dir: path, crc: meta.CRC})
	}
	sort.Slice(snaps, func(i, j int) bool {
		a, b := snaps[i], snaps[j]
		if a.Term != b.Term {
			return a.Term > b.Term
		}
		if a.Index != b.Index {
			return a.Index > b.Index
		}
		return a.ID > b.ID
	})
	if retain > 0 && len(snaps) > retain {
		snaps = snaps[:retain]
	}
	return snaps, unreadable, nil
}

// checkRebuildable finds the snapshot raft will restore at start (the
// newest whose files pass the CRC check) and checks that the log [first,
// last] continues right after it. raft restores the newest snapshot that
// loads and then reads every entry after it; when the newest is damaged and
// the log was compacted past the older one, that read panics. Saying so
// before anything starts lets kvnode exit with the way out. It returns the
// damaged snapshots it skipped, for the log.
func checkRebuildable(first, last uint64, snaps []storedSnapshot, dir string) (damaged []string, err error) {
	base := uint64(0) // index of the state raft will restore
	found := len(snaps) == 0
	for _, s := range snaps {
		if verr := s.verify(); verr != nil {
			damaged = append(damaged, fmt.Sprintf("%s (%v)", s.ID, verr))
			continue
		}
		base, found = s.Index, true
		break
	}
	howto := "remove this node from the cluster (kvctl member remove), move the data dir aside, start it empty and add it back (kvctl member add), or restore a backup; see docs/operations.md \"Damaged files\""
	if !found {
		return damaged, fmt.Errorf("%w: every snapshot in %s is damaged (%s) and the log alone cannot replace them: %s", ErrCannotRebuild, dir, strings.Join(damaged, ", "), howto)
	}
	if last > base && (first == 0 || first > base+1) {
		what := "there is no snapshot"
		if base > 0 {
			what = fmt.Sprintf("the newest good snapshot ends at index %d", base)
		}
		if len(damaged) > 0 {
			what += fmt.Sprintf(" (damaged: %s)", strings.Join(damaged, ", "))
		}
		return damaged, fmt.Errorf("%w: %s but the log in %s starts at index %d: %s", ErrCannotRebuild, what, filepath.Dir(dir), first, howto)
	}
	return damaged, nil
}

// stoppableReader reads r until stop is closed; with f set (r's file), it
// drops the pages read so far from the page cache every dropEvery bytes.
type stoppableReader struct {
	r    io.Reader
	stop <-chan struct{}
	f    *os.File
	read *int64
}

// dropEvery is how many bytes stoppableReader reads between two drops.
const dropEvery = 8 << 20

func (s stoppableReader) Read(p []byte) (int, error) {
	select {
	case <-s.stop:
		return 0, errVerifyStopped
	default:
	}
	n, err := s.r.Read(p)
	if s.f != nil && s.read != nil {
		before := *s.read
		*s.read += int64(n)
		if *s.read/dropEvery != before/dropEvery || err != nil {
			// Advice only: a kernel that ignores it costs page cache, not
			// correctness.
			_ = unix.Fadvise(int(s.f.Fd()), 0, *s.read, unix.FADV_DONTNEED)
		}
	}
	return n, err
}
