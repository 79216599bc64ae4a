package server

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cubekv/cubekv/node"
	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

// directory is a fixed map of node ids to Thrift addresses.
type directory map[string]string

func (d directory) ThriftAddr(id string) string { return d[id] }

// mustServeLeader serves a front door over s on a free loopback port, as
// the leader a PeerClient forwards to, and returns its address.
func mustServeLeader(t *testing.T, h *Handler, s *fakeStore) string {
	t.Helper()
	srv, err := transport.NewServer(&transport.ServerConfig{Addr: "127.0.0.1:0"}, NewProcessor(h, nil, NewInternal(h, leaderFake{s}, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() {
		_ = srv.Close()
		<-served
	})
	return srv.Addr().String()
}

func mustNewPeerClient(t *testing.T, dir Directory) *PeerClient {
	t.Helper()
	pool := transport.NewPool(nil, 2)
	t.Cleanup(func() { _ = pool.Close() })
	return NewPeerClient(pool, dir)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestPeerClient_ForwardedErrorIsTranslatedOnce checks that what a leader
// answers a forwarded write reaches the follower's client as the leader
// built it: node reads it as its sentinel, and the follower's table hands
// the exception on instead of building another.
func TestPeerClient_ForwardedErrorIsTranslatedOnce(t *testing.T) {
	h, s := mustHandler(t, Limits{})
	peers := mustNewPeerClient(t, directory{"n1": mustServeLeader(t, h, s)})
	cmd := &kv.Command{Op: kv.CommandOp_PUT, Key: []byte("k"), Value: []byte("v"), ClientID: new(int64(7)), Sequence: new(int64(3))}

	s.applyErr = fmt.Errorf("%w: leadership lost", node.ErrTimeout)
	_, err := peers.Apply(testContext(t), "n1", cmd)
	if !errors.Is(err, node.ErrTimeout) {
		t.Fatalf("apply: %v, want node.ErrTimeout", err)
	}
	to, ok := toThrift(withRequestID(err, &kv.RequestID{ClientID: 7, Sequence: 3}), nil).(*kv.Timeout)
	if !ok || to.Reason != "leadership lost" || to.RequestID == nil || to.RequestID.ClientID != 7 || to.RequestID.Sequence != 3 {
		t.Fatalf("the client sees %+v, want the leader's Timeout, reason %q, request id 7:3", to, "leadership lost")
	}

	s.applyErr = &node.NotLeaderError{LeaderID: "n2"}
	_, err = peers.Apply(testContext(t), "n1", cmd)
	if !errors.Is(err, node.ErrNotLeader) {
		t.Fatalf("apply: %v, want node.ErrNotLeader", err)
	}
	nl, ok := toThrift(err, nil).(*kv.NotLeader)
	if !ok || nl.GetLeaderID() != "n2" || nl.GetLeaderAddr() != "127.0.0.1:19090" {
		t.Fatalf("the client sees %+v, want the leader's NotLeader naming n2 at its address", nl)
	}

	s.applyErr = nil
	res, err := peers.Apply(testContext(t), "n1", cmd)
	if err != nil || res.Index != 1 {
		t.Fatalf("apply = %+v, %v; want index 1", res, err)
	}
	idx, err := peers.ReadIndex(testContext(t), "n1")
	if err != nil || idx != 1 {
		t.Fatalf("read index = %d, %v; want 1", idx, err)
	}
}

func TestPeerClient_LeaderOutOfReach(t *testing.T) {
	pool := transport.NewPool(nil, 2)
	if err := pool.Close(); err != nil {
		t.Fatal(err)
	}
	// The pool gives no connection: nothing is sent, so nothing can have
	// been applied.
	peers := NewPeerClient(pool, directory{"n1": "127.0.0.1:1"})
	cmd := &kv.Command{Op: kv.CommandOp_PUT, Key: []byte("k"), Value: []byte("v")}
	if _, err := peers.Apply(testContext(t), "n1", cmd); !errors.Is(err, node.ErrUnavailable) {
		t.Fatalf("apply without a connection: %v, want node.ErrUnavailable", err)
	}
	if _, _, err := peers.LeaderView(testContext(t), "n1"); !errors.Is(err, node.ErrUnavailable) {
		t.Fatalf("leader view without a connection: %v, want node.ErrUnavailable", err)
	}
	// A leader whose front door nobody knows: the client must find it.
	_, err := peers.Apply(testContext(t), "n9", cmd)
	nl, ok := toThrift(err, nil).(*kv.NotLeader)
	if !ok || nl.GetLeaderID() != "n9" {
		t.Fatalf("apply to an unknown address: the client sees %T %v, want NotLeader naming n9", toThrift(err, nil), err)
	}
}
