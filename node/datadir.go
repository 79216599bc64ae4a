package node

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrDataDirInUse means another process holds the data directory's lock.
var ErrDataDirInUse = errors.New("data dir in use")

// ErrIdentityMismatch means the data directory belongs to another node id.
var ErrIdentityMismatch = errors.New("data dir belongs to another node")

// Names of the files kvnode keeps at the top of a data directory.
const (
	lockFileName     = "LOCK"
	identityFileName = "identity.json"
)

// DataDirLock is an exclusive lock on a data directory: flock(2) on
// DATA/LOCK, which also holds the owner's pid. The kernel releases it when
// the process dies, so a crash never leaves the directory locked.
type DataDirLock struct {
	f *os.File
}

// LockDataDir creates dir when missing and takes its lock without waiting
// (it writes nothing into an existing directory; see WritePID).
// When another process holds it, the error wraps ErrDataDirInUse and names
// that process's pid.
func LockDataDir(dir string) (*DataDirLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			owner := "another process"
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
					owner = fmt.Sprintf("pid %d", pid)
				}
			}
			return nil, fmt.Errorf("%w: %s is used by %s (%s); stop it, or give this node its own --data-dir", ErrDataDirInUse, dir, owner, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &DataDirLock{f: f}, nil
}

// WritePID records this process as the holder, for the message another
// process gets. It is separate from LockDataDir so that a start refused by
// a later check writes nothing.
func (l *DataDirLock) WritePID() error {
	if err := l.f.Truncate(0); err != nil {
		return err
	}
	_, err := l.f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return err
}

// Unlock releases the lock. Idempotent.
func (l *DataDirLock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor drops the flock
	l.f = nil
	return err
}

// Identity is what a data directory remembers about whom it belongs to, as
// etcd keeps the member and cluster id in its WAL and Consul its node-id
// file: a node restarted with another --id must not take the seat of the
// node whose log it holds.
type Identity struct {
	// NodeID is the --id the directory was created with.
	NodeID string `json:"node_id"`
	// ClusterID names the cluster this node bootstrapped: a hash of the
	// initial member list (the same on every initial member), or random for
	// a one-node bootstrap. Empty for a node that was started empty to be
	// added by a member add: it never saw the bootstrap.
	ClusterID string `json:"cluster_id,omitempty"`
}

// ClusterIDFor derives the cluster id of a new cluster: from the sorted
// initial member list when there is one, so every initial member computes
// the same id, otherwise random.
func ClusterIDFor(peers []Peer) string {
	if len(peers) == 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return ""
		}
		return hex.EncodeToString(b[:])
	}
	parts := make([]string, 0, len(peers))
	for _, p := range peers {
		parts = append(parts, p.ID+"="+p.RaftAddr)
	}
	sort.Strings(parts)
	sum := sha256.Sum256([]byte(strings.Join(parts, ",")))
	return hex.EncodeToString(sum[:8])
}

// ReadIdentity reads DATA/identity.json; ok is false when there is none.
func ReadIdentity(dir string) (id Identity, ok bool, err error) {
	path := filepath.Join(dir, identityFileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Identity{}, false, nil
	}
	if err != nil {
		return Identity{}, false, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &id); err != nil || id.NodeID == "" {
		return Identity{}, false, fmt.Errorf("%w: %s is damaged (%v); it names the node this data belongs to: restore it from the node's --id, as {\"node_id\":\"ID\"}", ErrCorruptStore, path, err)
	}
	return id, true, nil
}

// CheckIdentity refuses a data directory that belongs to another node id.
// It writes nothing.
func CheckIdentity(dir, nodeID string) (Identity, bool, error) {
	id, ok, err := ReadIdentity(dir)
	if err != nil || !ok {
		return id, ok, err
	}
	if id.NodeID != nodeID {
		return id, ok, fmt.Errorf("%w: %s holds the data of node %q, not %q: start it with --id %s, or give %s an empty --data-dir of its own", ErrIdentityMismatch, dir, id.NodeID, nodeID, id.NodeID, nodeID)
	}
	return id, ok, nil
}

// WriteIdentity records id in dir atomically (write, fsync, rename).
func WriteIdentity(dir string, id Identity) error {
	b, err := json.Marshal(id)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, identityFileName)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(dir)
}
