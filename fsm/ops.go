package fsm

import (
	"bytes"
	"cmp"
	"fmt"

	"github.com/cubekv/cubekv/storage"
	"github.com/cubekv/cubekv/thrift/kv"
)

// This file is the command table: everything cubekv knows about each
// CommandOp, in one entry per op. The front door, the leader's
// Internal.apply, the proposer and Apply all ask the table; none of them
// switches on the op. Adding an op means an entry here, the op (and any
// field it needs) in thrift/kv.thrift, and the handler that builds it.

// Limits bound what a command may carry. The front door validates with its
// configured limits, the leader's Internal.apply with its own, and Apply
// with applyLimits. A zero field means the hard limit, what a snapshot can
// hold, or no limit.
type Limits struct {
	// MaxKeySize is the longest key, in bytes. 0: MaxKeySize.
	MaxKeySize int
	// MaxValueSize is the longest value, expected value or compare
	// operand, in bytes. 0: MaxValueSize.
	MaxValueSize int
	// MaxTxnOps is the most compares, and the most ops in each branch, of
	// a transaction. 0: no limit.
	MaxTxnOps int
	// MaxAnswerBytes is the answer budget Stamp writes into a command
	// whose answer grows with the state (a transaction's results), in
	// bytes of keys and values. 0: Stamp writes none.
	MaxAnswerBytes int

	// MinLeaseTTL and MaxLeaseTTL bound a lease's TTL, in milliseconds. 0:
	// 1 and MaxLeaseTTL.
	MinLeaseTTL int64
	MaxLeaseTTL int64
	// MaxLeases and MaxLeaseKeys are the most leases, and the most keys
	// attached to one lease, that Stamp writes into a command using
	// leases (the state decides whether a command exceeds them, so Apply
	// checks them as stamped). 0: no limit.
	MaxLeases    int
	MaxLeaseKeys int

	// zeroClientIDIsNone is set only in Apply's limits: there a request id
	// with a zero client id means no request id, as it always has in the
	// log. Validate, for the front door, refuses one: a client that sends
	// a request id means to be deduplicated.
	zeroClientIDIsNone bool
}

// applyLimits are the limits Apply validates every command with: the hard
// limits (what a snapshot can hold), no limit on transaction ops, and the
// request id as the log has always meant it.
var applyLimits = Limits{zeroClientIDIsNone: true}

func (l Limits) withDefaults() Limits {
	l.MaxKeySize = cmp.Or(l.MaxKeySize, MaxKeySize)
	l.MaxValueSize = cmp.Or(l.MaxValueSize, MaxValueSize)
	return l
}

// opSpec is one op's entry in the command table. Every function is set;
// stamp may be nil.
type opSpec struct {
	// validate checks the fields the op uses against l (defaults filled
	// in). Whatever it accepts, apply can execute: validation is the only
	// place a malformed command is refused. Apply runs it with the hard
	// limits, so it must accept every command a previous version's front
	// door accepted, or an old log would replay differently.
	validate func(c *kv.Command, l Limits) error
	// writeKeys returns the keys the command may write. The proposer never
	// puts two commands that write one key into one log entry: both would
	// get the entry's index as their mod_index.
	writeKeys func(c *kv.Command) [][]byte
	// size estimates the bytes the command adds to a log entry; the
	// proposer bounds entries with it and the codec sizes its buffer.
	size func(c *kv.Command) int
	// stamp records in c what applying it must respect but only the node
	// proposing it knows, such as a limit of its front door. Apply never
	// stamps: it applies what the log says. Nil: nothing to stamp.
	stamp func(c *kv.Command, l Limits)
	// apply executes a validated command at Raft index idx, filling res.
	// It may refuse the command by returning an error (a *CommandError),
	// and then must have changed nothing; the refusal may depend only on
	// the state and the command. The caller holds f.mu for writing.
	apply func(f *FSM, idx uint64, c *kv.Command, res *kv.WriteResult_) error
}

