#!/usr/bin/env bash
# W9 (SPEC §4): `VERSION COMMIT` of seqd against `INCR` of Redis, with the same client
# (redis-benchmark -c 50), in alternating rounds of one run: seqd keeps its versions in
# durable windows (lease-like), so it is paired with Redis `appendfsync everysec`.
#
#   bash benches/versions.sh BIN 16        # -P 16
#   ROUNDS=5 bash benches/versions.sh BIN 1
#
# Environment: ROUNDS (3), N (requests per round: 1000000 at -P 16, 100000 at -P 1). Needs
# redis-server, redis-benchmark and curl. Every process it starts is stopped.
set -euo pipefail

bin=${1:?usage: versions.sh BIN PIPELINE}
pipeline=${2:?pipeline depth}
rounds=${ROUNDS:-3}
if ((pipeline > 1)); then n=${N:-1000000}; else n=${N:-100000}; fi
source "$(dirname "$0")/lib.sh"

start_seqd versions "$bin" lease; seqd_port=$port
start_redis everysec

run() { # port command... -> "rps p99ms"
  local port=$1; shift
  redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -n "$n" -P "$pipeline" --csv "$@" \
    | tail -1 | tr -d '"' | awk -F, '{print $2, $7}'
}
echo "W9: -c 50 -P $pipeline, $n requests per round, $rounds rounds; $(nproc) cores, $(uname -r)"
echo "round  seqd VERSION COMMIT (rps p99ms)  redis INCR (rps p99ms)  ratio"
ratios=()
for r in $(seq "$rounds"); do
  read -r s s99 < <(run "$seqd_port" VERSION COMMIT)
  read -r x x99 < <(run "$redis_port" INCR v)
  ratio=$(awk -v a="$s" -v b="$x" 'BEGIN{printf "%.2f", a/b}')
  ratios+=("$ratio")
  echo "$r  $s $s99  $x $x99  $ratio"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END{print "median seqd/redis:", a[int((NR+1)/2)]}'
# Every version was handed out once: the last commit version is the count taken.
last=$(redis-cli -p "$seqd_port" VERSION STATUS | sed -n '8p')
echo "last commit version after the run: $last"
