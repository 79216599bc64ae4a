package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cubekv/cubekv/thrift/kv"
)

type digest struct {
	Applied uint64 `json:"applied_index"`
	Keys    int    `json:"keys"`
	Digest  string `json:"digest"`
}

func nodeDigest(t *testing.T, p *proc) digest {
	t.Helper()
	hc, base := p.admin()
	resp, err := hc.Get(base + "/digest")
	if err != nil {
		t.Fatalf("digest of %s: %v", p.id, err)
	}
	defer resp.Body.Close()
	var d digest
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatalf("decode digest of %s: %v", p.id, err)
	}
	return d
}

// waitDigests polls until every node of c reports the same key count and
// digest, and returns it.
func waitDigests(t *testing.T, c *testCluster, timeout time.Duration) digest {
	t.Helper()
	var ds []digest
	eventually(t, timeout, "equal digests on every node", func() (bool, string) {
		ds = make([]digest, len(c.procs))
		for i, p := range c.procs {
			ds[i] = nodeDigest(t, p)
			if ds[i].Digest != ds[0].Digest || ds[i].Keys != ds[0].Keys {
				return false, fmt.Sprintf("%+v", ds)
			}
		}
		return true, ""
	})
	return ds[0]
}

// TestBackup_RestoreIntoFreshClusterIsIdentical saves a snapshot from a
// follower of a loaded cluster, restores it into a fresh cluster, and
// compares every node's digest over all entries with the source's.
func TestBackup_RestoreIntoFreshClusterIsIdentical(t *testing.T) {
	src := startCluster(t, 3)
	leader := src.waitLeader(10 * time.Second)
	cl := mustClient(t, leader.thriftAddr)
	ctx := ctxTimeout(t, 3*time.Minute)
	for i := 0; i < 3000; i++ {
		key := []byte(fmt.Sprintf("key-%05d", i))
		if _, err := cl.Put(ctx, key, bytes.Repeat([]byte{byte(i)}, 100)); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			if _, err := cl.Put(ctx, key, []byte("overwritten")); err != nil {
				t.Fatal(err)
			}
		}
		if i%33 == 0 {
			if _, err := cl.Delete(ctx, key); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := waitDigests(t, src, 20*time.Second)

	// Save from a follower: it asks the leader for a read index first.
	from := src.followers(leader)[0]
	resp, err := http.Get("http://" + from.adminAddr + "/snapshot")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /snapshot: %d %v %s", resp.StatusCode, err, body)
	}
	sum := sha256.Sum256(body)
	if got := hex.EncodeToString(sum[:]); got != resp.Header.Get("X-Cubekv-Sha256") {
		t.Fatalf("snapshot sha256 %s, header %s", got, resp.Header.Get("X-Cubekv-Sha256"))
	}
	t.Logf("snapshot from %s: %d bytes, %s entries at index %s", from.id, len(body), resp.Header.Get("X-Cubekv-Entries"), resp.Header.Get("X-Cubekv-Applied-Index"))

	dst := startCluster(t, 3)
	dleader := dst.waitLeader(10 * time.Second)
	post := func(data []byte, sha string) (int, string) {
		req, err := http.NewRequest(http.MethodPost, "http://"+dleader.adminAddr+"/snapshot/restore", bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Cubekv-Sha256", sha)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	before := waitDigests(t, dst, 10*time.Second)

	// A corrupted upload with a matching checksum is refused by the format
	// check and changes nothing.
	bad := append([]byte(nil), body...)
	bad[len(bad)/2] ^= 0xff
	badSum := sha256.Sum256(bad)
	if code, msg := post(bad, hex.EncodeToString(badSum[:])); code != http.StatusBadRequest {
		t.Fatalf("corrupt restore answered %d %s, want 400", code, msg)
	}
	// A checksum mismatch is refused too.
	if code, msg := post(body, hex.EncodeToString(badSum[:])); code != http.StatusBadRequest {
		t.Fatalf("mismatched checksum answered %d %s, want 400", code, msg)
	}
	if after := waitDigests(t, dst, 10*time.Second); after.Digest != before.Digest {
		t.Fatalf("refused restores changed the state")
	}

	if code, msg := post(body, hex.EncodeToString(sum[:])); code != http.StatusOK {
		t.Fatalf("restore answered %d %s", code, msg)
	}
	got := waitDigests(t, dst, 30*time.Second)
	if got.Digest != want.Digest || got.Keys != want.Keys {
		t.Fatalf("restored cluster digest %+v, source %+v", got, want)
	}
	t.Logf("restored %d keys; digest %s on all three nodes", got.Keys, got.Digest[:16])

	// The restored cluster serves linearizable reads on a follower and
	// takes writes.
	dcl := mustClient(t, dleader.thriftAddr)
	if _, err := dcl.Put(ctx, []byte("after-restore"), []byte("x")); err != nil {
		t.Fatalf("write after restore: %v", err)
	}
	rc := rawConn(t, dst.followers(dleader)[0].thriftAddr)
	r, err := kvCall(t, rc, 10*time.Second, func(ctx context.Context, k *kv.KVClient) (*kv.GetResponse, error) {
		return k.Get(ctx, &kv.GetRequest{Key: []byte("after-restore")})
	})
	if err != nil || !r.Found {
		t.Fatalf("linearizable read on a follower after restore: %+v, %v", r, err)
	}
}

// TestBackup_KvctlSnapshotSaveRestore saves a loaded cluster with kvctl
// (naming one follower: kvctl finds the leader's admin port) and restores it
// with kvctl into a fresh cluster: identical digests on every node; a file
// with one byte changed is refused before anything is sent.
func TestBackup_KvctlSnapshotSaveRestore(t *testing.T) {
	src := startCluster(t, 3)
	leader := src.waitLeader(10 * time.Second)
	cl := mustClient(t, leader.thriftAddr)
	ctx := ctxTimeout(t, 2*time.Minute)
	mustPutSeq(t, ctx, cl, 1000, "kv-%04d", "value %d")
	want := waitDigests(t, src, 20*time.Second)
	file := filepath.Join(t.TempDir(), "backup.snap")
	code, out, errOut := runKvctl(t, "--endpoints", src.followers(leader)[0].thriftAddr, "snapshot", "save", file)
	if code != 0 || !strings.Contains(out, "1000 keys") {
		t.Fatalf("kvctl snapshot save: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("%s", strings.TrimSpace(out))

	dst := startCluster(t, 3)
	dleader := dst.waitLeader(10 * time.Second)
	corrupt := filepath.Join(t.TempDir(), "corrupt.snap")
	data := mustReadFile(t, file)
	data[len(data)/3] ^= 1
	mustWrite(t, corrupt, data)
	if code, _, errOut := runKvctl(t, "--endpoints", dleader.thriftAddr, "snapshot", "restore", corrupt); code != 2 {
		t.Fatalf("restore of a corrupt file: exit %d, want 2 (bad argument)\n%s", code, errOut)
	}
	code, out, errOut = runKvctl(t, "--endpoints", dst.followers(dleader)[0].thriftAddr, "snapshot", "restore", file)
	if code != 0 {
		t.Fatalf("kvctl snapshot restore: exit %d\n%s%s", code, out, errOut)
	}
	got := waitDigests(t, dst, 30*time.Second)
	if got.Digest != want.Digest || got.Keys != want.Keys {
		t.Fatalf("restored digest %+v, source %+v", got, want)
	}
}
