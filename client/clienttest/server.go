// Package clienttest provides an in-process fake of a cubekv node for tests of code built on the Go
// client: a real Thrift server (framed transport, binary protocol) on 127.0.0.1 serving a map-backed
// kv.KV handler (as the default service) with the request-id table of the real cluster, and a
// multiplexed "Cluster" service whose topology the test sets; a record of every call, and hooks to
// inject answers such as NotLeader, Unavailable or Timeout. Watch is served from the fake's record of
// every change (Forget drops its start, as a node's bounded history does). Cluster groups fakes into a cluster with
// one shared topology and a leader, whose followers refuse writes with NotLeader.
package clienttest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/cubekv/cubekv/thrift/kv"
)

// DefaultMaxPage is the scan page size of a Server when MaxPage is 0.
const DefaultMaxPage = 1000

// Call is one request as the fake received it.
type Call struct {
	// Method is the Thrift method name: "get", "put", "delete_key", "cas", "scan", "txn" or "status"
	// of the KV service, or "add_member", "remove_member", "promote_member" or "transfer_leadership"
	// of the Cluster service. Topology requests are not recorded here (see TopologyCalls).
	Method string
	// Key is the request's key, when it has one.
	Key []byte
	// RequestID is the write's request id; nil for reads and writes sent without one.
	RequestID *kv.RequestID
	// Request is the request of a Cluster call as received (*kv.AddMemberRequest and so on); nil for
	// KV calls.
	Request any
}

// Hook runs before the fake handles a call. A nil error lets the call proceed. Any other error is the
// answer, unless it is an *AppliedError, in which case a write is applied first. A hook may block; ctx
// ends when the client goes away.
type Hook func(ctx context.Context, c Call) error

// AppliedError makes a hook's write apply (and be remembered under its request id) before Err is
// returned, like a node whose write commits after it answered Timeout.
type AppliedError struct {
	Err error
}

func (e *AppliedError) Error() string { return "applied, then: " + e.Err.Error() }

// Unwrap returns Err.
func (e *AppliedError) Unwrap() error { return e.Err }

// Server is a fake node. Its methods are safe for concurrent use.
type Server struct {
	// Addr is the server's Thrift address (host:port).
	Addr string

	srv *thrift.TSimpleServer

	// mu guards every field below.
	mu        sync.Mutex
	nodeID    string
	role      kv.Role
	leaderID  string
	maxPage   int
	data      map[string]*kv.Entry
	index     int64
	last      map[int64]remembered // client id -> its last write
	calls     []Call
	inFlight  map[int64]int // client id -> writes being handled
	overlaps  int           // writes that arrived while another with the same client id was in flight
	hook      Hook
	applyHits map[string]int // key -> number of times a write changed it
	history   watchHistory   // every change, for watches (watch.go)

	topology      *kv.Topology // answered by Cluster.topology; nil: Unavailable
	topologyHook  Hook
	topologyCalls int
	followLeader  string   // when non-empty, writes and cluster changes answer NotLeader naming it
	followAddr    string   // the leader's Thrift address in that answer
	cluster       *Cluster // the cluster this fake belongs to, nil when alone

	// keysMu guards gossipKeys (cluster changes run under mu).
	keysMu     sync.Mutex
	gossipKeys []string // the fake keyring, as key fingerprints, the one in use first

	leases leaseTable // guarded by mu (lease.go)
}

// remembered is a client id's last sequence and its answer.
type remembered struct {
	seq    int64
	answer any
}

var (
	_ kv.KV      = (*Server)(nil)
	_ kv.Cluster = (*Server)(nil)
)

