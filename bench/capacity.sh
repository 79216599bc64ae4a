#!/usr/bin/env bash
# Capacity of one kvnode on a small board: runs a single-node cluster in a
# docker container (a FROM scratch image holding only a static kvnode, host
# network, 127.0.0.1) whose memory cgroup is what the board leaves for
# kvnode (--memory, no swap), with the GOMEMLIMIT and Raft log settings of
# deploy/config, and writes new keys (bench/fill) until the node can no
# longer take them: a 100k-key step slower than a tenth of the best step,
# puts failing, no put succeeding for 30 s (the kernel's OOM killer), or
# --duration. Prints one JSON line: the keys acknowledged and the engine's
# key count when it stopped, why it stopped, whether the container was
# OOM-killed, its peak memory and the node's memory figures.
#
# Usage: bench/capacity.sh [--engine arena|btree|hash] [--value-size 100]
#                          [--memory 768m] [--gomemlimit 512MiB]
#                          [--duration 8m] [--clients 64]
set -euo pipefail
cd "$(dirname "$0")/.."
engine=arena value_size=100 memory=768m gomemlimit=512MiB duration=8m clients=64
while [ $# -gt 0 ]; do
	case "$1" in
	--engine) engine=$2; shift ;;
	--value-size) value_size=$2; shift ;;
	--memory) memory=$2; shift ;;
	--gomemlimit) gomemlimit=$2; shift ;;
	--duration) duration=$2; shift ;;
	--clients) clients=$2; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
tmp=$(mktemp -d)
name=cubekv-capacity-$$
built=""
cleanup() {
	docker rm -f "$name" >/dev/null 2>&1 || true
	[ -n "$built" ] && docker rmi -f "$built" >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
image=${CAPACITY_IMAGE:-}
if [ -z "$image" ]; then
	CGO_ENABLED=0 go build -o "$tmp/img/kvnode" ./cmd/kvnode
	printf 'FROM scratch\nCOPY kvnode /kvnode\nENTRYPOINT ["/kvnode"]\n' >"$tmp/img/Dockerfile"
	image=cubekv-capacity:$$
	docker build -q -t "$image" "$tmp/img" >/dev/null
	built=$image
fi
go build -o "$tmp/fill" ./bench/fill

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 50); do
	base=$((10000 + RANDOM % 20000))
	ok=1
	for off in 0 1 2 3; do port_free $((base + off)) || { ok=0; break; }; done
	[ $ok = 1 ] && break
done
eps=127.0.0.1:$base
admin=127.0.0.1:$((base + 3))
mkdir -p "$tmp/data"
# The Raft log settings are deploy/config/n1.env's.
docker run -d --name "$name" --network host --memory "$memory" --memory-swap "$memory" \
	-e GOMEMLIMIT="$gomemlimit" -v "$tmp/data:/data" "$image" \
	--id n1 --data-dir /data/n1 --engine "$engine" \
	--thrift-addr "$eps" --raft-addr "127.0.0.1:$((base + 1))" \
	--gossip-addr "127.0.0.1:$((base + 2))" --admin-addr "$admin" \
	--initial-cluster "n1=127.0.0.1:$((base + 1))" --log-level warn \
	--max-value-size 65536 --max-frame-size 262144 --max-entry-bytes 262144 \
	--snapshot-log-bytes 8388608 --snapshot-threshold 65536 --trailing-logs 131072 --snapshot-interval 5s --max-conns 256 >/dev/null
for _ in $(seq 150); do
	curl -sf "http://$admin/ready" >/dev/null 2>&1 && break
	sleep 0.2
done
"$tmp/fill" --endpoints "$eps" --clients "$clients" --value-size "$value_size" --duration "$duration" >"$tmp/fill.json"
metric() { curl -sf --max-time 5 "http://$admin/metrics" | awk -v m="$1" '$1 == m {printf "%d", $2}'; }
running=$(docker inspect -f '{{.State.Running}}' "$name")
oom=$(docker inspect -f '{{.State.OOMKilled}}' "$name")
cg=$(docker inspect -f '{{.Id}}' "$name")
peak=$(cat "/sys/fs/cgroup/memory/docker/$cg/memory.max_usage_in_bytes" 2>/dev/null || echo 0)
usage=$(cat "/sys/fs/cgroup/memory/docker/$cg/memory.usage_in_bytes" 2>/dev/null || echo 0)
keys=null heap=null goal=null
if [ "$running" = true ]; then
	keys=$(metric cubekv_engine_keys || echo null)
	heap=$(metric go_memstats_heap_alloc_bytes || echo null)
	goal=$(metric go_memstats_next_gc_bytes || echo null)
fi
tail -1 "$tmp/fill.json" | jq -c --arg engine "$engine" --argjson vsize "$value_size" --arg memory "$memory" \
	--arg limit "$gomemlimit" --argjson running "$running" --argjson oom "$oom" \
	--argjson keys "${keys:-null}" --argjson heap "${heap:-null}" --argjson goal "${goal:-null}" \
	--argjson peak "$peak" --argjson usage "$usage" --argjson steps "$(grep -c keys_per_s "$tmp/fill.json" || true)" \
	--argjson best "$(jq -s '[.[] | .keys_per_s // empty] | max // 0' "$tmp/fill.json")" \
	--argjson last "$(jq -s '[.[] | .keys_per_s // empty] | last // 0' "$tmp/fill.json")" \
	'{engine: $engine, value_size: $vsize, memory: $memory, gomemlimit: $limit,
	  keys_acked: .keys_acked, engine_keys: $keys, stop: .stop, running: $running, oom_killed: $oom,
	  best_keys_per_s: $best, last_keys_per_s: $last,
	  cgroup_peak_mib: ($peak / 1048576), cgroup_usage_mib: ($usage / 1048576),
	  heap_alloc_mib: (if $heap == null then null else $heap / 1048576 end),
	  gc_goal_mib: (if $goal == null then null else $goal / 1048576 end)}'
cp "$tmp/fill.json" "${CAPACITY_LOG:-/dev/null}" 2>/dev/null || true
