#!/usr/bin/env bash
# Memory of one kvnode holding N keys: starts a single-node cluster on
# 127.0.0.1, loads the keys with kvctl bench load (16-byte keys), lets the
# node settle and prints one JSON line: RSS and peak RSS, the part of RSS
# that is bbolt's mapped raft.db, and the Go runtime's figures from
# /metrics (live heap, heap in use, GC goal, stacks, goroutines, engine
# bytes). With --restart it then kills the node with -9, restarts it on the
# same data, times it until a linearizable read succeeds, checks that the
# engine holds all keys, and adds the restart's time and peak RSS.
#
# Usage: bench/node_rss.sh [--engine arena|btree|hash] [--keys 1000000]
#                          [--value-size 100] [--restart]
# Environment: GOGC / GOMEMLIMIT are passed to kvnode, and KVNODE_FLAGS
# (split on spaces) is added to its flags; KVNODE and KVCTL
# use prebuilt binaries (KVNODE may be a cross-built binary run under
# qemu-user, e.g. KVNODE_EXEC=qemu-arm-static).
set -euo pipefail
cd "$(dirname "$0")/.."
engine=arena keys=1000000 value_size=100 restart=0
while [ $# -gt 0 ]; do
	case "$1" in
	--engine) engine=$2; shift ;;
	--keys) keys=$2; shift ;;
	--value-size) value_size=$2; shift ;;
	--restart) restart=1 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
tmp=$(mktemp -d)
pid=""
cleanup() {
	[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
kvnode=${KVNODE:-}
kvctl=${KVCTL:-}
if [ -z "$kvnode" ]; then go build -o "$tmp/kvnode" ./cmd/kvnode; kvnode=$tmp/kvnode; fi
if [ -z "$kvctl" ]; then go build -o "$tmp/kvctl" ./cmd/kvctl; kvctl=$tmp/kvctl; fi

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 50); do
	base=$((10000 + RANDOM % 20000))
	ok=1
	for off in 0 1 2 3; do port_free $((base + off)) || { ok=0; break; }; done
	[ $ok = 1 ] && break
done
eps=127.0.0.1:$base
admin=127.0.0.1:$((base + 3))
start() {
	${KVNODE_EXEC:-} "$kvnode" --id n1 --data-dir "$tmp/n1" --engine "$engine" \
		--thrift-addr "$eps" --raft-addr "127.0.0.1:$((base + 1))" \
		--gossip-addr "127.0.0.1:$((base + 2))" --admin-addr "$admin" \
		--initial-cluster "n1=127.0.0.1:$((base + 1))" --log-level warn ${KVNODE_FLAGS:-} >>"$tmp/n1.log" 2>&1 &
	pid=$!
}
# wait_for CMD...: polls CMD every POLL seconds (0.2 by default) for up to
# 10 minutes.
wait_for() {
	local interval=${POLL:-0.2}
	for _ in $(seq "$(echo "600 / $interval" | bc)"); do
		"$@" >/dev/null 2>&1 && return 0
		kill -0 "$pid" 2>/dev/null || { echo "kvnode exited; log:" >&2; tail -20 "$tmp/n1.log" >&2; exit 1; }
		sleep "$interval"
	done
	echo "timed out waiting for: $*" >&2
	exit 1
}
metric() { curl -sf "http://$admin/metrics" | awk -v m="$1" '$1 == m {printf "%d", $2}'; }
status_kb() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$pid/status"; }
bolt_kb() { awk '/raft\.db/ {m=1; next} /^[0-9a-f]+-[0-9a-f]+ / {m=0} m && /^Rss:/ {s+=$2} END {print s+0}' "/proc/$pid/smaps"; }
has_all_keys() { [ "$(metric cubekv_engine_keys)" -ge "$1" ]; }

start
wait_for "$kvctl" --endpoints "$eps" --timeout 1s put rss-ready yes
t0=$(date +%s.%N)
"$kvctl" --endpoints "$eps" --timeout 60s -o json bench load --keys "$keys" --key-size 16 \
	--value-size "$value_size" --clients 256 --conns 16 --progress 0 >"$tmp/load.json"
t1=$(date +%s.%N)
wait_for has_all_keys "$keys"
sleep 5 # let the node settle (snapshots, GC) before reading RSS
out=$(jq -nc --arg engine "$engine" --argjson keys "$keys" --argjson vsize "$value_size" \
	--argjson rss "$(status_kb VmRSS)" --argjson hwm "$(status_kb VmHWM)" --argjson bolt "$(bolt_kb)" \
	--argjson heap "$(metric go_memstats_heap_alloc_bytes)" --argjson inuse "$(metric go_memstats_heap_inuse_bytes)" \
	--argjson goal "$(metric go_memstats_next_gc_bytes)" --argjson stack "$(metric go_memstats_stack_inuse_bytes)" \
	--argjson sys "$(metric go_memstats_sys_bytes)" --argjson gor "$(metric go_goroutines)" \
	--argjson ebytes "$(metric cubekv_engine_bytes)" --argjson load_s "$(echo "$t1 - $t0" | bc)" \
	--argjson errors "$(jq .errors "$tmp/load.json")" \
	'{engine: $engine, keys: $keys, value_size: $vsize, load_s: $load_s, load_errors: $errors,
	  rss_mib: ($rss / 1024), peak_rss_mib: ($hwm / 1024), bolt_rss_mib: ($bolt / 1024),
	  heap_alloc_mib: ($heap / 1048576), heap_inuse_mib: ($inuse / 1048576), gc_goal_mib: ($goal / 1048576),
	  stack_mib: ($stack / 1048576), go_sys_mib: ($sys / 1048576), goroutines: $gor,
	  engine_data_mib: ($ebytes / 1048576)}')
if [ "$restart" = 1 ]; then
	kill -9 "$pid"
	wait "$pid" 2>/dev/null || true
	r0=$(date +%s.%N)
	start
	# Serving: the first linearizable read that succeeds, polled every
	# 20 ms (each poll is a kvctl process); then every key must be there.
	POLL=0.02 wait_for "$kvctl" --endpoints "$eps" --timeout 1s get rss-ready
	r1=$(date +%s.%N)
	wait_for has_all_keys "$keys"
	sleep 2
	out=$(jq -c --argjson s "$(echo "$r1 - $r0" | bc)" --argjson rss "$(status_kb VmRSS)" --argjson hwm "$(status_kb VmHWM)" \
		--argjson k "$(metric cubekv_engine_keys)" \
		'. + {restart_s: $s, restart_keys: $k, restart_rss_mib: ($rss / 1024), restart_peak_rss_mib: ($hwm / 1024)}' <<<"$out")
fi
echo "$out"
