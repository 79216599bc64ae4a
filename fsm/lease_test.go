package fsm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/cubekv/cubekv/thrift/kv"
)

func grantCmd(ttl int64) *kv.Command {
	return &kv.Command{Op: kv.CommandOp_LEASE_GRANT, TTLMs: &ttl}
}

func revokeCmd(id int64) *kv.Command {
	return &kv.Command{Op: kv.CommandOp_LEASE_REVOKE, LeaseID: &id}
}

func leasePutCmd(key, value string, lease int64) *kv.Command {
	c := putCmd(key, value)
	c.LeaseID = &lease
	return c
}

func ttlPutCmd(key, value string, ttl int64) *kv.Command {
	c := putCmd(key, value)
	c.TTLMs = &ttl
	return c
}

func leaseOp(key, value string, lease int64) *kv.Op {
	return &kv.Op{Type: kv.OpType_PUT, Key: []byte(key), Value: []byte(value), LeaseID: &lease}
}

// leaseState renders every lease with its TTL and keys, "id:ttl[k1 k2] ",
// in id order, and checks the reverse index agrees with it.
func leaseState(f *FSM) string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var b strings.Builder
	attached := 0
	f.leases.leases.Scan(func(l Lease) bool {
		var keys []string
		for _, k := range f.leases.keysOf(l.ID) {
			keys = append(keys, string(k))
			if f.leases.ofKey[string(k)] != l.ID {
				panic(fmt.Sprintf("key %q of lease %d indexed under %d", k, l.ID, f.leases.ofKey[string(k)]))
			}
		}
		if len(keys) != l.Keys {
			panic(fmt.Sprintf("lease %d counts %d keys, has %d", l.ID, l.Keys, len(keys)))
		}
		attached += len(keys)
		fmt.Fprintf(&b, "%d:%d[%s] ", l.ID, l.TTL, strings.Join(keys, " "))
		return true
	})
	if attached != len(f.leases.ofKey) {
		panic(fmt.Sprintf("%d attachments, %d keys indexed", attached, len(f.leases.ofKey)))
	}
	return b.String()
}

func wantLeases(t *testing.T, f *FSM, want string) {
	t.Helper()
	if got := leaseState(f); got != want {
		t.Fatalf("leases %q, want %q", got, want)
	}
}

func wantLeaseNotFound(t *testing.T, r *Result, id int64, field string) {
	t.Helper()
	var lnf *LeaseNotFoundError
	var ce *CommandError
	if !errors.Is(r.Err, ErrLeaseNotFound) || !errors.As(r.Err, &lnf) || lnf.ID != id || !errors.As(r.Err, &ce) || ce.Field != field {
		t.Fatalf("result %+v, want lease %d not found on %s", r, id, field)
	}
}

