package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/client/clienttest"
	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/thrift/kv"
)

// mustGlobals returns global options pointing at srv, simple output.
func mustGlobals(t *testing.T, srv *clienttest.Server) *globalOptions {
	t.Helper()
	g := defaultGlobalOptions()
	g.endpoints = srv.Addr
	return g
}

// mustRun runs kvctl with args and returns the exit code, stdout and stderr.
func mustRun(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestKvctl_PutGetDel(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	g := mustGlobals(t, srv)
	ctx := context.Background()

	var out bytes.Buffer
	if err := runPut(ctx, g, []string{"k", "v1"}, nil, strings.NewReader(""), &out); err != nil {
		t.Fatalf("put: %v", err)
	}
	if !strings.HasPrefix(out.String(), "OK index=") {
		t.Fatalf("put printed %q, want OK index=N", out.String())
	}
	out.Reset()
	if err := runPut(ctx, g, []string{"k2"}, nil, strings.NewReader("from stdin"), &out); err != nil {
		t.Fatalf("put from stdin: %v", err)
	}
	if v, _ := srv.Value("k2"); string(v) != "from stdin" {
		t.Fatalf("k2 = %q, want the stdin value", v)
	}
	if err := runPut(ctx, g, []string{"k3", "-"}, nil, strings.NewReader("dash"), &out); err != nil {
		t.Fatalf("put -: %v", err)
	}
	if v, _ := srv.Value("k3"); string(v) != "dash" {
		t.Fatalf("k3 = %q, want the stdin value", v)
	}

	out.Reset()
	if err := runGet(ctx, g, "k", &out); err != nil {
		t.Fatalf("get: %v", err)
	}
	if out.String() != "v1\n" {
		t.Fatalf("get printed %q, want the value alone", out.String())
	}
	out.Reset()
	if err := runGet(ctx, g, "missing", &out); !errors.Is(err, errNotFound) {
		t.Fatalf("get missing: got %v, want errNotFound", err)
	}
	if out.Len() != 0 {
		t.Fatalf("get missing printed %q", out.String())
	}

	out.Reset()
	if err := runDel(ctx, g, "k", nil, &out); err != nil {
		t.Fatalf("del: %v", err)
	}
	if !strings.HasPrefix(out.String(), "OK index=") {
		t.Fatalf("del printed %q", out.String())
	}
	if err := runDel(ctx, g, "k", nil, &out); !errors.Is(err, errNotFound) {
		t.Fatalf("del again: got %v, want errNotFound", err)
	}
}

func TestKvctl_JSONOutput(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	g := mustGlobals(t, srv)
	g.output = "json"
	ctx := context.Background()
	var out bytes.Buffer
	if err := runPut(ctx, g, []string{"k", "v"}, nil, nil, &out); err != nil {
		t.Fatalf("put: %v", err)
	}
	var put struct{ Index int64 }
	if err := json.Unmarshal(out.Bytes(), &put); err != nil || put.Index <= 0 {
		t.Fatalf("put JSON %q: %v (index %d)", out.String(), err, put.Index)
	}
	out.Reset()
	if err := runGet(ctx, g, "k", &out); err != nil {
		t.Fatalf("get: %v", err)
	}
	var get struct {
		Found bool
		Entry struct {
			Key      string
			Value    string
			ModIndex int64 `json:"mod_index"`
		}
	}
	if err := json.Unmarshal(out.Bytes(), &get); err != nil {
		t.Fatalf("get JSON %q: %v", out.String(), err)
	}
	if !get.Found || get.Entry.Key != "k" || get.Entry.Value != "v" || get.Entry.ModIndex != put.Index {
		t.Fatalf("get JSON %+v, want k=v at index %d", get, put.Index)
	}
}

func TestKvctl_Scan(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	srv.SetMaxPage(3) // force several pages
	g := mustGlobals(t, srv)
	ctx := context.Background()
	var keys []string
	for i := range 8 {
		k := fmt.Sprintf("a%d", i)
		keys = append(keys, k)
		if err := runPut(ctx, g, []string{k, "v" + k}, nil, nil, &bytes.Buffer{}); err != nil {
			t.Fatalf("put: %v", err)
		}
	}
	if err := runPut(ctx, g, []string{"b0", "x"}, nil, nil, &bytes.Buffer{}); err != nil {
		t.Fatalf("put: %v", err)
	}

	tests := []struct {
		name string
		opts scanOptions
		want string
	}{
		{"prefix all pages", scanOptions{prefix: "a", prefixSet: true, limit: defaultScanLimit, keysOnly: true},
			strings.Join(keys, "\n") + "\n"},
		{"limit across pages", scanOptions{prefix: "a", prefixSet: true, limit: 5, keysOnly: true},
			strings.Join(keys[:5], "\n") + "\n"},
		{"reverse", scanOptions{start: "a5", startSet: true, end: "b", endSet: true, limit: 10, reverse: true, keysOnly: true},
			"a7\na6\na5\n"},
		{"values", scanOptions{start: "a6", startSet: true, limit: 10},
			"a6\tva6\na7\tva7\nb0\tx\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := runScan(ctx, g, &tt.opts, &out); err != nil {
				t.Fatalf("scan: %v", err)
			}
			if out.String() != tt.want {
				t.Fatalf("scan printed %q, want %q", out.String(), tt.want)
			}
		})
	}
}

