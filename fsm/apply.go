package fsm

import (
	"fmt"

	"github.com/cubekv/cubekv/thrift/kv"
)

// applyCommand applies one decoded command at Raft index idx, consulting and
// updating the request-id table. The caller holds f.mu for writing.
func (f *FSM) applyCommand(idx uint64, c *kv.Command) *Result {
	spec, err := validate(c, applyLimits)
	if err != nil {
		return &Result{Err: err}
	}
	clientID := c.GetClientID()
	if clientID != 0 {
		if r := f.requests.lookup(clientID); r != nil {
			switch seq := c.GetSequence(); {
			case seq == r.seq:
				f.requests.touch(clientID, idx)
				return &Result{Write: r.result, Duplicate: true}
			case seq < r.seq:
				return &Result{Err: fmt.Errorf("client %d sequence %d below %d: %w", clientID, seq, r.seq, ErrStaleSequence)}
			}
		}
	}
	res := &kv.WriteResult_{Index: int64(idx)}
	if err := spec.apply(f, idx, c, res); err != nil {
		return &Result{Err: err}
	}
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

// invalid returns a *CommandError for field wrapping ErrInvalidCommand.
func invalid(field, format string, args ...any) error {
	return &CommandError{Field: field, Reason: fmt.Sprintf(format, args...), Err: ErrInvalidCommand}
}