// opTable is the command table, indexed by op. A missing entry (the zero
// opSpec) is an unknown op. TestOpTable_EveryOpHasAnEntry fails for an op
// in the IDL without one.
var opTable = [...]opSpec{
	kv.CommandOp_NOOP:          {validate: validateNothing, writeKeys: noKeys, size: sizeFixed, apply: applyNoop},
	kv.CommandOp_PUT:           {validate: validatePut, writeKeys: commandKey, size: sizeKeyValue, stamp: stampLease, apply: applyPut},
	kv.CommandOp_DELETE:        {validate: validateDelete, writeKeys: commandKey, size: sizeKeyValue, apply: applyDelete},
	kv.CommandOp_CAS_PUT:       {validate: validateCAS, writeKeys: commandKey, size: sizeKeyValue, stamp: stampLease, apply: applyCAS},
	kv.CommandOp_CAS_DELETE:    {validate: validateCAS, writeKeys: commandKey, size: sizeKeyValue, apply: applyCAS},
	kv.CommandOp_TXN:           {validate: validateTxn, writeKeys: txnKeys, size: sizeTxn, stamp: stampTxnLease, apply: applyTxn},
	kv.CommandOp_MEMBER_SET:    {validate: validateMember, writeKeys: noKeys, size: sizeMember, apply: applyMemberSet},
	kv.CommandOp_MEMBER_REMOVE: {validate: validateMember, writeKeys: noKeys, size: sizeMember, apply: applyMemberRemove},
	// Leases (lease.go). A revoke's keys are known only at apply time; it
	// deletes them at its index like any delete.
	kv.CommandOp_LEASE_GRANT:  {validate: validateLeaseGrant, writeKeys: noKeys, size: sizeLease, stamp: stampLease, apply: applyLeaseGrant},
	kv.CommandOp_LEASE_REVOKE: {validate: validateLeaseRevoke, writeKeys: noKeys, size: sizeLease, apply: applyLeaseRevoke},
}

// specOf returns op's entry, or nil for an unknown op.
func specOf(op kv.CommandOp) *opSpec {
	if op < 0 || int64(op) >= int64(len(opTable)) || opTable[op].apply == nil {
		return nil
	}
	return &opTable[op]
}

// Validate checks c against l: the op is known, its fields are present,
// well-formed and within l, and its request id, when set, is complete.
// Errors are *CommandError wrapping ErrInvalidCommand, naming the field as
// the client's request calls it. Validate does not modify c.
func Validate(c *kv.Command, l Limits) error {
	_, err := validate(c, l)
	return err
}

func validate(c *kv.Command, l Limits) (*opSpec, error) {
	s := specOf(c.Op)
	if s == nil {
		return nil, invalid("op", "unknown command op %d", int64(c.Op))
	}
	if err := s.validate(c, l.withDefaults()); err != nil {
		return nil, err
	}
	return s, validateRequestID(c, l)
}

// Stamp records in c what its op needs from the node proposing it: today a
// transaction's answer budget, l.MaxAnswerBytes, lowered to it when c
// already carries a larger one (a follower's front door stamped its own
// before forwarding). The front door stamps after Validate, and the leader
// stamps again before it proposes.
func Stamp(c *kv.Command, l Limits) {
	if s := specOf(c.Op); s != nil && s.stamp != nil {
		s.stamp(c, l)
	}
}

// WriteKeys returns the keys c may write (none for an unknown op).
func WriteKeys(c *kv.Command) [][]byte {
	if s := specOf(c.Op); s != nil {
		return s.writeKeys(c)
	}
	return nil
}

// GrantsLease reports whether c grants a lease when it applies (a
// LEASE_GRANT, or a PUT with ttl_ms). The lease's id is the index of the
// entry that applies it, so an entry must hold at most one such command:
// two would grant one id twice, the second replacing the first.
func GrantsLease(c *kv.Command) bool {
	return c.Op == kv.CommandOp_LEASE_GRANT || c.Op == kv.CommandOp_PUT && c.TTLMs != nil
}

// Size estimates the bytes c adds to a log entry: its keys and values plus
// a fixed overhead per command, compare and op.
func Size(c *kv.Command) int {
	if s := specOf(c.Op); s != nil {
		return s.size(c)
	}
	return sizeTxn(c) // counts every field a known op has
}

// Shared rules.

func checkKey(l Limits, field string, key []byte) error {
	if len(key) == 0 {
		return invalid(field, "must not be empty")
	}
	if len(key) > l.MaxKeySize {
		return invalid(field, "%d bytes exceeds the limit of %d", len(key), l.MaxKeySize)
	}
	return nil
}

