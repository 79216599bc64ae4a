package transport

import (
	"fmt"
	"testing"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/cubekv/cubekv/thrift/kv"
)

// Every exception a KV call declares leaves the connection in step and
// reusable; anything else may not.
func TestIsDeclaredException(t *testing.T) {
	declared := []error{
		&kv.InvalidArgument{}, &kv.NotLeader{}, &kv.Unavailable{}, &kv.Timeout{},
		&kv.Compacted{}, &kv.LeaseNotFound{},
	}
	for _, err := range declared {
		if !isDeclaredException(err) {
			t.Errorf("%T is declared by the KV service but not treated as such", err)
		}
		if !isDeclaredException(fmt.Errorf("call: %w", err)) {
			t.Errorf("wrapped %T is not treated as declared", err)
		}
	}
	for _, err := range []error{
		thrift.NewTTransportException(thrift.TIMED_OUT, "i/o timeout"),
		thrift.NewTApplicationException(thrift.MISSING_RESULT, "no result"),
		fmt.Errorf("plain"),
	} {
		if isDeclaredException(err) {
			t.Errorf("%v treated as a declared exception", err)
		}
	}
}
