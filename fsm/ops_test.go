package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/cubekv/cubekv/thrift/kv"
)

// TestOpTable_EveryOpHasAnEntry fails when an op is added to the IDL
// without an entry in the command table, or an entry leaves a function out.
func TestOpTable_EveryOpHasAnEntry(t *testing.T) {
	known := 0
	for op := kv.CommandOp(-1); op < 1<<10; op++ {
		inIDL := op.String() != "<UNSET>"
		s := specOf(op)
		switch {
		case inIDL && s == nil:
			t.Errorf("CommandOp %s (%d) has no entry in opTable (fsm/ops.go)", op, int64(op))
		case !inIDL && s != nil:
			t.Errorf("opTable has an entry for %d, which the IDL does not define", int64(op))
		case s != nil && (s.validate == nil || s.writeKeys == nil || s.size == nil || s.apply == nil):
			t.Errorf("opTable entry for %s leaves validate, writeKeys, size or apply unset", op)
		}
		if inIDL {
			known++
		}
	}
	if known == 0 {
		t.Fatal("no CommandOp found in the IDL")
	}
	if specOf(0) != nil {
		t.Fatal("op 0 must stay invalid")
	}
	if err := Validate(&kv.Command{Op: 42, Key: []byte("a")}, Limits{}); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("unknown op: %v, want ErrInvalidCommand", err)
	}
}

func TestValidate_FieldsAndLimits(t *testing.T) {
	front := Limits{MaxKeySize: 8, MaxValueSize: 16, MaxTxnOps: 2}
	long := []byte("123456789")
	get := func(k string) *kv.Op { return &kv.Op{Type: kv.OpType_GET, Key: []byte(k)} }
	for _, tc := range []struct {
		name  string
		cmd   *kv.Command
		field string // refused with the front door's limits on this field; "" accepted
		hard  bool   // refused with the hard limits too
	}{
		{"put", putCmd("k", "v"), "", false},
		{"put long key", &kv.Command{Op: kv.CommandOp_PUT, Key: long, Value: []byte("v")}, "key", false},
		{"put long value", &kv.Command{Op: kv.CommandOp_PUT, Key: []byte("k"), Value: bytes.Repeat([]byte("v"), 17)}, "value", false},
		{"put huge key", &kv.Command{Op: kv.CommandOp_PUT, Key: bytes.Repeat([]byte("k"), MaxKeySize+1)}, "key", true},
		{"delete empty key", delCmd(""), "key", true},
		{"cas put without value", &kv.Command{Op: kv.CommandOp_CAS_PUT, Key: []byte("k"), ExpectedModIndex: i64(0)}, "value", true},
		{"cas delete with value", &kv.Command{Op: kv.CommandOp_CAS_DELETE, Key: []byte("k"), ExpectedModIndex: i64(0), Value: []byte{}}, "value", true},
		{"cas long expected value", &kv.Command{Op: kv.CommandOp_CAS_DELETE, Key: []byte("k"), ExpectedValue: bytes.Repeat([]byte("v"), 17)}, "expected_value", false},
		{"txn too many compares", &kv.Command{Op: kv.CommandOp_TXN, Compares: []*kv.Compare{
			{Key: []byte("a"), Target: kv.CompareTarget_EXISTS, Exists: boolp(true)},
			{Key: []byte("a"), Target: kv.CompareTarget_EXISTS, Exists: boolp(true)},
			{Key: []byte("a"), Target: kv.CompareTarget_EXISTS, Exists: boolp(true)},
		}}, "compares", false},
		{"txn too many failure ops", &kv.Command{Op: kv.CommandOp_TXN, Failure: []*kv.Op{get("a"), get("b"), get("c")}}, "failure", false},
		{"txn negative index", &kv.Command{Op: kv.CommandOp_TXN, Compares: []*kv.Compare{{Key: []byte("a"), Target: kv.CompareTarget_MOD_INDEX, Index: i64(-1)}}}, "compares[0].index", true},
		{"txn get with value", &kv.Command{Op: kv.CommandOp_TXN, Success: []*kv.Op{get("a"), {Type: kv.OpType_GET, Key: []byte("b"), Value: []byte{}}}}, "success[1].value", true},
		{"txn long op key", &kv.Command{Op: kv.CommandOp_TXN, Success: []*kv.Op{{Type: kv.OpType_DELETE, Key: long}}}, "success[0].key", false},
		{"txn negative budget", &kv.Command{Op: kv.CommandOp_TXN, MaxAnswerBytes: i64(-1)}, "max_answer_bytes", true},
		{"member without id", &kv.Command{Op: kv.CommandOp_MEMBER_SET, Member: &kv.MemberAddrs{}}, "member", true},
		{"zero sequence", withID(putCmd("k", "v"), 5, 0), "request_id.sequence", true},
		{"zero client id", withID(putCmd("k", "v"), 0, 1), "request_id.client_id", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.cmd, front)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ce *CommandError
			if !errors.As(err, &ce) || !errors.Is(err, ErrInvalidCommand) || ce.Field != tc.field || ce.Reason == "" {
				t.Fatalf("err = %v, want a CommandError on %q wrapping ErrInvalidCommand", err, tc.field)
			}
			// Apply validates with the hard limits.
			_, err = validate(tc.cmd, applyLimits)
			if got := err != nil; got != tc.hard {
				t.Fatalf("with Apply's limits: err = %v, want refused %v", err, tc.hard)
			}
		})
	}
}

