package fsm

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/storage"
	"github.com/cubekv/cubekv/thrift/kv"
)

func wantWrite(t *testing.T, got, want *kv.WriteResult_) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("WriteResult\n got %v\nwant %v", got, want)
	}
}

func wantEntry(t *testing.T, f *FSM, key string, want *kv.Entry) {
	t.Helper()
	e, ok := mustGet(t, f, key)
	switch {
	case want == nil && ok:
		t.Fatalf("Get(%q) = %+v, want absent", key, e)
	case want == nil:
	case !ok:
		t.Fatalf("Get(%q) absent, want %v", key, want)
	case !reflect.DeepEqual(toKV(e), want):
		t.Fatalf("Get(%q) = %v, want %v", key, toKV(e), want)
	}
}

func TestFSM_ApplyPut(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			f := mustNew(t, eng)
			wantWrite(t, mustWrite(t, f, 1, putCmd("a", "1")),
				&kv.WriteResult_{Index: 1, CreateIndex: i64(1)})
			wantEntry(t, f, "a", entry("a", "1", 1, 1))

			c := putCmd("a", "2")
			c.ReturnPrevious = boolp(true)
			wantWrite(t, mustWrite(t, f, 2, c),
				&kv.WriteResult_{Index: 2, Succeeded: true, CreateIndex: i64(1), Entry: entry("a", "1", 1, 1)})
			wantEntry(t, f, "a", entry("a", "2", 1, 2))

			// Without return_previous the previous entry is not returned.
			wantWrite(t, mustWrite(t, f, 3, putCmd("a", "3")),
				&kv.WriteResult_{Index: 3, Succeeded: true, CreateIndex: i64(1)})

			// return_previous on a new key: nothing to return.
			c = putCmd("b", "")
			c.ReturnPrevious = boolp(true)
			wantWrite(t, mustWrite(t, f, 4, c), &kv.WriteResult_{Index: 4, CreateIndex: i64(4)})
			wantEntry(t, f, "b", entry("b", "", 4, 4))

			// An unset value stores an empty one.
			wantWrite(t, mustWrite(t, f, 5, &kv.Command{Op: kv.CommandOp_PUT, Key: []byte("c")}),
				&kv.WriteResult_{Index: 5, CreateIndex: i64(5)})
			wantEntry(t, f, "c", entry("c", "", 5, 5))
			if f.Len() != 3 || f.Bytes() != 4 { // "a3" "b" "c"
				t.Fatalf("Len %d Bytes %d, want 3 and 4", f.Len(), f.Bytes())
			}
			if f.EngineName() != eng {
				t.Fatalf("EngineName = %q", f.EngineName())
			}
		})
	}
}

func TestFSM_ApplyDelete(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			f := mustNew(t, eng)
			wantWrite(t, mustWrite(t, f, 1, delCmd("a")), &kv.WriteResult_{Index: 1})
			mustWrite(t, f, 2, putCmd("a", "1"))
			mustWrite(t, f, 3, putCmd("b", "2"))
			wantWrite(t, mustWrite(t, f, 4, delCmd("a")), &kv.WriteResult_{Index: 4, Succeeded: true})
			wantEntry(t, f, "a", nil)

			c := delCmd("b")
			c.ReturnPrevious = boolp(true)
			wantWrite(t, mustWrite(t, f, 5, c), &kv.WriteResult_{Index: 5, Succeeded: true, Entry: entry("b", "2", 3, 3)})
			c = delCmd("b")
			c.ReturnPrevious = boolp(true)
			wantWrite(t, mustWrite(t, f, 6, c), &kv.WriteResult_{Index: 6})
			if f.Len() != 0 {
				t.Fatalf("Len = %d", f.Len())
			}
		})
	}
}

func TestFSM_ApplyNoop(t *testing.T) {
	f := mustNew(t, "")
	mustWrite(t, f, 1, putCmd("a", "1"))
	_, before := f.Digest()
	wantWrite(t, mustWrite(t, f, 7, &kv.Command{Op: kv.CommandOp_NOOP}), &kv.WriteResult_{Index: 7})
	if _, after := f.Digest(); after != before {
		t.Fatal("NOOP changed the state")
	}
}

