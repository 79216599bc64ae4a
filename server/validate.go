package server

import (
	"bytes"

	"github.com/cubekv/cubekv/fsm"
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

// PrefixEnd returns the smallest key greater than every key with prefix p,
// or nil when there is none (p is all 0xff).
func PrefixEnd(p []byte) []byte {
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
		if pe := PrefixEnd(req.Prefix); pe != nil && (end == nil || bytes.Compare(pe, end) < 0) {
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

// commandLimits are the front door's limits as the command table takes them.
func (h *Handler) commandLimits() fsm.Limits {
	return fsm.Limits{
		MaxKeySize:     h.cfg.Limits.MaxKeySize,
		MaxValueSize:   h.cfg.Limits.MaxValueSize,
		MaxTxnOps:      h.cfg.Limits.MaxTxnOps,
		MaxAnswerBytes: h.cfg.Limits.MaxResponseBytes,
		MinLeaseTTL:    h.cfg.Limits.MinLeaseTTL.Milliseconds(),
		MaxLeaseTTL:    h.cfg.Limits.MaxLeaseTTL.Milliseconds(),
		MaxLeases:      h.cfg.Limits.MaxLeases,
		MaxLeaseKeys:   h.cfg.Limits.MaxLeaseKeys,
	}
}

// checkCommand validates a command with this front door's limits, whether a
// handler built it from a request or another node forwarded it, and stamps
// into it what applying it must respect here (a transaction's answer
// budget, lowered to ours). The state machine validates it again, with its
// hard limits, when it applies it.
func (h *Handler) checkCommand(c *kv.Command) error {
	l := h.commandLimits()
	if err := fsm.Validate(c, l); err != nil {
		return err
	}
	fsm.Stamp(c, l)
	return nil
}
