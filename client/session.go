package client

import (
	"math"
	"math/rand/v2"
	"sync"

	"github.com/cubekv/cubekv/thrift/kv"
)

// session is one client id and its sequence counter. A session carries at most one write at a time:
// it is taken from the pool for a write and returned only once that write's outcome is known.
type session struct {
	clientID int64
	seq      int64 // last sequence handed out; only the write holding the session touches it
}

// next returns a fresh request id, one higher than the session's last.
func (s *session) next() kv.RequestID {
	s.seq++
	return kv.RequestID{ClientID: s.clientID, Sequence: s.seq}
}

// sessions is the pool of free sessions. Safe for concurrent use.
type sessions struct {
	// mu guards free.
	mu   sync.Mutex
	free []*session
}

// take returns a free session, or a new one with a random non-zero 63-bit client id.
func (p *sessions) take() *session {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		s := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return s
	}
	p.mu.Unlock()
	return &session{clientID: rand.Int64N(math.MaxInt64) + 1}
}

// give returns a session whose last write has a known outcome. A session whose last write is
// unresolved must be dropped instead: reusing it would move its sequence past a write that may still
// commit.
func (p *sessions) give(s *session) {
	p.mu.Lock()
	p.free = append(p.free, s)
	p.mu.Unlock()
}