func TestStamp_LowersTheAnswerBudget(t *testing.T) {
	txn := &kv.Command{Op: kv.CommandOp_TXN}
	Stamp(txn, Limits{})
	if txn.IsSetMaxAnswerBytes() {
		t.Fatal("a zero budget was stamped")
	}
	Stamp(txn, Limits{MaxAnswerBytes: 1000}) // the follower's front door
	Stamp(txn, Limits{MaxAnswerBytes: 4000}) // a leader with a larger one
	if got := txn.GetMaxAnswerBytes(); got != 1000 {
		t.Fatalf("budget %d, want 1000", got)
	}
	Stamp(txn, Limits{MaxAnswerBytes: 500}) // a leader with a smaller one
	if got := txn.GetMaxAnswerBytes(); got != 500 {
		t.Fatalf("budget %d, want 500", got)
	}
	put := putCmd("k", "v")
	Stamp(put, Limits{MaxAnswerBytes: 500})
	if put.IsSetMaxAnswerBytes() {
		t.Fatal("a PUT was stamped with an answer budget")
	}
}

func TestWriteKeysAndSize(t *testing.T) {
	txn := &kv.Command{Op: kv.CommandOp_TXN,
		Compares: []*kv.Compare{{Key: []byte("c"), Target: kv.CompareTarget_VALUE, Value: []byte("vv")}},
		Success:  []*kv.Op{{Type: kv.OpType_GET, Key: []byte("g")}, {Type: kv.OpType_PUT, Key: []byte("p"), Value: []byte("xyz")}},
		Failure:  []*kv.Op{{Type: kv.OpType_DELETE, Key: []byte("d")}},
	}
	for _, tc := range []struct {
		cmd  *kv.Command
		keys string
		size int
	}{
		{&kv.Command{Op: kv.CommandOp_NOOP}, "[]", 32},
		{putCmd("key", "value"), "[key]", 32 + 3 + 5},
		{delCmd("key"), "[key]", 32 + 3},
		{&kv.Command{Op: kv.CommandOp_CAS_PUT, Key: []byte("k"), Value: []byte("new"), ExpectedValue: []byte("old")}, "[k]", 32 + 1 + 3 + 3},
		{txn, "[p d]", 32 + (16 + 1 + 2) + (8 + 1) + (8 + 1 + 3) + (8 + 1)},
		{&kv.Command{Op: kv.CommandOp_MEMBER_SET, Member: Member{ID: "n1", ThriftAddr: "h:1"}.ToKV()}, "[]", 32 + 2 + 3},
	} {
		if got := fmt.Sprintf("%s", WriteKeys(tc.cmd)); got != tc.keys {
			t.Errorf("%s: WriteKeys = %s, want %s", tc.cmd.Op, got, tc.keys)
		}
		if got := Size(tc.cmd); got != tc.size {
			t.Errorf("%s: Size = %d, want %d", tc.cmd.Op, got, tc.size)
		}
	}
}