func TestFSM_LeaseGrantAttachDetach(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			f := mustNew(t, eng)
			if w := mustWrite(t, f, 1, grantCmd(3000)); !w.Succeeded {
				t.Fatalf("grant: %v", w)
			}
			mustWrite(t, f, 2, leasePutCmd("a", "1", 1))
			mustWrite(t, f, 3, leasePutCmd("b", "2", 1))
			w := mustWrite(t, f, 4, ttlPutCmd("c", "3", 500))
			if w.GetCreateIndex() != 4 {
				t.Fatalf("ttl put: %v", w)
			}
			wantLeases(t, f, "1:3000[a b] 4:500[c] ")
			if got := f.KeyLease([]byte("a")); got != 1 {
				t.Fatalf("KeyLease(a) = %d", got)
			}
			// A put without a lease detaches; a put with another lease moves.
			mustWrite(t, f, 5, putCmd("a", "plain"))
			mustWrite(t, f, 6, leasePutCmd("c", "moved", 1))
			wantLeases(t, f, "1:3000[b c] 4:500[] ")
			// Deleting detaches, through DELETE, CAS_DELETE and a TXN.
			mustWrite(t, f, 7, delCmd("b"))
			mustWrite(t, f, 8, &kv.Command{Op: kv.CommandOp_CAS_DELETE, Key: []byte("c"), ExpectedModIndex: i64(6)})
			wantLeases(t, f, "1:3000[] 4:500[] ")
			mustWrite(t, f, 9, &kv.Command{Op: kv.CommandOp_TXN, Success: []*kv.Op{leaseOp("x", "1", 4), leaseOp("y", "1", 1)}})
			wantLeases(t, f, "1:3000[y] 4:500[x] ")
			mustWrite(t, f, 10, &kv.Command{Op: kv.CommandOp_TXN, Success: []*kv.Op{{Type: kv.OpType_DELETE, Key: []byte("x")}}})
			w = mustWrite(t, f, 11, &kv.Command{Op: kv.CommandOp_CAS_PUT, Key: []byte("z"), Value: []byte("1"), ExpectedModIndex: i64(0), LeaseID: i64(4)})
			if !w.Succeeded {
				t.Fatalf("cas: %v", w)
			}
			wantLeases(t, f, "1:3000[y] 4:500[z] ")
			// A CAS whose compare fails attaches nothing.
			mustWrite(t, f, 12, &kv.Command{Op: kv.CommandOp_CAS_PUT, Key: []byte("y"), Value: []byte("1"), ExpectedModIndex: i64(0), LeaseID: i64(4)})
			wantLeases(t, f, "1:3000[y] 4:500[z] ")
		})
	}
}

func TestFSM_LeaseUnknownRefusesWholeCommand(t *testing.T) {
	f := mustNew(t, "")
	mustWrite(t, f, 1, grantCmd(1000))
	mustWrite(t, f, 2, leasePutCmd("k", "v", 1))
	before := stateOf(t, f)
	for i, tc := range []struct {
		cmd   *kv.Command
		field string
	}{
		{leasePutCmd("k", "other", 99), "lease_id"},
		{&kv.Command{Op: kv.CommandOp_CAS_PUT, Key: []byte("k"), Value: []byte("v"), ExpectedModIndex: i64(2), LeaseID: i64(99)}, "lease_id"},
		// A CAS naming a missing lease is refused even when its compare fails.
		{&kv.Command{Op: kv.CommandOp_CAS_PUT, Key: []byte("k"), Value: []byte("v"), ExpectedModIndex: i64(0), LeaseID: i64(99)}, "lease_id"},
		// A TXN checks every PUT of its branch before running any op.
		{&kv.Command{Op: kv.CommandOp_TXN, Success: []*kv.Op{
			{Type: kv.OpType_DELETE, Key: []byte("k")},
			leaseOp("new", "v", 1),
			leaseOp("other", "v", 99),
		}}, "success[2].lease_id"},
		{revokeCmd(99), "lease_id"},
	} {
		r := mustApply(t, f, uint64(3+i), withID(tc.cmd, 7, int64(1+i)))
		wantLeaseNotFound(t, r, 99, tc.field)
		after := stateOf(t, f)
		after.applied, before.applied = 0, 0
		wantState(t, after, before)
	}
	// The failure branch's leases are not checked when the success branch runs.
	mustWrite(t, f, 20, &kv.Command{Op: kv.CommandOp_TXN, Success: []*kv.Op{leaseOp("s", "v", 1)}, Failure: []*kv.Op{leaseOp("f", "v", 99)}})
	wantLeases(t, f, "1:1000[k s] ")
}

