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
#   3. the same cells again (the "never used" ones on new sequences; the warm keys after a
#      pass over them again), and the ratio of each to its fresh figure, with the data
#      directory's WAL and table files and the CPU each kind of the server's threads used
#      during the cells (RocksDB's compaction threads are `rocksdb:low`).
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

warm() { # a pass over the 100,000 warm keys; then the disk's own write-back, settled
  redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -n 300000 -P 16 -r 100000 -q NEXT __rand_int__ 0 >/dev/null
  sync
  sleep 3
}
ticks() { # CPU ticks of the server's threads by name, summed: "name ticks" lines
  for t in /proc/"$seqd_pid"/task/*; do echo "$(cat "$t/comm") $(awk '{print $14 + $15}' "$t/stat")"; done |
    awk '{sub(/-[0-9]+$/, "", $1); sub(/:.*/, "", $1); s[$1] += $2} END {for (k in s) print k, s[k]}' | sort
}
cpu() { # what each kind of thread used over the cells: ticks (1/100 s)
  join "$1" "$2" | awk '{d = $3 - $2; if (d > 0) printf "%s %d  ", $1, d} END {print ""}'
}
warm
echo "fresh server: $(files)"
ticks >"$work/t0"
cells 1 | tee "$work/before"
ticks >"$work/t1"
echo "CPU ticks during the cells: $(cpu "$work/t0" "$work/t1")"

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
warm
ticks >"$work/t2"
cells 3 | tee "$work/after"
ticks >"$work/t3"
echo "CPU ticks during the cells: $(cpu "$work/t2" "$work/t3")"
echo "at the end: $(files)"

echo "cell: steady/fresh rps, p99 (ms) fresh -> steady ($mode)"
paste -d' ' "$work/before" "$work/after" |
  awk '{printf "%s: %.2f, p99 %s -> %s\n", $1, $5 / $2, $3, $6}'
