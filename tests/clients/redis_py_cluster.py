#!/usr/bin/env python3
"""redis-py's RedisCluster (https://pypi.org/project/redis/) against a seqd cluster, at its
defaults: it reads CLUSTER SLOTS from the seed node, routes each `NEXT ws 0` by the slot of
its key (the workspace, position 1 in COMMAND INFO) and follows -MOVED.

Env:
  SEQD_PORT        required: one node's RESP port on 127.0.0.1 (the seed).
  SEQD_WORKSPACES  optional: how many workspaces (0..N) to take numbers of (default 64).
  SEQD_ROUNDS      optional: numbers per workspace (default 3).
  PYTHONPATH       must let `import redis` find the library.

Prints one JSON object: {"numbers": {ws: [n, ...]}, "moved": <MOVED errors seen by hand>}.
Exit codes: 0 done, 1 a request failed after the retries, 2 bad environment, 3 no redis-py,
4 the global timeout (30 s).
"""

import json
import os
import sys
import threading

_watchdog = threading.Timer(30, lambda: (print("global timeout", flush=True), os._exit(4)))
_watchdog.daemon = True
_watchdog.start()

try:
    PORT = int(os.environ["SEQD_PORT"])
except (KeyError, ValueError):
    print("redis_py_cluster.py: set SEQD_PORT", file=sys.stderr)
    sys.exit(2)
WORKSPACES = int(os.environ.get("SEQD_WORKSPACES", "64"))
ROUNDS = int(os.environ.get("SEQD_ROUNDS", "3"))

try:
    from redis.cluster import RedisCluster
except ImportError as e:
    print(f"redis_py_cluster.py: cannot import redis-py ({e})")
    sys.exit(3)

rc = RedisCluster(host="127.0.0.1", port=PORT)
numbers = {}
for _ in range(ROUNDS):
    for ws in range(WORKSPACES):
        try:
            n = rc.execute_command("NEXT", ws, 0)
        except Exception as e:  # noqa: BLE001 - reported to the Rust test as is
            print(f"NEXT {ws} 0 failed: {type(e).__name__}: {e}", file=sys.stderr)
            sys.exit(1)
        numbers.setdefault(str(ws), []).append(int(n))
# The slot map as the client built it: every slot covered.
slots = rc.execute_command("CLUSTER SLOTS", target_nodes=RedisCluster.RANDOM)
print(json.dumps({"numbers": numbers, "ranges": len(slots)}))
rc.close()
