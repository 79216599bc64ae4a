package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/cubekv/cubekv/fsm"
	"github.com/cubekv/cubekv/node"
	"github.com/cubekv/cubekv/thrift/kv"
)

// errInternal is what a recovered handler panic answers.
var errInternal = errors.New("internal error")

// invalidArgError is a validation failure: which field and why.
type invalidArgError struct {
	field, reason string
}

func (e *invalidArgError) Error() string { return e.field + ": " + e.reason }

func invalid(field, format string, args ...any) error {
	return &invalidArgError{field: field, reason: fmt.Sprintf(format, args...)}
}

// errorTable maps errors produced below the front door to the Thrift
// exceptions clients see. It is walked in order with errors.Is, so wrapped
// errors match. Declared exceptions are returned as the generated pointer
// types themselves, never wrapped: the generated processor dispatches them
// with a concrete type switch.
var errorTable = []struct {
	target error
	to     func(err error, id *kv.RequestID) error
}{
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
		return &kv.Timeout{RequestID: id, Reason: err.Error()}
	}},
	{node.ErrUnavailable, unavailable},
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

// toThrift maps err to the exception a client sees. id is the request id of
// a write (nil for reads). Errors not in the table become a plain error,
// which the generated processor answers as TApplicationException
// INTERNAL_ERROR.
func toThrift(err error, id *kv.RequestID) error {
	if err == nil {
		return nil
	}
	var ia *invalidArgError
	if errors.As(err, &ia) {
		return &kv.InvalidArgument{Field: ia.field, Reason: ia.reason}
	}
	// Declared exceptions that crossed from another node pass through.
	var kia *kv.InvalidArgument
	if errors.As(err, &kia) {
		return kia
	}
	for _, e := range errorTable {
		if errors.Is(err, e.target) {
			return e.to(err, id)
		}
	}
	return err
}
