package integration

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// memCgroup is a memory cgroup made for one test: the processes added to it
// share a memory limit that counts their anonymous memory and the page
// cache they use, as a board's RAM does. At the limit the kernel reclaims
// the group's clean page cache (such as bbolt's mapped raft.db pages) and
// kills a process only when nothing more can be reclaimed.
type memCgroup struct {
	dir string
	v2  bool
}

// newMemCgroup creates a memory cgroup limited to limit bytes (cgroup v2
// when its memory controller is enabled, else v1's memory hierarchy) and
// removes it when the test ends. It returns an error when neither can be
// used (not root, no memory controller).
func newMemCgroup(t *testing.T, limit int64) (*memCgroup, error) {
	t.Helper()
	name := fmt.Sprintf("cubekv-test-%d", os.Getpid())
	var cg *memCgroup
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil && strings.Contains(string(b), "memory") {
		cg = &memCgroup{dir: filepath.Join("/sys/fs/cgroup", name), v2: true}
	} else if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err == nil {
		cg = &memCgroup{dir: filepath.Join("/sys/fs/cgroup/memory", name)}
	} else {
		return nil, errors.New("no cgroup memory controller at /sys/fs/cgroup")
	}
	if err := os.Mkdir(cg.dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", cg.dir, err)
	}
	t.Cleanup(func() {
		// The processes are gone by now (proc's cleanup kills them first,
		// cleanups run last-in first-out); rmdir fails while one is left.
		if err := os.Remove(cg.dir); err != nil {
			t.Logf("remove cgroup %s: %v", cg.dir, err)
		}
	})
	file, val := "memory.limit_in_bytes", strconv.FormatInt(limit, 10)
	if cg.v2 {
		file = "memory.max"
	}
	if err := os.WriteFile(filepath.Join(cg.dir, file), []byte(val), 0o644); err != nil {
		return nil, fmt.Errorf("set %s of %s: %w", file, cg.dir, err)
	}
	if !cg.v2 {
		// Without swap accounting the file may not exist; with it, keep
		// swap out of the picture too.
		_ = os.WriteFile(filepath.Join(cg.dir, "memory.memsw.limit_in_bytes"), []byte(val), 0o644)
	}
	return cg, nil
}

// add moves pid into the group.
func (cg *memCgroup) add(pid int) error {
	return os.WriteFile(filepath.Join(cg.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
}

// peak returns the group's highest charged memory (anonymous and page
// cache) and how many times a process in it was killed for memory (v2, or
// v1 kernels whose memory.oom_control counts them; -1 when unknown).
func (cg *memCgroup) peak() (peak int64, oomKills int64, err error) {
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(cg.dir, name))
		return strings.TrimSpace(string(b)), err
	}
	peakFile, eventsFile := "memory.max_usage_in_bytes", "memory.oom_control"
	if cg.v2 {
		peakFile, eventsFile = "memory.peak", "memory.events"
	}
	s, err := read(peakFile)
	if err != nil {
		return 0, -1, err
	}
	if peak, err = strconv.ParseInt(s, 10, 64); err != nil {
		return 0, -1, fmt.Errorf("%s: %w", peakFile, err)
	}
	oomKills = -1
	if ev, err := read(eventsFile); err == nil {
		for _, line := range strings.Split(ev, "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "oom_kill" {
				oomKills, _ = strconv.ParseInt(f[1], 10, 64)
			}
		}
	}
	return peak, oomKills, nil
}
