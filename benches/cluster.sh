#!/usr/bin/env bash
# W8 (SPEC §4), throughput: a 3-node cluster on one etcd against a single node, in the same
# run, per durability mode. `seqd bench -c 50` sends NEXT ws 0 over KEYS random workspaces to
# one node of the cluster (which forwards the requests of the partitions it does not own: two
# thirds of them) and to a single node (RocksDB), in alternating rounds. (Not redis-benchmark:
# its __rand_int__ is zero-padded, a workspace spelling cluster mode refuses, since a cluster
# client would hash it to another slot.)
#
#   bash benches/cluster.sh BIN lease 16        # -P 16
#   ROUNDS=3 KEYS=1000 bash benches/cluster.sh BIN sync 1
#
# Environment: ROUNDS (3), N (requests per round, 200000 at -P 16, 30000 at -P 1), KEYS
# (1000), PARTITIONS (8). Needs etcd, python3 and curl. Every process it starts is
# stopped.
set -euo pipefail

bin=${1:?usage: cluster.sh BIN sync|lease PIPELINE}
mode=${2:?sync or lease}
pipeline=${3:?pipeline depth}
rounds=${ROUNDS:-3}
keys=${KEYS:-1000}
partitions=${PARTITIONS:-8}
if ((pipeline > 1)); then n=${N:-200000}; else n=${N:-30000}; fi
source "$(dirname "$0")/lib.sh"

start_etcd

for i in 0 1 2; do start_node "$bin" "$mode" "$partitions" "n$i"; done
wait_placed "$partitions"
start_seqd single "$bin" "$mode"; single_port=$port

run() { # port -> "rps p99"
  "$bin" bench -p "$1" -c 50 -n "$n" -P "$pipeline" --workspaces "$keys" --json --quiet \
    | python3 -c 'import json,sys; s=json.load(sys.stdin); print(round(s["requests_per_sec"]), s["latency_ms"]["p99"])'
}
echo "W8: $mode, -c 50 -P $pipeline, $keys random workspaces, $n requests per round, $rounds rounds"
echo "round  cluster(rps p99ms)  single(rps p99ms)  ratio"
ratios=()
for r in $(seq "$rounds"); do
  read -r c c99 < <(run "${node_ports[0]}")
  read -r s s99 < <(run "$single_port")
  ratio=$(awk -v a="$c" -v b="$s" 'BEGIN{printf "%.2f", a/b}')
  ratios+=("$ratio")
  echo "$r  $c $c99  $s $s99  $ratio"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END{print "median cluster/single:", a[int((NR+1)/2)]}'
