#!/usr/bin/env bash
# Compares storage engines in three-node clusters, in one run.
#
# Starts one three-node kvnode cluster per engine (all on 127.0.0.1, data
# under one temporary directory), preloads each with the same keys, then
# runs put and linearizable get at CLIENTS clients against each cluster in
# turn, ROUNDS times, so that a busy machine slows every engine alike. The
# table gives each engine's median ops/s and p99, and its ratio to the
# first engine's median (the baseline). Raw JSON reports go to
# bench/results/engine-cluster-<timestamp>/, the table to
# bench/results/engine-cluster-<timestamp>.md and to stdout.
#
# Usage: bench/engine_cluster.sh [--engines "arena pebble"] [--clients 64]
#                                [--duration 10s] [--rounds 3] [--keys 100000]
#                                [--nodes 3] [--kvnode-flags "..."]
# An engine may carry flags of its own cluster after a colon, comma
# separated: --engines "arena pebble pebble:--pebble-cache-bytes=8388608".
# KVNODE and KVCTL use prebuilt binaries. Every cluster is stopped and the
# temporary directory removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
orig_args="$*"

engines="arena pebble"
clients=64
duration=10s
rounds=3
keys=100000
nodes=3
kvnode_flags=""
while [ $# -gt 0 ]; do
	case "$1" in
	--engines) engines=$2; shift ;;
	--clients) clients=$2; shift ;;
	--duration) duration=$2; shift ;;
	--rounds) rounds=$2; shift ;;
	--keys) keys=$2; shift ;;
	--nodes) nodes=$2; shift ;;
	--kvnode-flags) kvnode_flags=$2; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
read -r -a extra_flags <<<"$kvnode_flags"
read -r -a engine_list <<<"$engines"