func checkValue(l Limits, field string, v []byte) error {
	if len(v) > l.MaxValueSize {
		return invalid(field, "%d bytes exceeds the limit of %d", len(v), l.MaxValueSize)
	}
	return nil
}

// validateRequestID checks the request id of any command: none, or a
// non-zero client id (Apply: a zero one is none) and a positive sequence.
func validateRequestID(c *kv.Command, l Limits) error {
	if c.ClientID == nil && c.Sequence == nil || l.zeroClientIDIsNone && c.GetClientID() == 0 {
		return nil
	}
	if c.GetClientID() == 0 {
		return invalid("request_id.client_id", "must not be zero")
	}
	if c.GetSequence() <= 0 {
		return invalid("request_id.sequence", "must be positive, got %d", c.GetSequence())
	}
	return nil
}

func validateNothing(*kv.Command, Limits) error { return nil }

func noKeys(*kv.Command) [][]byte { return nil }

func commandKey(c *kv.Command) [][]byte { return [][]byte{c.Key} }

const (
	commandOverhead = 32 // bytes a command adds beyond its keys and values
	compareOverhead = 16
	opOverhead      = 8
)

func sizeFixed(*kv.Command) int { return commandOverhead }

func sizeKeyValue(c *kv.Command) int {
	return commandOverhead + len(c.Key) + len(c.Value) + len(c.ExpectedValue)
}

// toKV converts an engine entry to its Thrift form. The slices are shared
// with the engine; a value is always set (empty, not nil, for an empty one).
func toKV(e storage.Entry) *kv.Entry {
	return &kv.Entry{Key: e.Key, Value: value(e.Value), CreateIndex: int64(e.CreateIndex), ModIndex: int64(e.ModIndex)}
}

// value returns v, or an empty non-nil value when v is unset.
func value(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}

// NOOP: applies nothing; a new leader commits one to learn its read index.

func applyNoop(*FSM, uint64, *kv.Command, *kv.WriteResult_) error { return nil }

// PUT: key, value (unset is empty), return_previous.

func validatePut(c *kv.Command, l Limits) error {
	if err := checkKey(l, "key", c.Key); err != nil {
		return err
	}
	if err := checkValue(l, "value", c.Value); err != nil {
		return err
	}
	return validatePutLease(c, l)
}

// applyPut writes the key. Succeeded reports that it existed; the result
// carries the key's create index, and the previous entry when asked for.
func applyPut(f *FSM, idx uint64, c *kv.Command, res *kv.WriteResult_) error {
	lease, err := f.putLease(idx, c)
	if err != nil {
		return err
	}
	prev, existed := f.putKey(idx, c.Key, value(c.Value), lease)
	res.Succeeded = existed
	create := int64(idx)
	if existed {
		create = int64(prev.CreateIndex)
		if c.GetReturnPrevious() {
			res.Entry = toKV(prev)
		}
	}
	res.CreateIndex = &create
	return nil
}

// DELETE: key, return_previous.

func validateDelete(c *kv.Command, l Limits) error { return checkKey(l, "key", c.Key) }

// applyDelete removes the key. Succeeded reports that it existed.
func applyDelete(f *FSM, idx uint64, c *kv.Command, res *kv.WriteResult_) error {
	prev, existed := f.deleteKey(idx, c.Key)
	res.Succeeded = existed
	if existed && c.GetReturnPrevious() {
		res.Entry = toKV(prev)
	}
	return nil
}

// CAS_PUT and CAS_DELETE: key, exactly one of expected_value and
// expected_mod_index (0: the key must be absent); CAS_PUT also a value,
// CAS_DELETE none.

func validateCAS(c *kv.Command, l Limits) error {
	if err := checkKey(l, "key", c.Key); err != nil {
		return err
	}
	switch {
	case c.ExpectedValue == nil && c.ExpectedModIndex == nil:
		return invalid("expected_value", "one of expected_value and expected_mod_index is required")
	case c.ExpectedValue != nil && c.ExpectedModIndex != nil:
		return invalid("expected_mod_index", "set only one of expected_value and expected_mod_index")
	case c.ExpectedModIndex != nil && *c.ExpectedModIndex < 0:
		return invalid("expected_mod_index", "must not be negative, got %d", *c.ExpectedModIndex)
	}
	if err := checkValue(l, "expected_value", c.ExpectedValue); err != nil {
		return err
	}
	// The fields are the CASRequest's: remove is CAS_DELETE.
	if c.Op == kv.CommandOp_CAS_DELETE {
		if c.Value != nil {
			return invalid("value", "must be unset when remove is true")
		}
		if c.LeaseID != nil || c.TTLMs != nil {
			return invalid("lease_id", "must be unset when remove is true")
		}
		return nil
	}
	if c.Value == nil {
		return invalid("value", "required unless remove is true")
	}
	if err := checkValue(l, "value", c.Value); err != nil {
		return err
	}
	if c.TTLMs != nil {
		return invalid("ttl_ms", "a CAS takes only lease_id")
	}
	return validatePutLease(c, l)
}

