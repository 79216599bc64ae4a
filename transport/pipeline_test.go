package transport

import (
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// TestRaftTransport_StuckPipelineSendFails reproduces the leader side of a
// follower that rejects appends (a full disk) while the leader's pipeline
// decoder has stopped reading responses, as raft's does after the first
// rejection: sends must fail within the transport timeout instead of
// blocking forever, so raft falls back to plain AppendEntries.
func TestRaftTransport_StuckPipelineSendFails(t *testing.T) {
	logger := hclog.NewNullLogger()
	leader := NewRaftTransport(mustStreamLayer(t, nil), 2, 500*time.Millisecond, logger)
	follower := NewRaftTransport(mustStreamLayer(t, nil), 2, 500*time.Millisecond, logger)
	t.Cleanup(func() { leader.Close(); follower.Close() })
	go func() {
		for rpc := range follower.Consumer() {
			rpc.Respond(&raft.AppendEntriesResponse{Success: false}, nil)
		}
	}()
	p, err := leader.AppendEntriesPipeline("n2", follower.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// Nobody reads p.Consumer(): the two 128-entry queues fill.
	failed := make(chan error, 1)
	go func() {
		for i := 0; i < 1000; i++ {
			req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax}, Term: 1}
			if _, err := p.AppendEntries(req, new(raft.AppendEntriesResponse)); err != nil {
				failed <- err
				return
			}
		}
		failed <- nil
	}()
	select {
	case err := <-failed:
		if err == nil {
			t.Fatalf("1000 sends with nobody reading responses all succeeded")
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("a pipeline send is still blocked after 20s")
	}
}
