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
}

// WithPrevious asks for the entry as it was before the write (PutResponse.Previous,
// DeleteResponse.Previous).
func WithPrevious() WriteOption {
	return func(o *writeOptions) { o.returnPrevious = true }
}