// applyCAS writes (CAS_PUT) or deletes (CAS_DELETE) the key when the
// expectation holds. Succeeded reports that it held; the result carries the
// entry as the command left it (none after a delete).
func applyCAS(f *FSM, idx uint64, c *kv.Command, res *kv.WriteResult_) error {
	if c.Op == kv.CommandOp_CAS_PUT && c.LeaseID != nil {
		// A lease that does not exist refuses the CAS whether or not it
		// would hold; a full lease refuses it only when it holds (below).
		if err := f.checkLeasePuts([]leasePut{{"lease_id", c.Key, uint64(*c.LeaseID)}}, nil); err != nil {
			return err
		}
	}
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
		lease := uint64(c.GetLeaseID())
		if err := f.checkLeasePuts([]leasePut{{"lease_id", c.Key, lease}}, c.MaxLeaseKeys); err != nil {
			res.Succeeded = false
			return err
		}
		v := value(c.Value)
		f.putKey(idx, c.Key, v, lease)
		create := idx
		if exists {
			create = cur.CreateIndex
		}
		res.Entry = toKV(storage.Entry{Key: c.Key, Value: v, CreateIndex: create, ModIndex: idx})
	default:
		f.deleteKey(idx, c.Key)
	}
	return nil
}

// TXN: compares, success and failure ops, and the answer budget
// max_answer_bytes stamped by the nodes that proposed it.

func validateTxn(c *kv.Command, l Limits) error {
	if max := l.MaxTxnOps; max > 0 {
		if len(c.Compares) > max {
			return invalid("compares", "%d compares exceed the limit of %d", len(c.Compares), max)
		}
		if len(c.Success) > max {
			return invalid("success", "%d ops exceed the limit of %d", len(c.Success), max)
		}
		if len(c.Failure) > max {
			return invalid("failure", "%d ops exceed the limit of %d", len(c.Failure), max)
		}
	}
	if err := validateEach(l, "compares", c.Compares, validateCompare); err != nil {
		return err
	}
	for _, b := range txnBranches(c) {
		if err := validateEach(l, b.name, b.ops, validateOp); err != nil {
			return err
		}
	}
	if c.IsSetMaxAnswerBytes() && c.GetMaxAnswerBytes() < 0 {
		return invalid("max_answer_bytes", "must not be negative, got %d", c.GetMaxAnswerBytes())
	}
	return validateLeaseLimits(c)
}

// validateEach validates every element of list, named list[i]; a nil
// element is missing.
func validateEach[T any](l Limits, list string, elems []*T, check func(Limits, string, *T) error) error {
	for i, e := range elems {
		f := fmt.Sprintf("%s[%d]", list, i)
		if e == nil {
			return invalid(f, "missing")
		}
		if err := check(l, f, e); err != nil {
			return err
		}
	}
	return nil
}

func validateCompare(l Limits, f string, c *kv.Compare) error {
	if err := checkKey(l, f+".key", c.Key); err != nil {
		return err
	}
	op := compareOp(c)
	switch op {
	case kv.CompareOp_EQUAL, kv.CompareOp_NOT_EQUAL, kv.CompareOp_LESS, kv.CompareOp_GREATER:
	default:
		return invalid(f+".op", "unknown compare op %d", int64(op))
	}
	switch c.Target {
	case kv.CompareTarget_VALUE:
		if c.Value == nil {
			return invalid(f+".value", "required for a VALUE compare")
		}
		return checkValue(l, f+".value", c.Value)
	case kv.CompareTarget_MOD_INDEX, kv.CompareTarget_CREATE_INDEX:
		if c.Index == nil {
			return invalid(f+".index", "required for an index compare")
		}
		if *c.Index < 0 {
			return invalid(f+".index", "must not be negative, got %d", *c.Index)
		}
	case kv.CompareTarget_EXISTS:
		if c.Exists == nil {
			return invalid(f+".exists", "required for an EXISTS compare")
		}
		if op != kv.CompareOp_EQUAL && op != kv.CompareOp_NOT_EQUAL {
			return invalid(f+".op", "EXISTS allows only EQUAL and NOT_EQUAL")
		}
	default:
		return invalid(f+".target", "unknown compare target %d", int64(c.Target))
	}
	return nil
}

