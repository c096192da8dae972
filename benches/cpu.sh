#!/usr/bin/env bash
# Server CPU per request of `seqd serve`: steadier than throughput on a noisy machine, and
# the figure to compare when tuning a hot path (A/B: run it alternately with two binaries).
#
#   bash benches/cpu.sh target/release/seqd sync 100000        # 100,000 random keys, -P 16
#   COLD=1 bash benches/cpu.sh BIN lease 100000                 # no warm-up pass
#   N=500000 P=1 bash benches/cpu.sh BIN sync 1                 # one key, -P 1
#
# Starts seqd on loopback with a temporary RocksDB directory, runs WARM requests
# (`redis-benchmark -c 50 -P $P -r KEYS NEXT __rand_int__ 0`, `NEXT 0 0` for one key;
# default 300,000, none with COLD=1), then N measured ones (1,000,000), and prints the measured run's rps and the
# server's utime + stime (from /proc/PID/stat) divided by its requests. Every process it
# starts is stopped and the directory removed. Needs redis-benchmark and curl. Environment:
# N, WARM, COLD, P (pipeline, 16), C (clients, 50); SEQD_* variables pass through to seqd.
set -euo pipefail

bin=${1:?usage: cpu.sh SEQD_BIN sync|lease KEYS}
mode=${2:?sync or lease}
keys=${3:?number of keys (1 for GETSEQ on one key)}
n=${N:-1000000}
warm=${WARM:-300000}
[[ -n "${COLD:-}" ]] && warm=0
pipeline=${P:-16}
clients=${C:-50}

source "$(dirname "$0")/lib.sh"
start_seqd d "$bin" "$mode"
pid=$seqd_pid

load() { # requests
  local cmd=(NEXT 0 0)
  ((keys > 1)) && cmd=(-r "$keys" NEXT __rand_int__ 0)
  redis-benchmark -h 127.0.0.1 -p "$port" -c "$clients" -P "$pipeline" -n "$1" --csv \
    "${cmd[@]}" | tail -1 | tr -d '"' | cut -d, -f2
}
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }

((warm > 0)) && load "$warm" >/dev/null
before=$(ticks)
rps=$(load "$n")
after=$(ticks)
hz=$(getconf CLK_TCK)
awk -v m="$mode" -v k="$keys" -v p="$pipeline" -v r="$rps" -v t=$((after - before)) \
  -v hz="$hz" -v n="$n" -v w="$warm" 'BEGIN {
    printf "%s, %d keys, -P %d, warm-up %d: %.0f rps, server CPU %.2f us/request\n",
      m, k, p, w, r, t / hz * 1e6 / n }'
