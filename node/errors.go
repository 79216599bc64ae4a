package node

import "errors"

// ErrNotLeader means this node is not the leader; the request was not
// applied. Status().LeaderID names the leader when one is known.
var ErrNotLeader = errors.New("not the leader")

// ErrNoLeader means no leader is known; the request was not applied.
var ErrNoLeader = errors.New("no leader known")

// ErrTimeout means the outcome of a write is unknown: it was handed to Raft
// but neither committed nor failed within the caller's deadline, or the
// leader lost leadership while it was in flight. It may still commit; retry
// with the same request id to learn the outcome.
var ErrTimeout = errors.New("outcome unknown")

// ErrShutdown means the node is shutting down or closed; nothing was applied.
var ErrShutdown = errors.New("node is shut down")

// ErrNotReady means the node cannot serve a linearizable read yet: it is the
// leader but has not committed an entry of its current term in time.
var ErrNotReady = errors.New("leader not ready for reads")

// ErrUnavailable means the node could not serve the request now (for
// example, leadership could not be confirmed with a quorum in time, or the
// write could not be enqueued); nothing was applied.
var ErrUnavailable = errors.New("unavailable")

// ErrBadConfig is wrapped by Config.Validate errors.
var ErrBadConfig = errors.New("invalid node config")
