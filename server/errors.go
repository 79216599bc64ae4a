package server

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cubekv/cubekv/fsm"
	"github.com/cubekv/cubekv/lease"
	"github.com/cubekv/cubekv/node"
	"github.com/cubekv/cubekv/thrift/kv"
)

// Handlers return errors in the form they were produced: node's and fsm's
// sentinels, wrapped with %w, and this package's *invalidArgError. Each
// service method hands its error to Handler.done, which maps it once,
// through errorTable, to the Thrift exception the client sees. An
// exception another node answered with (a forwarded write's, say) arrives
// as a *peerError and reaches the client unchanged.

// errInternal is what a recovered handler panic answers.
var errInternal = errors.New("internal error")

// errInvalidArgument is matched by every *invalidArgError.
var errInvalidArgument = errors.New("invalid argument")

// invalidArgError is a validation failure: which field and why.
type invalidArgError struct {
	field, reason string
}

func (e *invalidArgError) Error() string { return e.field + ": " + e.reason }

// Is makes errors.Is(err, errInvalidArgument) hold.
func (e *invalidArgError) Is(target error) bool { return target == errInvalidArgument }

func invalid(field, format string, args ...any) error {
	return &invalidArgError{field: field, reason: fmt.Sprintf(format, args...)}
}

// requestIDError is a write's failure with the request id it carried, for
// a Timeout answer to name.
type requestIDError struct {
	id  *kv.RequestID
	err error
}

func (e *requestIDError) Error() string { return e.err.Error() }
func (e *requestIDError) Unwrap() error { return e.err }

// withRequestID attaches a write's request id (nil when it has none) to
// its error.
func withRequestID(err error, id *kv.RequestID) error {
	if err == nil || id == nil {
		return err
	}
	return &requestIDError{id: id, err: err}
}

// peerError is a declared exception another node answered with. Its
// Unwrap names the sentinel the exception stands for, so node reads it as
// its own errors (node.Remote requires that), and toThrift hands the
// exception to the client as the peer built it.
type peerError struct {
	peer     string // the node that answered
	ex       error  // the generated exception, as received
	sentinel error
}

func (e *peerError) Error() string {
	return fmt.Sprintf("%v: %s answered %v", e.sentinel, e.peer, e.ex)
}

func (e *peerError) Unwrap() error { return e.sentinel }

// errPeerAnswer is matched by every *peerError.
var errPeerAnswer = errors.New("a peer's answer")

// Is makes errors.Is(err, errPeerAnswer) hold.
func (e *peerError) Is(target error) bool { return target == errPeerAnswer }

// fromPeer returns err as a *peerError when it is a declared exception
// that peer answered with, and false otherwise (a transport failure, which
// the caller maps).
func fromPeer(peer string, err error) (*peerError, bool) {
	var (
		nl  *kv.NotLeader
		un  *kv.Unavailable
		to  *kv.Timeout
		ia  *kv.InvalidArgument
		lnf *kv.LeaseNotFound
	)
	switch {
	case errors.As(err, &nl):
		return &peerError{peer: peer, ex: nl, sentinel: node.ErrNotLeader}, true
	case errors.As(err, &un):
		return &peerError{peer: peer, ex: un, sentinel: node.ErrUnavailable}, true
	case errors.As(err, &to):
		return &peerError{peer: peer, ex: to, sentinel: node.ErrTimeout}, true
	case errors.As(err, &ia):
		return &peerError{peer: peer, ex: ia, sentinel: fsm.ErrInvalidCommand}, true
	case errors.As(err, &lnf):
		return &peerError{peer: peer, ex: lnf, sentinel: &fsm.LeaseNotFoundError{ID: lnf.LeaseID}}, true
	}
	return nil, false
}

