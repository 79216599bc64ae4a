package fsm

import (
	"fmt"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/thrift/kv"
)

// The write path's shape in these benchmarks is that of bench/compare.sh: 16-byte keys over a
// 100,000-key space, 100-byte values, every command carrying a request id from one of 64 clients.
const (
	benchKeySpace  = 100_000
	benchBatchSize = 64
	benchClients   = 64
	// benchRounds is how many batches are encoded at a time, with the timer stopped.
	benchRounds = 256
)

// benchCommand returns the put of batch round r, position i: a key that no other command of the
// round writes, from client i % benchClients, with that client's sequence for round r.
func benchCommand(r int64, i int, value string) *kv.Command {
	k := (int(r)*benchBatchSize + i) * 7919 % benchKeySpace
	return withID(putCmd(fmt.Sprintf("%016d", k), value), 1+int64(i%benchClients), r+1)
}

// benchEntries encodes rounds [first, first+benchRounds): each round either one CommandBatch entry
// of benchBatchSize commands (batch) or benchBatchSize single-command entries.
func benchEntries(b *testing.B, first int64, batch bool, value string) [][]*raft.Log {
	b.Helper()
	out := make([][]*raft.Log, benchRounds)
	for j := range out {
		r := first + int64(j)
		cmds := make([]*kv.Command, benchBatchSize)
		for i := range cmds {
			cmds[i] = benchCommand(r, i, value)
		}
		if batch {
			data, err := EncodeBatch(cmds)
			if err != nil {
				b.Fatalf("EncodeBatch: %v", err)
			}
			out[j] = []*raft.Log{{Type: raft.LogCommand, Data: data}}
			continue
		}
		logs := make([]*raft.Log, len(cmds))
		for i, c := range cmds {
			logs[i] = &raft.Log{Type: raft.LogCommand, Data: mustEncode(b, c)}
		}
		out[j] = logs
	}
	return out
}

// benchApply runs ApplyBatch over rounds of 64 commands, packed as the proposer packs them (one
// CommandBatch entry, batch) or as 64 entries of one command each, and reports ns per command.
func benchApply(b *testing.B, eng string, batch bool) {
	var f *FSM
	var err error
	if eng == "fake-durable" {
		dir := newFakeDir()
		dir.cur.forget = true
		f, err = NewDurable(nil, dir)
	} else {
		f, err = New(&Config{Engine: eng})
	}
	if err != nil {
		b.Fatal(err)
	}
	value := string(make([]byte, 100))
	// Fill the key space first, so that puts replace existing keys as in the comparison.
	var idx uint64
	for r := int64(0); r*benchBatchSize < benchKeySpace; r += benchRounds {
		for _, logs := range benchEntries(b, r, true, value) {
			idx++
			logs[0].Index = idx
			f.ApplyBatch(logs)
		}
	}
	round := int64(benchKeySpace/benchBatchSize + benchRounds)
	rounds := benchEntries(b, round, batch, value)
	next := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if next == len(rounds) {
			b.StopTimer()
			round += benchRounds
			rounds = benchEntries(b, round, batch, value)
			next = 0
			b.StartTimer()
		}
		logs := rounds[next]
		next++
		for _, l := range logs {
			idx++
			l.Index = idx
		}
		for _, out := range f.ApplyBatch(logs) {
			var results []*Result
			switch v := out.(type) {
			case *Result:
				results = []*Result{v}
			case []*Result:
				results = v
			}
			for _, r := range results {
				if r.Err != nil || r.Duplicate {
					b.Fatalf("apply at %d: %+v", idx, r)
				}
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatchSize), "ns/command")
}

// BenchmarkFSM_ApplyBatchEntry64 applies one CommandBatch entry of 64 puts per op: what the leader's
// proposer produces under load.
func BenchmarkFSM_ApplyBatchEntry64(b *testing.B) {
	for _, eng := range engines {
		b.Run(eng, func(b *testing.B) { benchApply(b, eng, true) })
	}
}

// BenchmarkFSM_ApplyBatchEntry64Durable is BenchmarkFSM_ApplyBatchEntry64
// on the test's fake Durable (a btree engine that also logs every staged
// change): what the durable path adds, the meta records of 64 client ids
// and one Commit per batch, beside the btree engine's figure.
func BenchmarkFSM_ApplyBatchEntry64Durable(b *testing.B) {
	benchApply(b, "fake-durable", true)
}

// BenchmarkFSM_ApplyBatchLogs64 applies 64 single-command entries per ApplyBatch call: what raft
// hands the FSM when entries were not coalesced.
func BenchmarkFSM_ApplyBatchLogs64(b *testing.B) {
	for _, eng := range engines {
		b.Run(eng, func(b *testing.B) { benchApply(b, eng, false) })
	}
}

// BenchmarkEncodeBatch64 encodes a CommandBatch of 64 puts.
func BenchmarkEncodeBatch64(b *testing.B) {
	value := string(make([]byte, 100))
	cmds := make([]*kv.Command, benchBatchSize)
	for i := range cmds {
		cmds[i] = benchCommand(1, i, value)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeBatch(cmds); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeEntryBatch64 decodes a CommandBatch of 64 puts.
func BenchmarkDecodeEntryBatch64(b *testing.B) {
	value := string(make([]byte, 100))
	cmds := make([]*kv.Command, benchBatchSize)
	for i := range cmds {
		cmds[i] = benchCommand(1, i, value)
	}
	data, err := EncodeBatch(cmds)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		out, batch, err := DecodeEntry(data)
		if err != nil || !batch || len(out) != benchBatchSize {
			b.Fatalf("decode: %d commands, batch %v, %v", len(out), batch, err)
		}
	}
}