func TestFSM_ApplyCAS(t *testing.T) {
	casPut := func(key, value string, expValue *string, expMod *int64) *kv.Command {
		c := &kv.Command{Op: kv.CommandOp_CAS_PUT, Key: []byte(key), Value: []byte(value), ExpectedModIndex: expMod}
		if expValue != nil {
			c.ExpectedValue = []byte(*expValue)
		}
		return c
	}
	casDel := func(key string, expValue *string, expMod *int64) *kv.Command {
		c := casPut(key, "", expValue, expMod)
		c.Op, c.Value = kv.CommandOp_CAS_DELETE, nil
		return c
	}
	s := func(v string) *string { return &v }
	// Every case runs at index 10 on a state with a=1 (create 2, mod 3).
	tests := []struct {
		name  string
		cmd   *kv.Command
		want  *kv.WriteResult_
		after *kv.Entry // key "a" afterwards (or key "new" for create cases)
		key   string
	}{
		{"put value holds", casPut("a", "2", s("1"), nil),
			&kv.WriteResult_{Index: 10, Succeeded: true, Entry: entry("a", "2", 2, 10)}, entry("a", "2", 2, 10), "a"},
		{"put value fails", casPut("a", "2", s("x"), nil),
			&kv.WriteResult_{Index: 10, Entry: entry("a", "1", 2, 3)}, entry("a", "1", 2, 3), "a"},
		{"put empty value on absent key fails", casPut("new", "2", s(""), nil),
			&kv.WriteResult_{Index: 10}, nil, "new"},
		{"put mod holds", casPut("a", "2", nil, i64(3)),
			&kv.WriteResult_{Index: 10, Succeeded: true, Entry: entry("a", "2", 2, 10)}, entry("a", "2", 2, 10), "a"},
		{"put mod fails", casPut("a", "2", nil, i64(2)),
			&kv.WriteResult_{Index: 10, Entry: entry("a", "1", 2, 3)}, entry("a", "1", 2, 3), "a"},
		{"put mod on absent key fails", casPut("new", "2", nil, i64(3)),
			&kv.WriteResult_{Index: 10}, nil, "new"},
		{"create if absent holds", casPut("new", "v", nil, i64(0)),
			&kv.WriteResult_{Index: 10, Succeeded: true, Entry: entry("new", "v", 10, 10)}, entry("new", "v", 10, 10), "new"},
		{"create if absent fails", casPut("a", "v", nil, i64(0)),
			&kv.WriteResult_{Index: 10, Entry: entry("a", "1", 2, 3)}, entry("a", "1", 2, 3), "a"},
		{"delete value holds", casDel("a", s("1"), nil),
			&kv.WriteResult_{Index: 10, Succeeded: true}, nil, "a"},
		{"delete value fails", casDel("a", s("2"), nil),
			&kv.WriteResult_{Index: 10, Entry: entry("a", "1", 2, 3)}, entry("a", "1", 2, 3), "a"},
		{"delete mod holds", casDel("a", nil, i64(3)),
			&kv.WriteResult_{Index: 10, Succeeded: true}, nil, "a"},
		{"delete mod fails", casDel("a", nil, i64(4)),
			&kv.WriteResult_{Index: 10, Entry: entry("a", "1", 2, 3)}, entry("a", "1", 2, 3), "a"},
		{"delete absent with mod 0 holds", casDel("new", nil, i64(0)),
			&kv.WriteResult_{Index: 10, Succeeded: true}, nil, "new"},
	}
	for _, eng := range engines {
		for _, tc := range tests {
			t.Run(eng+"/"+tc.name, func(t *testing.T) {
				f := mustNew(t, eng)
				mustWrite(t, f, 2, putCmd("a", "0"))
				mustWrite(t, f, 3, putCmd("a", "1"))
				wantWrite(t, mustWrite(t, f, 10, tc.cmd), tc.want)
				wantEntry(t, f, tc.key, tc.after)
			})
		}
	}
}

