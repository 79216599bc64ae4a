// Command kvctl is the command-line client of cubekv: reads, writes, scans, compare-and-swap,
// transactions, leases (lease grant|keep-alive|revoke|info|list, put --lease/--ttl), locks (lock
// NAME -- command) and elections (elect NAME VALUE), cluster status, membership (member list, add,
// remove, promote) and leadership transfer over the Go client (package client), which learns the cluster from any endpoint named.
//
// Exit codes: 0 success; 1 key or lease not found, or compare failed; 2 bad arguments (usage errors and
// InvalidArgument from the server); 3 server or connection error; 4 write outcome unknown (the
// request id is printed on stderr as client_id:sequence; put, del, cas and txn take it back with
// --request-id to retry the write without applying it twice).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cubekv/cubekv/client"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes.
const (
	exitOK          = 0
	exitNotFound    = 1
	exitBadArgs     = 2
	exitServerError = 3
	exitUnknown     = 4
	exitLockLost    = 5 // kvctl lock / elect: the lock's lease ended
)

// errNotFound means the key (or, for del, the key to delete) does not exist.
var errNotFound = errors.New("key not found")

// errCompareFailed means a CAS compare or a transaction's compares did not hold.
var errCompareFailed = errors.New("compare failed")

// usageError is a command used wrongly: bad flags, arguments or input.
type usageError struct {
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes kvctl with args and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root, ran := newRootCmd(stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	code := exitCode(err, *ran)
	var exit *exitError
	if err != nil && !errors.As(err, &exit) {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		var uo *client.UnknownOutcomeError
		if errors.As(err, &uo) {
			fmt.Fprintf(stderr, "request id: %d:%d\n", uo.RequestID.ClientID, uo.RequestID.Sequence)
		}
		if code == exitBadArgs && !*ran {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", root.Name())
		}
	}
	return code
}

// exitCode maps the error of a command to kvctl's exit code; ran says whether a command's run
// function started (errors before that are cobra's usage errors).
func exitCode(err error, ran bool) int {
	var usage *usageError
	var exit *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &exit):
		return exit.code
	case !ran:
		return exitBadArgs
	case errors.Is(err, errLockLost):
		return exitLockLost
	case errors.Is(err, client.ErrUnknownOutcome):
		return exitUnknown
	case errors.Is(err, errNotFound), errors.Is(err, errCompareFailed), errors.Is(err, client.ErrLeaseNotFound):
		return exitNotFound
	case errors.As(err, &usage), errors.Is(err, client.ErrInvalidArgument):
		return exitBadArgs
	default:
		return exitServerError
	}
}