// NewServer starts a fake node named nodeID on 127.0.0.1 and stops it when the test ends.
func NewServer(t testing.TB, nodeID string) *Server {
	t.Helper()
	sock, err := thrift.NewTServerSocket("127.0.0.1:0")
	if err != nil {
		t.Fatalf("new server socket: %v", err)
	}
	if err := sock.Listen(); err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := &Server{
		Addr:      sock.Addr().String(),
		nodeID:    nodeID,
		role:      kv.Role_LEADER,
		leaderID:  nodeID,
		maxPage:   DefaultMaxPage,
		data:      make(map[string]*kv.Entry),
		last:      make(map[int64]remembered),
		inFlight:  make(map[int64]int),
		applyHits: make(map[string]int),
	}
	conf := &thrift.TConfiguration{}
	mp := thrift.NewTMultiplexedProcessor()
	kvp := kv.NewKVProcessor(s)
	mp.RegisterDefault(kvp)
	mp.RegisterProcessor("KV", kvp)
	mp.RegisterProcessor("Cluster", kv.NewClusterProcessor(s))
	s.srv = thrift.NewTSimpleServer4(mp, sock,
		thrift.NewTFramedTransportFactoryConf(thrift.NewTTransportFactory(), conf),
		thrift.NewTBinaryProtocolFactoryConf(conf))
	// Not Serve: it listens again, and so would reopen the socket if Stop came before it ran.
	s.srv.SetLogContext(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = s.srv.AcceptLoop()
	}()
	t.Cleanup(func() {
		s.Stop()
		<-served
	})
	return s
}

// Stop stops the server: it stops accepting connections and waits for open ones to close. It is
// idempotent.
func (s *Server) Stop() {
	_ = s.srv.Stop()
}

// SetHook installs h (nil removes the hook).
func (s *Server) SetHook(h Hook) {
	s.mu.Lock()
	s.hook = h
	s.mu.Unlock()
}

// SetRole sets the role and leader id the fake reports in Status (a new fake is its own leader).
func (s *Server) SetRole(role kv.Role, leaderID string) {
	s.mu.Lock()
	s.role, s.leaderID = role, leaderID
	s.mu.Unlock()
}

// SetMaxPage sets the largest scan page the fake returns (0: DefaultMaxPage).
func (s *Server) SetMaxPage(n int) {
	if n <= 0 {
		n = DefaultMaxPage
	}
	s.mu.Lock()
	s.maxPage = n
	s.mu.Unlock()
}

// Calls returns every call received so far, in arrival order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Overlaps returns how many writes arrived while another write with the same client id was being
// handled; a correct client keeps it at 0.
func (s *Server) Overlaps() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.overlaps
}

// Applies returns how many writes changed key (a write deduplicated by its request id does not count).
func (s *Server) Applies(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applyHits[key]
}

// Value returns key's value and whether it exists.
func (s *Server) Value(key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.data[key]
	if !ok {
		return nil, false
	}
	return slices.Clone(e.Value), true
}

// begin records a call, runs the hook and reports the hook's verdict: err to return, and whether a
// write should be applied before returning it.
func (s *Server) begin(ctx context.Context, c Call) (applyFirst bool, err error) {
	s.mu.Lock()
	s.calls = append(s.calls, c)
	h := s.hook
	s.mu.Unlock()
	if h == nil {
		return false, nil
	}
	err = h(ctx, c)
	var applied *AppliedError
	if errors.As(err, &applied) {
		return true, applied.Err
	}
	return false, err
}

// write handles one write: records it, deduplicates it by request id and applies it under mu.
func (s *Server) write(ctx context.Context, c Call, apply func() any) (any, error) {
	if c.RequestID != nil {
		s.mu.Lock()
		s.inFlight[c.RequestID.ClientID]++
		if s.inFlight[c.RequestID.ClientID] > 1 {
			s.overlaps++
		}
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.inFlight[c.RequestID.ClientID]--
			s.mu.Unlock()
		}()
	}
	applyFirst, err := s.begin(ctx, c)
	if err != nil && !applyFirst {
		return nil, err
	}
	if nl := s.notLeader(); nl != nil {
		return nil, nl
	}
	s.mu.Lock()
	answer, dupErr := s.dedupe(c.RequestID, apply)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return answer, dupErr
}