func validateOp(l Limits, f string, op *kv.Op) error {
	if err := checkKey(l, f+".key", op.Key); err != nil {
		return err
	}
	switch op.Type {
	case kv.OpType_PUT:
		if op.Value == nil {
			return invalid(f+".value", "required for PUT")
		}
		if err := checkValue(l, f+".value", op.Value); err != nil {
			return err
		}
		return validateLeaseID(f+".lease_id", op.LeaseID)
	case kv.OpType_GET, kv.OpType_DELETE:
		if op.Value != nil {
			return invalid(f+".value", "must be unset for %s", op.Type)
		}
		if op.LeaseID != nil {
			return invalid(f+".lease_id", "must be unset for %s", op.Type)
		}
		return nil
	default:
		return invalid(f+".type", "unknown op type %d", int64(op.Type))
	}
}

// txnBranch is a transaction branch and the name its request gives it.
type txnBranch struct {
	name string
	ops  []*kv.Op
}

func txnBranches(c *kv.Command) [2]txnBranch {
	return [2]txnBranch{{"success", c.Success}, {"failure", c.Failure}}
}

// txnKeys returns the keys of both branches' PUT and DELETE ops: which
// branch runs is decided only at apply time.
func txnKeys(c *kv.Command) [][]byte {
	var keys [][]byte
	for _, b := range txnBranches(c) {
		for _, op := range b.ops {
			if op != nil && (op.Type == kv.OpType_PUT || op.Type == kv.OpType_DELETE) {
				keys = append(keys, op.Key)
			}
		}
	}
	return keys
}

func sizeTxn(c *kv.Command) int {
	n := sizeKeyValue(c)
	for _, comp := range c.Compares {
		if comp != nil {
			n += compareOverhead + len(comp.Key) + len(comp.Value)
		}
	}
	for _, b := range txnBranches(c) {
		for _, op := range b.ops {
			if op != nil {
				n += opOverhead + len(op.Key) + len(op.Value)
			}
		}
	}
	return n
}

// stampTxn lowers c's answer budget to l.MaxAnswerBytes.
func stampTxn(c *kv.Command, l Limits) {
	if l.MaxAnswerBytes <= 0 {
		return
	}
	if budget := int64(l.MaxAnswerBytes); !c.IsSetMaxAnswerBytes() || c.GetMaxAnswerBytes() > budget {
		c.MaxAnswerBytes = &budget
	}
}

// applyTxn evaluates the compares, then runs the success ops if all hold,
// else the failure ops, in order, at idx. Succeeded reports which branch
// ran; the result holds one OpResult per op.
//
// A command carrying max_answer_bytes is refused with ErrAnswerTooLarge,
// before any op runs, when the results would carry more: applied but
// undeliverable, it would leave its client with an unknown outcome. The
// answer is measured on the state at idx, so every node decides the same. A
// command without the field (every entry written before it existed) is not
// measured: its front door estimated the answer before proposing it, and
// it must replay as it first applied.
func applyTxn(f *FSM, idx uint64, c *kv.Command, res *kv.WriteResult_) error {
	res.Succeeded = true
	for _, comp := range c.Compares {
		if !f.compareHolds(comp) {
			res.Succeeded = false
			break
		}
	}
	branch := txnBranches(c)[0]
	if !res.Succeeded {
		branch = txnBranches(c)[1]
	}
	if c.IsSetMaxAnswerBytes() {
		if budget := c.GetMaxAnswerBytes(); f.answerBytes(branch.ops) > budget {
			return &CommandError{Field: branch.name, Err: ErrAnswerTooLarge,
				Reason: fmt.Sprintf("its results would carry more than %d bytes; split the transaction", budget)}
		}
	}
	if err := f.checkLeasePuts(txnLeasePuts(branch.name, branch.ops), c.MaxLeaseKeys); err != nil {
		return err
	}
	res.Results = make([]*kv.OpResult_, 0, len(branch.ops))
	for _, op := range branch.ops {
		res.Results = append(res.Results, f.applyOp(idx, op))
	}
	return nil
}

