package pebbleng

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/cockroachdb/errors/oserror"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/cubekv/cubekv/storage"
)

// Names in a Dir's root.
const (
	currentName = "CURRENT"
	currentTmp  = "CURRENT.tmp"
	statePrefix = "state-"
)

// ErrNotFresh is returned by Install and Discard for a Durable that is not
// a Fresh one of the same Dir still waiting to be installed.
var ErrNotFresh = errors.New("pebble engine: not a fresh state of this directory")

// Dir is a storage.DurableDir: a root directory holding state directories
// state-000001, state-000002, ... and a CURRENT file naming the current one.
type Dir struct {
	root  string
	opts  Options
	fs    vfs.FS
	cur   *Engine
	fresh map[*Engine]bool
}

var _ storage.DurableDir = (*Dir)(nil)

// NewDir returns the DurableDir rooted at root; nothing is read or written
// before Open.
func NewDir(root string, opts Options) *Dir {
	opts = opts.withDefaults()
	return &Dir{root: root, opts: opts, fs: opts.FS, fresh: make(map[*Engine]bool)}
}

// Open opens the state CURRENT names, creating the root and a first, empty
// state if there is no CURRENT. State directories CURRENT does not name are
// left over from a crash before an Install finished, and are removed. A
// CURRENT that cannot be read, or that names a missing or unreadable state,
// is ErrCorrupt. Open is called once, before Fresh and Install.
func (d *Dir) Open() (storage.Durable, error) {
	if _, err := d.fs.Stat(d.root); oserror.IsNotExist(err) {
		if err := d.fs.MkdirAll(d.root, 0o755); err != nil {
			return nil, fmt.Errorf("pebble engine: create %s: %w", d.root, err)
		}
		if err := d.syncDir(d.fs.PathDir(d.root)); err != nil {
			return nil, err
		}
	}
	name, err := d.readCurrent()
	if errors.Is(err, errNoCurrent) {
		// No state was ever made current: whatever is here is left from a
		// crash during the first Open.
		if err := d.removeExcept(""); err != nil {
			return nil, err
		}
		e, err := d.create()
		if err != nil {
			return nil, err
		}
		if err := d.writeCurrent(e.dir); err != nil {
			return nil, errors.Join(err, e.Close())
		}
		d.cur = e
		return e, nil
	}
	if err != nil {
		return nil, err
	}
	dir := d.fs.PathJoin(d.root, name)
	if _, err := d.fs.Stat(dir); err != nil {
		return nil, fmt.Errorf("%w: %s names %s: %w", ErrCorrupt, currentName, name, err)
	}
	e, err := open(dir, d.opts, openExisting)
	if err != nil {
		return nil, err
	}
	// Only once the current state opened: a state CURRENT does not name
	// is left from a crash before an Install finished.
	if err := d.removeExcept(name); err != nil {
		return nil, errors.Join(err, e.Close())
	}
	d.cur = e
	return e, nil
}

// Fresh returns a new, empty state in a directory of its own.
func (d *Dir) Fresh() (storage.Durable, error) {
	e, err := d.create()
	if err != nil {
		return nil, err
	}
	d.fresh[e] = true
	return e, nil
}

// Install syncs fresh, makes it current (CURRENT is replaced by a rename,
// then the root is synced), and closes the previous state; its directory is
// removed once its last view is released.
func (d *Dir) Install(fresh storage.Durable) error {
	e, ok := fresh.(*Engine)
	if !ok || !d.fresh[e] {
		return ErrNotFresh
	}
	if err := e.Sync(); err != nil {
		return err
	}
	if err := d.writeCurrent(e.dir); err != nil {
		return err
	}
	delete(d.fresh, e)
	old := d.cur
	d.cur = e
	if old == nil {
		return nil
	}
	old.mu.Lock()
	old.onClose = func() {
		if err := d.fs.RemoveAll(old.dir); err != nil {
			d.opts.Logger.Error("pebble engine: remove replaced state", "dir", old.dir, "err", err)
		}
	}
	old.mu.Unlock()
	if err := old.Close(); err != nil && !errors.Is(err, ErrClosed) {
		// The new state is current; the old one is only garbage now.
		d.opts.Logger.Error("pebble engine: close replaced state", "dir", old.dir, "err", err)
	}
	return nil
}

