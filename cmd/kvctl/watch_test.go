package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/cubekv/cubekv/client/clienttest"
	"github.com/cubekv/cubekv/thrift/kv"
)

func TestKvctl_Watch(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	g := mustGlobals(t, srv)
	ctx := context.Background()
	var out bytes.Buffer
	for _, kvs := range [][]string{{"app/a", "1"}, {"other", "x"}, {"app/b", "2"}} {
		if err := runPut(ctx, g, kvs, nil, strings.NewReader(""), &out); err != nil {
			t.Fatal(err)
		}
	}
	if err := runDel(ctx, g, "app/a", nil, &out); err != nil {
		t.Fatal(err)
	}

	out.Reset()
	if err := runWatch(ctx, g, &watchOptions{prefix: "app/", prefixSet: true, count: 3}, nil, &out); err != nil {
		t.Fatalf("watch: %v", err)
	}
	want := "1\tPUT\tapp/a\t1\n3\tPUT\tapp/b\t2\n4\tDELETE\tapp/a\n"
	if out.String() != want {
		t.Fatalf("watch printed\n%q\nwant\n%q", out.String(), want)
	}

	out.Reset()
	g.output = "json"
	if err := runWatch(ctx, g, &watchOptions{fromIndex: 1, count: 1}, []string{"app/a"}, &out); err != nil {
		t.Fatalf("watch -o json: %v", err)
	}
	if want := `{"type":"DELETE","index":4,"key":"app/a"}` + "\n"; out.String() != want {
		t.Fatalf("json watch printed %q, want %q", out.String(), want)
	}

	srv.Forget(2)
	out.Reset()
	if err := runWatch(ctx, g, &watchOptions{count: 1}, []string{"app/a"}, &out); err != nil {
		t.Fatalf("watch after compaction: %v", err)
	}
	if want := `{"type":"RESYNC","index":4,"oldest_index":3}` + "\n"; out.String() != want {
		t.Fatalf("resync printed %q, want %q", out.String(), want)
	}
}

func TestKvctl_WatchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"watch"},
		{"watch", "k", "--prefix", "p"},
		{"watch", "k", "--from-index", "-1"},
		{"watch", "a", "b"},
	} {
		if code, _, _ := mustRun(t, "", args...); code != exitBadArgs {
			t.Errorf("%v: exit %d, want %d", args, code, exitBadArgs)
		}
	}
	srv := clienttest.NewServer(t, "n1")
	srv.SetHook(func(ctx context.Context, c clienttest.Call) error {
		return &kv.InvalidArgument{Field: "key", Reason: "too long"}
	})
	if code, _, stderr := mustRun(t, "", "watch", "k", "--endpoints", srv.Addr); code != exitBadArgs || !strings.Contains(stderr, "too long") {
		t.Errorf("refused watch: exit %d, stderr %q", code, stderr)
	}
}
