//go:build unix

package storage

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// mmapRegion is how much anonymous memory mmapChunks maps at a time: a few
// large mappings instead of one per slab keeps the process far below the
// kernel's per-process mapping limit (vm.max_map_count).
const mmapRegion = 4 << 20

// mmapChunks maps slabs outside the Go heap, in regions of mmapRegion bytes
// (anonymous, private). The garbage collector neither sees nor counts them,
// so GOMEMLIMIT must leave room for them; release unmaps every region.
type mmapChunks struct {
	mu      sync.Mutex
	regions [][]byte
	rest    []byte // unused tail of the newest region
}

func (m *mmapChunks) alloc(n int) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.rest) < n {
		size := max(mmapRegion, n)
		r, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
		if err != nil {
			// Running out of address space is what make does on the heap:
			// the process cannot go on.
			panic(fmt.Sprintf("storage: map %d bytes for slabs: %v", size, err))
		}
		m.regions = append(m.regions, r)
		m.rest = r
	}
	b := m.rest[:n:n]
	m.rest = m.rest[n:]
	return b
}

func (m *mmapChunks) release() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.regions {
		_ = unix.Munmap(r)
	}
	m.regions, m.rest = nil, nil
}

func (*mmapChunks) fresh() chunkSource { return &mmapChunks{} }
