package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/thrift/kv"
)

// requestIDFlag is the --request-id CLIENT:SEQ flag of the writes: the id a write that ended with
// "outcome unknown" printed, to retry it without applying it twice.
type requestIDFlag struct {
	id *kv.RequestID // nil unless given
}

// addRequestIDFlag adds --request-id to cmd.
func addRequestIDFlag(cmd *cobra.Command) *requestIDFlag {
	f := &requestIDFlag{}
	cmd.Flags().Var(f, "request-id", "send the write with this request id (CLIENT:SEQ, as printed after an unknown\n"+
		"outcome) instead of a fresh one: a retry applies at most once")
	return f
}

func (f *requestIDFlag) String() string {
	if f.id == nil {
		return ""
	}
	return fmt.Sprintf("%d:%d", f.id.ClientID, f.id.Sequence)
}

func (f *requestIDFlag) Type() string { return "CLIENT:SEQ" }

// Set parses CLIENT:SEQ: a non-zero client id and a positive sequence, both decimal int64.
func (f *requestIDFlag) Set(s string) error {
	c, q, ok := strings.Cut(s, ":")
	if !ok {
		return fmt.Errorf("%q: want CLIENT:SEQ", s)
	}
	client, err := strconv.ParseInt(c, 10, 64)
	if err != nil || client == 0 {
		return fmt.Errorf("%q: client id must be a non-zero integer", s)
	}
	seq, err := strconv.ParseInt(q, 10, 64)
	if err != nil || seq <= 0 {
		return fmt.Errorf("%q: sequence must be a positive integer", s)
	}
	f.id = &kv.RequestID{ClientID: client, Sequence: seq}
	return nil
}

// options returns the client write options that send f's id; none when f is nil or was not given.
func (f *requestIDFlag) options() []client.WriteOption {
	if f == nil || f.id == nil {
		return nil
	}
	return []client.WriteOption{client.WithRequestID(*f.id)}
}

// requestID returns the id given, nil when f is nil or none was.
func (f *requestIDFlag) requestID() *kv.RequestID {
	if f == nil {
		return nil
	}
	return f.id
}