// TestFSM_TxnAnswerBudget checks that a transaction whose answer would
// exceed the budget stamped into it is refused by every node alike, on the
// state it applies to, and applies nothing; and that entries without a
// budget apply as they always did.
func TestFSM_TxnAnswerBudget(t *testing.T) {
	big := bytes.Repeat([]byte("v"), 400)
	gets := []*kv.Op{{Type: kv.OpType_GET, Key: []byte("k0")}, {Type: kv.OpType_GET, Key: []byte("k1")}, {Type: kv.OpType_GET, Key: []byte("k2")}}
	small := []*kv.Op{{Type: kv.OpType_GET, Key: []byte("k0")}}
	withBudget := func(c *kv.Command, b int64) *kv.Command { c.MaxAnswerBytes = &b; return c }
	// 3 x (2 + 400 + 32) = 1302 bytes of results on the success branch.
	oversized := func() *kv.Command {
		return withBudget(&kv.Command{Op: kv.CommandOp_TXN, Success: gets, Failure: small}, 1000)
	}

	run := func(t *testing.T, f *FSM) (results []string) {
		for i := 0; i < 3; i++ {
			mustWrite(t, f, uint64(i+1), &kv.Command{Op: kv.CommandOp_PUT, Key: []byte(fmt.Sprintf("k%d", i)), Value: big})
		}
		_, before := f.Digest()

		r := mustApply(t, f, 4, withID(oversized(), 9, 1))
		var ce *CommandError
		if !errors.Is(r.Err, ErrAnswerTooLarge) || !errors.As(r.Err, &ce) || ce.Field != "success" || r.Write != nil {
			t.Fatalf("oversized answer: %+v, want ErrAnswerTooLarge on success", r)
		}
		if _, after := f.Digest(); after != before || f.RememberedClients() != 0 {
			t.Fatal("a refused transaction changed the state or was remembered")
		}
		results = append(results, r.Err.Error())

		// The budget is measured on the branch that runs: compares that
		// fail run the small failure branch.
		failing := oversized()
		failing.Compares = []*kv.Compare{{Key: []byte("absent"), Target: kv.CompareTarget_EXISTS, Exists: boolp(true)}}
		w := mustWrite(t, f, 5, failing)
		results = append(results, w.String())

		// Writes earlier in the transaction count as they leave the key:
		// k0 shrinks to one byte before it is read.
		shrink := withBudget(&kv.Command{Op: kv.CommandOp_TXN, Success: []*kv.Op{
			{Type: kv.OpType_PUT, Key: []byte("k0"), Value: []byte("s")}, // 434: the previous entry
			{Type: kv.OpType_GET, Key: []byte("k0")},                     // 35
			{Type: kv.OpType_GET, Key: []byte("k1")},                     // 434
		}}, 903)
		w = mustWrite(t, f, 6, withID(shrink, 9, 1))
		results = append(results, w.String())

		// The same sequence, retried after the state grew, is answered
		// from the request-id table, not measured again.
		mustWrite(t, f, 7, &kv.Command{Op: kv.CommandOp_PUT, Key: []byte("k0"), Value: append([]byte("vv"), big...)})
		again := withBudget(&kv.Command{Op: kv.CommandOp_TXN, Success: shrink.Success}, 903)
		r = mustApply(t, f, 8, withID(again, 9, 1))
		if r.Err != nil || !r.Duplicate {
			t.Fatalf("retry: err %v duplicate %v, want the remembered answer", r.Err, r.Duplicate)
		}
		// A new sequence of the same shape is measured, and refused:
		// 436 + 35 + 434 bytes.
		r = mustApply(t, f, 9, withID(withBudget(&kv.Command{Op: kv.CommandOp_TXN, Success: shrink.Success}, 903), 9, 2))
		if !errors.Is(r.Err, ErrAnswerTooLarge) {
			t.Fatalf("new sequence: err %v, want ErrAnswerTooLarge", r.Err)
		}

		// An entry without a budget (as every entry written before the
		// field existed) is not measured.
		w = mustWrite(t, f, 10, &kv.Command{Op: kv.CommandOp_TXN, Success: gets})
		if len(w.Results) != 3 {
			t.Fatalf("unbudgeted txn: %+v", w)
		}
		results = append(results, w.String())
		_, sum := f.Digest()
		return append(results, fmt.Sprintf("%x", sum))
	}

	var first []string
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			got := run(t, mustNew(t, eng))
			if first == nil {
				first = got
				return
			}
			if fmt.Sprint(got) != fmt.Sprint(first) {
				t.Fatalf("engine %s decided differently:\n%v\nvs\n%v", eng, got, first)
			}
		})
	}
}