// dedupe applies a write at most once per request id. Called with mu held.
func (s *Server) dedupe(id *kv.RequestID, apply func() any) (any, error) {
	if id == nil {
		return apply(), nil
	}
	if id.ClientID == 0 || id.Sequence <= 0 {
		return nil, &kv.InvalidArgument{Field: "request_id", Reason: "client_id must be non-zero and sequence positive"}
	}
	if r, ok := s.last[id.ClientID]; ok {
		if id.Sequence == r.seq {
			return r.answer, nil
		}
		if id.Sequence < r.seq {
			return nil, &kv.InvalidArgument{Field: "request_id.sequence", Reason: "lower than the last one seen"}
		}
	}
	answer := apply()
	s.last[id.ClientID] = remembered{seq: id.Sequence, answer: answer}
	return answer, nil
}

func (s *Server) info(c kv.Consistency) *kv.ReadInfo {
	return &kv.ReadInfo{NodeID: s.nodeID, Consistency: c, AppliedIndex: s.index, LastContactMs: 0}
}

func cloneEntry(e *kv.Entry, withValue bool) *kv.Entry {
	if e == nil {
		return nil
	}
	c := &kv.Entry{Key: slices.Clone(e.Key), CreateIndex: e.CreateIndex, ModIndex: e.ModIndex}
	if withValue {
		c.Value = slices.Clone(e.Value)
		if c.Value == nil {
			c.Value = []byte{}
		}
	}
	return c
}

func validKey(key []byte) error {
	if len(key) == 0 {
		return &kv.InvalidArgument{Field: "key", Reason: "empty"}
	}
	return nil
}

// put sets key at a new index. Called with mu held.
func (s *Server) put(key, value []byte) (prev, cur *kv.Entry) {
	s.index++
	prev = s.data[string(key)]
	cur = &kv.Entry{Key: slices.Clone(key), Value: slices.Clone(value), CreateIndex: s.index, ModIndex: s.index}
	if prev != nil {
		cur.CreateIndex = prev.CreateIndex
	}
	s.data[string(key)] = cur
	s.applyHits[string(key)]++
	s.history.put(cur)
	s.leases.detach(key)
	return prev, cur
}

// del removes key at a new index. Called with mu held.
func (s *Server) del(key []byte) (prev *kv.Entry) {
	s.index++
	prev = s.data[string(key)]
	if prev != nil {
		delete(s.data, string(key))
		s.applyHits[string(key)]++
		s.history.del(key, s.index)
		s.leases.detach(key)
	}
	return prev
}

// Get implements kv.KV.
func (s *Server) Get(ctx context.Context, req *kv.GetRequest) (*kv.GetResponse, error) {
	if _, err := s.begin(ctx, Call{Method: "get", Key: req.Key}); err != nil {
		return nil, err
	}
	if err := validKey(req.Key); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.data[string(req.Key)]
	return &kv.GetResponse{Found: e != nil, Entry: cloneEntry(e, true), Info: s.info(req.GetConsistency())}, nil
}

// Put implements kv.KV.
func (s *Server) Put(ctx context.Context, req *kv.PutRequest) (*kv.PutResponse, error) {
	if err := validKey(req.Key); err != nil {
		return nil, err
	}
	answer, err := s.write(ctx, Call{Method: "put", Key: req.Key, RequestID: req.RequestID}, func() any {
		if err := s.leases.check(req.LeaseID); err != nil {
			return err
		}
		prev, cur := s.put(req.Key, req.Value)
		resp := &kv.PutResponse{Index: cur.ModIndex, CreateIndex: cur.CreateIndex, LeaseID: s.leases.attach(req.Key, req.LeaseID, req.TTLMs, s.index)}
		if req.GetReturnPrevious() {
			resp.Previous = cloneEntry(prev, true)
		}
		return resp
	})
	if err != nil {
		return nil, err
	}
	if err, ok := answer.(error); ok {
		return nil, err
	}
	return answer.(*kv.PutResponse), nil
}

