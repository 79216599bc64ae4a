package fsm

import (
	"container/list"

	"github.com/cubekv/cubekv/thrift/kv"
)

// Request-id table defaults.
const (
	// DefaultClientTTL is the number of Raft indexes after which an
	// untouched client id is forgotten.
	DefaultClientTTL uint64 = 10_000_000
	// DefaultMaxClients caps the number of client ids remembered.
	DefaultMaxClients = 16_384
)

// clientRecord is one client id's entry in the request-id table: the last
// request it applied and that request's result.
type clientRecord struct {
	clientID int64
	seq      int64
	touched  uint64 // Raft index of the entry that last applied or answered seq
	result   *kv.WriteResult_
	// rank is the record's place in the table's order: a number from a
	// counter that every touch advances, so records sorted by it are in
	// the list's order. Only a durable engine's meta records keep it.
	rank uint64
}

// requestTable is the request-id table that makes retried writes
// exactly-once: per client id the last sequence applied and its result.
// Records are kept in a list ordered by the index they were last touched at
// (oldest first; ties in the order they were touched), so eviction is a
// deterministic function of the applied log. It is not safe for concurrent
// use: FSM.mu guards it.
type requestTable struct {
	ttl   uint64
	max   int
	byID  map[int64]*list.Element // values are *clientRecord
	order *list.List              // *clientRecord, oldest touched first
	next  uint64                  // the next clientRecord.rank
	// dirty collects the client ids whose record changed or went, for a
	// durable engine's meta records (durable.go); nil otherwise.
	dirty map[int64]struct{}
}

func newRequestTable(ttl uint64, max int) *requestTable {
	return &requestTable{ttl: ttl, max: max, byID: make(map[int64]*list.Element), order: list.New()}
}

func (t *requestTable) len() int { return len(t.byID) }

// lookup returns the record of clientID, or nil.
func (t *requestTable) lookup(clientID int64) *clientRecord {
	if el, ok := t.byID[clientID]; ok {
		return el.Value.(*clientRecord)
	}
	return nil
}

// touch marks clientID's record as used at idx, moving it to the back.
func (t *requestTable) touch(clientID int64, idx uint64) {
	if el, ok := t.byID[clientID]; ok {
		r := el.Value.(*clientRecord)
		r.touched, r.rank = idx, t.next
		t.next++
		t.order.MoveToBack(el)
		t.mark(clientID)
	}
}

// mark records that clientID's record changed, when a durable engine
// keeps the table.
func (t *requestTable) mark(clientID int64) {
	if t.dirty != nil {
		t.dirty[clientID] = struct{}{}
	}
}

// remember records seq and its result for clientID at idx, then evicts the
// oldest records while the table holds more than max.
func (t *requestTable) remember(clientID, seq int64, idx uint64, res *kv.WriteResult_) {
	if el, ok := t.byID[clientID]; ok {
		r := el.Value.(*clientRecord)
		r.seq, r.touched, r.result, r.rank = seq, idx, res, t.next
		t.order.MoveToBack(el)
	} else {
		t.byID[clientID] = t.order.PushBack(&clientRecord{clientID: clientID, seq: seq, touched: idx, result: res, rank: t.next})
	}
	t.next++
	t.mark(clientID)
	for len(t.byID) > t.max {
		t.evictFront()
	}
}

// expire evicts every record untouched for ttl or more indexes at idx.
func (t *requestTable) expire(idx uint64) {
	for {
		el := t.order.Front()
		if el == nil {
			return
		}
		r := el.Value.(*clientRecord)
		if idx < r.touched || idx-r.touched < t.ttl {
			return
		}
		t.evictFront()
	}
}

func (t *requestTable) evictFront() {
	el := t.order.Front()
	id := el.Value.(*clientRecord).clientID
	delete(t.byID, id)
	t.order.Remove(el)
	t.mark(id)
}

// appendRestored adds a record read from a snapshot at the back of the
// list, without eviction: the snapshot's order is kept exactly.
func (t *requestTable) appendRestored(r clientRecord) {
	r.rank = t.next
	t.next++
	t.byID[r.clientID] = t.order.PushBack(&r)
}

// appendLoaded adds a record read from a durable engine's meta records at
// the back of the list, keeping its rank; the caller adds them in
// ascending order.
func (t *requestTable) appendLoaded(r clientRecord) {
	t.next = max(t.next, r.rank+1)
	t.byID[r.clientID] = t.order.PushBack(&r)
}

// copyRecords returns the records oldest first, by value. Results are
// shared: they are never modified once remembered.
func (t *requestTable) copyRecords() []clientRecord {
	out := make([]clientRecord, 0, len(t.byID))
	for el := t.order.Front(); el != nil; el = el.Next() {
		out = append(out, *el.Value.(*clientRecord))
	}
	return out
}