// Discard closes a Fresh state and removes its directory.
func (d *Dir) Discard(fresh storage.Durable) error {
	e, ok := fresh.(*Engine)
	if !ok || !d.fresh[e] {
		return ErrNotFresh
	}
	delete(d.fresh, e)
	e.mu.Lock()
	var rmErr error
	e.onClose = func() { rmErr = d.fs.RemoveAll(e.dir) }
	e.mu.Unlock()
	err := e.Close()
	if errors.Is(err, ErrClosed) {
		err = nil
	}
	return errors.Join(err, rmErr)
}

// create makes a new state directory, numbered above every one in the root,
// and opens an empty engine in it.
func (d *Dir) create() (*Engine, error) {
	names, err := d.fs.List(d.root)
	if err != nil {
		return nil, fmt.Errorf("pebble engine: list %s: %w", d.root, err)
	}
	next := uint64(1)
	for _, n := range names {
		if num, ok := stateNum(n); ok && num >= next {
			next = num + 1
		}
	}
	for e := range d.fresh {
		if num, ok := stateNum(d.fs.PathBase(e.dir)); ok && num >= next {
			next = num + 1
		}
	}
	dir := d.fs.PathJoin(d.root, fmt.Sprintf("%s%06d", statePrefix, next))
	e, err := open(dir, d.opts, openCreate)
	if err != nil {
		return nil, err
	}
	// The new directory's entry in the root must be durable before
	// CURRENT can name it.
	if err := d.syncRoot(); err != nil {
		return nil, errors.Join(err, e.Close())
	}
	return e, nil
}

// stateNum parses a state directory name.
func stateNum(name string) (uint64, bool) {
	s, ok := strings.CutPrefix(name, statePrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil && n > 0
}

var errNoCurrent = errors.New("no CURRENT file")

// readCurrent returns the state directory name CURRENT holds.
func (d *Dir) readCurrent() (string, error) {
	f, err := d.fs.Open(d.fs.PathJoin(d.root, currentName))
	if err != nil {
		if oserror.IsNotExist(err) {
			return "", errNoCurrent
		}
		return "", fmt.Errorf("%w: open %s: %w", ErrCorrupt, currentName, err)
	}
	b, err := io.ReadAll(f)
	err = errors.Join(err, f.Close())
	if err != nil {
		return "", fmt.Errorf("%w: read %s: %w", ErrCorrupt, currentName, err)
	}
	name, ok := strings.CutSuffix(string(b), "\n")
	if _, valid := stateNum(name); !ok || !valid {
		return "", fmt.Errorf("%w: %s holds %q, not a state directory name", ErrCorrupt, currentName, b)
	}
	return name, nil
}

// writeCurrent makes CURRENT name the state in dir: a temporary file,
// synced, renamed over CURRENT, then the root synced.
func (d *Dir) writeCurrent(dir string) error {
	tmp := d.fs.PathJoin(d.root, currentTmp)
	f, err := d.fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("pebble engine: create %s: %w", tmp, err)
	}
	_, err = f.Write([]byte(d.fs.PathBase(dir) + "\n"))
	if err == nil {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err != nil {
		return fmt.Errorf("pebble engine: write %s: %w", tmp, err)
	}
	if err := d.fs.Rename(tmp, d.fs.PathJoin(d.root, currentName)); err != nil {
		return fmt.Errorf("pebble engine: rename %s: %w", tmp, err)
	}
	return d.syncRoot()
}

func (d *Dir) syncRoot() error { return d.syncDir(d.root) }

func (d *Dir) syncDir(dir string) error {
	f, err := d.fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("pebble engine: open %s: %w", dir, err)
	}
	if err = errors.Join(f.Sync(), f.Close()); err != nil {
		return fmt.Errorf("pebble engine: sync %s: %w", dir, err)
	}
	return nil
}

// removeExcept removes every state directory and temporary file in the
// root but keep.
func (d *Dir) removeExcept(keep string) error {
	names, err := d.fs.List(d.root)
	if err != nil {
		return fmt.Errorf("pebble engine: list %s: %w", d.root, err)
	}
	for _, n := range names {
		if _, ok := stateNum(n); (ok && n != keep) || n == currentTmp {
			if err := d.fs.RemoveAll(d.fs.PathJoin(d.root, n)); err != nil {
				return fmt.Errorf("pebble engine: remove leftover %s: %w", n, err)
			}
		}
	}
	return nil
}
