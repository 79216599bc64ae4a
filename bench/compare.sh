#!/usr/bin/env bash
# Side-by-side comparison of cubekv and etcd on one machine.
#
# Starts a three-node cubekv cluster and a three-node etcd cluster (Debian's
# etcd-server, default fsync settings), all on 127.0.0.1 with their own ports
# and data under one temporary directory, then runs the same workloads against
# both: put and linearizable get at 1, 16, 64 and 256 clients, 16-byte keys
# over a 100,000-key space (preloaded), 100-byte values, 20 s a point. Then it
# loads 1,000,000 keys into each cluster and measures the RSS per node (the
# VmRSS of the three processes summed, / 3). The markdown table, with the
# cubekv/etcd ratio of every figure, goes to bench/results/<timestamp>.md and
# to stdout; the raw JSON reports and logs are kept beside it in
# bench/results/<timestamp>/.
#
# Both clusters are stopped and the temporary directory removed on exit,
# error or Ctrl-C.
#
# With --fsync-delay, every node of both systems runs under strace, which
# holds every fsync and fdatasync for that long after it returns: an SD card
# or eMMC on a machine with a fast disk. A chart of ops/s and p99 against
# clients (bench/chart.py) goes beside the table as <timestamp>.svg, and the
# figures it drew as <timestamp>.points.json (to redraw several runs on one
# chart).
#
# Usage: bench/compare.sh [--quick] [--duration 20s] [--clients "1 16 64 256"]
#                         [--workloads "put get"] [--rss-keys 1000000 | --no-rss]
#                         [--no-profile] [--fsync-delay 2ms] [--log-store bolt|wal]
#                         [--kvnode-flags "--max-inflight-entries 8"]
#   --quick         3 s a point, 100,000 keys for the RSS figure
#   --no-profile    skip the CPU profiles of the cubekv leader (64-client put and get)
#   --fsync-delay   delay every fsync/fdatasync of every node (Nms or Nus; needs strace)
#   --log-store     kvnode --log-store (default: kvnode's, bolt)
#   --kvnode-flags  more kvnode flags, split on spaces
#
# Needs: go, etcd and etcdctl (apt-get install etcd-server etcd-client),
# curl, jq, python3, and strace for --fsync-delay. KVCTL=/path/to/kvctl uses a prebuilt kvctl (it must have
# the bench command); KVNODE=/path/to/kvnode a prebuilt kvnode (to measure a
# change before it is made).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
orig_args="$*"

duration=20s
clients="1 16 64 256"
workloads="put get"
rss_keys=1000000
profile=1
fsync_delay=""
log_store=""
kvnode_flags=""
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) duration=3s; rss_keys=100000 ;;
	--duration) duration=$2; shift ;;
	--clients) clients=$2; shift ;;
	--workloads) workloads=$2; shift ;;
	--rss-keys) rss_keys=$2; shift ;;
	--no-rss) rss_keys=0 ;;
	--no-profile) profile=0 ;;
	--fsync-delay) fsync_delay=$2; shift ;;
	--log-store) log_store=$2; shift ;;
	--kvnode-flags) kvnode_flags=$2; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
for tool in go etcd etcdctl curl jq python3; do
	command -v "$tool" >/dev/null || { echo "compare.sh needs $tool" >&2; exit 2; }
done
# wrap: the command prefix every server runs under; empty without --fsync-delay.
wrap=()
if [ -n "$fsync_delay" ]; then
	case "$fsync_delay" in
	*ms) delay_us=$((${fsync_delay%ms} * 1000)) ;;
	*us) delay_us=${fsync_delay%us} ;;
	*) echo "--fsync-delay takes Nms or Nus, got $fsync_delay" >&2; exit 2 ;;
	esac
	command -v strace >/dev/null || { echo "--fsync-delay needs strace (apt-get install strace)" >&2; exit 2; }
	wrap=(strace -f --seccomp-bpf -o /dev/null -e trace=fsync,fdatasync -e "inject=fsync,fdatasync:delay_exit=$delay_us")
fi
store_flags=()
[ -n "$log_store" ] && store_flags=(--log-store "$log_store")
read -r -a extra_flags <<<"$kvnode_flags"

keys=100000
key_size=16
value_size=100
stamp=$(date -u +%Y%m%dT%H%M%SZ)
results="$root/bench/results"
raw="$results/$stamp"
mkdir -p "$raw"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cubekv-compare.XXXXXX")
pids=()
cleanup() {
	local code=$?
	trap - INT TERM EXIT
	if [ ${#pids[@]} -gt 0 ]; then
		# Under --fsync-delay, also whatever runs under each strace.
		local p c
		for p in "${pids[@]}"; do
			for c in $(pgrep -P "$p" 2>/dev/null); do pids+=("$c"); done
		done
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
	# Keep the node logs for a post-mortem.
	cp "$tmp"/*.log "$raw"/ 2>/dev/null || true
	rm -rf "$tmp"
	exit $code
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== building (temp dir $tmp)" >&2
if [ -n "${KVNODE:-}" ]; then
	cp "$KVNODE" "$tmp/kvnode"
else
	go build -o "$tmp/kvnode" ./cmd/kvnode
fi
if [ -n "${KVCTL:-}" ]; then
	cp "$KVCTL" "$tmp/kvctl"
else
	go build -o "$tmp/kvctl" ./cmd/kvctl
fi
"$tmp/kvctl" bench --help >/dev/null 2>&1 || { echo "kvctl has no bench command" >&2; exit 2; }
(cd bench/etcdload && go build -o "$tmp/etcdload" .)

# A base port with 30 free ports above it: cubekv uses base+0..11, etcd base+20..25. Below the
# ephemeral range (Linux default 32768-60999), where outgoing connections could take a port first.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ephemeral_low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
for _ in $(seq 50); do
	base=$((10000 + RANDOM % (ephemeral_low - 10000 - 30)))
	ok=1
	for off in $(seq 0 29); do port_free $((base + off)) || { ok=0; break; }; done
	[ $ok = 1 ] && break
done
[ $ok = 1 ] || { echo "no free port range found" >&2; exit 1; }

# cubekv: node i has thrift base+i, raft base+3+i, gossip base+6+i, admin base+9+i (i = 0..2).
initial="" join="" cube_eps=""
for i in 0 1 2; do
	initial+="${initial:+,}n$((i + 1))=127.0.0.1:$((base + 3 + i))"
	join+="${join:+,}127.0.0.1:$((base + 6 + i))"
	cube_eps+="${cube_eps:+,}127.0.0.1:$((base + i))"
done
# server_pid PID: the server process itself: PID, or its child when PID is strace.
server_pid() {
	local p=$1 c
	[ ${#wrap[@]} = 0 ] && { echo "$p"; return; }
	for _ in $(seq 600); do
		c=$(pgrep -P "$p" | head -1)
		[ -n "$c" ] && { echo "$c"; return; }
		sleep 0.05
	done
	echo "no server process under strace $p" >&2
	return 1
}
cube_pids=()
for i in 0 1 2; do
	"${wrap[@]}" "$tmp/kvnode" --id "n$((i + 1))" --data-dir "$tmp/cubekv/n$((i + 1))" \
		--thrift-addr "127.0.0.1:$((base + i))" --raft-addr "127.0.0.1:$((base + 3 + i))" \
		--gossip-addr "127.0.0.1:$((base + 6 + i))" --admin-addr "127.0.0.1:$((base + 9 + i))" \
		--initial-cluster "$initial" --join "$join" --log-level warn "${store_flags[@]}" "${extra_flags[@]}" \
		>"$tmp/cubekv-n$((i + 1)).log" 2>&1 &
	pids+=("$!")
	sp=$(server_pid "$!") || exit 1
	[ "$sp" = "$!" ] || pids+=("$sp")
	cube_pids+=("$sp")
done

# etcd: member i has client base+20+i, peer base+23+i.
etcd_initial="" etcd_eps=""
for i in 0 1 2; do
	etcd_initial+="${etcd_initial:+,}e$((i + 1))=http://127.0.0.1:$((base + 23 + i))"
	etcd_eps+="${etcd_eps:+,}127.0.0.1:$((base + 20 + i))"
done
etcd_pids=()
for i in 0 1 2; do
	"${wrap[@]}" etcd --name "e$((i + 1))" --data-dir "$tmp/etcd/e$((i + 1))" \
		--listen-client-urls "http://127.0.0.1:$((base + 20 + i))" \
		--advertise-client-urls "http://127.0.0.1:$((base + 20 + i))" \
		--listen-peer-urls "http://127.0.0.1:$((base + 23 + i))" \
		--initial-advertise-peer-urls "http://127.0.0.1:$((base + 23 + i))" \
		--initial-cluster "$etcd_initial" --initial-cluster-state new \
		--initial-cluster-token "cubekv-compare-$base" --log-level warn \
		>"$tmp/etcd-e$((i + 1)).log" 2>&1 &
	pids+=("$!")
	sp=$(server_pid "$!") || exit 1
	[ "$sp" = "$!" ] || pids+=("$sp")
	etcd_pids+=("$sp")
done

echo "== waiting for both clusters" >&2
ready=0
for _ in $(seq 150); do
	if "$tmp/kvctl" --endpoints "$cube_eps" --timeout 1s put compare-ready yes >/dev/null 2>&1 &&
		ETCDCTL_API=3 etcdctl --endpoints "$etcd_eps" --command-timeout 1s put compare-ready yes >/dev/null 2>&1; then
		ready=1
		break
	fi
	sleep 0.2
done
[ $ready = 1 ] || { echo "clusters did not become ready; logs in $raw" >&2; exit 1; }

secs=${duration%s}
common=(--keys "$keys" --key-size "$key_size" --value-size "$value_size")

cube_leader_admin() {
	local id
	id=$("$tmp/kvctl" --endpoints "$cube_eps" -o json status | jq -r '[.[] | select(.role == "LEADER")][0].node_id')
	echo "127.0.0.1:$((base + 9 + ${id#n} - 1))"
}

# cpu_ticks PID...: user+system CPU time of the processes, in clock ticks.
cpu_ticks() {
	local sum=0 p
	for p in "$@"; do
		sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$sum"
}
hz=$(getconf CLK_TCK)

# run_point SYSTEM WORKLOAD CLIENTS: one measured point, JSON to $raw, with the CPU time the three
# server processes used during it.
run_point() {
	local sys=$1 wl=$2 c=$3 conns out
	conns=$((c < 16 ? c : 16))
	out="$raw/$sys-$wl-$c.json"
	echo "== $sys $wl clients=$c conns=$conns ($duration) load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
	local prof_pid="" spids cpu0
	if [ "$sys" = cubekv ]; then spids=("${cube_pids[@]}"); else spids=("${etcd_pids[@]}"); fi
	cpu0=$(cpu_ticks "${spids[@]}")
	if [ "$sys" = cubekv ] && [ $profile = 1 ] && [ "$c" = 64 ]; then
		local admin psecs
		admin=$(cube_leader_admin)
		psecs=$((secs > 10 ? 10 : secs))
		(sleep 1 && curl -sf -o "$raw/cubekv-$wl-64.pprof" "http://$admin/debug/pprof/profile?seconds=$psecs") &
		prof_pid=$!
	fi
	if [ "$sys" = cubekv ]; then
		"$tmp/kvctl" --endpoints "$cube_eps" -o json --consistency linearizable bench "$wl" \
			--clients "$c" --conns "$conns" --duration "$duration" "${common[@]}" >"$out" 2>"$raw/$sys-$wl-$c.progress"
	else
		"$tmp/etcdload" --endpoints "$etcd_eps" -o json --consistency linearizable --workload "$wl" \
			--clients "$c" --conns "$conns" --duration "$duration" "${common[@]}" >"$out" 2>"$raw/$sys-$wl-$c.progress"
	fi
	local cpu_ms=$((($(cpu_ticks "${spids[@]}") - cpu0) * 1000 / hz))
	jq -c --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" --argjson cpu "$cpu_ms" \
		'. + {load_after: $load, server_cpu_ms: $cpu}' "$out" >"$out.tmp" && mv "$out.tmp" "$out"
	if [ -n "$prof_pid" ]; then
		wait "$prof_pid" || echo "profile of $wl failed" >&2
		go tool pprof -top -nodecount=40 "$tmp/kvnode" "$raw/cubekv-$wl-64.pprof" >"$raw/cubekv-$wl-64.top.txt" 2>&1 || true
	fi
}

echo "== preloading $keys keys" >&2
"$tmp/kvctl" --endpoints "$cube_eps" bench load --clients 64 --conns 16 --progress 0 "${common[@]}" >"$raw/cubekv-preload.txt"
"$tmp/etcdload" --endpoints "$etcd_eps" --workload load --clients 64 --conns 16 --progress 0 "${common[@]}" >"$raw/etcd-preload.txt"

for wl in $workloads; do
	for c in $clients; do
		run_point cubekv "$wl" "$c"
		run_point etcd "$wl" "$c"
	done
done

# rss_kb PID...: the summed VmRSS in KiB.
rss_kb() {
	local sum=0 p v
	for p in "$@"; do
		v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status")
		sum=$((sum + v))
	done
	echo "$sum"
}
if [ "$rss_keys" -gt 0 ]; then
	echo "== loading $rss_keys keys into each cluster for the RSS figure" >&2
	rss_common=(--keys "$rss_keys" --key-size "$key_size" --value-size "$value_size" --clients 256 --conns 16 --progress 0)
	"$tmp/kvctl" --endpoints "$cube_eps" --timeout 30s -o json bench load "${rss_common[@]}" >"$raw/cubekv-rss-load.txt"
	"$tmp/etcdload" --endpoints "$etcd_eps" --timeout 30s -o json --workload load "${rss_common[@]}" >"$raw/etcd-rss-load.txt"
	sleep 5 # let both settle (compactions, GC) before reading RSS
	jq -n --argjson keys "$rss_keys" --argjson cube "$(rss_kb "${cube_pids[@]}")" --argjson etcd "$(rss_kb "${etcd_pids[@]}")" \
		--argjson cerr "$(jq .errors "$raw/cubekv-rss-load.txt")" --argjson eerr "$(jq .errors "$raw/etcd-rss-load.txt")" \
		'{keys: $keys, cubekv_kb_per_node: ($cube / 3), etcd_kb_per_node: ($etcd / 3), cubekv_load_errors: $cerr, etcd_load_errors: $eerr}' >"$raw/rss.json"
fi

{
	echo "machine: $(nproc) cores, $(free -m | awk '/^Mem:/ {print $2}') MiB, $(uname -sr)"
	echo "etcd: $(etcd --version | head -1)"
	echo "command: ${KVNODE:+KVNODE=$KVNODE }${KVCTL:+KVCTL=$KVCTL }bench/compare.sh $orig_args"
	echo "duration a point: $duration, keys $keys, key size $key_size, value size $value_size"
	echo "fsync delay: ${fsync_delay:-none}"
	echo "log store: ${log_store:-bolt}"
	[ -n "$kvnode_flags" ] && echo "kvnode flags: $kvnode_flags"
} >"$raw/meta.txt"
python3 bench/chart.py "$raw" -o "$results/$stamp.svg" --points "$results/$stamp.points.json"
{
	python3 bench/table.py "$raw"
	echo
	echo "![ops/s and p99 against clients]($stamp.svg)"
} >"$results/$stamp.md"
cat "$results/$stamp.md"
echo "raw reports in $raw" >&2
