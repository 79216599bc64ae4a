package fsm

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cubekv/cubekv/storage"
	"github.com/cubekv/cubekv/thrift/kv"
)

// applyCommand applies one decoded command at Raft index idx, consulting and
// updating the request-id table. The caller holds f.mu for writing.
func (f *FSM) applyCommand(idx uint64, c *kv.Command) *Result {
	if err := validateCommand(c); err != nil {
		return &Result{Err: err}
	}
	clientID := c.GetClientID()
	if clientID != 0 {
		if s := f.requests.lookup(clientID); s != nil {
			switch seq := c.GetSequence(); {
			case seq == s.seq:
				f.requests.touch(clientID, idx)
				return &Result{Write: s.result, Duplicate: true}
			case seq < s.seq:
				return &Result{Err: fmt.Errorf("client %d sequence %d below %d: %w", clientID, seq, s.seq, ErrStaleSequence)}
			}
		}
	}
	res := f.execute(idx, c)
	if clientID != 0 {
		f.requests.remember(clientID, c.GetSequence(), idx, rememberable(res))
	}
	return &Result{Write: res}
}

// resultBytes is the total size of the keys and values a result holds.
func resultBytes(r *kv.WriteResult_) int {
	n := 0
	if r.Entry != nil {
		n += len(r.Entry.Key) + len(r.Entry.Value)
	}
	for _, or := range r.Results {
		if or.Entry != nil {
			n += len(or.Entry.Key) + len(or.Entry.Value)
		}
	}
	return n
}

// rememberable returns r, or when its entries exceed maxRememberedResult a
// copy without them: deterministic, and it keeps the request-id table and
// every snapshot of it bounded.
func rememberable(r *kv.WriteResult_) *kv.WriteResult_ {
	if resultBytes(r) <= maxRememberedResult {
		return r
	}
	out := &kv.WriteResult_{Index: r.Index, Succeeded: r.Succeeded, CreateIndex: r.CreateIndex}
	for _, or := range r.Results {
		out.Results = append(out.Results, &kv.OpResult_{Type: or.Type, Found: or.Found})
	}
	return out
}

// checkSizes refuses keys and values beyond MaxKeySize and MaxValueSize.
func checkSizes(c *kv.Command) error {
	key := func(what string, k []byte) error {
		if len(k) > MaxKeySize {
			return invalid("%s: key of %d bytes exceeds %d", what, len(k), MaxKeySize)
		}
		return nil
	}
	value := func(what string, v []byte) error {
		if len(v) > MaxValueSize {
			return invalid("%s: value of %d bytes exceeds %d", what, len(v), MaxValueSize)
		}
		return nil
	}
	if err := errors.Join(key("command", c.Key), value("command", c.Value), value("expected", c.ExpectedValue)); err != nil {
		return err
	}
	for _, cmp := range c.Compares {
		if cmp == nil {
			continue
		}
		if err := errors.Join(key("compare", cmp.Key), value("compare", cmp.Value)); err != nil {
			return err
		}
	}
	for _, ops := range [][]*kv.Op{c.Success, c.Failure} {
		for _, op := range ops {
			if op == nil {
				continue
			}
			if err := errors.Join(key("op", op.Key), value("op", op.Value)); err != nil {
				return err
			}
		}
	}
	return nil
}

// invalid wraps ErrInvalidCommand with a reason.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrInvalidCommand)
}