func TestFSM_ApplyTxnCompares(t *testing.T) {
	op := func(o kv.CompareOp) *kv.CompareOp { return &o }
	value := func(key string, o *kv.CompareOp, v string) *kv.Compare {
		return &kv.Compare{Key: []byte(key), Target: kv.CompareTarget_VALUE, Op: o, Value: []byte(v)}
	}
	index := func(key string, target kv.CompareTarget, o *kv.CompareOp, v int64) *kv.Compare {
		return &kv.Compare{Key: []byte(key), Target: target, Op: o, Index: i64(v)}
	}
	exists := func(key string, o *kv.CompareOp, v bool) *kv.Compare {
		return &kv.Compare{Key: []byte(key), Target: kv.CompareTarget_EXISTS, Op: o, Exists: boolp(v)}
	}
	eq, ne, lt, gt := op(kv.CompareOp_EQUAL), op(kv.CompareOp_NOT_EQUAL), op(kv.CompareOp_LESS), op(kv.CompareOp_GREATER)
	mod, create := kv.CompareTarget_MOD_INDEX, kv.CompareTarget_CREATE_INDEX
	// State: k = "m" created at 2, modified at 4; "absent" does not exist.
	tests := []struct {
		cmp  *kv.Compare
		want bool
	}{
		{value("k", nil, "m"), true},
		{value("k", eq, "m"), true},
		{value("k", eq, "n"), false},
		{value("k", ne, "n"), true},
		{value("k", ne, "m"), false},
		{value("k", lt, "n"), true},
		{value("k", lt, "m"), false},
		{value("k", gt, "l"), true},
		{value("k", gt, "m"), false},
		{value("k", gt, ""), true},
		{value("absent", eq, ""), false},
		{value("absent", ne, "x"), false},
		{value("absent", lt, "x"), false},
		{value("absent", gt, ""), false},
		{index("k", mod, nil, 4), true},
		{index("k", mod, eq, 2), false},
		{index("k", mod, ne, 2), true},
		{index("k", mod, ne, 4), false},
		{index("k", mod, lt, 5), true},
		{index("k", mod, lt, 4), false},
		{index("k", mod, gt, 3), true},
		{index("k", mod, gt, 4), false},
		{index("absent", mod, eq, 0), true},
		{index("absent", mod, lt, 1), true},
		{index("absent", mod, gt, 0), false},
		{index("k", create, eq, 2), true},
		{index("k", create, eq, 4), false},
		{index("k", create, ne, 4), true},
		{index("k", create, lt, 3), true},
		{index("k", create, lt, 2), false},
		{index("k", create, gt, 1), true},
		{index("k", create, gt, 2), false},
		{index("absent", create, eq, 0), true},
		{index("absent", create, ne, 0), false},
		{exists("k", nil, true), true},
		{exists("k", eq, false), false},
		{exists("k", ne, false), true},
		{exists("k", ne, true), false},
		{exists("absent", eq, false), true},
		{exists("absent", eq, true), false},
		{exists("absent", ne, true), true},
	}
	for _, eng := range engines {
		for _, tc := range tests {
			name := fmt.Sprintf("%s/%s_%s_%s_%v", eng, tc.cmp.Key, tc.cmp.Target, tc.cmp.GetOp(), tc.want)
			t.Run(name, func(t *testing.T) {
				f := mustNew(t, eng)
				mustWrite(t, f, 2, putCmd("k", "x"))
				mustWrite(t, f, 4, putCmd("k", "m"))
				c := &kv.Command{
					Op:       kv.CommandOp_TXN,
					Compares: []*kv.Compare{tc.cmp},
					Success:  []*kv.Op{{Type: kv.OpType_PUT, Key: []byte("branch"), Value: []byte("success")}},
					Failure:  []*kv.Op{{Type: kv.OpType_PUT, Key: []byte("branch"), Value: []byte("failure")}},
				}
				res := mustWrite(t, f, 5, c)
				if res.Succeeded != tc.want {
					t.Fatalf("compare %v: succeeded %v, want %v", tc.cmp, res.Succeeded, tc.want)
				}
				branch := "failure"
				if tc.want {
					branch = "success"
				}
				wantEntry(t, f, "branch", entry("branch", branch, 5, 5))
			})
		}
	}
}

