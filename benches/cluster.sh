#!/usr/bin/env bash
# W8 (SPEC §4), throughput: a 3-node cluster on one etcd against a single node, in the same
# run, per durability mode. redis-benchmark (-c 50) sends NEXT __rand_int__ 0 with KEYS random
# workspaces to one node of the cluster (which forwards the requests of the partitions it does
# not own: two thirds of them) and to a single node (RocksDB), in alternating rounds.
#
#   bash benches/cluster.sh BIN lease 16        # -P 16
#   ROUNDS=3 KEYS=1000 bash benches/cluster.sh BIN sync 1
#
# Environment: ROUNDS (3), N (requests per round, 200000 at -P 16, 30000 at -P 1), KEYS
# (1000), PARTITIONS (8). Needs etcd, redis-benchmark and curl. Every process it starts is
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

cluster_ports=()
for i in 0 1 2; do
  p=$(free_port); a=$(free_port)
  SEQD_LOG=warn "$bin" serve --host 127.0.0.1 --port "$p" --admin-port "$a" --durability "$mode" \
    --etcd "http://127.0.0.1:$etcd_port" --cluster bench --node-id "n$i" \
    --partitions "$partitions" --lease-ttl 2 >"$work/n$i.log" 2>&1 &
  pids+=($!)
  cluster_ports+=("$p")
  cluster_admin+=("$a")
done
# Placed: every partition owned and every node ready.
for _ in $(seq 300); do
  ok=1
  for a in "${cluster_admin[@]}"; do curl -sf "http://127.0.0.1:$a/readyz" >/dev/null || ok=0; done
  owned=$(curl -sf "http://127.0.0.1:${cluster_admin[0]}/v1/cluster" | grep -o '"owner":"' | wc -l || true)
  ((ok == 1 && owned == partitions)) && break
  sleep 0.1
done
start_seqd single "$bin" "$mode"; single_port=$port

run() { # port -> "rps p99"
  redis-benchmark -h 127.0.0.1 -p "$1" -c 50 -n "$n" -P "$pipeline" -r "$keys" --csv \
    NEXT __rand_int__ 0 | tail -1 | tr -d '"' | awk -F, '{print $2, $7}'
}
echo "W8: $mode, -c 50 -P $pipeline, $keys random workspaces, $n requests per round, $rounds rounds"
echo "round  cluster(rps p99ms)  single(rps p99ms)  ratio"
ratios=()
for r in $(seq "$rounds"); do
  read -r c c99 < <(run "${cluster_ports[0]}")
  read -r s s99 < <(run "$single_port")
  ratio=$(awk -v a="$c" -v b="$s" 'BEGIN{printf "%.2f", a/b}')
  ratios+=("$ratio")
  echo "$r  $c $c99  $s $s99  $ratio"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END{print "median cluster/single:", a[int((NR+1)/2)]}'
