#!/usr/bin/env bash
# seqd against Redis and PostgreSQL on this machine, in one run (SPEC §4 W5 and W6).
#
#   bash benches/compare.sh                      # N=300000 requests per case, pgbench 10 s
#   QUICK=1 bash benches/compare.sh              # N=30000, pgbench 3 s: a smoke run
#   N=1000000 PG_SECS=30 OUT=compare.md bash benches/compare.sh
#
# What it does, all on loopback with temporary data directories:
#   * installs redis-server, redis-tools, postgresql, postgresql-contrib with apt-get when
#     they are missing (as root; no service is started by the install);
#   * builds seqd (`cargo build --release --bin seqd`, honouring CARGO_TARGET_DIR; SEQD_BIN
#     skips the build);
#   * W5: seqd `--durability sync` vs redis-server `appendonly yes, appendfsync always`, and
#     seqd `--durability lease` vs `appendfsync everysec` (both `--save ''`). Each pair is
#     driven by redis-benchmark and by `seqd bench` (`--command incr` for Redis): one hot key
#     (GETSEQ / INCR k) and 100,000 keys (NEXT __rand_int__ 0 / INCR key:__rand_int__,
#     -r 100000), each at -P 16 and -P 1, -c 50; the 100,000-key cells on fresh storage
#     (keys never used before, redis-benchmark) and warm (after a pass over the keys);
#   * W6: `pgbench -n -c 50 -j 2 -T PG_SECS -f nextval.sql` (SELECT nextval('s')) against a
#     fresh PostgreSQL cluster (fsync on, default synchronous_commit), and `seqd bench` with
#     the same client count and threads for the same time against seqd (both modes); then
#     both with 16 calls per round trip (pgbench `-M extended` with `\startpipeline`, 16
#     nextval per pipeline, counted as 16; `seqd bench -P 16`);
#   * prints a markdown table (case, rps of both, ratio, p99 of both) with the machine's
#     description, and writes it to OUT when given.
#
# Environment: N (requests per case), QUICK=1, PG_SECS, CLIENTS (50), OUT (markdown file),
# SEQD_BIN (a prebuilt binary), ONLY (a comma-separated subset of seqd,redis,pg to run),
# KEEP=1 (keep the temp dir and logs). Every process it starts
# is stopped and the temp dir removed on exit, Ctrl-C or failure.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
if [[ -n "${QUICK:-}" ]]; then N="${N:-30000}"; PG_SECS="${PG_SECS:-3}"; fi
N="${N:-300000}"
PG_SECS="${PG_SECS:-10}"
CLIENTS="${CLIENTS:-50}"
KEYS=100000
ONLY="${ONLY:-seqd,redis,pg}"
runs() { [[ ",$ONLY," == *",$1,"* ]]; }

log() { echo "compare: $*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup
work="$(mktemp -d "${TMPDIR:-/tmp}/seqd-compare.XXXXXX")"
chmod 755 "$work"
pids=()
pg_data=""
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n "$pg_data" && -f "$pg_data/postmaster.pid" ]]; then
    as_pg "$pg_bin/pg_ctl" -D "$pg_data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n "${KEEP:-}" ]]; then log "kept $work"; else rm -rf "$work"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- install