func TestFSM_ApplyTxn(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			f := mustNew(t, eng)
			mustWrite(t, f, 1, putCmd("a", "1"))
			mustWrite(t, f, 2, putCmd("b", "2"))
			ops := []*kv.Op{
				{Type: kv.OpType_GET, Key: []byte("a")},
				{Type: kv.OpType_PUT, Key: []byte("a"), Value: []byte("10")},
				{Type: kv.OpType_GET, Key: []byte("a")},
				{Type: kv.OpType_PUT, Key: []byte("c"), Value: []byte("3")},
				{Type: kv.OpType_DELETE, Key: []byte("b")},
				{Type: kv.OpType_GET, Key: []byte("b")},
				{Type: kv.OpType_DELETE, Key: []byte("zz")},
			}
			cmps := []*kv.Compare{
				{Key: []byte("a"), Target: kv.CompareTarget_VALUE, Value: []byte("1")},
				{Key: []byte("b"), Target: kv.CompareTarget_EXISTS, Exists: boolp(true)},
			}
			failOps := []*kv.Op{{Type: kv.OpType_PUT, Key: []byte("f"), Value: []byte("x")}}
			got := mustWrite(t, f, 3, &kv.Command{Op: kv.CommandOp_TXN, Compares: cmps, Success: ops, Failure: failOps})
			wantWrite(t, got, &kv.WriteResult_{Index: 3, Succeeded: true, Results: []*kv.OpResult_{
				{Type: kv.OpType_GET, Found: true, Entry: entry("a", "1", 1, 1)},
				{Type: kv.OpType_PUT, Found: true, Entry: entry("a", "1", 1, 1)},
				{Type: kv.OpType_GET, Found: true, Entry: entry("a", "10", 1, 3)},
				{Type: kv.OpType_PUT},
				{Type: kv.OpType_DELETE, Found: true, Entry: entry("b", "2", 2, 2)},
				{Type: kv.OpType_GET},
				{Type: kv.OpType_DELETE},
			}})
			wantEntry(t, f, "a", entry("a", "10", 1, 3))
			wantEntry(t, f, "b", nil)
			wantEntry(t, f, "c", entry("c", "3", 3, 3))
			wantEntry(t, f, "f", nil)

			// Same compares now fail (a = 10, b absent): the failure branch runs.
			got = mustWrite(t, f, 4, &kv.Command{Op: kv.CommandOp_TXN, Compares: cmps, Success: ops, Failure: failOps})
			wantWrite(t, got, &kv.WriteResult_{Index: 4, Results: []*kv.OpResult_{{Type: kv.OpType_PUT}}})
			wantEntry(t, f, "f", entry("f", "x", 4, 4))
			wantEntry(t, f, "a", entry("a", "10", 1, 3))

			// No compares: success; an empty branch gives an empty result list.
			got = mustWrite(t, f, 5, &kv.Command{Op: kv.CommandOp_TXN})
			wantWrite(t, got, &kv.WriteResult_{Index: 5, Succeeded: true, Results: []*kv.OpResult_{}})
		})
	}
}