// validateCommand checks everything execute relies on, so that a command
// either applies completely or not at all.
func validateCommand(c *kv.Command) error {
	if err := checkSizes(c); err != nil {
		return err
	}
	if c.GetClientID() != 0 && c.GetSequence() <= 0 {
		return invalid("client %d: sequence %d is not positive", c.GetClientID(), c.GetSequence())
	}
	switch c.Op {
	case kv.CommandOp_NOOP:
		return nil
	case kv.CommandOp_PUT, kv.CommandOp_DELETE:
		if len(c.Key) == 0 {
			return invalid("%s: empty key", c.Op)
		}
		return nil
	case kv.CommandOp_CAS_PUT, kv.CommandOp_CAS_DELETE:
		if len(c.Key) == 0 {
			return invalid("%s: empty key", c.Op)
		}
		if c.IsSetExpectedValue() == c.IsSetExpectedModIndex() {
			return invalid("%s: want exactly one of expected_value and expected_mod_index", c.Op)
		}
		if c.GetExpectedModIndex() < 0 {
			return invalid("%s: negative expected_mod_index %d", c.Op, c.GetExpectedModIndex())
		}
		return nil
	case kv.CommandOp_MEMBER_SET, kv.CommandOp_MEMBER_REMOVE:
		return validateMember(c)
	case kv.CommandOp_TXN:
		for i, cmp := range c.Compares {
			if err := validateCompare(cmp); err != nil {
				return invalid("txn compare %d: %v", i, err)
			}
		}
		if err := validateOps("success", c.Success); err != nil {
			return err
		}
		return validateOps("failure", c.Failure)
	default:
		return invalid("unknown op %d", c.Op)
	}
}

func validateCompare(cmp *kv.Compare) error {
	if len(cmp.Key) == 0 {
		return fmt.Errorf("empty key")
	}
	op := cmp.GetOp()
	if !cmp.IsSetOp() {
		op = kv.CompareOp_EQUAL
	}
	switch op {
	case kv.CompareOp_EQUAL, kv.CompareOp_NOT_EQUAL, kv.CompareOp_LESS, kv.CompareOp_GREATER:
	default:
		return fmt.Errorf("unknown compare op %d", op)
	}
	switch cmp.Target {
	case kv.CompareTarget_VALUE:
		if !cmp.IsSetValue() {
			return fmt.Errorf("VALUE compare without value")
		}
	case kv.CompareTarget_MOD_INDEX, kv.CompareTarget_CREATE_INDEX:
		if !cmp.IsSetIndex() {
			return fmt.Errorf("%s compare without index", cmp.Target)
		}
	case kv.CompareTarget_EXISTS:
		if !cmp.IsSetExists() {
			return fmt.Errorf("EXISTS compare without exists")
		}
		if op != kv.CompareOp_EQUAL && op != kv.CompareOp_NOT_EQUAL {
			return fmt.Errorf("EXISTS compare with op %s", op)
		}
	default:
		return fmt.Errorf("unknown compare target %d", cmp.Target)
	}
	return nil
}

func validateOps(branch string, ops []*kv.Op) error {
	for i, op := range ops {
		switch op.Type {
		case kv.OpType_GET, kv.OpType_PUT, kv.OpType_DELETE:
		default:
			return invalid("txn %s op %d: unknown type %d", branch, i, op.Type)
		}
		if len(op.Key) == 0 {
			return invalid("txn %s op %d: empty key", branch, i)
		}
	}
	return nil
}

// toKV converts an engine entry to its Thrift form. The slices are shared
// with the engine; a value is always set (empty, not nil, for an empty one).
func toKV(e storage.Entry) *kv.Entry {
	v := e.Value
	if v == nil {
		v = []byte{}
	}
	return &kv.Entry{Key: e.Key, Value: v, CreateIndex: int64(e.CreateIndex), ModIndex: int64(e.ModIndex)}
}

// value returns v, or an empty non-nil value when v is unset.
func value(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}

