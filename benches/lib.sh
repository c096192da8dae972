# Shared by the scripts in benches/ (sourced, after `set -euo pipefail`): a
# temporary directory and every process started in it, stopped and removed on exit, Ctrl-C
# or failure; free loopback ports; seqd, Redis and etcd started and waited for.

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# redis_fsync MODE: the Redis appendfsync seqd's durability MODE is compared with.
redis_fsync() {
  case "$1" in
    sync) echo always ;;
    lease) echo everysec ;;
    *) echo "mode must be sync or lease" >&2; return 2 ;;
  esac
}

# start_seqd NAME BIN MODE: `BIN serve` on loopback, data in $work/NAME, until /readyz
# answers (at most 20 s). Sets `port` and `seqd_pid` (not for use in a command substitution:
# `pids` must see the pid, or cleanup would not stop the server).
start_seqd() {
  local admin
  port=$(free_port); admin=$(free_port)
  SEQD_LOG=warn "$2" serve --host 127.0.0.1 --port "$port" --admin-port "$admin" \
    --durability "$3" --data-dir "$work/$1" >"$work/$1.log" 2>&1 &
  seqd_pid=$!
  pids+=("$seqd_pid")
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break
    sleep 0.1
  done
}

# start_redis FSYNC: redis-server with the AOF on and that appendfsync, until it answers
# PING (at most 10 s). Sets `redis_port`.
start_redis() {
  redis_port=$(free_port)
  redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly yes \
    --appendfsync "$1" --dir "$work" --daemonize no --logfile "$work/redis.log" &
  pids+=($!)
  for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
}

# start_etcd: one etcd member on loopback (1-second leases allowed, compaction on), until it
# answers /health (at most 10 s). Sets `etcd_port`.
start_etcd() {
  local peer
  etcd_port=$(free_port); peer=$(free_port)
  etcd --name bench --data-dir "$work/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "bench=http://127.0.0.1:$peer" --initial-cluster-state new \
    --heartbeat-interval 50 --election-timeout 500 \
    --auto-compaction-mode revision --auto-compaction-retention 10000 \
    --log-level error >"$work/etcd.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$etcd_port/health" >/dev/null && break; sleep 0.1; done
}

# start_node BIN MODE PARTITIONS ID [FLAGS...]: a cluster node on the etcd of start_etcd
# (cluster `bench`, lease TTL 2 s). Appends its ports to `node_ports` and `node_admins`.
node_ports=(); node_admins=()
start_node() {
  local bin=$1 mode=$2 partitions=$3 id=$4 p a
  shift 4
  p=$(free_port); a=$(free_port)
  SEQD_LOG=warn "$bin" serve --host 127.0.0.1 --port "$p" --admin-port "$a" --durability "$mode" \
    --etcd "http://127.0.0.1:$etcd_port" --cluster bench --node-id "$id" \
    --partitions "$partitions" --lease-ttl 2 "$@" >"$work/$id.log" 2>&1 &
  pids+=($!)
  node_ports+=("$p"); node_admins+=("$a")
}

# wait_placed PARTITIONS: until every node of start_node answers /readyz and every partition
# is owned (at most 30 s).
wait_placed() {
  local ok owned a
  for _ in $(seq 300); do
    ok=1
    for a in "${node_admins[@]}"; do curl -sf "http://127.0.0.1:$a/readyz" >/dev/null || ok=0; done
    owned=$(curl -sf "http://127.0.0.1:${node_admins[0]}/v1/cluster" | grep -o '"owner":"' | wc -l || true)
    ((ok == 1 && owned == $1)) && return
    sleep 0.1
  done
}
