package server

import (
	"bytes"
	"context"
	"fmt"

	"github.com/cubekv/cubekv/thrift/kv"
)

func (h *Handler) checkKey(field string, key []byte) error {
	if len(key) == 0 {
		return invalid(field, "must not be empty")
	}
	if len(key) > h.cfg.Limits.MaxKeySize {
		return invalid(field, "%d bytes exceeds the limit of %d", len(key), h.cfg.Limits.MaxKeySize)
	}
	return nil
}

func (h *Handler) checkValue(field string, v []byte) error {
	if len(v) > h.cfg.Limits.MaxValueSize {
		return invalid(field, "%d bytes exceeds the limit of %d", len(v), h.cfg.Limits.MaxValueSize)
	}
	return nil
}

func checkRequestID(id *kv.RequestID) error {
	if id == nil {
		return nil
	}
	if id.ClientID == 0 {
		return invalid("request_id.client_id", "must not be zero")
	}
	if id.Sequence <= 0 {
		return invalid("request_id.sequence", "must be positive, got %d", id.Sequence)
	}
	return nil
}

func (h *Handler) checkCAS(req *kv.CASRequest) error {
	if err := h.checkKey("key", req.Key); err != nil {
		return err
	}
	switch {
	case req.ExpectedValue == nil && req.ExpectedModIndex == nil:
		return invalid("expected_value", "one of expected_value and expected_mod_index is required")
	case req.ExpectedValue != nil && req.ExpectedModIndex != nil:
		return invalid("expected_mod_index", "set only one of expected_value and expected_mod_index")
	case req.ExpectedModIndex != nil && *req.ExpectedModIndex < 0:
		return invalid("expected_mod_index", "must not be negative, got %d", *req.ExpectedModIndex)
	}
	if err := h.checkValue("expected_value", req.ExpectedValue); err != nil {
		return err
	}
	if req.GetRemove() {
		if req.Value != nil {
			return invalid("value", "must be unset when remove is true")
		}
	} else {
		if req.Value == nil {
			return invalid("value", "required unless remove is true")
		}
		if err := h.checkValue("value", req.Value); err != nil {
			return err
		}
	}
	return checkRequestID(req.RequestID)
}

func (h *Handler) checkTxn(req *kv.TxnRequest) error {
	max := h.cfg.Limits.MaxTxnOps
	if len(req.Compares) > max {
		return invalid("compares", "%d compares exceed the limit of %d", len(req.Compares), max)
	}
	if len(req.Success) > max {
		return invalid("success", "%d ops exceed the limit of %d", len(req.Success), max)
	}
	if len(req.Failure) > max {
		return invalid("failure", "%d ops exceed the limit of %d", len(req.Failure), max)
	}
	for i, c := range req.Compares {
		f := fmt.Sprintf("compares[%d]", i)
		if c == nil {
			return invalid(f, "missing")
		}
		if err := h.checkKey(f+".key", c.Key); err != nil {
			return err
		}
		op := kv.CompareOp_EQUAL
		if c.Op != nil {
			op = *c.Op
		}
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
			if err := h.checkValue(f+".value", c.Value); err != nil {
				return err
			}
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
	}
	for _, branch := range []struct {
		name string
		ops  []*kv.Op
	}{{"success", req.Success}, {"failure", req.Failure}} {
		for i, op := range branch.ops {
			f := fmt.Sprintf("%s[%d]", branch.name, i)
			if op == nil {
				return invalid(f, "missing")
			}
			if err := h.checkKey(f+".key", op.Key); err != nil {
				return err
			}
			switch op.Type {
			case kv.OpType_PUT:
				if op.Value == nil {
					return invalid(f+".value", "required for PUT")
				}
				if err := h.checkValue(f+".value", op.Value); err != nil {
					return err
				}
			case kv.OpType_GET, kv.OpType_DELETE:
				if op.Value != nil {
					return invalid(f+".value", "must be unset for %s", op.Type)
				}
			default:
				return invalid(f+".type", "unknown op type %d", int64(op.Type))
			}
		}
	}
	return checkRequestID(req.RequestID)
}