func TestFSM_LeaseRevoke(t *testing.T) {
	f := mustNew(t, "")
	mustWrite(t, f, 1, grantCmd(1000))
	mustWrite(t, f, 2, grantCmd(1000))
	for i, k := range []string{"m", "c", "x", "a"} {
		mustWrite(t, f, uint64(3+i), leasePutCmd(k, "v", 1))
	}
	mustWrite(t, f, 7, leasePutCmd("other", "v", 2))
	mustWrite(t, f, 8, putCmd("plain", "v"))
	if got := fmt.Sprint(f.LeaseKeys(1, 0)); got != "[[97] [99] [109] [120]]" {
		t.Fatalf("keys of lease 1: %s", got)
	}
	w := mustWrite(t, f, 9, revokeCmd(1))
	if !w.Succeeded {
		t.Fatalf("revoke: %v", w)
	}
	var keys []string
	for _, e := range dump(f) {
		keys = append(keys, string(e.Key))
	}
	if got := fmt.Sprint(keys); got != "[other plain]" {
		t.Fatalf("keys after revoke %s", got)
	}
	wantLeases(t, f, "2:1000[other] ")
	if _, ok, _ := f.Lease(1); ok {
		t.Fatal("lease 1 survived its revoke")
	}
	r := mustApply(t, f, 10, revokeCmd(1))
	wantLeaseNotFound(t, r, 1, "lease_id")
}

// TestFSM_LeaseRevokeDeterministic applies the same log to FSMs of every
// engine whose keys arrive in different orders and whose lease tables were
// built by Apply or by Restore: every revoke leaves identical state and
// snapshot bytes.
func TestFSM_LeaseRevokeDeterministic(t *testing.T) {
	build := func(eng string, order []string) *FSM {
		f := mustNew(t, eng)
		mustWrite(t, f, 1, grantCmd(1000))
		mustWrite(t, f, 2, grantCmd(2000))
		for i, k := range order {
			mustWrite(t, f, uint64(3+i), leasePutCmd(k, k, int64(1+i%2)))
		}
		return f
	}
	keys := []string{"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"}
	var ref []byte
	for _, eng := range engines {
		for j, order := range [][]string{keys, reversed(keys)} {
			f := build(eng, order)
			if j == 1 {
				g := mustNew(t, eng)
				mustRestore(t, g, mustPersist(t, f))
				f = g
			}
			mustWrite(t, f, 13, revokeCmd(1))
			mustWrite(t, f, 14, putCmd("after", "x"))
			got := mustPersist(t, f)
			if ref == nil {
				ref = got
				continue
			}
			// Indexes differ with the order, so compare what is not
			// order-dependent: the lease table and the digest.
			if j == 0 && !bytes.Equal(got, ref) {
				t.Fatalf("%s: snapshot after revoke differs", eng)
			}
			if s := leaseState(f); s != "2:2000[k1 k3 k5 k7 k9] " && s != "2:2000[k0 k2 k4 k6 k8] " {
				t.Fatalf("%s: leases %q", eng, s)
			}
		}
	}
}

func reversed(s []string) []string {
	r := slices.Clone(s)
	slices.Reverse(r)
	return r
}