func TestFSM_ApplyInvalid(t *testing.T) {
	okCmp := &kv.Compare{Key: []byte("a"), Target: kv.CompareTarget_EXISTS, Exists: boolp(true)}
	txn := func(cmps []*kv.Compare, success, failure []*kv.Op) *kv.Command {
		return &kv.Command{Op: kv.CommandOp_TXN, Compares: cmps, Success: success, Failure: failure}
	}
	lt := kv.CompareOp_LESS
	badOp := kv.CompareOp(9)
	tests := []struct {
		name string
		cmd  *kv.Command
	}{
		{"unknown op", &kv.Command{Op: 42, Key: []byte("a")}},
		{"put empty key", putCmd("", "v")},
		{"delete empty key", delCmd("")},
		{"cas empty key", &kv.Command{Op: kv.CommandOp_CAS_PUT, ExpectedModIndex: i64(0), Value: []byte("v")}},
		{"cas no expectation", &kv.Command{Op: kv.CommandOp_CAS_PUT, Key: []byte("a"), Value: []byte("v")}},
		{"cas both expectations", &kv.Command{Op: kv.CommandOp_CAS_DELETE, Key: []byte("a"), ExpectedValue: []byte("1"), ExpectedModIndex: i64(1)}},
		{"cas negative mod", &kv.Command{Op: kv.CommandOp_CAS_DELETE, Key: []byte("a"), ExpectedModIndex: i64(-1)}},
		{"client without sequence", &kv.Command{Op: kv.CommandOp_PUT, Key: []byte("a"), ClientID: i64(5)}},
		{"client with zero sequence", withID(putCmd("a", "v"), 5, 0)},
		{"txn compare empty key", txn([]*kv.Compare{{Target: kv.CompareTarget_EXISTS, Exists: boolp(true)}}, nil, nil)},
		{"txn compare unknown target", txn([]*kv.Compare{{Key: []byte("a"), Target: 9, Index: i64(1)}}, nil, nil)},
		{"txn compare unknown op", txn([]*kv.Compare{{Key: []byte("a"), Target: kv.CompareTarget_MOD_INDEX, Op: &badOp, Index: i64(1)}}, nil, nil)},
		{"txn value compare without value", txn([]*kv.Compare{{Key: []byte("a"), Target: kv.CompareTarget_VALUE}}, nil, nil)},
		{"txn mod compare without index", txn([]*kv.Compare{{Key: []byte("a"), Target: kv.CompareTarget_MOD_INDEX}}, nil, nil)},
		{"txn create compare without index", txn([]*kv.Compare{{Key: []byte("a"), Target: kv.CompareTarget_CREATE_INDEX}}, nil, nil)},
		{"txn exists compare without exists", txn([]*kv.Compare{{Key: []byte("a"), Target: kv.CompareTarget_EXISTS}}, nil, nil)},
		{"txn exists compare with LESS", txn([]*kv.Compare{{Key: []byte("a"), Target: kv.CompareTarget_EXISTS, Op: &lt, Exists: boolp(true)}}, nil, nil)},
		{"txn success op unknown type", txn([]*kv.Compare{okCmp}, []*kv.Op{{Type: kv.OpType_PUT, Key: []byte("x")}, {Type: 7, Key: []byte("a")}}, nil)},
		{"txn failure op empty key", txn([]*kv.Compare{okCmp}, []*kv.Op{{Type: kv.OpType_PUT, Key: []byte("x")}}, []*kv.Op{{Type: kv.OpType_DELETE}})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := mustNew(t, "")
			mustWrite(t, f, 1, putCmd("a", "1"))
			_, before := f.Digest()
			r := mustApply(t, f, 2, tc.cmd)
			if !errors.Is(r.Err, ErrInvalidCommand) || r.Write != nil || r.Duplicate {
				t.Fatalf("result %+v, want ErrInvalidCommand", r)
			}
			if _, after := f.Digest(); after != before {
				t.Fatal("invalid command changed the state")
			}
			if f.RememberedClients() != 0 {
				t.Fatalf("invalid command remembered: %d client ids", f.RememberedClients())
			}
		})
	}
}

