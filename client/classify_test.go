package client

import (
	"errors"
	"os"
	"testing"

	"github.com/apache/thrift/lib/go/thrift"
)

// A socket deadline that passes before the request is written comes back as
// a TTransportException TIMED_OUT, whose number is SIZE_LIMIT's: it is a
// retryable failure to reach the node, never an invalid argument.
func TestClassify_TransportTimeoutIsNotInvalidArgument(t *testing.T) {
	timeout := thrift.NewTTransportExceptionFromError(os.ErrDeadlineExceeded)
	if timeout.TypeId() != thrift.TIMED_OUT || thrift.TIMED_OUT != thrift.SIZE_LIMIT {
		t.Fatalf("premise: transport timeout type %d, SIZE_LIMIT %d", timeout.TypeId(), thrift.SIZE_LIMIT)
	}
	for _, sent := range []bool{false, true} {
		out, err := classify(timeout, sent)
		if errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("sent=%v: a transport timeout classified as %v", sent, err)
		}
		want := outcomeRetry
		if sent {
			want = outcomeRetryUnknown
		}
		if out != want {
			t.Fatalf("sent=%v: outcome %d, want %d", sent, out, want)
		}
	}

	// The client's own frame limit, refused before anything is written, is.
	tooBig := thrift.NewTProtocolExceptionWithType(thrift.SIZE_LIMIT, errors.New("frame too large"))
	if out, err := classify(tooBig, false); out != outcomeFinal || !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("frame limit: outcome %d, err %v; want final invalid argument", out, err)
	}
}