func TestFSM_LeaseLimits(t *testing.T) {
	f := mustNew(t, "")
	limits := Limits{MaxLeases: 2, MaxLeaseKeys: 2, MinLeaseTTL: 100, MaxLeaseTTL: 10000}
	stamped := func(c *kv.Command) *kv.Command {
		if err := Validate(c, limits); err != nil {
			t.Fatalf("validate %v: %v", c, err)
		}
		Stamp(c, limits)
		return c
	}
	// TTL bounds are the front door's: Validate refuses, Apply accepts
	// anything positive up to MaxLeaseTTL.
	for _, ttl := range []int64{99, 10001} {
		if err := Validate(grantCmd(ttl), limits); !errors.Is(err, ErrInvalidCommand) {
			t.Fatalf("ttl %d: %v", ttl, err)
		}
		if err := Validate(ttlPutCmd("k", "v", ttl), limits); !errors.Is(err, ErrInvalidCommand) {
			t.Fatalf("put ttl %d: %v", ttl, err)
		}
	}
	for _, c := range []*kv.Command{grantCmd(0), grantCmd(MaxLeaseTTL + 1), revokeCmd(0), leasePutCmd("k", "v", -1),
		{Op: kv.CommandOp_PUT, Key: []byte("k"), LeaseID: i64(1), TTLMs: i64(1000)},
		{Op: kv.CommandOp_TXN, Success: []*kv.Op{{Type: kv.OpType_DELETE, Key: []byte("k"), LeaseID: i64(1)}}},
		{Op: kv.CommandOp_CAS_DELETE, Key: []byte("k"), ExpectedModIndex: i64(0), LeaseID: i64(1)}} {
		if r := mustApply(t, f, 1, c); !errors.Is(r.Err, ErrInvalidCommand) {
			t.Fatalf("%v: %+v, want invalid", c, r)
		}
	}
	// Stamp writes the limits only into commands that use leases.
	if c := stamped(putCmd("k", "v")); c.MaxLeases != nil || c.MaxLeaseKeys != nil {
		t.Fatalf("plain put stamped: %v", c)
	}
	if c := stamped(grantCmd(1000)); c.GetMaxLeases() != 2 || c.GetMaxLeaseKeys() != 2 {
		t.Fatalf("grant stamped: %v", c)
	}
	c := grantCmd(1000)
	c.MaxLeases = i64(1)
	if Stamp(c, limits); c.GetMaxLeases() != 1 {
		t.Fatalf("stamp raised a lower limit: %v", c)
	}

	mustWrite(t, f, 2, stamped(grantCmd(1000)))
	mustWrite(t, f, 3, stamped(ttlPutCmd("t", "v", 1000)))
	for i, c := range []*kv.Command{stamped(grantCmd(1000)), stamped(ttlPutCmd("u", "v", 1000))} {
		if r := mustApply(t, f, uint64(4+i), c); !errors.Is(r.Err, ErrLeaseLimit) {
			t.Fatalf("third lease: %+v", r)
		}
	}
	mustWrite(t, f, 6, stamped(leasePutCmd("a", "v", 2)))
	mustWrite(t, f, 7, stamped(leasePutCmd("a", "again", 2))) // already attached: no new key
	mustWrite(t, f, 8, stamped(&kv.Command{Op: kv.CommandOp_TXN, Success: []*kv.Op{leaseOp("b", "v", 2), leaseOp("b", "w", 2)}}))
	for i, c := range []*kv.Command{
		stamped(leasePutCmd("c", "v", 2)),
		stamped(&kv.Command{Op: kv.CommandOp_CAS_PUT, Key: []byte("c"), Value: []byte("v"), ExpectedModIndex: i64(0), LeaseID: i64(2)}),
		stamped(&kv.Command{Op: kv.CommandOp_TXN, Success: []*kv.Op{leaseOp("c", "v", 2)}}),
	} {
		if r := mustApply(t, f, uint64(9+i), c); !errors.Is(r.Err, ErrLeaseLimit) {
			t.Fatalf("third key: %+v", r)
		}
	}
	wantLeases(t, f, "2:1000[a b] 3:1000[t] ")
	// Unstamped (as the log replays commands written without limits): no limit.
	mustWrite(t, f, 12, leasePutCmd("c", "v", 2))
	wantLeases(t, f, "2:1000[a b c] 3:1000[t] ")
}

func TestSnapshot_LeasesRoundTripAndIsolation(t *testing.T) {
	for _, from := range engines {
		for _, to := range engines {
			t.Run(from+"_to_"+to, func(t *testing.T) {
				src := mustGoldenStateV3(t, from)
				want := stateOf(t, src)
				snap, err := src.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				// Changes after the snapshot is taken are not in it.
				mustWrite(t, src, 24, revokeCmd(16))
				mustWrite(t, src, 25, leasePutCmd("alpha", "leased", 20))
				var s sink
				if err := snap.Persist(&s); err != nil {
					t.Fatal(err)
				}
				snap.Release()
				dst := mustNew(t, to)
				mustRestore(t, dst, s.Bytes())
				wantState(t, stateOf(t, dst), want)
				// The restored table works: revoke deletes the keys.
				mustWrite(t, dst, 24, revokeCmd(16))
				mustWrite(t, dst, 25, leasePutCmd("alpha", "leased", 20))
				wantState(t, stateOf(t, dst), stateOf(t, src))
			})
		}
	}
}

