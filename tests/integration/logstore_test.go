package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKVNode_MigrateLogBothWays writes keys on a bolt node, stops it,
// converts its log to raft-wal with kvnode migrate-log, checks that the node
// refuses to start with the old --log-store, restarts it on the wal, writes
// more, converts back to bolt and reads every key, each with the index it
// was written at.
func TestKVNode_MigrateLogBothWays(t *testing.T) {
	// A high snapshot threshold keeps every write in the log, so the keys
	// come back only if the migration copied the log.
	p := newProc(t, "n1", "--log-store", "bolt", "--snapshot-threshold", "100000")
	p.start()
	ctx := ctxTimeout(t, 2*time.Minute)
	want := map[string]written{}
	write := func(prefix string, n int) {
		t.Helper()
		c := mustClient(t, p.thriftAddr)
		defer c.Close()
		for i := 0; i < n; i++ {
			key := fmt.Sprintf("%s-%04d", prefix, i)
			val := []byte("v-" + key)
			r, err := c.Put(ctx, []byte(key), val)
			if err != nil {
				t.Fatalf("put %s: %v", key, err)
			}
			want[key] = written{value: val, createIndex: r.CreateIndex, modIndex: r.Index}
		}
	}
	check := func(stage string) {
		t.Helper()
		c := mustClient(t, p.thriftAddr)
		defer c.Close()
		for key, w := range want {
			r, err := c.Get(ctx, []byte(key))
			if err != nil {
				t.Fatalf("%s: get %s: %v", stage, key, err)
			}
			if !r.Found || !bytes.Equal(r.Entry.Value, w.value) || r.Entry.ModIndex != w.modIndex || r.Entry.CreateIndex != w.createIndex {
				t.Fatalf("%s: key %s = found %v (%q, create %d, mod %d), want (%q, create %d, mod %d)", stage, key,
					r.Found, r.GetEntry().GetValue(), r.GetEntry().GetCreateIndex(), r.GetEntry().GetModIndex(), w.value, w.createIndex, w.modIndex)
			}
		}
	}
	setStore := func(store string) {
		for i, a := range p.extra {
			if a == "--log-store" {
				p.extra[i+1] = store
			}
		}
	}
	migrate := func(to string) string {
		t.Helper()
		out, err := exec.Command(kvnodeBin, "migrate-log", "--to", to, "--data-dir", p.dataDir).CombinedOutput()
		if err != nil {
			t.Fatalf("migrate-log --to %s: %v\n%s", to, err, out)
		}
		return string(out)
	}

	write("bolt", 300)
	if err := p.stop(30 * time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}

	// A running node's store is locked: migrate-log must fail, not hang.
	p.start()
	out, err := exec.Command(kvnodeBin, "migrate-log", "--to", "wal", "--data-dir", p.dataDir).CombinedOutput()
	if err == nil {
		t.Fatalf("migrate-log on a running node succeeded:\n%s", out)
	}
	if err := p.stop(30 * time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}

	t.Log(migrate("wal"))
	raftDir := filepath.Join(p.dataDir, "raft")
	if _, err := os.Stat(filepath.Join(raftDir, "wal")); err != nil {
		t.Fatalf("no wal after migrating: %v", err)
	}
	if _, err := os.Stat(filepath.Join(raftDir, "raft.db")); !os.IsNotExist(err) {
		t.Fatalf("raft.db still in place after migrating to wal: %v", err)
	}

	// The old flag must be refused, not start from an empty bolt log.
	cmd := exec.Command(kvnodeBin, p.args()...)
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "migrate-log") {
		t.Fatalf("kvnode with --log-store bolt on a wal data dir: err %v, output:\n%s", err, lastLines(string(out), 10))
	}

	setStore("wal")
	p.start()
	check("after migrating to wal")
	write("wal", 300)
	if err := p.stop(30 * time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}

	t.Log(migrate("bolt"))
	setStore("bolt")
	p.start()
	check("after migrating back to bolt")
	write("bolt-again", 50)
	check("after writing again on bolt")
}
