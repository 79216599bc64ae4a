package integration

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/thrift/kv"
)

// TestExample_PythonWatch runs examples/python/watch_example.py, the
// blocking-query loop of a plain Thrift client, against a follower of a
// real three-node cluster whose history is too small to reach back to
// index 0, while the writes go to the leader: the loop gets Compacted,
// re-reads the prefix, then prints each later change as it happens (a
// transaction's two changes at one index, in order).
func TestExample_PythonWatch(t *testing.T) {
	ex := examples["python"]
	for _, probe := range ex.probes {
		if out, err := exec.Command(probe[0], probe[1:]...).CombinedOutput(); err != nil {
			testutil.Unmet(t, "python watch example needs Debian's %s: %v %s", ex.packages, err, out)
		}
	}
	if _, err := exec.LookPath("thrift"); err != nil {
		testutil.Unmet(t, "python watch example needs the thrift compiler")
	}
	root := t.TempDir()
	dir := filepath.Join(root, "examples", "python")
	copyFiles(t, filepath.Join("..", "..", "examples", "python"), dir)
	copyFiles(t, filepath.Join("..", "..", "thrift"), filepath.Join(root, "thrift"), "kv.thrift")
	ctx := ctxTimeout(t, 2*time.Minute)
	for _, step := range ex.steps {
		mustExec(ctx, t, dir, step...)
	}

	// About seven small changes of history.
	cl := startCluster(t, 3, "--watch-history-bytes", "700")
	leader := cl.waitLeader(10 * time.Second)
	p := cl.followers(leader)[0]
	c := mustClient(t, leader.thriftAddr)
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"} {
		if _, err := c.Put(ctx, []byte("pyw/"+k), []byte("v"+k)); err != nil {
			t.Fatal(err)
		}
	}

	cmd := exec.CommandContext(ctx, "/usr/bin/python3", "watch_example.py", p.thriftAddr, "pyw/", "0", "4")
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	line := func() string {
		t.Helper()
		l, ok := <-lines
		if !ok {
			t.Fatalf("watch_example.py ended early: %v\n%s", cmd.Wait(), stderr.String())
		}
		return l
	}
	first := line()
	if !strings.HasPrefix(first, "resync: pyw/a pyw/b pyw/c pyw/d pyw/e pyw/f pyw/g pyw/h pyw/i pyw/j at ") {
		t.Fatalf("first line %q, want the resync of all ten keys", first)
	}

	// Changes made after the resync arrive one line each.
	put, err := c.Put(ctx, []byte("pyw/new"), []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	txn, err := c.Txn(ctx, &kv.TxnRequest{Success: []*kv.Op{
		{Type: kv.OpType_PUT, Key: []byte("pyw/t"), Value: []byte("2")},
		{Type: kv.OpType_DELETE, Key: []byte("pyw/a")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, []byte("other"), []byte("not watched")); err != nil {
		t.Fatal(err)
	}
	del, err := c.Delete(ctx, []byte("pyw/b"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := 0; i < 4; i++ {
		got = append(got, line())
	}
	want := []string{
		itoa(put.Index) + " PUT pyw/new 1",
		itoa(txn.Index) + " PUT pyw/t 2",
		itoa(txn.Index) + " DELETE pyw/a",
		itoa(del.Index) + " DELETE pyw/b",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("python printed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if err := testutil.Receive(t, 30*time.Second, "watch_example.py to exit after 4 events", done); err != nil {
		t.Fatalf("watch_example.py: %v\n%s", err, stderr.String())
	}
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }
