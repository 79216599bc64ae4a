#!/usr/bin/env bash
# Runs a three-node cubekv cluster on 127.0.0.1 in the foreground: three
# kvnode processes with their own ports and data directories under
# $CUBEKV_CLUSTER_DIR (default ./cluster-data). Ctrl-C stops all three.
# Running it again restarts the same cluster on its existing data.
#
#   node  thrift  raft   gossip  admin
#   n1    9101    9201   9301    9401
#   n2    9102    9202   9302    9402
#   n3    9103    9203   9303    9403
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${CUBEKV_CLUSTER_DIR:-cluster-data}"
bin="$dir/bin"
mkdir -p "$bin"
go build -o "$bin/kvnode" ./cmd/kvnode
go build -o "$bin/kvctl" ./cmd/kvctl

initial="n1=127.0.0.1:9201,n2=127.0.0.1:9202,n3=127.0.0.1:9203"
join="127.0.0.1:9301,127.0.0.1:9302,127.0.0.1:9303"
pids=()

stop() {
	trap - INT TERM EXIT
	echo
	echo "stopping ${pids[*]}"
	kill -TERM "${pids[@]}" 2>/dev/null || true
	wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

for i in 1 2 3; do
	"$bin/kvnode" \
		--id "n$i" \
		--data-dir "$dir/n$i" \
		--thrift-addr "127.0.0.1:910$i" \
		--raft-addr "127.0.0.1:920$i" \
		--gossip-addr "127.0.0.1:930$i" \
		--admin-addr "127.0.0.1:940$i" \
		--initial-cluster "$initial" \
		--join "$join" \
		>"$dir/n$i.log" 2>&1 &
	pids+=("$!")
done

endpoints="127.0.0.1:9101,127.0.0.1:9102,127.0.0.1:9103"
for i in $(seq 1 100); do
	if "$bin/kvctl" --endpoints "$endpoints" --timeout 1s put cluster-ready yes >/dev/null 2>&1; then
		break
	fi
	sleep 0.2
done

cat <<MSG
cubekv: three nodes running (logs in $dir/n1.log, n2.log, n3.log).
Use:
  $bin/kvctl --endpoints $endpoints status
  $bin/kvctl --endpoints $endpoints put hello world
  $bin/kvctl --endpoints $endpoints get hello
Ctrl-C stops all three.
MSG
wait "${pids[@]}"