func TestKvctl_CAS(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	g := mustGlobals(t, srv)
	ctx := context.Background()
	var out bytes.Buffer

	create := &casOptions{expectIndex: 0, expectIndexSet: true}
	if err := runCAS(ctx, g, create, []string{"k", "v1"}, &out); err != nil {
		t.Fatalf("cas create: %v", err)
	}
	if err := runCAS(ctx, g, create, []string{"k", "v2"}, &out); !errors.Is(err, errCompareFailed) {
		t.Fatalf("second cas create: got %v, want errCompareFailed", err)
	}
	swap := &casOptions{expectValue: "v1", expectValueSet: true}
	if err := runCAS(ctx, g, swap, []string{"k", "v2"}, &out); err != nil {
		t.Fatalf("cas swap: %v", err)
	}
	if v, _ := srv.Value("k"); string(v) != "v2" {
		t.Fatalf("k = %q, want v2", v)
	}
	del := &casOptions{expectValue: "v2", expectValueSet: true, remove: true}
	if err := runCAS(ctx, g, del, []string{"k"}, &out); err != nil {
		t.Fatalf("cas delete: %v", err)
	}
	if _, ok := srv.Value("k"); ok {
		t.Fatal("k still exists after cas --delete")
	}

	var usage *usageError
	for name, o := range map[string]*casOptions{
		"no expectation":   {},
		"two expectations": {expectValueSet: true, expectIndexSet: true},
	} {
		if err := runCAS(ctx, g, o, []string{"k", "v"}, &out); !errors.As(err, &usage) {
			t.Fatalf("%s: got %v, want a usage error", name, err)
		}
	}
	if err := runCAS(ctx, g, del, []string{"k", "v"}, &out); !errors.As(err, &usage) {
		t.Fatalf("--delete with a value: got %v, want a usage error", err)
	}
}