// answerBytes returns the size of the results ops would have, without
// running them: every op's result holds the entry as it was before the op
// (GET: as it is), each counted as its key, its value and 32 bytes, with
// the earlier ops' writes laid over the state.
func (f *FSM) answerBytes(ops []*kv.Op) int64 {
	written := map[string]int{} // key -> value size after the earlier ops; -1 deleted
	var total int64
	for _, op := range ops {
		size, ok := written[string(op.Key)]
		if !ok {
			size = -1
			if e, found := f.engine.Get(op.Key); found {
				size = len(e.Value)
			}
		}
		if size >= 0 {
			total += int64(len(op.Key) + size + 32)
		}
		switch op.Type {
		case kv.OpType_PUT:
			written[string(op.Key)] = len(op.Value)
		case kv.OpType_DELETE:
			written[string(op.Key)] = -1
		}
	}
	return total
}

func compareOp(c *kv.Compare) kv.CompareOp {
	if c.IsSetOp() {
		return *c.Op
	}
	return kv.CompareOp_EQUAL
}

// compareHolds evaluates one validated transaction compare.
func (f *FSM) compareHolds(c *kv.Compare) bool {
	cur, exists := f.engine.Get(c.Key)
	var order int // sign of (current - operand)
	switch c.Target {
	case kv.CompareTarget_VALUE:
		if !exists {
			return false
		}
		order = bytes.Compare(cur.Value, c.Value)
	case kv.CompareTarget_MOD_INDEX, kv.CompareTarget_CREATE_INDEX:
		var have int64 // 0 for an absent key
		if exists {
			have = int64(cur.ModIndex)
			if c.Target == kv.CompareTarget_CREATE_INDEX {
				have = int64(cur.CreateIndex)
			}
		}
		order = cmp.Compare(have, c.GetIndex())
	case kv.CompareTarget_EXISTS:
		if exists != c.GetExists() {
			order = 1
		}
	}
	switch compareOp(c) {
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

// applyOp runs one transaction op at idx.
func (f *FSM) applyOp(idx uint64, op *kv.Op) *kv.OpResult_ {
	r := &kv.OpResult_{Type: op.Type}
	var e storage.Entry
	switch op.Type {
	case kv.OpType_GET:
		e, r.Found = f.engine.Get(op.Key)
	case kv.OpType_PUT:
		e, r.Found = f.putKey(idx, op.Key, value(op.Value), uint64(op.GetLeaseID()))
	case kv.OpType_DELETE:
		e, r.Found = f.deleteKey(idx, op.Key)
	}
	if r.Found {
		r.Entry = toKV(e)
	}
	return r
}

// MEMBER_SET and MEMBER_REMOVE: member (MEMBER_REMOVE needs only its
// node_id). They change the members table, not the key space.

func validateMember(c *kv.Command, _ Limits) error {
	if c.Member == nil || c.Member.NodeID == "" {
		return invalid("member", "missing node id")
	}
	for _, s := range memberFromKV(c.Member).fields() {
		if len(s) > MaxMemberField {
			return invalid("member", "field of %d bytes exceeds %d", len(s), MaxMemberField)
		}
	}
	return nil
}

func sizeMember(c *kv.Command) int {
	n := commandOverhead
	if c.Member != nil {
		for _, s := range memberFromKV(c.Member).fields() {
			n += len(s)
		}
	}
	return n
}

// applyMemberSet records the member's addresses. Succeeded reports that
// the table changed.
func applyMemberSet(f *FSM, _ uint64, c *kv.Command, res *kv.WriteResult_) error {
	m := memberFromKV(c.Member)
	prev, had := f.members[m.ID]
	f.members[m.ID] = m
	f.markMember(m.ID)
	res.Succeeded = !had || prev != m
	return nil
}

// applyMemberRemove forgets the member. Succeeded reports that it was
// known.
func applyMemberRemove(f *FSM, _ uint64, c *kv.Command, res *kv.WriteResult_) error {
	id := c.Member.NodeID
	_, had := f.members[id]
	delete(f.members, id)
	f.markMember(id)
	res.Succeeded = had
	return nil
}