func TestSnapshot_CorruptLeases(t *testing.T) {
	f := mustNew(t, "")
	mustWrite(t, f, 1, putCmd("a", "v"))
	mustWrite(t, f, 2, putCmd("b", "v"))
	// build writes a version 3 snapshot of keys a and b at index 5 with
	// the given lease section.
	build := func(section func(w *snapshotWriter)) []byte {
		var out bytes.Buffer
		w := &snapshotWriter{w: bufio.NewWriter(&out), crc: crc32.New(castagnoli())}
		w.write([]byte(snapshotMagic))
		w.u32(3)
		w.u64(5)
		w.u64(2)
		for _, k := range []string{"a", "b"} {
			w.uvarint(1)
			w.write([]byte(k))
			w.uvarint(1)
			w.uvarint(2)
			w.uvarint(1)
			w.write([]byte("v"))
		}
		w.u64(0) // clients
		w.u64(0) // members
		section(w)
		w.u32(w.crc.Sum32())
		if err := w.w.Flush(); err != nil || w.err != nil {
			t.Fatal(err, w.err)
		}
		return out.Bytes()
	}
	lease := func(id, ttl uint64, keys ...string) func(w *snapshotWriter) {
		return func(w *snapshotWriter) {
			w.uvarint(id)
			w.uvarint(ttl)
			w.uvarint(uint64(len(keys)))
			for _, k := range keys {
				w.uvarint(uint64(len(k)))
				w.write([]byte(k))
			}
		}
	}
	section := func(leases ...func(w *snapshotWriter)) func(w *snapshotWriter) {
		return func(w *snapshotWriter) {
			w.u64(uint64(len(leases)))
			for _, l := range leases {
				l(w)
			}
		}
	}
	good := build(section(lease(2, 1000, "a", "b"), lease(3, 500)))
	g := mustNew(t, "")
	mustRestore(t, g, good)
	wantLeases(t, g, "2:1000[a b] 3:500[] ")
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"id zero", build(section(lease(0, 1000)))},
		{"id beyond applied", build(section(lease(6, 1000)))},
		{"ids out of order", build(section(lease(3, 1000), lease(2, 1000)))},
		{"ttl zero", build(section(lease(2, 0)))},
		{"key not in snapshot", build(section(lease(2, 1000, "zz")))},
		{"keys out of order", build(section(lease(2, 1000, "b", "a")))},
		{"key in two leases", build(section(lease(2, 1000, "a"), lease(3, 1000, "a")))},
		{"more keys than entries", build(section(lease(2, 1000, "a", "b", "c")))},
		{"truncated", build(func(w *snapshotWriter) { w.u64(2); lease(2, 1000, "a")(w) })},
	} {
		t.Run(tc.name, func(t *testing.T) { mustRestoreFails(t, f, tc.data, tc.name) })
	}
}

// BenchmarkLeaseMemory measures the heap the lease tables take for 10,000
// leases of one key each, against the same 10,000 keys put without leases
// in the same run (the baseline). Reported as bytes per 10,000 leases.
func BenchmarkLeaseMemory(b *testing.B) {
	const n = 10000
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	var plain, leased float64
	for range b.N {
		var fs [2]*FSM
		var used [2]uint64
		for mode := range 2 {
			before := heap()
			f := mustNew(b, "")
			idx := uint64(0)
			for i := range n {
				key := fmt.Sprintf("service/instance-%06d", i)
				idx++
				if mode == 0 {
					mustApply(b, f, idx, putCmd(key, "10.0.0.1:8080"))
					continue
				}
				mustApply(b, f, idx, ttlPutCmd(key, "10.0.0.1:8080", 10000))
			}
			used[mode] = heap() - before
			fs[mode] = f
		}
		runtime.KeepAlive(fs)
		plain += float64(used[0])
		leased += float64(used[1])
	}
	b.ReportMetric(plain/float64(b.N), "plain-bytes/10k")
	b.ReportMetric(leased/float64(b.N), "leased-bytes/10k")
	b.ReportMetric((leased-plain)/float64(b.N), "lease-bytes/10k")
	b.ReportMetric(leased/plain, "ratio")
}