// execute applies a validated command at idx and returns its result.
func (f *FSM) execute(idx uint64, c *kv.Command) *kv.WriteResult_ {
	res := &kv.WriteResult_{Index: int64(idx)}
	switch c.Op {
	case kv.CommandOp_NOOP:
	case kv.CommandOp_MEMBER_SET, kv.CommandOp_MEMBER_REMOVE:
		f.executeMember(res, c)
	case kv.CommandOp_PUT:
		prev, existed := f.engine.Put(idx, c.Key, value(c.Value))
		res.Succeeded = existed
		create := int64(idx)
		if existed {
			create = int64(prev.CreateIndex)
			if c.GetReturnPrevious() {
				res.Entry = toKV(prev)
			}
		}
		res.CreateIndex = &create
	case kv.CommandOp_DELETE:
		prev, existed := f.engine.Delete(idx, c.Key)
		res.Succeeded = existed
		if existed && c.GetReturnPrevious() {
			res.Entry = toKV(prev)
		}
	case kv.CommandOp_CAS_PUT, kv.CommandOp_CAS_DELETE:
		cur, exists := f.engine.Get(c.Key)
		var holds bool
		if c.IsSetExpectedValue() {
			holds = exists && bytes.Equal(cur.Value, c.ExpectedValue)
		} else if want := uint64(c.GetExpectedModIndex()); want == 0 {
			holds = !exists
		} else {
			holds = exists && cur.ModIndex == want
		}
		res.Succeeded = holds
		switch {
		case !holds:
			if exists {
				res.Entry = toKV(cur)
			}
		case c.Op == kv.CommandOp_CAS_PUT:
			v := value(c.Value)
			f.engine.Put(idx, c.Key, v)
			create := idx
			if exists {
				create = cur.CreateIndex
			}
			res.Entry = toKV(storage.Entry{Key: c.Key, Value: v, CreateIndex: create, ModIndex: idx})
		default:
			f.engine.Delete(idx, c.Key)
		}
	case kv.CommandOp_TXN:
		res.Succeeded = true
		for _, cmp := range c.Compares {
			if !f.compareHolds(cmp) {
				res.Succeeded = false
				break
			}
		}
		ops := c.Success
		if !res.Succeeded {
			ops = c.Failure
		}
		res.Results = make([]*kv.OpResult_, 0, len(ops))
		for _, op := range ops {
			res.Results = append(res.Results, f.executeOp(idx, op))
		}
	}
	return res
}

// compareHolds evaluates one validated transaction compare.
func (f *FSM) compareHolds(cmp *kv.Compare) bool {
	cur, exists := f.engine.Get(cmp.Key)
	op := kv.CompareOp_EQUAL
	if cmp.IsSetOp() {
		op = *cmp.Op
	}
	var order int // sign of (current - operand)
	switch cmp.Target {
	case kv.CompareTarget_VALUE:
		if !exists {
			return false
		}
		order = bytes.Compare(cur.Value, cmp.Value)
	case kv.CompareTarget_MOD_INDEX, kv.CompareTarget_CREATE_INDEX:
		var have int64 // 0 for an absent key
		if exists {
			have = int64(cur.ModIndex)
			if cmp.Target == kv.CompareTarget_CREATE_INDEX {
				have = int64(cur.CreateIndex)
			}
		}
		order = cmpInt(have, cmp.GetIndex())
	case kv.CompareTarget_EXISTS:
		if exists != cmp.GetExists() {
			order = 1
		}
	}
	switch op {
	case kv.CompareOp_EQUAL:
		return order == 0
	case kv.CompareOp_NOT_EQUAL:
		return order != 0
	case kv.CompareOp_LESS:
		return order < 0
	default: // GREATER
		return order > 0
	}
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// executeOp runs one transaction op at idx.
func (f *FSM) executeOp(idx uint64, op *kv.Op) *kv.OpResult_ {
	r := &kv.OpResult_{Type: op.Type}
	var e storage.Entry
	switch op.Type {
	case kv.OpType_GET:
		e, r.Found = f.engine.Get(op.Key)
	case kv.OpType_PUT:
		e, r.Found = f.engine.Put(idx, op.Key, value(op.Value))
	case kv.OpType_DELETE:
		e, r.Found = f.engine.Delete(idx, op.Key)
	}
	if r.Found {
		r.Entry = toKV(e)
	}
	return r
}
