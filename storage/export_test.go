package storage

// NewArenaMmap returns an arena engine whose slabs are mapped outside the Go
// heap, the alternative to NewArena's heap chunks that the tests and
// benchmarks compare it with.
func NewArenaMmap() Engine { return newArenaEngine(&mmapChunks{}) }

// ArenaPending returns how many retired slots of an arena engine still wait
// for Views to go.
func ArenaPending(e Engine) int { return e.(*arenaEngine).a.pending() }

// ArenaSlabBytes returns the bytes an arena engine took in slabs and large
// records.
func ArenaSlabBytes(e Engine) int64 {
	a := e.(*arenaEngine).a
	return a.slabBytes + a.largeBytes
}

// ArenaOffHeapBytes returns the bytes an arena engine mapped outside the Go
// heap, 0 for any other engine.
func ArenaOffHeapBytes(e Engine) int64 {
	ae, ok := e.(*arenaEngine)
	if !ok {
		return 0
	}
	m, ok := ae.a.chunks.(*mmapChunks)
	if !ok {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for _, r := range m.regions {
		n += int64(len(r))
	}
	return n
}
