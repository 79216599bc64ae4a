package server

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cubekv/cubekv/fsm"
	"github.com/cubekv/cubekv/lease"
	"github.com/cubekv/cubekv/node"
	"github.com/cubekv/cubekv/thrift/kv"
)

// answered lists every sentinel that can reach a handler and the exception
// it must become, named as Outcome names it.
var answered = map[string]struct {
	err     error
	outcome string
}{
	"node.ErrNotLeader":      {node.ErrNotLeader, "not_leader"},
	"node.ErrNoLeader":       {node.ErrNoLeader, "not_leader"},
	"node.ErrTimeout":        {node.ErrTimeout, "timeout"},
	"node.ErrUnavailable":    {node.ErrUnavailable, "unavailable"},
	"node.ErrNotReady":       {node.ErrNotReady, "unavailable"},
	"node.ErrShutdown":       {node.ErrShutdown, "unavailable"},
	"node.ErrUnknownMember":  {node.ErrUnknownMember, "invalid_argument"},
	"node.ErrMembership":     {node.ErrMembership, "unavailable"},
	"fsm.ErrStaleSequence":   {fsm.ErrStaleSequence, "invalid_argument"},
	"fsm.ErrInvalidCommand":  {fsm.ErrInvalidCommand, "invalid_argument"},
	"fsm.ErrAnswerTooLarge":  {fsm.ErrAnswerTooLarge, "invalid_argument"},
	"fsm.CommandError":       {&fsm.CommandError{Field: "key", Reason: "too long", Err: fsm.ErrInvalidCommand}, "invalid_argument"},
	"context.DeadlineExceed": {context.DeadlineExceeded, "timeout"},
	"context.Canceled":       {context.Canceled, "unavailable"},
	"server.invalid":         {invalid("key", "too long"), "invalid_argument"},
	"server.peerError":       {&peerError{peer: "leader n1", ex: &kv.Unavailable{Reason: "no quorum"}, sentinel: node.ErrUnavailable}, "unavailable"},
	"fsm.ErrCompacted":       {&fsm.CompactedError{Oldest: 5, Current: 9}, "compacted"},
	// Leases.
	"fsm.ErrLeaseNotFound":  {&fsm.CommandError{Field: "lease_id", Reason: "not found", Err: &fsm.LeaseNotFoundError{ID: 7}}, "lease_not_found"},
	"fsm.ErrLeaseLimit":     {&fsm.CommandError{Field: "ttl_ms", Reason: "too many", Err: fsm.ErrLeaseLimit}, "invalid_argument"},
	"lease.ErrNotActive":    {lease.ErrNotActive, "unavailable"},
	"server.peerLeaseError": {&peerError{peer: "leader n1", ex: &kv.LeaseNotFound{LeaseID: 7}, sentinel: &fsm.LeaseNotFoundError{ID: 7}}, "lease_not_found"},
}

// unanswered lists the sentinels node and fsm export that never reach a
// handler, and why.
var unanswered = map[string]string{
	"node.ErrBadConfig":        "config validation, before the node serves",
	"node.ErrDataDirInUse":     "start-up",
	"node.ErrIdentityMismatch": "start-up",
	"node.ErrLogStoreMismatch": "start-up",
	"node.ErrCorruptStore":     "start-up",
	"node.ErrNothingToMigrate": "offline log migration",
	"node.ErrNothingToRecover": "offline recovery",
	"node.ErrCannotRebuild":    "start-up",
	"node.ErrStorage":          "the admin port's /ready",
	"node.ErrLowSpace":         "start-up",
	"fsm.ErrCorruptEntry":      "the FSM panics on it",
	"fsm.ErrCorruptSnapshot":   "restore, through the admin port",
	"fsm.ErrCorruptState":      "start-up: a durable engine's tables do not read back",
	"node.ErrForeignState":     "start-up",
	"fsm.ErrReplaying":         "raft's own snapshots, which raft retries",
	"fsm.ErrInvalidConfig":     "config validation",
}

// exportedSentinels returns the package-level Err* variables declared in
// the non-test files of dir, as "pkg.ErrX".
func exportedSentinels(t *testing.T, pkg, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, spec := range gd.Specs {
				for _, name := range spec.(*ast.ValueSpec).Names {
					if strings.HasPrefix(name.Name, "Err") {
						out = append(out, pkg+"."+name.Name)
					}
				}
			}
		}
	}
	return out
}

