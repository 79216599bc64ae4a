#!/usr/bin/env bash
# Compares the storage engines against btree, the baseline, in one run.
#
# Get, Put, Scan and ScanRead (storage, 100,000 preloaded keys of 16 bytes
# with 100-byte values) and FSM ApplyBatch (one 64-command batch entry) run
# ROUNDS times (default 5), every engine once per round in turn, so that a
# busy machine slows all of them alike; the table gives the median ns/op of
# each and its ratio to btree's median. Then, once each: heap per entry at
# 1,000,000 entries, GC cost under a put load at 100,000 and 1,000,000 keys
# (GOGC=50, kvnode's default), and a restore's peak heap. Raw output goes
# to bench/results/engines-<timestamp>/, the table to stdout.
#
# Usage: bench/engines.sh [--no-once]   (--no-once: only the interleaved table)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
once=1
[ "${1:-}" = "--no-once" ] && once=0
out="bench/results/engines-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
go test -c -o "$out/storage.test" ./storage
go test -c -o "$out/fsm.test" ./fsm

raw="$out/interleaved.txt"
for r in $(seq "$rounds"); do
	for b in Get Put Scan ScanRead; do
		for e in btree arena arena-mmap; do
			"$out/storage.test" -test.run '^$' -test.bench "^Benchmark$b/$e\$" -test.benchtime 1s | grep '^Benchmark' >>"$raw"
		done
	done
	for e in btree arena; do
		"$out/fsm.test" -test.run '^$' -test.bench "^BenchmarkFSM_ApplyBatchEntry64/$e\$" -test.benchtime 1s | grep '^Benchmark' >>"$raw"
	done
done
python3 - "$raw" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = line.split()
    name = re.sub(r"-\d+$", "", f[0]).removeprefix("Benchmark")
    metric = float(f[2])
    for i, tok in enumerate(f):
        if tok == "ns/command":
            metric = float(f[i - 1])
    runs.setdefault(name, []).append(metric)
print("| benchmark | engine | median ns/op | runs | vs btree |")
print("|---|---|---:|---:|---:|")
for name in sorted(runs):
    bench, eng = name.rsplit("/", 1)
    med = statistics.median(runs[name])
    base = statistics.median(runs.get(bench + "/btree", [med]))
    print(f"| {bench} | {eng} | {med:.0f} | {len(runs[name])} | {med / base:.2f}x |")
PY
[ "$once" = 1 ] || exit 0
"$out/storage.test" -test.run '^$' -test.bench 'HeapPerEntry' -test.benchtime 1x | tee "$out/heap.txt" | grep '^Benchmark'
GOGC=50 "$out/storage.test" -test.run '^$' -test.bench 'GCUnderPutLoad' -test.benchtime 3000000x | tee "$out/gc.txt" | grep '^Benchmark'
GOGC=50 "$out/fsm.test" -test.run '^$' -test.bench 'RestorePeak' -test.benchtime 1x | tee "$out/restore.txt" | grep '^Benchmark'