// prefixEnd returns the smallest key greater than every key with prefix p,
// or nil when there is none (p is all 0xff).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// scanBounds turns a ScanRequest into [start, end) and a page size.
func (h *Handler) scanBounds(req *kv.ScanRequest) (start, end []byte, limit int, err error) {
	for _, b := range []struct {
		name string
		v    []byte
	}{{"start_key", req.StartKey}, {"end_key", req.EndKey}, {"prefix", req.Prefix}} {
		if len(b.v) > h.cfg.Limits.MaxKeySize+1 {
			return nil, nil, 0, invalid(b.name, "%d bytes exceeds the limit of %d", len(b.v), h.cfg.Limits.MaxKeySize)
		}
	}
	start, end = req.StartKey, req.EndKey
	if len(start) == 0 {
		start = nil
	}
	if len(end) == 0 {
		end = nil
	}
	if len(req.Prefix) > 0 {
		if start == nil || bytes.Compare(start, req.Prefix) < 0 {
			start = req.Prefix
		}
		if pe := prefixEnd(req.Prefix); pe != nil && (end == nil || bytes.Compare(pe, end) < 0) {
			end = pe
		}
	}
	limit = h.cfg.Limits.MaxScanPage
	if req.Limit != nil {
		switch l := int(*req.Limit); {
		case l < 0:
			return nil, nil, 0, invalid("limit", "must not be negative, got %d", l)
		case l > 0 && l < limit:
			limit = l
		}
	}
	return start, end, limit, nil
}

// checkTxnAnswer refuses a transaction whose answer would carry more than
// MaxResponseBytes of keys and values: every op's result holds the entry as
// it was before the op (GET: as it is), estimated from the local state with
// the transaction's own earlier writes laid over it. A transaction that is
// applied but whose answer cannot be delivered would leave its client with
// an unknown outcome. The estimate reads local state, so a value growing
// between the check and the commit can still push an answer over; the FSM
// bounds what it remembers either way.
func (h *Handler) checkTxnAnswer(ctx context.Context, req *kv.TxnRequest) error {
	for _, branch := range []struct {
		name string
		ops  []*kv.Op
	}{{"success", req.Success}, {"failure", req.Failure}} {
		written := map[string]int{} // key -> value size after this txn's earlier ops; -1 deleted
		total := 0
		for _, op := range branch.ops {
			size, ok := written[string(op.Key)]
			if !ok {
				e, found, _, err := h.store.Get(ctx, op.Key, kv.Consistency_STALE)
				if err != nil {
					return err
				}
				size = -1
				if found {
					size = len(e.Value)
				}
			}
			if size >= 0 {
				total += len(op.Key) + size + 32
			}
			switch op.Type {
			case kv.OpType_PUT:
				written[string(op.Key)] = len(op.Value)
			case kv.OpType_DELETE:
				written[string(op.Key)] = -1
			}
			if total > h.cfg.Limits.MaxResponseBytes {
				return invalid(branch.name, "its results would carry more than %d bytes; split the transaction", h.cfg.Limits.MaxResponseBytes)
			}
		}
	}
	return nil
}

// checkCommand validates a command forwarded by another node as the front
// door validates the request it came from.
func (h *Handler) checkCommand(c *kv.Command) error {
	var id *kv.RequestID
	if c.ClientID != nil || c.Sequence != nil {
		id = &kv.RequestID{ClientID: c.GetClientID(), Sequence: c.GetSequence()}
	}
	switch c.Op {
	case kv.CommandOp_NOOP:
		return nil
	case kv.CommandOp_PUT:
		return firstErr(h.checkKey("key", c.Key), h.checkValue("value", c.Value), checkRequestID(id))
	case kv.CommandOp_DELETE:
		return firstErr(h.checkKey("key", c.Key), checkRequestID(id))
	case kv.CommandOp_CAS_PUT, kv.CommandOp_CAS_DELETE:
		req := &kv.CASRequest{Key: c.Key, ExpectedValue: c.ExpectedValue, ExpectedModIndex: c.ExpectedModIndex, RequestID: id}
		if c.Op == kv.CommandOp_CAS_DELETE {
			t := true
			req.Remove = &t
		} else {
			req.Value = nonNil(c.Value)
		}
		return h.checkCAS(req)
	case kv.CommandOp_TXN:
		return h.checkTxn(&kv.TxnRequest{Compares: c.Compares, Success: c.Success, Failure: c.Failure, RequestID: id})
	case kv.CommandOp_MEMBER_SET, kv.CommandOp_MEMBER_REMOVE:
		// Sent only by nodes recording their own addresses; the FSM checks
		// the fields with its hard limits.
		if c.Member == nil || c.Member.NodeID == "" {
			return invalid("member", "missing node id")
		}
		return nil
	}
	return invalid("op", "unknown command op %d", int64(c.Op))
}