func TestKvctl_Txn(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	g := mustGlobals(t, srv)
	ctx := context.Background()
	if err := runPut(ctx, g, []string{"k", "1"}, nil, nil, &bytes.Buffer{}); err != nil {
		t.Fatalf("put: %v", err)
	}

	spec := `{"compare":[{"key":"k","target":"value","op":"=","value":"1"},{"key":"n","target":"exists","exists":false}],
	          "success":[{"op":"put","key":"n","value":"new"},{"op":"get","key":"k"},{"op":"del","key":"k"}],
	          "failure":[{"op":"get","key":"k"}]}`
	var out bytes.Buffer
	if err := runTxn(ctx, g, nil, strings.NewReader(spec), &out); err != nil {
		t.Fatalf("txn: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "SUCCEEDED index=") || lines[2] != "get k\t1" {
		t.Fatalf("txn printed %q", out.String())
	}
	if v, _ := srv.Value("n"); string(v) != "new" {
		t.Fatalf("n = %q, want new", v)
	}

	// The same spec fails now: n exists and k does not.
	out.Reset()
	if err := runTxn(ctx, g, nil, strings.NewReader(spec), &out); !errors.Is(err, errCompareFailed) {
		t.Fatalf("second txn: got %v, want errCompareFailed", err)
	}
	if !strings.HasPrefix(out.String(), "FAILED index=") {
		t.Fatalf("second txn printed %q", out.String())
	}

	var usage *usageError
	for _, bad := range []string{
		`not json`,
		`{"compare":[{"key":"k","target":"size"}]}`,
		`{"compare":[{"key":"k","target":"mod"}]}`,
		`{"success":[{"op":"put","key":"k"}]}`,
		`{"success":[{"op":"incr","key":"k"}]}`,
		`{"surprise":1}`,
	} {
		if err := runTxn(ctx, g, nil, strings.NewReader(bad), &out); !errors.As(err, &usage) {
			t.Fatalf("spec %s: got %v, want a usage error", bad, err)
		}
	}
}

func TestKvctl_StatusOneRowPerEndpointWithoutTopology(t *testing.T) {
	n1 := clienttest.NewServer(t, "n1")
	n2 := clienttest.NewServer(t, "n2")
	n2.SetRole(kv.Role_FOLLOWER, "n1")
	g := defaultGlobalOptions()
	g.endpoints = n1.Addr + "," + n2.Addr

	var out bytes.Buffer
	if err := runStatus(context.Background(), g, &out); err != nil {
		t.Fatalf("status: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("status printed %d lines, want a header and 2 rows:\n%s", len(lines), out.String())
	}
	for i, want := range [][]string{{"n1", n1.Addr, "LEADER", "n1", "btree"}, {"n2", n2.Addr, "FOLLOWER", "n1", "btree"}} {
		fields := strings.Fields(lines[i+1])
		if len(fields) != 10 || fields[0] != want[0] || fields[1] != want[1] || fields[2] != want[2] ||
			fields[6] != want[3] || fields[8] != want[4] {
			t.Fatalf("row %d = %q, want id, endpoint, role, leader and engine %v", i, lines[i+1], want)
		}
	}

	// An endpoint that does not answer gets an error row and fails the command.
	dead := testutil.DeadAddr(t)
	g.endpoints = n1.Addr + "," + dead
	g.timeout = 2 * time.Second
	out.Reset()
	err := runStatus(context.Background(), g, &out)
	if err == nil || exitCode(err, true) != exitServerError {
		t.Fatalf("status with a dead endpoint: got %v (exit %d), want a server error", err, exitCode(err, true))
	}
	if !strings.Contains(out.String(), "-   "+dead+"  ERROR") {
		t.Fatalf("status printed no error row for %s:\n%s", dead, out.String())
	}
}

func TestKvctl_StatusOneRowPerMember(t *testing.T) {
	cl := clienttest.NewCluster(t, "n1", "n2", "n3")
	cl.SetLeader("n2")
	// Only one endpoint named, a follower: every member is listed all the same.
	code, stdout, stderr := mustRun(t, "", "--endpoints="+cl.Server("n3").Addr, "status")
	if code != exitOK {
		t.Fatalf("status: exit %d, stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") != "ID ENDPOINT ROLE TERM COMMIT APPLIED LEADER KEYS ENGINE LAST-CONTACT" {
		t.Fatalf("status printed:\n%s\nwant a header and 3 rows", stdout)
	}
	for i, id := range []string{"n1", "n2", "n3"} {
		role := "FOLLOWER"
		if id == "n2" {
			role = "LEADER"
		}
		f := strings.Fields(lines[i+1])
		if len(f) != 10 || f[0] != id || f[1] != cl.Server(id).Addr || f[2] != role || f[6] != "n2" {
			t.Fatalf("row %d = %q, want %s at %s, %s, led by n2", i, lines[i+1], id, cl.Server(id).Addr, role)
		}
	}

	// Members that cannot be asked get error rows, and the command fails after printing them all.
	dead := testutil.DeadAddr(t)
	cl.Update(func(topo *kv.Topology) {
		topo.Members = append(topo.Members,
			&kv.Member{NodeID: "n4", ThriftAddr: dead, GossipState: kv.GossipState_DEAD},
			&kv.Member{NodeID: "n5", GossipState: kv.GossipState_UNKNOWN})
	})
	code, stdout, stderr = mustRun(t, "", "--endpoints="+cl.Server("n1").Addr, "--timeout=3s", "status")
	if code != exitServerError || !strings.Contains(stderr, "no answer from n4, n5") {
		t.Fatalf("status with unreachable members: exit %d, stderr %q, want %d naming n4 and n5", code, stderr, exitServerError)
	}
	lines = strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[4], "n4  "+dead) || !strings.Contains(lines[4], "ERROR") ||
		!strings.Contains(lines[5], "n5  -") || !strings.Contains(lines[5], "no Thrift address known") {
		t.Fatalf("status printed:\n%s\nwant error rows for n4 (at %s) and n5 (no address)", stdout, dead)
	}
}

func TestKvctl_ExitCodes(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	ep := "--endpoints=" + srv.Addr

	tests := []struct {
		name  string
		stdin string
		args  []string
		want  int
	}{
		{"put ok", "", []string{ep, "put", "k", "v"}, exitOK},
		{"get ok", "", []string{ep, "get", "k"}, exitOK},
		{"get missing", "", []string{ep, "get", "nope"}, exitNotFound},
		{"cas compare failed", "", []string{ep, "cas", "k", "--expect-value", "x", "w"}, exitNotFound},
		{"missing argument", "", []string{ep, "get"}, exitBadArgs},
		{"unknown flag", "", []string{ep, "get", "--bogus", "k"}, exitBadArgs},
		{"unknown command", "", []string{ep, "frobnicate"}, exitBadArgs},
		{"bad consistency", "", []string{ep, "--consistency=weak", "get", "k"}, exitBadArgs},
		{"bad output", "", []string{ep, "-o", "yaml", "get", "k"}, exitBadArgs},
		{"bad txn spec", "{", []string{ep, "txn"}, exitBadArgs},
		{"server InvalidArgument", "", []string{ep, "put", "", "v"}, exitBadArgs},
		{"version", "", []string{"--version"}, exitOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := mustRun(t, tt.stdin, tt.args...)
			if code != tt.want {
				t.Fatalf("exit %d, want %d (stdout %q, stderr %q)", code, tt.want, stdout, stderr)
			}
		})
	}

	code, stdout, _ := mustRun(t, "", "--version")
	if code != exitOK || stdout != "kvctl dev\n" {
		t.Fatalf("--version: exit %d, printed %q", code, stdout)
	}

	// A connection error is a server error.
	dead := testutil.DeadAddr(t)
	if code, _, _ := mustRun(t, "", "--endpoints="+dead, "--timeout=1s", "get", "k"); code != exitServerError {
		t.Fatalf("get from a dead endpoint: exit %d, want %d", code, exitServerError)
	}
	srv.SetHook(func(ctx context.Context, c clienttest.Call) error { return &kv.Unavailable{Reason: "no quorum"} })
	if code, _, stderr := mustRun(t, "", ep, "--timeout=1s", "get", "k"); code != exitServerError {
		t.Fatalf("get while unavailable: exit %d, want %d (stderr %q)", code, exitServerError, stderr)
	}
}

func TestKvctl_UnknownOutcomePrintsRequestID(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	srv.SetHook(func(ctx context.Context, c clienttest.Call) error {
		return &kv.Timeout{Reason: "commit not confirmed"}
	})
	code, _, stderr := mustRun(t, "", "--endpoints="+srv.Addr, "--timeout=3s", "put", "k", "v")
	if code != exitUnknown {
		t.Fatalf("exit %d, want %d (stderr %q)", code, exitUnknown, stderr)
	}
	calls := srv.Calls()
	if len(calls) == 0 || calls[0].RequestID == nil {
		t.Fatal("server saw no write with a request id")
	}
	id := calls[0].RequestID
	if want := fmt.Sprintf("request id: %d:%d\n", id.ClientID, id.Sequence); !strings.Contains(stderr, want) {
		t.Fatalf("stderr %q does not contain %q", stderr, want)
	}
}

func TestExitCode(t *testing.T) {
	uo := &client.UnknownOutcomeError{RequestID: kv.RequestID{ClientID: 1, Sequence: 2}, Err: errors.New("timeout")}
	tests := []struct {
		name string
		err  error
		ran  bool
		want int
	}{
		{"nil", nil, true, exitOK},
		{"cobra error before run", errors.New("unknown flag"), false, exitBadArgs},
		{"not found", fmt.Errorf("get: %w", errNotFound), true, exitNotFound},
		{"compare failed", fmt.Errorf("cas: %w", errCompareFailed), true, exitNotFound},
		{"usage", usageErrorf("bad"), true, exitBadArgs},
		{"invalid argument", fmt.Errorf("put: %w", &client.InvalidArgumentError{Field: "key", Reason: "empty"}), true, exitBadArgs},
		{"unknown outcome", fmt.Errorf("put: %w", uo), true, exitUnknown},
		{"unavailable", fmt.Errorf("get: %w", client.ErrUnavailable), true, exitServerError},
		{"connection", errors.New("dial: connection refused"), true, exitServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(tt.err, tt.ran); got != tt.want {
				t.Fatalf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}
