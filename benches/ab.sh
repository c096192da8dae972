#!/usr/bin/env bash
# Two seqd builds (A, B) and Redis in alternating rounds on servers kept running, one hot key
# or KEYS random keys: each round's rps and p99 of all three, then the median B/A and B/Redis
# ratios. For "did this change cost anything" on a noisy machine, where one run can swing
# +-40 %.
#
#   bash benches/ab.sh BEFORE_BIN AFTER_BIN sync 16     # -c 50 -P 16, sync vs Redis always
#   ROUNDS=8 bash benches/ab.sh A B lease 1             # lease vs Redis everysec, -P 1
#   KEYS=100000 bash benches/ab.sh A B sync 16          # 100,000 random keys
#
# redis-benchmark runs GETSEQ against both seqd builds and INCR k against Redis (with KEYS:
# NEXT __rand_int__ 0 and INCR key:__rand_int__, -r KEYS), -c 50, on loopback, with
# temporary data directories. Environment: ROUNDS (5), N (requests per round and server,
# 200000 at -P 16, 50000 at -P 1), KEYS; SEQD_* variables pass through to seqd. Needs
# redis-server, redis-benchmark and curl. Every process it starts is stopped.
set -euo pipefail

a_bin=${1:?usage: ab.sh A_BIN B_BIN sync|lease PIPELINE}
b_bin=${2:?B_BIN}
mode=${3:?sync or lease}
pipeline=${4:?pipeline depth}
rounds=${ROUNDS:-5}
if ((pipeline > 1)); then n=${N:-200000}; else n=${N:-50000}; fi
source "$(dirname "$0")/lib.sh"
fsync=$(redis_fsync "$mode")
start_seqd a "$a_bin" "$mode"; a_port=$port
start_seqd b "$b_bin" "$mode"; b_port=$port
start_redis "$fsync"; r_port=$redis_port

run() { # port command... -> "rps p99"
  local port=$1; shift
  redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -n "$n" -P "$pipeline" --csv "$@" |
    tail -1 | tr -d '"' | awk -F, '{print $2, $7}'
}
if [[ -n "${KEYS:-}" ]]; then
  seqd_cmd=(-r "$KEYS" NEXT __rand_int__ 0)
  redis_cmd=(-r "$KEYS" INCR key:__rand_int__)
else
  seqd_cmd=(GETSEQ)
  redis_cmd=(INCR k)
fi
: >"$work/ratios"
for r in $(seq "$rounds"); do
  read -r a a99 <<<"$(run "$a_port" "${seqd_cmd[@]}")"
  read -r b b99 <<<"$(run "$b_port" "${seqd_cmd[@]}")"
  read -r o o99 <<<"$(run "$r_port" "${redis_cmd[@]}")"
  echo "round $r: A $a rps (p99 $a99 ms), B $b rps (p99 $b99 ms), redis $fsync $o rps (p99 $o99 ms)"
  awk -v a="$a" -v b="$b" -v o="$o" 'BEGIN { printf "%.3f %.3f %.3f\n", b / a, a / o, b / o }' \
    >>"$work/ratios"
done
median() { sort -n | awk '{v[NR] = $1} END {printf "%.2f", v[int((NR + 1) / 2)]}'; }
echo "median of $rounds rounds, $mode -P $pipeline, ${KEYS:-one} key(s):" \
  "B/A $(cut -d' ' -f1 "$work/ratios" | median)," \
  "A/redis $(cut -d' ' -f2 "$work/ratios" | median)," \
  "B/redis $(cut -d' ' -f3 "$work/ratios" | median)"
