#!/usr/bin/env bash
# seqd against Redis in alternating rounds on servers kept running; prints each round's
# ratio and the median ratio. For A/B comparisons on a noisy disk, where one compare.sh
# run can swing +-40 %: the median of many short alternating rounds moves much less.
#
#   bash benches/pairs.sh target/release/seqd sync 1      # seqd sync vs Redis always, -P 1
#   ROUNDS=8 N=40000 bash benches/pairs.sh BIN lease 16   # lease vs everysec, -P 16
#
# One hot key (GETSEQ / INCR k), -c 50, loopback, temporary data directories; needs
# redis-server and redis-benchmark (compare.sh installs them). Environment: ROUNDS (6),
# N (requests per round, 60000), SEQD_* variables pass through to seqd.
set -euo pipefail

bin=${1:?usage: pairs.sh SEQD_BIN sync|lease PIPELINE}
mode=${2:?sync or lease}
pipeline=${3:?pipeline depth}
rounds=${ROUNDS:-6}
n=${N:-60000}
source "$(dirname "$0")/lib.sh"
fsync=$(redis_fsync "$mode")
start_seqd seqd "$bin" "$mode"; sport=$port
start_redis "$fsync"; rport=$redis_port

rps() { # port command...
  local port=$1; shift
  redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -n "$n" -P "$pipeline" --csv "$@" |
    tail -1 | tr -d '"' | cut -d, -f2
}
ratios=()
for r in $(seq "$rounds"); do
  s=$(rps "$sport" GETSEQ)
  o=$(rps "$rport" INCR k)
  q=$(awk -v a="$s" -v b="$o" 'BEGIN { printf "%.2f", a / b }')
  echo "round $r: seqd $mode $s rps, redis $fsync $o rps, ratio $q"
  ratios+=("$q")
done
printf '%s\n' "${ratios[@]}" | sort -n |
  awk -v m="$mode" -v p="$pipeline" '{v[NR] = $1}
    END {printf "median ratio, %s -P %s: %.2f (of %d rounds)\n", m, p, v[int((NR + 1) / 2)], NR}'