func TestFSM_Scan(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			f := mustNew(t, eng)
			for i, k := range []string{"d", "a", "c", "e", "b"} {
				mustWrite(t, f, uint64(i+1), putCmd(k, "v"+k))
			}
			keys := func(es []storage.Entry) string {
				var s string
				for _, e := range es {
					s += string(e.Key)
				}
				return s
			}
			tests := []struct {
				start, end    string
				reverse       bool
				limit         int
				want          string
				more          bool
				keysOnly      bool
				openStart     bool
				openEnd       bool
				wantValueNils bool
			}{
				{openStart: true, openEnd: true, want: "abcde"},
				{openStart: true, openEnd: true, reverse: true, want: "edcba"},
				{start: "b", end: "d", want: "bc"},
				{start: "b", end: "d", reverse: true, want: "cb"},
				{openStart: true, openEnd: true, limit: 2, want: "ab", more: true},
				{openStart: true, openEnd: true, limit: 5, want: "abcde"},
				{openStart: true, end: "e", reverse: true, limit: 2, want: "dc", more: true},
				{start: "c", openEnd: true, limit: 3, want: "cde"},
				{start: "c", openEnd: true, limit: 2, keysOnly: true, want: "cd", more: true, wantValueNils: true},
				{start: "x", openEnd: true, want: ""},
			}
			for _, tc := range tests {
				var start, end []byte
				if !tc.openStart {
					start = []byte(tc.start)
				}
				if !tc.openEnd {
					end = []byte(tc.end)
				}
				es, more, applied := f.Scan(start, end, tc.reverse, tc.limit, tc.keysOnly)
				if keys(es) != tc.want || more != tc.more || applied != 5 {
					t.Errorf("Scan(%q,%q,rev=%v,limit=%d) = %q more=%v applied=%d, want %q more=%v",
						start, end, tc.reverse, tc.limit, keys(es), more, applied, tc.want, tc.more)
				}
				for _, e := range es {
					if (e.Value == nil) != tc.wantValueNils {
						t.Errorf("entry %q value %q, keysOnly %v", e.Key, e.Value, tc.keysOnly)
					}
					if !tc.keysOnly && string(e.Value) != "v"+string(e.Key) {
						t.Errorf("entry %q value %q", e.Key, e.Value)
					}
				}
			}
		})
	}
}

// TestFSM_ScanEntriesSurviveWrites checks that what Scan returns keeps its
// bytes after the keys are overwritten and deleted: an engine's Scan entries
// live only during its callback, so the FSM copies them.
func TestFSM_ScanEntriesSurviveWrites(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			f := mustNew(t, eng)
			keys := []string{"a", "b", "c", "d"}
			idx := uint64(0)
			for _, k := range keys {
				idx++
				mustWrite(t, f, idx, putCmd(k, "first-"+k))
			}
			es, _, _ := f.Scan(nil, nil, false, 0, false)
			for round := range 4 {
				for _, k := range keys {
					idx++
					if round%2 == 1 {
						mustWrite(t, f, idx, delCmd(k))
					} else {
						mustWrite(t, f, idx, putCmd(k, fmt.Sprintf("round%d", round)))
					}
				}
			}
			if len(es) != len(keys) {
				t.Fatalf("Scan returned %d entries, want %d", len(es), len(keys))
			}
			for i, e := range es {
				if string(e.Key) != keys[i] || string(e.Value) != "first-"+keys[i] {
					t.Errorf("entry %d = %q=%q after later writes, want %q=%q", i, e.Key, e.Value, keys[i], "first-"+keys[i])
				}
			}
		})
	}
}

// BenchmarkApplyPut applies PUTs of 128-byte values over 4096 keys, each
// with a request id (64 clients), so the request-id table is on the path.
func BenchmarkApplyPut(b *testing.B) {
	for _, eng := range engines {
		b.Run(eng, func(b *testing.B) {
			f, err := New(&Config{Engine: eng})
			if err != nil {
				b.Fatal(err)
			}
			value := string(make([]byte, 128))
			logs := make([]*raft.Log, 4096)
			round := int64(0)
			encode := func() {
				round++
				for i := range logs {
					c := withID(putCmd(fmt.Sprintf("user/%08d", i), value), 1+int64(i%64), round*64+int64(i/64))
					logs[i] = &raft.Log{Type: raft.LogCommand, Data: mustEncode(b, c)}
				}
			}
			encode()
			b.ReportAllocs()
			idx := uint64(0)
			for b.Loop() {
				l := logs[idx%uint64(len(logs))]
				idx++
				l.Index = idx
				if r := f.Apply(l).(*Result); r.Err != nil || r.Duplicate {
					b.Fatalf("apply %d: %+v", idx, r)
				}
				if idx%uint64(len(logs)) == 0 {
					b.StopTimer()
					encode()
					b.StartTimer()
				}
			}
		})
	}
}
