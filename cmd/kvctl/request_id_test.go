package main

import (
	"strings"
	"testing"

	"github.com/cubekv/cubekv/client/clienttest"
	"github.com/cubekv/cubekv/thrift/kv"
)

// TestKvctl_RequestIDFlag: put, del, cas and txn send the id given with --request-id, exactly as
// given; a malformed id is a usage error (exit 2) and sends nothing.
func TestKvctl_RequestIDFlag(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	ep := "--endpoints=" + srv.Addr
	txn := `{"compare":[],"success":[{"op":"put","key":"t","value":"1"}],"failure":[]}`
	tests := []struct {
		method string
		stdin  string
		args   []string
		want   kv.RequestID
	}{
		{"put", "", []string{"put", "--request-id", "12345:1", "k", "v"}, kv.RequestID{ClientID: 12345, Sequence: 1}},
		{"cas", "", []string{"cas", "k", "--expect-value", "v", "w", "--request-id", "12345:2"}, kv.RequestID{ClientID: 12345, Sequence: 2}},
		{"txn", txn, []string{"txn", "--request-id=-9:7"}, kv.RequestID{ClientID: -9, Sequence: 7}},
		{"delete_key", "", []string{"del", "k", "--request-id", "12345:3"}, kv.RequestID{ClientID: 12345, Sequence: 3}},
	}
	for _, tt := range tests {
		before := len(srv.Calls())
		code, stdout, stderr := mustRun(t, tt.stdin, append([]string{ep}, tt.args...)...)
		if code != exitOK {
			t.Fatalf("%v: exit %d (stdout %q, stderr %q)", tt.args, code, stdout, stderr)
		}
		calls := srv.Calls()[before:]
		if len(calls) != 1 || calls[0].Method != tt.method || calls[0].RequestID == nil || *calls[0].RequestID != tt.want {
			t.Fatalf("%v: server saw %+v, want one %s with request id %v", tt.args, calls, tt.method, tt.want)
		}
	}

	for _, bad := range []string{"12345", "0:1", "12345:0", "12345:-1", "x:1", "1:y", ":", "1:2:3"} {
		before := len(srv.Calls())
		code, _, stderr := mustRun(t, "", ep, "put", "--request-id", bad, "k", "v")
		if code != exitBadArgs || !strings.Contains(stderr, "request-id") {
			t.Errorf("--request-id %q: exit %d, stderr %q; want %d naming the flag", bad, code, stderr, exitBadArgs)
		}
		if n := len(srv.Calls()) - before; n != 0 {
			t.Errorf("--request-id %q: %d calls sent", bad, n)
		}
	}
}