pg_bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-benchmark >/dev/null && command -v redis-cli >/dev/null || missing+=(redis-tools)
[[ -n "$(pg_bin_dir)" && -x "$(pg_bin_dir)/initdb" ]] || missing+=(postgresql)
[[ -n "$(pg_bin_dir)" && -x "$(pg_bin_dir)/pgbench" ]] || missing+=(postgresql-contrib)
if ((${#missing[@]})); then
  [[ "$(id -u)" == 0 ]] || die "missing ${missing[*]}: run as root or install them"
  log "installing ${missing[*]} (apt-get)"
  # Keep the packages' own services (redis on 6379, a 'main' cluster on 5432) from starting.
  policy=/usr/sbin/policy-rc.d
  own_policy=""
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  if [[ -n "$own_policy" ]]; then rm -f "$policy"; fi
fi
pg_bin="$(pg_bin_dir)"
[[ -x "$pg_bin/initdb" ]] || die "no initdb under /usr/lib/postgresql/*/bin"

# ---------------------------------------------------------------- build
if [[ -n "${SEQD_BIN:-}" ]]; then
  seqd="$SEQD_BIN"
else
  log "building seqd (cargo build --release --bin seqd)"
  (cd "$root" && cargo build --release --bin seqd >&2)
  seqd="${CARGO_TARGET_DIR:-$root/target}/release/seqd"
  [[ "$seqd" = /* ]] || seqd="$root/$seqd"
fi
[[ -x "$seqd" ]] || die "no seqd binary at $seqd"
# A private copy: a build in the same target dir during the run must not change the binary.
cp "$seqd" "$work/seqd" && seqd="$work/seqd"
if [[ "$(stat -f -c %T "$work")" == tmpfs ]]; then
  log "warning: $work is on tmpfs, where fsync costs nothing; set TMPDIR to a disk"
fi

# ---------------------------------------------------------------- helpers
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Ports below the kernel's ephemeral range: a port in it may be the local end of one of the
# clients' connections by the time a server binds it. (A lease server once did not come up
# in a run, its log gone with the temp dir; this is the likeliest cause, not a proven one.)
ephemeral_low="$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
((ephemeral_low > 12000)) || ephemeral_low=32768
next_port=$((10000 + RANDOM % (ephemeral_low - 12000)))
free_port() { # VAR: sets it to a port nothing listens on (not in $(...): it counts up)
  while listening "$next_port"; do next_port=$((next_port + 1)); done
  printf -v "$1" '%s' "$next_port"
  next_port=$((next_port + 1))
}
wait_for() { # what, log, command...
  local what=$1 logfile=$2; shift 2
  for _ in $(seq 1 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  [[ -f "$logfile" ]] && tail -20 "$logfile" >&2
  die "$what did not come up"
}
as_pg() {
  if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}
http_ok() ( # port path: 200? (a subshell: a refused connection must not end the script)
  exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
  read -r _ status _ <&3 || true
  [[ "${status:-}" == 200 ]]
)
stop_pid() { # stops one process this script started and forgets it
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local keep=() p
  for p in "${pids[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
  pids=("${keep[@]}")
}

declare -A RPS P99
failed=0

# redis-benchmark ... --csv: "test","rps","avg","min","p50","p95","p99","max".
rb() { # key port pipeline args...
  local key=$1 port=$2 pipeline=$3; shift 3
  local out
  if ! out="$(redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" -n "$N" -P "$pipeline" --csv "$@" 2>&1)"; then
    log "redis-benchmark $* failed: $out"; failed=1; RPS[$key]=FAIL; P99[$key]=-; return
  fi
  local line
  line="$(printf '%s\n' "$out" | tail -1 | tr -d '"\r')"
  RPS[$key]="$(echo "$line" | awk -F, '{printf "%.0f", $2}')"
  P99[$key]="$(echo "$line" | awk -F, '{print ($7 == "" ? "-" : $7)}')"
  log "$key: ${RPS[$key]} rps, p99 ${P99[$key]} ms (redis-benchmark -P $pipeline $*)"
}

# seqd bench --json: the pretty JSON has one field per line.
sb() { # key port pipeline args...
  local key=$1 port=$2 pipeline=$3; shift 3
  local json="$work/last.json" err="$work/last.err"
  local bounds=(-n "$N")
  [[ " $* " == *" --duration "* ]] && bounds=()
  if ! "$seqd" bench --host 127.0.0.1 -p "$port" -c "$CLIENTS" -P "$pipeline" "${bounds[@]}" \
       --json -q "$@" >"$json" 2>"$err"; then
    log "seqd bench $* FAILED:"; cat "$err" >&2; failed=1
  fi
  RPS[$key]="$(awk -F': ' '/"requests_per_sec"/ {gsub(/,/, "", $2); printf "%.0f", $2; exit}' "$json")"
  P99[$key]="$(awk -F': ' '/"p99"/ {gsub(/,/, "", $2); printf "%.3f", $2; exit}' "$json")"
  local errors
  errors="$(awk -F': ' '/"total"/ {gsub(/,/, "", $2); print $2; exit}' "$json")"
  [[ -n "${RPS[$key]}" ]] || { RPS[$key]=FAIL; P99[$key]=-; }
  log "$key: ${RPS[$key]} rps, p99 ${P99[$key]} ms, ${errors:-?} error replies (seqd bench -P $pipeline $*)"
}

# The W5 workloads, with both clients, against a server speaking `kind`. The 100,000-key
# cells run on fresh storage (keys never used: their own sequence, or key prefix, per cell;
# redis-benchmark only) and warm (after a pass that touched ~95 % of the keys).
w5() { # server-name port kind(seqd|redis)
  local name=$1 port=$2 kind=$3 p
  for p in 16 1; do
    if [[ $kind == seqd ]]; then
      rb "$name|fresh|$p|rb" "$port" "$p" -r "$KEYS" NEXT __rand_int__ "$((p == 16 ? 1 : 2))"
    else
      rb "$name|fresh|$p|rb" "$port" "$p" -r "$KEYS" INCR "fresh$p:__rand_int__"
    fi
  done
  if [[ $kind == seqd ]]; then
    rb "$name|warmup" "$port" 16 -r "$KEYS" NEXT __rand_int__ 0
  else
    rb "$name|warmup" "$port" 16 -r "$KEYS" INCR key:__rand_int__
  fi
  for p in 16 1; do
    if [[ $kind == seqd ]]; then
      rb "$name|hot|$p|rb" "$port" "$p" GETSEQ
      rb "$name|keys|$p|rb" "$port" "$p" -r "$KEYS" NEXT __rand_int__ 0
      sb "$name|hot|$p|sb" "$port" "$p" --command getseq
      sb "$name|keys|$p|sb" "$port" "$p" --workspaces "$KEYS"
    else
      rb "$name|hot|$p|rb" "$port" "$p" INCR k
      rb "$name|keys|$p|rb" "$port" "$p" -r "$KEYS" INCR key:__rand_int__
      sb "$name|hot|$p|sb" "$port" "$p" --command incr
      sb "$name|keys|$p|sb" "$port" "$p" --command incr --workspaces "$KEYS"
    fi
  done
}

# Other work on the machine disturbs the figures: every 2 s, note the load and which other
# programs are running (state R) at that instant.
started="$(date -u '+%Y-%m-%d %H:%M UTC')"
(
  ours='^(seqd|redis-.*|postgres|pgbench|psql|ps|awk|bash|sleep|cut|sort|tr)$'
  while :; do
    # Kernel threads (children of kthreadd, pid 2) are left out.
    others="$(ps -eo stat=,ppid=,comm= | awk -v ours="$ours" \
      '$1 ~ /^R/ && $2 != 2 && $2 != 0 && $3 !~ ours {print $3}' |
      sort -u | tr '\n' ',')"
    echo "$(cut -d' ' -f1 /proc/loadavg) ${others:-,}"
    sleep 2
  done
) >"$work/busy" 2>/dev/null &
sampler=$!; pids+=("$sampler")

# ---------------------------------------------------------------- seqd
for mode in sync lease; do
  runs seqd || break
  free_port port; free_port admin
  log "seqd --durability $mode on 127.0.0.1:$port"
  SEQD_LOG=warn "$seqd" serve --data-dir "$work/seqd-$mode" --host 127.0.0.1 --port "$port" \
    --admin-port "$admin" --durability "$mode" >"$work/seqd-$mode.log" 2>&1 &
  pid=$!; pids+=("$pid")
  wait_for "seqd ($mode)" "$work/seqd-$mode.log" http_ok "$admin" /readyz
  w5 "$mode" "$port" seqd
  sb "$mode|pg" "$port" 1 --threads 2 --duration "$PG_SECS"
  sb "$mode|pg16" "$port" 16 --threads 2 --duration "$PG_SECS"
  stop_pid "$pid"
done

# ---------------------------------------------------------------- Redis
for fsync in always everysec; do
  runs redis || break
  free_port port
  mkdir -p "$work/redis-$fsync"
  log "redis-server appendfsync $fsync on 127.0.0.1:$port"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$work/redis-$fsync" --save '' \
    --appendonly yes --appendfsync "$fsync" --daemonize no \
    --logfile "$work/redis-$fsync.log" &
  pid=$!; pids+=("$pid")
  wait_for "redis-server ($fsync)" "$work/redis-$fsync.log" redis-cli -h 127.0.0.1 -p "$port" ping
  w5 "$fsync" "$port" redis
  stop_pid "$pid"
done

# ---------------------------------------------------------------- PostgreSQL
pg_version=-
if runs pg; then
  # Everything of PostgreSQL's under one directory its user owns: data, socket, logs.
  pg_run="$work/pg"
  pg_data="$pg_run/data"
  free_port pg_port
  mkdir -p "$pg_run/pgbench"
  if [[ "$(id -u)" == 0 ]]; then chown -R postgres "$pg_run"; fi
  log "PostgreSQL ($("$pg_bin/postgres" --version)) on 127.0.0.1:$pg_port"
  as_pg "$pg_bin/initdb" -D "$pg_data" -U postgres -A trust >"$work/initdb.log" 2>&1 ||
    { cat "$work/initdb.log" >&2; die "initdb failed"; }
  as_pg "$pg_bin/pg_ctl" -D "$pg_data" -l "$pg_run/server.log" -w -o \
    "-p $pg_port -c listen_addresses=127.0.0.1 -k $pg_run -c fsync=on -c max_connections=200" \
    start >/dev/null || { cat "$pg_run/server.log" >&2; die "PostgreSQL did not start"; }
  psql_() { psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres "$@"; }
  psql_ -c 'CREATE SEQUENCE s' >/dev/null
  echo "SELECT nextval('s');" >"$work/nextval.sql"
  pg_out="$(cd "$pg_run/pgbench" && as_pg pgbench -n -c "$CLIENTS" -j 2 -T "$PG_SECS" -f "$work/nextval.sql" \
    -l -h 127.0.0.1 -p "$pg_port" -U postgres postgres 2>&1)" || { echo "$pg_out" >&2; die "pgbench failed"; }
  RPS[pg]="$(echo "$pg_out" | awk '/^tps = / {printf "%.0f", $3; exit}')"
  # Per-transaction log lines: client, transaction, latency (us), script, epoch, us.
  P99[pg]="$(cat "$pg_run"/pgbench/pgbench_log.* | awk '{print $3}' | sort -n |
    awk '{v[NR] = $1} END {i = int(NR * 0.99); if (i < 1) i = 1; printf "%.3f", v[i] / 1000}')"
  log "pg: ${RPS[pg]} tps, p99 ${P99[pg]} ms"
  # The same with 16 nextval per round trip (pgbench's pipeline mode, PostgreSQL >= 14):
  # the like-for-like partner of seqd at -P 16. A pgbench "transaction" is then 16 calls.
  { echo '\startpipeline'; for _ in $(seq 16); do echo "SELECT nextval('s');"; done
    echo '\endpipeline'; } >"$work/nextval16.sql"
  rm -f "$pg_run"/pgbench/pgbench_log.*
  pg_out="$(cd "$pg_run/pgbench" && as_pg pgbench -n -M extended -c "$CLIENTS" -j 2 -T "$PG_SECS" \
    -f "$work/nextval16.sql" -l -h 127.0.0.1 -p "$pg_port" -U postgres postgres 2>&1)" ||
    { echo "$pg_out" >&2; die "pgbench (pipeline) failed"; }
  RPS[pg16]="$(echo "$pg_out" | awk '/^tps = / {printf "%.0f", $3 * 16; exit}')"
  P99[pg16]="$(cat "$pg_run"/pgbench/pgbench_log.* | awk '{print $3}' | sort -n |
    awk '{v[NR] = $1} END {i = int(NR * 0.99); if (i < 1) i = 1; printf "%.3f", v[i] / 1000}')"
  log "pg16: ${RPS[pg16]} nextval/s, p99 ${P99[pg16]} ms per pipeline of 16"
  pg_version="$(psql_ -t -A -c 'SHOW server_version' | cut -d' ' -f1)"
  as_pg "$pg_bin/pg_ctl" -D "$pg_data" -m fast -w stop >/dev/null
fi
stop_pid "$sampler"
busy="$(awk '{n++; if ($1 > l) l = $1; if ($2 != ",") c++; k = split($2, p, ",");
    for (i = 1; i <= k; i++) if (p[i] != "") seen[p[i]]++}
  END {s = ""; for (x in seen) s = s sprintf("%s%s %d", (s == "" ? "" : ", "), x, seen[x]);
    printf "other programs were running in %d of %d 2-second samples (%s); peak load average %s",
      c, n, (s == "" ? "none" : s), l}' "$work/busy")"

# ---------------------------------------------------------------- table
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f×", a / b; else print "-" }'; }
row() { # case client seqd-key other-key
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "${RPS[$3]:--}" "${RPS[$4]:--}" \
    "$(ratio "${RPS[$3]:-}" "${RPS[$4]:-}")" "${P99[$3]:--}" "${P99[$4]:--}"
}
cpu="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
mem="$(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
table="$work/table.md"
{
  echo "Machine: $(nproc) CPUs ($cpu), $mem, Linux $(uname -r); $started."
  echo "seqd $("$seqd" --version | cut -d' ' -f2) (release), $(redis-server --version | cut -d' ' -f1-3),"
  echo "PostgreSQL $pg_version; N=$N requests per W5 case, -c $CLIENTS, pgbench -T $PG_SECS."
  echo "During the run $busy."
  echo
  echo "| case | client | seqd rps | other rps | ratio | seqd p99 ms | other p99 ms |"
  echo "|---|---|---|---|---|---|---|"
  for pair in "sync always" "lease everysec"; do
    read -r mode fsync <<<"$pair"
    for w in "hot|16|1 key, -P 16" "hot|1|1 key, -P 1" "fresh|16|100k keys fresh, -P 16" \
      "fresh|1|100k keys fresh, -P 1" "keys|16|100k keys warm, -P 16" "keys|1|100k keys warm, -P 1"; do
      IFS='|' read -r load p what <<<"$w"
      for c in "rb|redis-benchmark" "sb|seqd bench"; do
        IFS='|' read -r ck cname <<<"$c"
        # The fresh cells are redis-benchmark's only.
        [[ $load == fresh && $ck == sb ]] && continue
        row "W5 $mode vs Redis $fsync, $what" "$cname" "$mode|$load|$p|$ck" "$fsync|$load|$p|$ck"
      done
    done
  done
  row "W6 sync vs PostgreSQL nextval, 1 key, -P 1" "seqd bench / pgbench" "sync|pg" pg
  row "W6 lease vs PostgreSQL nextval, 1 key, -P 1" "seqd bench / pgbench" "lease|pg" pg
  row "W6 sync vs PostgreSQL nextval, 1 key, -P 16" "seqd bench / pgbench pipeline" "sync|pg16" pg16
  row "W6 lease vs PostgreSQL nextval, 1 key, -P 16" "seqd bench / pgbench pipeline" "lease|pg16" pg16
} >"$table"
echo
cat "$table"
if [[ -n "${OUT:-}" ]]; then cp "$table" "$OUT"; log "table written to $OUT"; fi
((failed == 0)) || die "some runs failed (see above)"
