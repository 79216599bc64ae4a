package client

import "github.com/cubekv/cubekv/thrift/kv"

// ReadOption changes one read.
type ReadOption func(*readOptions)

type readOptions struct {
	consistency kv.Consistency
}

// WithConsistency reads at c instead of Config.Consistency.
func WithConsistency(c kv.Consistency) ReadOption {
	return func(o *readOptions) { o.consistency = c }
}

// WriteOption changes one write.
type WriteOption func(*writeOptions)

type writeOptions struct {
	returnPrevious bool
	requestID      *kv.RequestID
	leaseID        *int64 // WithLease
	ttlMs          *int64 // WithTTL
}

// WithPrevious asks for the entry as it was before the write (PutResponse.Previous,
// DeleteResponse.Previous).
func WithPrevious() WriteOption {
	return func(o *writeOptions) { o.returnPrevious = true }
}

// WithRequestID sends the write with id instead of a fresh one from the client's sessions: the way to
// retry a write that ended with ErrUnknownOutcome (UnknownOutcomeError.RequestID), which then applies
// at most once. The cluster answers a repeated id with the first write's result, and refuses an id
// lower than the client id's last with InvalidArgument.
func WithRequestID(id kv.RequestID) WriteOption {
	return func(o *writeOptions) { o.requestID = &id }
}
