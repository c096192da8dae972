#!/usr/bin/env bash
# Steady state against fresh (issue 17's target: the same cells after 10 minutes of mixed load
# on the same server within 10 % of the fresh figures, p99 included).
#
#   bash benches/steady.sh BIN sync|lease          # 10 minutes of mixed load
#   MINUTES=2 bash benches/steady.sh BIN lease     # a shorter soak
#
# One seqd server (RocksDB in a temporary directory, `--durability MODE`), driven by
# redis-benchmark -c 50 on loopback:
#   1. the cells on the fresh server: one key (GETSEQ) at -P 1, 100,000 keys never used
#      (NEXT __rand_int__ S, a sequence of their own) at -P 16 and -P 1, and 100,000 warm
#      keys (NEXT __rand_int__ 0, after a pass over them) at -P 16 and -P 1;
#   2. MINUTES of mixed load: rounds of 1,000,000 random keys of ever new sequences at -P 16
#      (the data grows), the 100,000 warm keys at -P 1, and one key at -P 16;
#   3. the same cells again (the "never used" ones on new sequences), and the ratio of each
#      to its fresh figure, with the data directory's WAL and table files before and after.
# Environment: MINUTES (10), N (requests per cell: 300000 at -P 16, a quarter at -P 1).
set -euo pipefail

bin=${1:?usage: steady.sh BIN sync|lease}
mode=${2:?sync or lease}
minutes=${MINUTES:-10}
n=${N:-300000}
source "$(dirname "$0")/lib.sh"
start_seqd data "$bin" "$mode"

rb() { # label pipeline args... -> "label rps p99"
  local label=$1 p=$2; shift 2
  local requests=$n
  ((p == 1)) && requests=$((n / 4))
  redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -n "$requests" -P "$p" --csv "$@" |
    tail -1 | tr -d '"' | awk -F, -v l="$label" '{print l, $2, $7}'
}
files() { # what the data directory holds: live WAL files, table files, bytes
  echo "wal=$(find "$work/data" -name '*.log' | wc -l) sst=$(find "$work/data" -name '*.sst' | wc -l)" \
    "bytes=$(du -sb "$work/data" | cut -f1)"
}
cells() { # first-fresh-sequence
  rb one-key-P1 1 GETSEQ
  rb fresh-keys-P16 16 -r 100000 NEXT __rand_int__ "$1"
  rb fresh-keys-P1 1 -r 100000 NEXT __rand_int__ "$(($1 + 1))"
  rb warm-keys-P16 16 -r 100000 NEXT __rand_int__ 0
  rb warm-keys-P1 1 -r 100000 NEXT __rand_int__ 0
}

redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -n 300000 -P 16 -r 100000 -q NEXT __rand_int__ 0 >/dev/null
echo "fresh server: $(files)"
cells 1 | tee "$work/before"

deadline=$((SECONDS + 60 * minutes))
round=0
while ((SECONDS < deadline)); do
  round=$((round + 1))
  redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -n 1000000 -P 16 -r 1000000 -q \
    NEXT __rand_int__ "$((100 + round))" >/dev/null
  redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -n 50000 -P 1 -r 100000 -q NEXT __rand_int__ 0 >/dev/null
  redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -n 300000 -P 16 -q GETSEQ >/dev/null
done
echo "after $minutes minutes of mixed load ($round rounds): $(files)"
cells 3 | tee "$work/after"

echo "cell: steady/fresh rps, p99 (ms) fresh -> steady ($mode)"
paste -d' ' "$work/before" "$work/after" |
  awk '{printf "%s: %.2f, p99 %s -> %s\n", $1, $5 / $2, $3, $6}'
