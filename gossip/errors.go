package gossip

import "errors"

// ErrBadConfig is returned by Config.Validate and New for an unusable
// configuration; the wrapped message names the field and the value.
var ErrBadConfig = errors.New("gossip: bad config")

// ErrMetaTooLarge is returned when a node's encoded metadata exceeds
// memberlist.MetaMaxSize bytes.
var ErrMetaTooLarge = errors.New("gossip: metadata too large")

// ErrNotStarted is returned by operations that need a running memberlist
// when Start has not been called.
var ErrNotStarted = errors.New("gossip: not started")

// ErrAlreadyStarted is returned by Start when called a second time.
var ErrAlreadyStarted = errors.New("gossip: already started")

// ErrShutdown is returned by operations called after Shutdown.
var ErrShutdown = errors.New("gossip: shut down")

// ErrLeft is returned by operations that would announce the node again
// after Leave.
var ErrLeft = errors.New("gossip: node has left")

// ErrTimeout is returned when a broadcast (metadata update or leave) was
// queued but not confirmed sent within the timeout. The message may still
// reach the other members.
var ErrTimeout = errors.New("gossip: broadcast timeout")

// ErrJoinFailed is returned by Join when no member could be contacted.
var ErrJoinFailed = errors.New("gossip: join failed")

// ErrNoKeyring is returned by the key operations on a node started without
// a SecretKey: encryption cannot be switched on at run time.
var ErrNoKeyring = errors.New("gossip: encryption not enabled")

// ErrBadKey is returned for a gossip key that is not 16, 24 or 32 bytes,
// or a key file that does not hold one.
var ErrBadKey = errors.New("gossip: bad key")

// ErrUnknownKey is returned by UseKey and RemoveKey for a key that is not
// installed.
var ErrUnknownKey = errors.New("gossip: key not installed")

// ErrPrimaryKey is returned by RemoveKey for the key currently used to
// encrypt; switch to another key with UseKey first.
var ErrPrimaryKey = errors.New("gossip: cannot remove the primary key")