// DeleteKey implements kv.KV.
func (s *Server) DeleteKey(ctx context.Context, req *kv.DeleteRequest) (*kv.DeleteResponse, error) {
	if err := validKey(req.Key); err != nil {
		return nil, err
	}
	answer, err := s.write(ctx, Call{Method: "delete_key", Key: req.Key, RequestID: req.RequestID}, func() any {
		prev := s.del(req.Key)
		resp := &kv.DeleteResponse{Index: s.index, Deleted: prev != nil}
		if req.GetReturnPrevious() {
			resp.Previous = cloneEntry(prev, true)
		}
		return resp
	})
	if err != nil {
		return nil, err
	}
	return answer.(*kv.DeleteResponse), nil
}

// Cas implements kv.KV.
func (s *Server) Cas(ctx context.Context, req *kv.CASRequest) (*kv.CASResponse, error) {
	if err := validKey(req.Key); err != nil {
		return nil, err
	}
	if (req.ExpectedValue == nil) == (req.ExpectedModIndex == nil) {
		return nil, &kv.InvalidArgument{Field: "expected_value", Reason: "exactly one of expected_value and expected_mod_index must be set"}
	}
	if req.GetRemove() == (req.Value != nil) {
		return nil, &kv.InvalidArgument{Field: "value", Reason: "value is required unless remove is set, and forbidden with it"}
	}
	answer, err := s.write(ctx, Call{Method: "cas", Key: req.Key, RequestID: req.RequestID}, func() any {
		if err := s.leases.check(req.LeaseID); err != nil {
			return err
		}
		cur := s.data[string(req.Key)]
		var holds bool
		if req.ExpectedValue != nil {
			holds = cur != nil && bytes.Equal(cur.Value, req.ExpectedValue)
		} else {
			var mod int64
			if cur != nil {
				mod = cur.ModIndex
			}
			holds = mod == *req.ExpectedModIndex
		}
		if !holds {
			s.index++
			return &kv.CASResponse{Succeeded: false, Index: s.index, Current: cloneEntry(cur, true)}
		}
		if req.GetRemove() {
			s.del(req.Key)
			return &kv.CASResponse{Succeeded: true, Index: s.index}
		}
		_, written := s.put(req.Key, req.Value)
		s.leases.attach(req.Key, req.LeaseID, nil, s.index)
		return &kv.CASResponse{Succeeded: true, Index: s.index, Current: cloneEntry(written, true)}
	})
	if err != nil {
		return nil, err
	}
	if err, ok := answer.(error); ok {
		return nil, err
	}
	return answer.(*kv.CASResponse), nil
}

