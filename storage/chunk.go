package storage

// chunkSource hands out the memory slabs are cut from. Memory it returns
// holds no Go pointers. alloc is called by the writer only; release is
// called once, after the arena that used the source is unreachable, and must
// not be called while any slab is still read; calling it again does
// nothing. fresh returns a new, empty source of the same kind, for a new
// arena that must not share this one's release.
type chunkSource interface {
	alloc(n int) []byte
	release()
	fresh() chunkSource
}

// heapChunks allocates slabs as []byte on the Go heap. A pointer-free
// []byte is never scanned by the garbage collector, and each slab is one
// heap object however many records it holds; the heap counts it against
// GOMEMLIMIT like any other memory. release has nothing to do: the slabs go
// when nothing refers to them.
type heapChunks struct{}

func (heapChunks) alloc(n int) []byte { return make([]byte, n) }
func (heapChunks) release()           {}
func (heapChunks) fresh() chunkSource { return heapChunks{} }
