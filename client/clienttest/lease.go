package clienttest

import (
	"context"
	"slices"
	"sort"

	"github.com/cubekv/cubekv/thrift/kv"
)

// The fake's leases: granted, attached to by put and cas, kept alive,
// revoked (deleting their keys) and listed as a node does. The fake has no
// clock: a lease ends only when revoked, or when the test calls
// ExpireLease, which does what the leader's expiry does.

// fakeLease is one lease of the fake.
type fakeLease struct {
	ttl  int64
	keys map[string]bool
}

// leaseTable holds the fake's leases by id and each key's lease.
type leaseTable struct {
	byID  map[int64]*fakeLease
	ofKey map[string]int64
}

func (t *leaseTable) init() {
	if t.byID == nil {
		t.byID = make(map[int64]*fakeLease)
		t.ofKey = make(map[string]int64)
	}
}

// check answers LeaseNotFound for a lease id that does not exist.
func (t *leaseTable) check(id *int64) error {
	t.init()
	if id != nil && t.byID[*id] == nil {
		return &kv.LeaseNotFound{LeaseID: *id}
	}
	return nil
}

func (t *leaseTable) detach(key []byte) {
	t.init()
	if id, ok := t.ofKey[string(key)]; ok {
		delete(t.byID[id].keys, string(key))
		delete(t.ofKey, string(key))
	}
}

// attach attaches key to lease id, or to a new lease granted at index
// with ttl, and returns the lease; nil when neither is given.
func (t *leaseTable) attach(key []byte, id, ttl *int64, index int64) *int64 {
	t.init()
	if ttl != nil {
		t.byID[index] = &fakeLease{ttl: *ttl, keys: map[string]bool{}}
		id = &index
	}
	if id == nil {
		return nil
	}
	t.byID[*id].keys[string(key)] = true
	t.ofKey[string(key)] = *id
	return id
}

// GrantLease implements kv.KV.
func (s *Server) GrantLease(ctx context.Context, req *kv.LeaseGrantRequest) (*kv.LeaseGrantResponse, error) {
	if req.TTLMs <= 0 {
		return nil, &kv.InvalidArgument{Field: "ttl_ms", Reason: "must be positive"}
	}
	answer, err := s.write(ctx, Call{Method: "grant_lease", RequestID: req.RequestID}, func() any {
		s.leases.init()
		s.index++
		s.leases.byID[s.index] = &fakeLease{ttl: req.TTLMs, keys: map[string]bool{}}
		return &kv.LeaseGrantResponse{LeaseID: s.index, TTLMs: req.TTLMs, Index: s.index}
	})
	if err != nil {
		return nil, err
	}
	return answer.(*kv.LeaseGrantResponse), nil
}

// KeepAlive implements kv.KV.
func (s *Server) KeepAlive(ctx context.Context, req *kv.KeepAliveRequest) (*kv.KeepAliveResponse, error) {
	if _, err := s.begin(ctx, Call{Method: "keep_alive"}); err != nil {
		return nil, err
	}
	if nl := s.notLeader(); nl != nil {
		return nil, nl
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.leases.check(&req.LeaseID); err != nil {
		return nil, err
	}
	return &kv.KeepAliveResponse{LeaseID: req.LeaseID, TTLMs: s.leases.byID[req.LeaseID].ttl}, nil
}

// RevokeLease implements kv.KV.
func (s *Server) RevokeLease(ctx context.Context, req *kv.LeaseRevokeRequest) (*kv.LeaseRevokeResponse, error) {
	answer, err := s.write(ctx, Call{Method: "revoke_lease", RequestID: req.RequestID}, func() any {
		if err := s.leases.check(&req.LeaseID); err != nil {
			return err
		}
		s.revoke(req.LeaseID)
		return &kv.LeaseRevokeResponse{Index: s.index}
	})
	if err != nil {
		return nil, err
	}
	if err, ok := answer.(error); ok {
		return nil, err
	}
	return answer.(*kv.LeaseRevokeResponse), nil
}

// revoke deletes lease id and its keys at one new index. Called with mu
// held; the lease exists.
func (s *Server) revoke(id int64) {
	s.index++
	keys := make([]string, 0, len(s.leases.byID[id].keys))
	for k := range s.leases.byID[id].keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		delete(s.data, k)
		delete(s.leases.ofKey, k)
		s.applyHits[k]++
	}
	delete(s.leases.byID, id)
}

// ExpireLease ends lease id as the leader's expiry would, and reports
// whether it existed.
func (s *Server) ExpireLease(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leases.check(&id) != nil {
		return false
	}
	s.revoke(id)
	return true
}

// LeaseInfo implements kv.KV.
func (s *Server) LeaseInfo(ctx context.Context, req *kv.LeaseInfoRequest) (*kv.LeaseInfo, error) {
	if _, err := s.begin(ctx, Call{Method: "lease_info"}); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.leases.check(&req.LeaseID); err != nil {
		return nil, err
	}
	info := s.leaseInfo(req.LeaseID)
	if req.GetKeys() {
		info.Keys = [][]byte{}
		for k := range s.leases.byID[req.LeaseID].keys {
			info.Keys = append(info.Keys, []byte(k))
		}
		slices.SortFunc(info.Keys, func(a, b []byte) int { return slices.Compare(a, b) })
	}
	return info, nil
}

func (s *Server) leaseInfo(id int64) *kv.LeaseInfo {
	l := s.leases.byID[id]
	return &kv.LeaseInfo{LeaseID: id, TTLMs: l.ttl, RemainingMs: l.ttl, KeyCount: int64(len(l.keys))}
}

// ListLeases implements kv.KV.
func (s *Server) ListLeases(ctx context.Context, req *kv.LeaseListRequest) (*kv.LeaseListResponse, error) {
	if _, err := s.begin(ctx, Call{Method: "list_leases"}); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leases.init()
	var ids []int64
	for id := range s.leases.byID {
		if id > req.GetAfterID() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	resp := &kv.LeaseListResponse{Leases: []*kv.LeaseInfo{}}
	for _, id := range ids {
		if l := req.GetLimit(); l > 0 && len(resp.Leases) == int(l) {
			last := resp.Leases[len(resp.Leases)-1].LeaseID
			resp.Continuation = &last
			break
		}
		resp.Leases = append(resp.Leases, s.leaseInfo(id))
	}
	return resp, nil
}
