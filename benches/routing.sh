#!/usr/bin/env bash
# The cost of routing in a cluster (SPEC §5, issue "roles and routing"): one etcd, two
# sequencer+gateway nodes in `--routing redirect` and one gateway-only node, in one run.
#   * direct: `seqd bench --cluster` seeded at a redirect node — a Redis Cluster client's
#     path: connections spread over the nodes, each request sent to the node that owns its
#     slot (no hop; -MOVED followed if the layout moves);
#   * gateway: `seqd bench` against the gateway-only node — every request forwarded one hop
#     to its owner over the pipelined peer connections.
# Alternating rounds, per pipeline depth.
#
#   bash benches/routing.sh BIN            # -P 1 and -P 16, lease mode
#   ROUNDS=5 MODE=sync bash benches/routing.sh BIN
#
# Environment: ROUNDS (3), MODE (lease), SECS per run (5), KEYS (1000 workspaces),
# PARTITIONS (8). Needs etcd and curl. Every process it starts is stopped.
set -euo pipefail

bin=${1:?usage: routing.sh BIN}
rounds=${ROUNDS:-3}
mode=${MODE:-lease}
secs=${SECS:-5}
keys=${KEYS:-1000}
partitions=${PARTITIONS:-8}
source "$(dirname "$0")/lib.sh"

start_etcd

start_node "$bin" "$mode" "$partitions" n0 --routing redirect
start_node "$bin" "$mode" "$partitions" n1 --routing redirect
start_node "$bin" "$mode" "$partitions" g --roles gateway
wait_placed "$partitions"

run() { # pipeline port [--cluster] -> "rps p99ms"
  local pipeline=$1 port=$2; shift 2
  "$bin" bench -p "$port" -c 50 -P "$pipeline" --duration "$secs" --workspaces "$keys" \
    --no-verify --json --quiet "$@" \
    | python3 -c 'import json,sys; s=json.load(sys.stdin); print(round(s["requests_per_sec"]), s["latency_ms"]["p99"], s.get("redirects", 0))'
}
echo "routing: $mode, -c 50, $keys workspaces, ${secs}s per run, $rounds rounds; $(nproc) cores"
for pipeline in 1 16; do
  echo "-P $pipeline: round  direct(--cluster: rps p99ms moved)  gateway(rps p99ms)  gateway/direct"
  ratios=()
  for r in $(seq "$rounds"); do
    read -r d d99 moved < <(run "$pipeline" "${node_ports[0]}" --cluster)
    read -r g g99 _ < <(run "$pipeline" "${node_ports[2]}")
    ratio=$(awk -v a="$g" -v b="$d" 'BEGIN{printf "%.2f", a/b}')
    ratios+=("$ratio")
    echo "  $r  $d $d99 $moved  $g $g99  $ratio"
  done
  printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END{print "  median gateway/direct:", a[int((NR+1)/2)]}'
done