// Scan implements kv.KV.
func (s *Server) Scan(ctx context.Context, req *kv.ScanRequest) (*kv.ScanResponse, error) {
	if _, err := s.begin(ctx, Call{Method: "scan", Key: req.StartKey}); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.data))
	for k := range s.data {
		if req.StartKey != nil && k < string(req.StartKey) {
			continue
		}
		if req.EndKey != nil && k >= string(req.EndKey) {
			continue
		}
		if req.Prefix != nil && !bytes.HasPrefix([]byte(k), req.Prefix) {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if req.GetReverse() {
		slices.Reverse(keys)
	}
	limit := s.maxPage
	if l := int(req.GetLimit()); l > 0 && l < limit {
		limit = l
	}
	resp := &kv.ScanResponse{Entries: []*kv.Entry{}, Info: s.info(req.GetConsistency())}
	for i, k := range keys {
		if i == limit {
			last := keys[i-1]
			if req.GetReverse() {
				resp.Continuation = []byte(last)
			} else {
				resp.Continuation = append([]byte(last), 0)
			}
			break
		}
		resp.Entries = append(resp.Entries, cloneEntry(s.data[k], !req.GetKeysOnly()))
	}
	return resp, nil
}

// holds evaluates one compare. Called with mu held.
func (s *Server) holds(c *kv.Compare) (bool, error) {
	e := s.data[string(c.Key)]
	op := c.GetOp()
	if c.Op == nil {
		op = kv.CompareOp_EQUAL
	}
	satisfied := func(r int) bool {
		switch op {
		case kv.CompareOp_EQUAL:
			return r == 0
		case kv.CompareOp_NOT_EQUAL:
			return r != 0
		case kv.CompareOp_LESS:
			return r < 0
		case kv.CompareOp_GREATER:
			return r > 0
		}
		return false
	}
	var create, mod int64
	if e != nil {
		create, mod = e.CreateIndex, e.ModIndex
	}
	switch c.Target {
	case kv.CompareTarget_VALUE:
		return e != nil && satisfied(bytes.Compare(e.Value, c.Value)), nil
	case kv.CompareTarget_MOD_INDEX:
		return satisfied(cmp.Compare(mod, c.GetIndex())), nil
	case kv.CompareTarget_CREATE_INDEX:
		return satisfied(cmp.Compare(create, c.GetIndex())), nil
	case kv.CompareTarget_EXISTS:
		if op != kv.CompareOp_EQUAL && op != kv.CompareOp_NOT_EQUAL {
			return false, &kv.InvalidArgument{Field: "compare.op", Reason: "EXISTS allows only EQUAL and NOT_EQUAL"}
		}
		return (e != nil) == c.GetExists() == (op == kv.CompareOp_EQUAL), nil
	}
	return false, &kv.InvalidArgument{Field: "compare.target", Reason: fmt.Sprintf("unknown target %d", c.Target)}
}

// Txn implements kv.KV.
func (s *Server) Txn(ctx context.Context, req *kv.TxnRequest) (*kv.TxnResponse, error) {
	s.mu.Lock()
	for _, c := range req.Compares {
		if _, err := s.holds(c); err != nil {
			s.mu.Unlock()
			return nil, err
		}
	}
	s.mu.Unlock()
	answer, err := s.write(ctx, Call{Method: "txn", RequestID: req.RequestID}, func() any {
		ok := true
		for _, c := range req.Compares {
			h, _ := s.holds(c)
			ok = ok && h
		}
		branch := req.Failure
		if ok {
			branch = req.Success
		}
		s.index++
		idx := s.index
		resp := &kv.TxnResponse{Succeeded: ok, Index: idx, Results: []*kv.OpResult_{}}
		for _, op := range branch {
			e := s.data[string(op.Key)]
			r := &kv.OpResult_{Type: op.Type, Found: e != nil, Entry: cloneEntry(e, true)}
			switch op.Type {
			case kv.OpType_PUT:
				s.data[string(op.Key)] = &kv.Entry{Key: slices.Clone(op.Key), Value: slices.Clone(op.Value), CreateIndex: idx, ModIndex: idx}
				if e != nil {
					s.data[string(op.Key)].CreateIndex = e.CreateIndex
				}
				s.applyHits[string(op.Key)]++
				s.history.put(s.data[string(op.Key)])
			case kv.OpType_DELETE:
				if e != nil {
					delete(s.data, string(op.Key))
					s.applyHits[string(op.Key)]++
					s.history.del(op.Key, idx)
				}
			}
			resp.Results = append(resp.Results, r)
		}
		return resp
	})
	if err != nil {
		return nil, err
	}
	return answer.(*kv.TxnResponse), nil
}

// Status implements kv.KV.
func (s *Server) Status(ctx context.Context) (*kv.StatusResponse, error) {
	if _, err := s.begin(ctx, Call{Method: "status"}); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return &kv.StatusResponse{
		NodeID:         s.nodeID,
		Role:           s.role,
		Term:           2,
		CommitIndex:    s.index,
		AppliedIndex:   s.index,
		LeaderID:       s.leaderID,
		LeaderRaftAddr: "",
		Keys:           int64(len(s.data)),
		Engine:         "btree",
		Version:        "test",
		LastContactMs:  0,
		SnapshotIndex:  0,
	}, nil
}