// errorTable maps the sentinels produced below the front door to the Thrift
// exceptions clients see. It is walked in order with errors.Is, so wrapped
// errors match. Declared exceptions are returned as the generated pointer
// types themselves, never wrapped: the generated processor dispatches them
// with a concrete type switch. id is the request id of a failed write,
// nil otherwise.
var errorTable = []struct {
	target error
	to     func(err error, id *kv.RequestID) error
}{
	{errPeerAnswer, func(err error, _ *kv.RequestID) error {
		var pe *peerError
		errors.As(err, &pe)
		return pe.ex
	}},
	{errInvalidArgument, func(err error, _ *kv.RequestID) error {
		var ia *invalidArgError
		errors.As(err, &ia)
		return &kv.InvalidArgument{Field: ia.field, Reason: ia.reason}
	}},
	{node.ErrNotLeader, func(err error, _ *kv.RequestID) error {
		ex := kv.NewNotLeader()
		var nl *node.NotLeaderError
		if errors.As(err, &nl) {
			ex.LeaderID = &nl.LeaderID
		}
		return ex
	}},
	{node.ErrNoLeader, func(error, *kv.RequestID) error { return kv.NewNotLeader() }},
	{node.ErrTimeout, func(err error, id *kv.RequestID) error {
		return &kv.Timeout{RequestID: id, Reason: reason(err, node.ErrTimeout)}
	}},
	{node.ErrUnavailable, func(err error, _ *kv.RequestID) error {
		return &kv.Unavailable{Reason: reason(err, node.ErrUnavailable)}
	}},
	{node.ErrNotReady, unavailable},
	{node.ErrShutdown, unavailable},
	{fsm.ErrStaleSequence, func(err error, _ *kv.RequestID) error {
		return &kv.InvalidArgument{Field: "request_id.sequence", Reason: err.Error()}
	}},
	{fsm.ErrInvalidCommand, commandRefused},
	{fsm.ErrAnswerTooLarge, commandRefused},
	{context.DeadlineExceeded, func(err error, id *kv.RequestID) error {
		return &kv.Timeout{RequestID: id, Reason: err.Error()}
	}},
	{context.Canceled, unavailable},
	{node.ErrUnknownMember, func(err error, _ *kv.RequestID) error {
		return &kv.InvalidArgument{Field: "node_id", Reason: err.Error()}
	}},
	{node.ErrMembership, unavailable},
	{fsm.ErrCompacted, func(err error, _ *kv.RequestID) error {
		var ce *fsm.CompactedError
		if !errors.As(err, &ce) {
			return &kv.Compacted{}
		}
		return &kv.Compacted{OldestIndex: int64(ce.Oldest), CurrentIndex: int64(ce.Current)}
	}},
	// Leases.
	{fsm.ErrLeaseNotFound, func(err error, _ *kv.RequestID) error {
		ex := &kv.LeaseNotFound{}
		var lnf *fsm.LeaseNotFoundError
		if errors.As(err, &lnf) {
			ex.LeaseID = lnf.ID
		}
		return ex
	}},
	{fsm.ErrLeaseLimit, commandRefused},
	{lease.ErrNotActive, unavailable},
}

func unavailable(err error, _ *kv.RequestID) error { return &kv.Unavailable{Reason: err.Error()} }

// commandRefused answers a command the command table refused, naming the
// request's field when the error does.
func commandRefused(err error, _ *kv.RequestID) error {
	var ce *fsm.CommandError
	if errors.As(err, &ce) {
		return &kv.InvalidArgument{Field: ce.Field, Reason: ce.Reason}
	}
	return &kv.InvalidArgument{Field: "request", Reason: err.Error()}
}

// reason is err's text for an exception that already names sentinel
// (Unavailable for node.ErrUnavailable, Timeout for node.ErrTimeout):
// the sentinel's own words at its front are dropped, so a client that
// prefixes the exception's name reads it once.
func reason(err, sentinel error) string {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, sentinel.Error()+": "); ok {
		return rest
	}
	return msg
}

// toThrift maps err to the exception a client sees, naming the leader's
// Thrift address in a NotLeader when addrOf knows it. Errors not in the
// table become a plain error, which the generated processor answers as
// TApplicationException INTERNAL_ERROR.
func toThrift(err error, addrOf func(id string) string) error {
	if err == nil {
		return nil
	}
	var id *kv.RequestID
	var rid *requestIDError
	if errors.As(err, &rid) {
		id = rid.id
	}
	for _, e := range errorTable {
		if !errors.Is(err, e.target) {
			continue
		}
		out := e.to(err, id)
		if nl, ok := out.(*kv.NotLeader); ok && nl.LeaderID != nil && addrOf != nil {
			if addr := addrOf(*nl.LeaderID); addr != "" {
				nl.LeaderAddr = &addr
			}
		}
		return out
	}
	return err
}

// forRead rewrites a read's error: with no leader known a read cannot be
// redirected, so it is refused as unavailable rather than NotLeader.
func forRead(err error) error {
	if errors.Is(err, node.ErrNoLeader) {
		return fmt.Errorf("%w: %v", node.ErrUnavailable, err)
	}
	return err
}

// noOutcome rewrites the error of a request that changes nothing (a read
// index, a question): its outcome cannot be unknown, so a timeout is
// unavailability.
func noOutcome(err error) error {
	if errors.Is(err, node.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %v", node.ErrUnavailable, err)
	}
	return err
}

// Outcome names an answer for metrics: "ok", or the exception it became.
func Outcome(err error) string {
	switch err.(type) {
	case nil:
		return "ok"
	case *kv.InvalidArgument:
		return "invalid_argument"
	case *kv.NotLeader:
		return "not_leader"
	case *kv.Unavailable:
		return "unavailable"
	case *kv.Timeout:
		return "timeout"
	case *kv.Compacted:
		return "compacted"
	case *kv.LeaseNotFound:
		return "lease_not_found"
	default:
		return "internal_error"
	}
}
