package client

import (
	"errors"
	"fmt"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

// ErrNotLeader means the node that was asked is not the leader and could not forward the request;
// nothing was applied. Errors that match it are *NotLeaderError values.
var ErrNotLeader = errors.New("not leader")

// ErrUnavailable means the cluster could not serve the request (no quorum, shutting down, catching
// up); nothing was applied.
var ErrUnavailable = errors.New("unavailable")

// ErrInvalidArgument means the request is wrong and was refused before anything was applied. Errors
// that match it are *InvalidArgumentError values.
var ErrInvalidArgument = errors.New("invalid argument")

// ErrTimeout means the server gave up on a read before it completed. (A write that times out is
// reported as ErrUnknownOutcome instead, because it may have committed.)
var ErrTimeout = errors.New("server timed out")

// ErrUnknownOutcome means a write may or may not have committed: it timed out or its connection broke
// after it was sent, and every retry allowed by the context's deadline (and MaxRetries) did too. Errors that match
// it are *UnknownOutcomeError values carrying the write's request id; retrying with that id (set it in
// a CASRequest or TxnRequest, or pass WithRequestID to Put or Delete) learns the outcome without
// applying twice.
var ErrUnknownOutcome = errors.New("write outcome unknown")

// ErrClosed is returned by every call after Close.
var ErrClosed = transport.ErrPoolClosed

// NotLeaderError is the NotLeader answer of a node, naming the leader when it knows one.
type NotLeaderError struct {
	// LeaderID is the leader's node id, empty when unknown.
	LeaderID string
	// LeaderAddr is the leader's Thrift address, empty when unknown.
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	switch {
	case e.LeaderID == "":
		return "not leader, leader unknown"
	case e.LeaderAddr == "":
		return fmt.Sprintf("not leader, leader is %s (its address is not known to the node asked)", e.LeaderID)
	}
	return fmt.Sprintf("not leader, leader is %s at %s", e.LeaderID, e.LeaderAddr)
}

// Is makes errors.Is(err, ErrNotLeader) hold.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// InvalidArgumentError is a request refused as wrong, by the server or by the client before sending.
type InvalidArgumentError struct {
	// Field is the offending field, e.g. "key" or "txn.success[3].value".
	Field string
	// Reason says what is wrong with it.
	Reason string
}

func (e *InvalidArgumentError) Error() string {
	return fmt.Sprintf("invalid argument %s: %s", e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidArgument) hold.
func (e *InvalidArgumentError) Is(target error) bool { return target == ErrInvalidArgument }

// UnknownOutcomeError is a write whose outcome is unknown (see ErrUnknownOutcome).
type UnknownOutcomeError struct {
	// RequestID is the id the write was sent with; a retry with it is applied at most once.
	RequestID kv.RequestID
	// Err is the last error seen.
	Err error
}

func (e *UnknownOutcomeError) Error() string {
	return fmt.Sprintf("write outcome unknown (request id %d:%d): %v",
		e.RequestID.ClientID, e.RequestID.Sequence, e.Err)
}

// Is makes errors.Is(err, ErrUnknownOutcome) hold.
func (e *UnknownOutcomeError) Is(target error) bool { return target == ErrUnknownOutcome }

// Unwrap returns the last error seen.
func (e *UnknownOutcomeError) Unwrap() error { return e.Err }

// outcome is what one attempt tells the retry loop.
type outcome int

const (
	// outcomeFinal: stop and return the error (nil on success). Whatever the attempt did is known.
	outcomeFinal outcome = iota + 1
	// outcomeRetry: nothing was applied; try again (the next node, or the named leader).
	outcomeRetry
	// outcomeRetryUnknown: the attempt may have been applied; try again with the same request id.
	outcomeRetryUnknown
	// outcomeFinalUnknown: stop; the attempt may have been applied.
	outcomeFinalUnknown
)

// classify maps the error of one attempt to what the retry loop does next and to the error callers
// see. sent says whether any byte of the request reached the socket. Thrift exceptions become this
// package's errors here and nowhere else.
func classify(err error, sent bool) (outcome, error) {
	if err == nil {
		return outcomeFinal, nil
	}
	var (
		invalid     *kv.InvalidArgument
		notLeader   *kv.NotLeader
		unavailable *kv.Unavailable
		timeout     *kv.Timeout
		leaseNF     *kv.LeaseNotFound
		appErr      thrift.TApplicationException
		protoErr    thrift.TProtocolException
	)
	switch {
	case errors.As(err, &invalid):
		return outcomeFinal, &InvalidArgumentError{Field: invalid.Field, Reason: invalid.Reason}
	case errors.As(err, &notLeader):
		return outcomeRetry, &NotLeaderError{LeaderID: notLeader.GetLeaderID(), LeaderAddr: notLeader.GetLeaderAddr()}
	case errors.As(err, &unavailable):
		return outcomeRetry, fmt.Errorf("%w: %s", ErrUnavailable, unavailable.Reason)
	case errors.As(err, &timeout):
		return outcomeRetryUnknown, fmt.Errorf("%w: %s", ErrTimeout, timeout.Reason)
	case errors.As(err, &leaseNF):
		return outcomeFinal, &LeaseNotFoundError{ID: leaseNF.LeaseID}
	case errors.Is(err, transport.ErrPoolClosed):
		return outcomeFinal, err
	case !sent && errors.As(err, &protoErr) && protoErr.TExceptionType() == thrift.TExceptionTypeProtocol &&
		protoErr.TypeId() == thrift.SIZE_LIMIT:
		// TTransportException and TApplicationException satisfy the TProtocolException interface
		// too, and a transport's TIMED_OUT shares SIZE_LIMIT's number: only a real protocol
		// exception is this client's frame limit.
		// Refused by this client's own frame limit before anything was written.
		return outcomeFinal, &InvalidArgumentError{Field: "request", Reason: err.Error()}
	case errors.As(err, &appErr):
		// The server failed while handling the request; retrying it unchanged would fail alike.
		if sent {
			return outcomeFinalUnknown, fmt.Errorf("server error: %w", err)
		}
		return outcomeFinal, fmt.Errorf("server error: %w", err)
	case sent:
		return outcomeRetryUnknown, err
	default:
		return outcomeRetry, err
	}
}