// TestErrorTable_EverySentinelIsAnsweredOrListed fails when node or fsm
// gains a sentinel that is neither mapped to an exception nor listed as
// never reaching a handler.
func TestErrorTable_EverySentinelIsAnsweredOrListed(t *testing.T) {
	var found []string
	found = append(found, exportedSentinels(t, "node", "../node")...)
	found = append(found, exportedSentinels(t, "fsm", "../fsm")...)
	if len(found) < 10 {
		t.Fatalf("found only %v: the source walk is broken", found)
	}
	for _, name := range found {
		_, ok := answered[name]
		if why := unanswered[name]; !ok && why == "" {
			t.Errorf("%s is new: map it in errorTable and add it to answered, or list it in unanswered with the reason it never reaches a handler", name)
		}
	}
}

func TestErrorTable_EverySentinelMapsToItsException(t *testing.T) {
	for name, tc := range answered {
		t.Run(name, func(t *testing.T) {
			got := toThrift(fmt.Errorf("while serving: %w", tc.err), nil)
			if o := Outcome(got); o != tc.outcome {
				t.Fatalf("%v became %T %v (%s), want %s", tc.err, got, got, o, tc.outcome)
			}
		})
	}
	// Every row of the table is reached by one of the cases, so a row
	// added without a case here fails.
	for i, row := range errorTable {
		hit := false
		for _, tc := range answered {
			if errors.Is(tc.err, row.target) {
				hit = true
			}
		}
		if !hit {
			t.Errorf("errorTable row %d (%v) has no case in answered", i, row.target)
		}
	}
}

func TestErrorTable_UnknownErrorIsInternal(t *testing.T) {
	for _, err := range []error{errors.New("disk on fire"), errInternal, fmt.Errorf("apply: %w", errors.New("x"))} {
		got := toThrift(err, nil)
		if got != err || Outcome(got) != "internal_error" {
			t.Errorf("%v became %T %v, want it unchanged, answered as INTERNAL_ERROR", err, got, got)
		}
	}
	if got := toThrift(nil, nil); got != nil {
		t.Errorf("nil became %v", got)
	}
}

func TestErrorTable_ReasonsReadTheSentinelOnce(t *testing.T) {
	un, ok := toThrift(fmt.Errorf("%w: leadership not confirmed", node.ErrUnavailable), nil).(*kv.Unavailable)
	if !ok || un.Reason != "leadership not confirmed" {
		t.Errorf("unavailable: got %+v, want reason %q", un, "leadership not confirmed")
	}
	id := &kv.RequestID{ClientID: 1, Sequence: 2}
	to, ok := toThrift(withRequestID(fmt.Errorf("%w: leadership lost", node.ErrTimeout), id), nil).(*kv.Timeout)
	if !ok || to.Reason != "leadership lost" || to.RequestID != id {
		t.Errorf("timeout: got %+v, want reason %q and the request id", to, "leadership lost")
	}
	// Other sentinels keep their words: they say more than the exception.
	un, ok = toThrift(node.ErrShutdown, nil).(*kv.Unavailable)
	if !ok || un.Reason != node.ErrShutdown.Error() {
		t.Errorf("shutdown: got %+v", un)
	}
}

func TestErrorTable_PeerAnswerReachesTheClientUnchanged(t *testing.T) {
	id := &kv.RequestID{ClientID: 7, Sequence: 3}
	for _, ex := range []error{
		&kv.NotLeader{LeaderID: new("n3"), LeaderAddr: new("127.0.0.1:3")},
		&kv.Unavailable{Reason: "no quorum"},
		&kv.Timeout{RequestID: id, Reason: "leadership lost"},
		&kv.InvalidArgument{Field: "request_id.sequence", Reason: "stale"},
	} {
		pe, ok := fromPeer("leader n1", ex)
		if !ok {
			t.Fatalf("%T was not recognised as a peer's answer", ex)
		}
		// node reads it as its own sentinel...
		var sentinel error
		switch ex.(type) {
		case *kv.NotLeader:
			sentinel = node.ErrNotLeader
		case *kv.Unavailable:
			sentinel = node.ErrUnavailable
		case *kv.Timeout:
			sentinel = node.ErrTimeout
		case *kv.InvalidArgument:
			sentinel = fsm.ErrInvalidCommand
		}
		if !errors.Is(pe, sentinel) {
			t.Errorf("%T: errors.Is(%v) is false", ex, sentinel)
		}
		// ...and the client gets the exception itself, even wrapped with
		// the follower's request id.
		if got := toThrift(withRequestID(fmt.Errorf("forward: %w", pe), &kv.RequestID{}), nil); got != ex {
			t.Errorf("%T became %T %v, want the peer's exception unchanged", ex, got, got)
		}
	}
	if _, ok := fromPeer("leader n1", errors.New("connection reset")); ok {
		t.Error("a transport failure was taken for a peer's answer")
	}
}
