package jepsenlite

import (
	"fmt"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// regInput is a register operation as porcupine sees it.
type regInput struct {
	Kind   string
	Key    string
	Value  int64 // write/cas: new value
	Expect int64 // cas: expected value, 0 = absent
}

// regOutput is its result. Unknown operations may have taken effect or not.
type regOutput struct {
	Value   int64 // read: the value read, 0 = absent
	Success bool  // cas: the compare held
	Current int64 // cas that failed: the value the node saw, 0 = absent
	Unknown bool
}

// registerModel is a single register per key (state: the value, 0 when the
// key is absent), partitioned by key so each key is checked on its own.
var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, o := range history {
			k := o.Input.(regInput).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], o)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return int64(0) },
	Step: func(state, input, output any) (bool, any) {
		s := state.(int64)
		in := input.(regInput)
		out := output.(regOutput)
		switch in.Kind {
		case kindRead, kindFinal:
			return out.Value == s, s
		case kindWrite:
			return true, in.Value
		case kindDelete:
			return true, int64(0)
		case kindCAS:
			if out.Unknown {
				// If it took effect here, the compare decided it; if it did not take effect at
				// all, porcupine can place it after every other operation.
				if s == in.Expect {
					return true, in.Value
				}
				return true, s
			}
			if out.Success {
				return s == in.Expect, in.Value
			}
			return s != in.Expect && s == out.Current, s
		}
		return false, s
	},
	Equal: func(a, b any) bool { return a.(int64) == b.(int64) },
	Hash:  func(s any) uint64 { return uint64(s.(int64)) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		suffix := ""
		if out.Unknown {
			suffix = " (unknown)"
		}
		switch in.Kind {
		case kindRead, kindFinal:
			return fmt.Sprintf("%s %s -> %d", in.Kind, in.Key, out.Value)
		case kindWrite:
			return fmt.Sprintf("write %s %d%s", in.Key, in.Value, suffix)
		case kindDelete:
			return fmt.Sprintf("delete %s%s", in.Key, suffix)
		case kindCAS:
			if out.Unknown {
				return fmt.Sprintf("cas %s %d->%d%s", in.Key, in.Expect, in.Value, suffix)
			}
			return fmt.Sprintf("cas %s %d->%d ok=%v cur=%d", in.Key, in.Expect, in.Value, out.Success, out.Current)
		}
		return in.Kind
	},
	DescribeState: func(s any) string { return fmt.Sprintf("%d", s.(int64)) },
}

// registerOperations turns the register part of a history into porcupine
// operations: reads that did not answer and writes that certainly failed are
// left out; writes with an unknown outcome never return (they get a return
// time after the end of the history, so they may take effect at any point
// after their call, or not at all).
func registerOperations(h []op) []porcupine.Operation {
	var end int64
	for _, o := range h {
		end = max(end, o.Return)
	}
	var out []porcupine.Operation
	for _, o := range h {
		switch o.Kind {
		case kindRead, kindWrite, kindDelete, kindCAS, kindFinal:
		default:
			continue
		}
		in := regInput{Kind: o.Kind, Key: o.Key, Value: o.Value, Expect: o.Expect}
		if o.Kind == kindRead || o.Kind == kindFinal {
			in.Value = 0
		}
		po := porcupine.Operation{ClientId: o.Process, Input: in, Call: o.Call, Return: o.Return}
		switch {
		case o.Outcome == outcomeOK:
			po.Output = regOutput{Value: o.Value, Success: o.Success, Current: o.Current}
		case o.Outcome == outcomeUnknown && (o.Kind == kindWrite || o.Kind == kindDelete || o.Kind == kindCAS):
			po.Output = regOutput{Unknown: true}
			po.Return = end + 1
		default:
			continue
		}
		out = append(out, po)
	}
	return out
}

// linResult is the register checker's verdict.
type linResult struct {
	Result porcupine.CheckResult
	Ops    int
	Keys   int
	Took   time.Duration
	Info   porcupine.LinearizationInfo // set when the result is not Ok
}

// checkRegister runs porcupine over the register operations with a timeout.
func checkRegister(h []op, timeout time.Duration) linResult {
	ops := registerOperations(h)
	keys := map[string]bool{}
	for _, o := range ops {
		keys[o.Input.(regInput).Key] = true
	}
	start := time.Now()
	res := porcupine.CheckOperationsTimeout(registerModel, ops, timeout)
	r := linResult{Result: res, Ops: len(ops), Keys: len(keys), Took: time.Since(start)}
	if res == porcupine.Illegal {
		_, r.Info = porcupine.CheckOperationsVerbose(registerModel, ops, timeout)
	}
	return r
}

// setResult is the set checker's verdict.
type setResult struct {
	Acked, Failed, Unknown int
	Lost                   []string // acknowledged adds missing on some node
	Phantom                []string // adds reported as certainly failed but present
}

// checkSet compares the adds in the history with what each node holds.
func checkSet(h []op, present map[string]map[string]bool) setResult {
	var r setResult
	for _, o := range h {
		if o.Kind != kindAdd {
			continue
		}
		switch o.Outcome {
		case outcomeOK:
			r.Acked++
			for node, keys := range present {
				if !keys[o.Key] {
					r.Lost = append(r.Lost, node+":"+o.Key)
				}
			}
		case outcomeFail:
			r.Failed++
			for node, keys := range present {
				if keys[o.Key] {
					r.Phantom = append(r.Phantom, node+":"+o.Key)
				}
			}
		default:
			r.Unknown++
		}
	}
	sort.Strings(r.Lost)
	sort.Strings(r.Phantom)
	return r
}

// counterTally is what the counter workers know about one counter key.
type counterTally struct {
	Acked   int64 // logical increments acknowledged (CAS succeeded)
	Unknown int64 // logical increments whose outcome stayed unknown
	// Mismatch counts resends of an acknowledged increment whose answer differed from the
	// first one (a different index or outcome): the write was executed again.
	Mismatch int64
}

// counterResult is the exactly-once checker's verdict for one key.
type counterResult struct {
	Key        string
	Final      map[string]int64 // value read on each node
	Tally      counterTally
	Lost       int64 // acknowledged increments missing from the final value
	Duplicates int64 // increments beyond what acknowledged plus unknown allow, plus resend mismatches
}

// checkCounter checks acked <= final <= acked + unknown on every node.
func checkCounter(key string, t counterTally, final map[string]int64) counterResult {
	r := counterResult{Key: key, Final: final, Tally: t, Duplicates: t.Mismatch}
	var worstLost, worstDup int64
	for _, v := range final {
		worstLost = max(worstLost, t.Acked-v)
		worstDup = max(worstDup, v-(t.Acked+t.Unknown))
	}
	r.Lost = worstLost
	r.Duplicates += worstDup
	return r
}
