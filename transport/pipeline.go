package transport

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// RaftTransport is raft's NetworkTransport with one fix: an append
// pipeline whose send is stuck is closed after the transport's timeout.
//
// In hashicorp/raft v1.7.3, when a follower rejects a pipelined append (a
// follower whose disk is full fails to store the entries and answers
// "failure"), the leader's pipeline decoder stops reading responses, and
// the sender may have already queued enough requests to fill the
// pipeline's two 128-entry buffers. Its next send then blocks forever on
// the full in-progress queue (raft's netPipeline.AppendEntries waits on it
// or on the pipeline's shutdown, which only the blocked sender would
// trigger), so the leader never replicates to that follower again until
// leadership changes: the follower cannot catch up even after its disk has
// space. Closing the stuck pipeline makes that send fail; raft then falls
// back to plain AppendEntries, finds where the follower's log ends (or
// sends a snapshot), and pipelines again once it is in step.
type RaftTransport struct {
	*raft.NetworkTransport
	timeout time.Duration
}

// AppendEntriesPipeline returns a pipeline whose sends cannot block longer
// than the transport's timeout.
func (t *RaftTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil || t.timeout <= 0 {
		return p, err
	}
	return &guardedPipeline{AppendPipeline: p, timeout: t.timeout}, nil
}

type guardedPipeline struct {
	raft.AppendPipeline
	timeout time.Duration
	once    sync.Once
}

// AppendEntries sends one request; a send still blocked after the timeout
// closes the pipeline, which makes it return raft.ErrPipelineShutdown.
func (p *guardedPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	stuck := time.AfterFunc(p.timeout, func() { p.Close() })
	f, err := p.AppendPipeline.AppendEntries(args, resp)
	stuck.Stop()
	return f, err
}

// Close closes the pipeline once; raft closes it too when replication
// stops.
func (p *guardedPipeline) Close() error {
	var err error
	p.once.Do(func() { err = p.AppendPipeline.Close() })
	return err
}