stamp=$(date -u +%Y%m%dT%H%M%SZ)
raw="$root/bench/results/engine-cluster-$stamp"
mkdir -p "$raw"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cubekv-engines.XXXXXX")
pids=()
cleanup() {
	local code=$?
	trap - INT TERM EXIT
	if [ ${#pids[@]} -gt 0 ]; then
		kill -TERM "${pids[@]}" 2>/dev/null || true
		for _ in $(seq 50); do
			alive=0
			for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
			[ $alive = 0 ] && break
			sleep 0.2
		done
		kill -KILL "${pids[@]}" 2>/dev/null || true
		wait "${pids[@]}" 2>/dev/null || true
	fi
	cp "$tmp"/*.log "$raw"/ 2>/dev/null || true
	rm -rf "$tmp"
	exit $code
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -n "${KVNODE:-}" ]; then cp "$KVNODE" "$tmp/kvnode"; else go build -o "$tmp/kvnode" ./cmd/kvnode; fi
if [ -n "${KVCTL:-}" ]; then cp "$KVCTL" "$tmp/kvctl"; else go build -o "$tmp/kvctl" ./cmd/kvctl; fi

# One block of 12 free ports per engine: thrift +0..2, raft +3..5, gossip
# +6..8, admin +9..11. Below the ephemeral port range.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ephemeral_low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
need=$((12 * ${#engine_list[@]}))
for _ in $(seq 50); do
	base=$((10000 + RANDOM % (ephemeral_low - 10000 - need)))
	ok=1
	for off in $(seq 0 $((need - 1))); do port_free $((base + off)) || { ok=0; break; }; done
	[ $ok = 1 ] && break
done
[ $ok = 1 ] || { echo "no free port range found" >&2; exit 1; }

[ "$nodes" -ge 1 ] && [ "$nodes" -le 3 ] || { echo "--nodes takes 1 to 3" >&2; exit 2; }
# label SPEC: a file-name-safe name for an engine spec.
label() { echo "$1" | tr -c 'A-Za-z0-9.=\n-' '_' | sed 's/^_*//'; }
declare -A eps
for e_i in "${!engine_list[@]}"; do
	spec=${engine_list[$e_i]}
	e=${spec%%:*}
	own=()
	[ "$spec" != "$e" ] && IFS=, read -r -a own <<<"${spec#*:}"
	l=$(label "$spec")
	b=$((base + 12 * e_i))
	initial="" join="" ep=""
	for i in $(seq 0 $((nodes - 1))); do
		initial+="${initial:+,}n$((i + 1))=127.0.0.1:$((b + 3 + i))"
		join+="${join:+,}127.0.0.1:$((b + 6 + i))"
		ep+="${ep:+,}127.0.0.1:$((b + i))"
	done
	eps[$spec]=$ep
	for i in $(seq 0 $((nodes - 1))); do
		"$tmp/kvnode" --id "n$((i + 1))" --data-dir "$tmp/$l/n$((i + 1))" --engine "$e" \
			--thrift-addr "127.0.0.1:$((b + i))" --raft-addr "127.0.0.1:$((b + 3 + i))" \
			--gossip-addr "127.0.0.1:$((b + 6 + i))" --admin-addr "127.0.0.1:$((b + 9 + i))" \
			--initial-cluster "$initial" --join "$join" --log-level warn "${extra_flags[@]}" "${own[@]}" \
			>"$tmp/$l-n$((i + 1)).log" 2>&1 &
		pids+=("$!")
	done
done

common=(--keys "$keys" --key-size 16 --value-size 100)
for e in "${engine_list[@]}"; do
	ready=0
	for _ in $(seq 150); do
		"$tmp/kvctl" --endpoints "${eps[$e]}" --timeout 1s put bench-ready yes >/dev/null 2>&1 && { ready=1; break; }
		sleep 0.2
	done
	[ $ready = 1 ] || { echo "the $e cluster did not become ready; logs in $raw" >&2; exit 1; }
	echo "== preloading $keys keys into the $e cluster" >&2
	"$tmp/kvctl" --endpoints "${eps[$e]}" --timeout 30s bench load --clients 64 --conns 16 --progress 0 "${common[@]}" >"$raw/$(label "$e")-preload.txt"
done

conns=$((clients < 16 ? clients : 16))
for r in $(seq "$rounds"); do
	for wl in put get; do
		for e in "${engine_list[@]}"; do
			echo "== round $r $e $wl clients=$clients ($duration) load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
			"$tmp/kvctl" --endpoints "${eps[$e]}" -o json --consistency linearizable bench "$wl" \
				--clients "$clients" --conns "$conns" --duration "$duration" "${common[@]}" \
				>"$raw/$(label "$e")-$wl-r$r.json" 2>/dev/null
		done
	done
done

{
	echo "machine: $(nproc) cores, $(free -m | awk '/^Mem:/ {print $2}') MiB, $(uname -sr); load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "command: ${KVNODE:+KVNODE=$KVNODE }${KVCTL:+KVCTL=$KVCTL }bench/engine_cluster.sh $orig_args"
	echo "$nodes node(s) an engine, $clients clients over $conns connections, $duration a point, $rounds rounds, $keys keys of 16 B with 100 B values"
	echo
	labels=()
	for e in "${engine_list[@]}"; do labels+=("$(label "$e")"); done
	python3 - "$raw" "${labels[@]}" <<'PY'
import json, statistics, sys
raw, engines = sys.argv[1], sys.argv[2:]
base = engines[0]
print(f"| workload | engine | ops/s (median) | ratio to {base} | p99 ms (median) | errors | ops/s of each round |")
print("|---|---|---|---|---|---|---|")
import glob, os, re
for wl in ("put", "get"):
    med = {}
    for e in engines:
        runs = []
        for p in sorted(glob.glob(os.path.join(raw, f"{e}-{wl}-r*.json")), key=lambda p: int(re.search(r"-r(\d+)\.json$", p).group(1))):
            runs.append(json.load(open(p)))
        ops = [r["ops_per_sec"] for r in runs]
        p99 = [r["latency_us"]["p99"] / 1000 for r in runs]
        errs = sum(r["errors"] for r in runs)
        med[e] = statistics.median(ops)
        ratio = med[e] / med[base] if med[base] else float("nan")
        print(f"| {wl} | {e} | {med[e]:,.0f} | {ratio:.2f}x | {statistics.median(p99):.2f} | {errs} | {', '.join(f'{o:,.0f}' for o in ops)} |")
PY
} >"$raw.md"
cat "$raw.md"
echo "raw reports in $raw" >&2
