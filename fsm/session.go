package fsm

import (
	"container/list"

	"github.com/cubekv/cubekv/thrift/kv"
)

// Request-id table defaults.
const (
	// DefaultSessionTTL is the number of Raft indexes after which an
	// untouched client id is forgotten.
	DefaultSessionTTL uint64 = 10_000_000
	// DefaultMaxSessions caps the number of client ids remembered.
	DefaultMaxSessions = 16_384
)

// session is one client id's entry in the request-id table.
type session struct {
	clientID int64
	seq      int64
	touched  uint64 // Raft index of the entry that last applied or answered seq
	result   *kv.WriteResult_
}

// sessionTable is the request-id table: per client id the last sequence
// applied and its result. Entries are kept in a list ordered by the index
// they were last touched at (oldest first; ties in the order they were
// touched), so eviction is a deterministic function of the applied log.
// It is not safe for concurrent use: FSM.mu guards it.
type sessionTable struct {
	ttl   uint64
	max   int
	byID  map[int64]*list.Element // values are *session
	order *list.List              // *session, oldest touched first
}

func newSessionTable(ttl uint64, max int) *sessionTable {
	return &sessionTable{ttl: ttl, max: max, byID: make(map[int64]*list.Element), order: list.New()}
}

func (t *sessionTable) len() int { return len(t.byID) }

// lookup returns the session of clientID, or nil.
func (t *sessionTable) lookup(clientID int64) *session {
	if el, ok := t.byID[clientID]; ok {
		return el.Value.(*session)
	}
	return nil
}

// touch marks clientID's session as used at idx, moving it to the back.
func (t *sessionTable) touch(clientID int64, idx uint64) {
	if el, ok := t.byID[clientID]; ok {
		el.Value.(*session).touched = idx
		t.order.MoveToBack(el)
	}
}

// remember records seq and its result for clientID at idx, then evicts the
// oldest sessions while the table holds more than max.
func (t *sessionTable) remember(clientID, seq int64, idx uint64, res *kv.WriteResult_) {
	if el, ok := t.byID[clientID]; ok {
		s := el.Value.(*session)
		s.seq, s.touched, s.result = seq, idx, res
		t.order.MoveToBack(el)
	} else {
		t.byID[clientID] = t.order.PushBack(&session{clientID: clientID, seq: seq, touched: idx, result: res})
	}
	for len(t.byID) > t.max {
		t.evictFront()
	}
}

// expire evicts every session untouched for ttl or more indexes at idx.
func (t *sessionTable) expire(idx uint64) {
	for {
		el := t.order.Front()
		if el == nil {
			return
		}
		s := el.Value.(*session)
		if idx < s.touched || idx-s.touched < t.ttl {
			return
		}
		t.evictFront()
	}
}

func (t *sessionTable) evictFront() {
	el := t.order.Front()
	delete(t.byID, el.Value.(*session).clientID)
	t.order.Remove(el)
}

// appendRestored adds a session read from a snapshot at the back of the
// list, without eviction: the snapshot's order is kept exactly.
func (t *sessionTable) appendRestored(s session) {
	t.byID[s.clientID] = t.order.PushBack(&s)
}

// copySessions returns the sessions oldest first, by value. Results are
// shared: they are never modified once remembered.
func (t *sessionTable) copySessions() []session {
	out := make([]session, 0, len(t.byID))
	for el := t.order.Front(); el != nil; el = el.Next() {
		out = append(out, *el.Value.(*session))
	}
	return out
}
