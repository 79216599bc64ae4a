package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/cubekv/cubekv/gossip"
	"github.com/cubekv/cubekv/thrift/kv"
)

// Keyring is the node's gossip keyring. *gossip.Gossip satisfies it.
type Keyring interface {
	InstallKey(key []byte) error
	UseKey(key []byte) error
	RemoveKey(key []byte) error
	// ListKeys returns the installed keys, the one in use first.
	ListKeys() [][]byte
}

// Fingerprint names a key without revealing it: the first 8 bytes of its
// SHA-256, in hex.
func Fingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

func checkKeyRequest(req *kv.GossipKeyRequest) error {
	if req == nil {
		return invalid("req", "missing")
	}
	switch req.Op {
	case kv.GossipKeyOp_LIST:
		return nil
	case kv.GossipKeyOp_INSTALL, kv.GossipKeyOp_USE, kv.GossipKeyOp_REMOVE:
		if n := len(req.Key); n != 16 && n != 24 && n != 32 {
			return invalid("key", "an AES key is 16, 24 or 32 bytes, got %d", n)
		}
		return nil
	}
	return invalid("op", "unknown gossip key op %d", int64(req.Op))
}

// applyKeyOp runs req on keyring and reports the keyring afterwards.
func applyKeyOp(nodeID string, keyring Keyring, req *kv.GossipKeyRequest) *kv.NodeGossipKeys {
	out := &kv.NodeGossipKeys{NodeID: nodeID, Fingerprints: []string{}}
	if keyring == nil {
		msg := "gossip is off on this node"
		out.Error = &msg
		return out
	}
	var err error
	switch req.Op {
	case kv.GossipKeyOp_INSTALL:
		err = keyring.InstallKey(req.Key)
	case kv.GossipKeyOp_USE:
		err = keyring.UseKey(req.Key)
	case kv.GossipKeyOp_REMOVE:
		err = keyring.RemoveKey(req.Key)
	}
	if err != nil {
		msg := err.Error()
		out.Error = &msg
	}
	for _, k := range keyring.ListKeys() {
		out.Fingerprints = append(out.Fingerprints, Fingerprint(k))
	}
	return out
}

// GossipKeysLocal implements kv.Internal: the operation on this node.
func (i *InternalHandler) GossipKeysLocal(ctx context.Context, req *kv.GossipKeyRequest) (_ *kv.NodeGossipKeys, err error) {
	defer i.h.done("internal.gossip_keys_local", time.Now(), &err)
	if err := checkKeyRequest(req); err != nil {
		return nil, err
	}
	return applyKeyOp(i.nodeID, i.keyring, req), nil
}

// GossipKeys implements kv.Cluster: the operation on every alive member,
// this node directly and the others through their Internal service.
func (c *ClusterHandler) GossipKeys(ctx context.Context, req *kv.GossipKeyRequest) (_ *kv.GossipKeyResponse, err error) {
	defer c.h.done("cluster.gossip_keys", time.Now(), &err)
	if err := checkKeyRequest(req); err != nil {
		return nil, err
	}
	if req.Op == kv.GossipKeyOp_USE {
		// Sending with a key a member lacks would cut it off: every alive
		// member must have it installed first.
		list, err := c.fanOutKeys(ctx, &kv.GossipKeyRequest{Op: kv.GossipKeyOp_LIST})
		if err != nil {
			return nil, err
		}
		fp, missing := Fingerprint(req.Key), false
		for _, n := range list.Nodes {
			if n.Error == nil && !slices.Contains(n.Fingerprints, fp) {
				msg := "key not installed here: install it on every node before using it"
				n.Error, missing = &msg, true
			} else if n.Error != nil {
				missing = true
			}
		}
		if missing {
			return list, nil
		}
	}
	return c.fanOutKeys(ctx, req)
}

// fanOutKeys runs req on every alive member.
func (c *ClusterHandler) fanOutKeys(ctx context.Context, req *kv.GossipKeyRequest) (*kv.GossipKeyResponse, error) {
	topo, err := c.store.Topology()
	if err != nil {
		return nil, err
	}
	self := c.store.Status().ID
	var mu sync.Mutex
	var wg sync.WaitGroup
	resp := &kv.GossipKeyResponse{Nodes: []*kv.NodeGossipKeys{}}
	add := func(n *kv.NodeGossipKeys) {
		mu.Lock()
		resp.Nodes = append(resp.Nodes, n)
		mu.Unlock()
	}
	for _, m := range topo.Members {
		switch {
		case m.ID == self:
			add(applyKeyOp(self, c.keyring, req))
		case m.GossipState != gossip.StateAlive:
			// Not asked: the operator reruns the step once it is back.
			msg := "not asked: gossip state is " + gossipStateName(m.GossipState)
			add(&kv.NodeGossipKeys{NodeID: m.ID, Fingerprints: []string{}, Error: &msg})
		case m.ThriftAddr == "" || c.peers == nil:
			msg := "no Thrift address known for this member"
			add(&kv.NodeGossipKeys{NodeID: m.ID, Fingerprints: []string{}, Error: &msg})
		default:
			wg.Add(1)
			go func(id, addr string) {
				defer wg.Done()
				r, err := c.peers.GossipKeys(ctx, addr, req)
				if err != nil {
					msg := err.Error()
					r = &kv.NodeGossipKeys{NodeID: id, Fingerprints: []string{}, Error: &msg}
				}
				add(r)
			}(m.ID, m.ThriftAddr)
		}
	}
	wg.Wait()
	sort.Slice(resp.Nodes, func(i, j int) bool { return resp.Nodes[i].NodeID < resp.Nodes[j].NodeID })
	return resp, nil
}
