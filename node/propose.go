package node

import (
	"context"
	"fmt"
	"time"

	"github.com/cubekv/cubekv/fsm"
	"github.com/cubekv/cubekv/thrift/kv"
)

// Coalescing limits. One log entry carries at most maxBatchCommands
// commands and, beyond its first command, at most Config.MaxEntryBytes of
// keys and values, so AppendEntries RPCs and raft.db stay bounded on small
// boards.
const (
	maxBatchCommands = 512
	enqueueTimeout   = 5 * time.Second
)

// proposal is one command waiting for the proposer. done is buffered so
// the proposer never blocks on a caller that has given up.
type proposal struct {
	cmd  *kv.Command
	ctx  context.Context
	done chan proposalResult
}

type proposalResult struct {
	res *fsm.Result
	err error
}

// batchKeys tracks the keys written by the commands of one entry, and
// whether one of them grants a lease. Every command of an entry is applied
// at the entry's Raft index, so two writes of one key in one entry would
// leave two versions with the same mod_index, and a CAS on that index could
// overwrite the newer one. An entry therefore never holds two commands that
// write the same key named in the command. A LEASE_REVOKE names no keys
// (which keys it deletes is known only when it applies), so it may share an
// entry with a put of one of them. That leaves no two versions at one
// index: a put before the revoke in the entry is deleted by it in the same
// atomic step, never seen by a reader, and a put after it naming the
// revoked lease is refused. A granted lease's id is the entry's index, so
// an entry also never holds two commands that grant one (fsm.GrantsLease).
type batchKeys struct {
	keys    map[string]struct{}
	granted bool
}

func newBatchKeys() *batchKeys { return &batchKeys{keys: map[string]struct{}{}} }

// add records cmd's keys and grant and reports true, or reports false
// (recording nothing) when one of its keys is already written by the
// entry, or it grants a lease and the entry already grants one.
func (b *batchKeys) add(c *kv.Command) bool {
	grants := fsm.GrantsLease(c)
	if grants && b.granted {
		return false
	}
	keys := fsm.WriteKeys(c)
	for _, k := range keys {
		if _, ok := b.keys[string(k)]; ok {
			return false
		}
	}
	for _, k := range keys {
		b.keys[string(k)] = struct{}{}
	}
	b.granted = b.granted || grants
	return true
}

// propose hands cmd to the proposer and waits for its result. A command
// never reaches Raft on a follower: it fails with a *NotLeaderError first.
func (n *Node) propose(ctx context.Context, cmd *kv.Command) (*fsm.Result, error) {
	select {
	case <-n.closing:
		return nil, ErrShutdown
	default:
	}
	if !n.isLeader() {
		return nil, n.notLeaderErr()
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: request ended before the write was queued: %v", ErrUnavailable, err)
	}
	p := &proposal{cmd: cmd, ctx: ctx, done: make(chan proposalResult, 1)}
	// The queue has room almost always: a plain send locks only the queue,
	// where the select below would also lock ctx's and closing's channels.
	select {
	case n.proposeCh <- p:
	default:
		select {
		case n.proposeCh <- p:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: deadline passed before the write was queued", ErrUnavailable)
		case <-n.closing:
			return nil, ErrShutdown
		}
	}
	select {
	case r := <-p.done:
		return r.res, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %v", ErrTimeout, ctx.Err())
	case <-n.closing:
		return nil, fmt.Errorf("%w: node shutting down with the write in flight", ErrTimeout)
	}
}

// runProposer coalesces every command waiting when a log entry can be
// proposed into that one entry (a CommandBatch when there are several), and
// keeps at most MaxInflightEntries entries in flight. Each command keeps its
// own request id and gets its own result. Raft's BatchApplyCh further groups
// entries that arrive together into one fsync.
func (n *Node) runProposer() {
	defer n.wg.Done()
	inflight := make(chan struct{}, n.cfg.maxInflight())
	maxBytes := n.cfg.maxEntryBytes()
	var carry *proposal // a proposal that conflicted with the previous entry
	defer func() {
		// Answer what was never proposed: not applied.
		if carry != nil {
			carry.done <- proposalResult{err: ErrShutdown}
		}
		for {
			select {
			case p := <-n.proposeCh:
				p.done <- proposalResult{err: ErrShutdown}
			default:
				return
			}
		}
	}()
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-n.proposeCh:
			case <-n.closing:
				return
			}
		}
		// Take the slot before draining, so the entry carries everything
		// that queued up while the previous ones were in flight.
		select {
		case inflight <- struct{}{}:
		case <-n.closing:
			carry = first
			return
		}
		batch := []*proposal{first}
		keys := newBatchKeys()
		keys.add(first.cmd)
		size := fsm.Size(first.cmd)
	drain:
		for len(batch) < maxBatchCommands && size < maxBytes {
			select {
			case p := <-n.proposeCh:
				if !keys.add(p.cmd) {
					carry = p
					break drain
				}
				batch = append(batch, p)
				size += fsm.Size(p.cmd)
			default:
				break drain
			}
		}
		live := batch[:0]
		for _, p := range batch {
			if err := p.ctx.Err(); err != nil {
				// Its caller already answered "outcome unknown"; not
				// proposing it keeps that answer true and wastes nothing.
				p.done <- proposalResult{err: fmt.Errorf("%w: %v", ErrTimeout, err)}
				continue
			}
			live = append(live, p)
		}
		if len(live) == 0 {
			<-inflight
			continue
		}
		n.proposeEntry(live, inflight)
	}
}

// proposeEntry encodes batch as one log entry, hands it to Raft and, in a
// goroutine, hands each proposal its result and frees the in-flight slot.
func (n *Node) proposeEntry(batch []*proposal, inflight chan struct{}) {
	var data []byte
	var err error
	if len(batch) == 1 {
		data, err = fsm.EncodeCommand(batch[0].cmd)
	} else {
		cmds := make([]*kv.Command, len(batch))
		for i, p := range batch {
			cmds[i] = p.cmd
		}
		data, err = fsm.EncodeBatch(cmds)
	}
	if err != nil {
		<-inflight
		for _, p := range batch {
			p.done <- proposalResult{err: fmt.Errorf("encode command: %w", err)}
		}
		return
	}
	n.batches.Add(1)
	n.batchedCommands.Add(uint64(len(batch)))
	if n.cfg.Observer != nil {
		n.cfg.Observer.Proposal(len(batch))
	}
	f := n.raft.Apply(data, enqueueTimeout)
	go func() {
		err := f.Error()
		<-inflight
		if err != nil {
			err = n.translateApplyErr(err)
			for _, p := range batch {
				p.done <- proposalResult{err: err}
			}
			return
		}
		switch resp := f.Response().(type) {
		case *fsm.Result:
			batch[0].done <- proposalResult{res: resp}
		case []*fsm.Result:
			for i, p := range batch {
				if i < len(resp) {
					p.done <- proposalResult{res: resp[i]}
				} else {
					p.done <- proposalResult{err: fmt.Errorf("batch of %d answered with %d results", len(batch), len(resp))}
				}
			}
		default:
			for _, p := range batch {
				p.done <- proposalResult{err: fmt.Errorf("unexpected apply response %T", resp)}
			}
		}
	}()
}

// BatchStats returns how many log entries the proposer has written and how
// many commands they carried.
func (n *Node) BatchStats() (entries, commands uint64) {
	return n.batches.Load(), n.batchedCommands.Load()
}
