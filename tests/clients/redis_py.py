#!/usr/bin/env python3
"""redis-py (https://pypi.org/project/redis/) against a running `seqd serve`.

Env contract (see tests/clients/README.md):
  SEQD_PORT        required: the daemon's RESP port on 127.0.0.1.
  SEQD_AUTH        optional: the daemon's --auth-token; when set, the auth checks run too.
  PYTHONPATH       must let `import redis` find the library (CI: $SEQD_CLIENTS_DIR/py).
  SEQD_CLIENT_TIMEOUT  optional: seconds before the whole script gives up (default 20).
  SEQD_FAKE_REDIS  optional, =1: talk to a real Redis server instead, with NEXT/PEEK/GETSEQ
                   mapped to INCRBY on keys `seqd:*` (only to validate this script's use of
                   the library; never used by the Rust tests).

Two passes: the client at its defaults (redis-py 8 sends `HELLO 3`, i.e. RESP3), then the
same checks with protocol=2. One line per check; exit 0 when all passed, 1 when any failed,
2 on a bad environment, 3 when redis-py cannot be imported, 4 on the global timeout.
"""

import asyncio
import faulthandler
import os
import sys
import threading
import time
import traceback

TIMEOUT = float(os.environ.get("SEQD_CLIENT_TIMEOUT", "20"))


def _give_up():
    print(f"FAIL redis-py: global timeout of {TIMEOUT:.0f}s; threads:", flush=True)
    faulthandler.dump_traceback(file=sys.stdout, all_threads=True)
    sys.stdout.flush()
    os._exit(4)


_watchdog = threading.Timer(TIMEOUT, _give_up)
_watchdog.daemon = True
_watchdog.start()

try:
    PORT = int(os.environ["SEQD_PORT"])
except (KeyError, ValueError):
    print("redis_py.py: set SEQD_PORT to the daemon's RESP port", file=sys.stderr)
    sys.exit(2)
AUTH = os.environ.get("SEQD_AUTH") or None
FAKE = os.environ.get("SEQD_FAKE_REDIS") == "1"
HOST = "127.0.0.1"

try:
    import redis
    import redis.asyncio
    import redis.exceptions
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as e:
    print(f"redis_py.py: cannot import redis-py ({e}); PYTHONPATH={os.environ.get('PYTHONPATH')}")
    sys.exit(3)


# The seqd commands, as argument lists, and how to turn a reply into the number the check
# wants. Under SEQD_FAKE_REDIS they become INCRBY on a real Redis.
def next_args(ws, seq, count=None):
    if FAKE:
        return ("INCRBY", f"seqd:{ws}:{seq}", count or 1)
    return ("NEXT", ws, seq) if count is None else ("NEXT", ws, seq, count)


def next_first(reply, count=None):
    """NEXT's reply is the first number; INCRBY's is the last."""
    return reply - (count or 1) + 1 if FAKE else reply


def peek_args(ws, seq):
    return ("INCRBY", f"seqd:{ws}:{seq}", 0) if FAKE else ("PEEK", ws, seq)


def peek_value(reply):
    return reply + 1 if FAKE else reply


def getseq_args():
    return ("INCR", "seqd:getseq") if FAKE else ("GETSEQ",)


def bad_args(ws):
    """A command with a bad argument: seqd rejects `NEXT ws x` when it is queued in MULTI.
    (Redis checks only arity when queueing, so the fake uses a wrong arity.)"""
    return ("INCRBY", f"seqd:{ws}:1") if FAKE else ("NEXT", ws, "x")


def bad_reply_args():
    return ("INCRBY", "seqd:1:1", "x") if FAKE else ("NEXT", 1, "x")


BAD_REPLY_TEXT = "not an integer" if FAKE else "sequence"

failures = []
passed = []


def check(label, fn):
    try:
        detail = fn()
    except Exception as e:  # noqa: BLE001 -- every failure is reported, then the next check runs
        failures.append(label)
        print(f"FAIL {label}: {type(e).__name__}: {e}")
        traceback.print_exc(limit=3, file=sys.stdout)
        return False
    passed.append(label)
    print(f"ok   {label}" + (f": {detail}" if detail is not None else ""))
    return True


def expect(cond, message):
    if not cond:
        raise AssertionError(message)


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def text(v):
    return v.decode() if isinstance(v, bytes) else v


def peek(r, ws, seq):
    v = peek_value(r.execute_command(*peek_args(ws, seq)))
    expect(is_int(v), f"PEEK {ws} {seq} should reply an integer, got {v!r}")
    return v


def client(**extra):
    """The client at its defaults but for host, port, password and the pass's protocol."""
    kwargs = {"host": HOST, "port": PORT}
    kwargs.update(extra)
    return redis.Redis(**kwargs)


def run_pass(name, proto_kwargs):
    p = f"[{name}]"
    r = client(password=AUTH, **proto_kwargs)
    try:

        def connect():
            expect(r.ping() is True, "PING should reply PONG (ping() -> True)")
            conn = r.connection_pool.get_connection()
            try:
                proto, meta = conn.protocol, getattr(conn, "handshake_metadata", None)
            finally:
                r.connection_pool.release(conn)
            if meta:
                meta = {text(k): text(v) for k, v in meta.items()}
                expect(
                    str(meta.get("proto")) == "3",
                    f"HELLO 3 should answer a map with proto 3, got {meta!r}",
                )
            return f"protocol {proto}, HELLO map {meta}"

        if not check(f"{p} connect + ping", connect):
            print(f"FAIL {p} not connected; the other checks of this pass are skipped")
            failures.append(f"{p} (rest of pass)")
            return

        def next_5():
            v = r.execute_command(*next_args(42, 5))
            expect(is_int(v), f"NEXT 42 5 should reply an integer, got {v!r}")
            return next_first(v)

        check(f"{p} NEXT 42 5 -> int", next_5)

        def getseq():
            a = r.execute_command(*getseq_args())
            b = r.execute_command(*getseq_args())
            expect(is_int(a) and is_int(b), f"GETSEQ should reply integers, got {a!r}, {b!r}")
            expect(b > a, f"a second GETSEQ should reply more than the first: {a} then {b}")
            return f"{a}, {b}"

        check(f"{p} GETSEQ twice -> increasing", getseq)

        def next_count():
            first = next_first(r.execute_command(*next_args(7, 1, 10)), 10)
            expect(is_int(first), f"NEXT 7 1 10 should reply an integer, got {first!r}")
            after = peek(r, 7, 1)
            expect(after == first + 10, f"PEEK 7 1 after NEXT 7 1 10 -> {first}: want {first + 10}, got {after}")
            return f"first {first}, PEEK {after}"

        check(f"{p} NEXT 7 1 10 then PEEK 7 1 = first + 10", next_count)

        def pipeline_100():
            with r.pipeline(transaction=False) as pipe:
                for _ in range(100):
                    pipe.execute_command(*next_args(8, 1))
                got = [next_first(v) for v in pipe.execute()]
            expect(len(got) == 100 and all(is_int(v) for v in got), f"100 integers expected, got {got!r}")
            expect(got == list(range(got[0], got[0] + 100)), f"not consecutive: {got!r}")
            return f"{got[0]}..{got[-1]}"

        check(f"{p} pipeline(transaction=False) of 100 NEXT 8 1 -> consecutive", pipeline_100)

        def multi_10():
            with r.pipeline() as pipe:  # transaction=True: MULTI ... EXEC
                for _ in range(10):
                    pipe.execute_command(*next_args(9, 1))
                got = [next_first(v) for v in pipe.execute()]
            expect(len(got) == 10 and all(is_int(v) for v in got), f"10 integers expected, got {got!r}")
            expect(got == list(range(got[0], got[0] + 10)), f"not consecutive: {got!r}")
            return f"{got[0]}..{got[-1]}"

        check(f"{p} pipeline() (MULTI/EXEC) of 10 NEXT 9 1 -> consecutive", multi_10)

        def multi_invalid():
            before = peek(r, 9, 1)
            try:
                with r.pipeline() as pipe:
                    pipe.execute_command(*next_args(9, 1))
                    pipe.execute_command(*bad_args(9))
                    pipe.execute_command(*next_args(9, 1))
                    got = pipe.execute()
            except redis.exceptions.ResponseError as e:
                err = e
            else:
                raise AssertionError(f"EXEC should fail (EXECABORT), it replied {got!r}")
            after = peek(r, 9, 1)
            expect(after == before, f"EXECABORT must use no numbers: PEEK 9 1 was {before}, now {after}")
            expect(r.ping() is True, "the connection should still work after EXECABORT")
            return f"{type(err).__name__}: {err}; PEEK 9 1 stays {after}"

        check(f"{p} MULTI with an invalid command -> EXECABORT, nothing used", multi_invalid)

        def raw_execabort_and_discard():
            # One connection, the commands by hand, to see each reply of the transaction.
            conn = r.connection_pool.get_connection()
            try:
                before = peek(r, 9, 1)
                conn.send_command("MULTI")
                expect(text(conn.read_response()) in ("OK", True), "MULTI should reply OK")
                conn.send_command(*next_args(9, 1))
                expect(text(conn.read_response()) == "QUEUED", "a queued command should reply QUEUED")
                conn.send_command(*bad_args(9))
                try:
                    bad = conn.read_response()
                except redis.exceptions.ResponseError as e:
                    bad = e
                expect(
                    isinstance(bad, redis.exceptions.ResponseError),
                    f"an invalid command in MULTI should reply an error, got {bad!r}",
                )
                conn.send_command("EXEC")
                try:
                    got = conn.read_response()
                except redis.exceptions.ExecAbortError as e:
                    abort = e
                else:
                    raise AssertionError(f"EXEC should reply EXECABORT, got {got!r}")
                conn.send_command("MULTI")
                conn.read_response()
                conn.send_command(*next_args(9, 1))
                expect(text(conn.read_response()) == "QUEUED", "a queued command should reply QUEUED")
                conn.send_command("DISCARD")
                expect(text(conn.read_response()) in ("OK", True), "DISCARD should reply OK")
            except BaseException:
                conn.disconnect()  # it may be inside MULTI: not for the next check
                raise
            finally:
                r.connection_pool.release(conn)
            after = peek(r, 9, 1)
            expect(after == before, f"EXECABORT and DISCARD must use no numbers: PEEK 9 1 {before} -> {after}")
            return f"queue-time error: {bad}; EXEC: ExecAbortError: {abort}; DISCARD OK"

        check(f"{p} MULTI by hand: QUEUED, error, EXECABORT; DISCARD", raw_execabort_and_discard)

        def error_reply():
            try:
                got = r.execute_command(*bad_reply_args())
            except redis.exceptions.ResponseError as e:
                expect(BAD_REPLY_TEXT in str(e), f"the error should mention {BAD_REPLY_TEXT!r}: {e}")
                expect(r.ping() is True, "the connection should still work after an error reply")
                return str(e)
            raise AssertionError(f"NEXT 1 x should reply an error, got {got!r}")

        check(f"{p} NEXT 1 x -> ResponseError", error_reply)

        def info():
            d = r.info()
            expect(isinstance(d, dict), f"info() should give a dict, got {type(d).__name__}")
            expect("redis_version" in d, f"INFO should have redis_version: {sorted(d)[:20]}")
            expect(d.get("loading") == 0, f"INFO should have loading:0, got {d.get('loading')!r}")
            return f"redis_version {d['redis_version']}, {len(d)} fields"

        check(f"{p} info() has redis_version and loading 0", info)

        def echo():
            v = r.echo("hello seqd")
            expect(text(v) == "hello seqd", f"ECHO should return its argument, got {v!r}")

        check(f"{p} echo", echo)

        def server_time():
            v = r.time()
            expect(
                isinstance(v, tuple) and len(v) == 2 and all(is_int(x) for x in v),
                f"time() should give (seconds, microseconds), got {v!r}",
            )
            expect(abs(v[0] - time.time()) < 300, f"TIME {v} is far from this machine's clock")
            expect(0 <= v[1] < 1_000_000, f"TIME's microseconds out of range: {v}")
            return v

        check(f"{p} time()", server_time)

        def dbsize():
            v = r.dbsize()
            expect(is_int(v) and v >= 0, f"DBSIZE should reply an integer >= 0, got {v!r}")
            return v

        check(f"{p} dbsize()", dbsize)

        def client_cmds():
            cid = r.client_id()
            expect(is_int(cid) and cid > 0, f"CLIENT ID should reply a positive integer, got {cid!r}")
            expect(r.client_setname("seqd-redis-py") is True, "CLIENT SETNAME should reply OK")
            name = r.client_getname()
            expect(text(name) == "seqd-redis-py", f"CLIENT GETNAME: want seqd-redis-py, got {name!r}")
            info = r.client_info()
            expect(isinstance(info, dict) and str(info.get("id")) == str(cid), f"CLIENT INFO {info!r}")
            listed = r.client_list()
            expect(
                isinstance(listed, list) and any(str(c.get("id")) == str(cid) for c in listed),
                f"CLIENT LIST should show this connection (id {cid}): {listed!r}",
            )
            return f"id {cid}, name {text(name)}, {len(listed)} in CLIENT LIST"

        check(f"{p} client_id/setname/getname/info/list", client_cmds)

        def select0():
            v = r.execute_command("SELECT", 0)
            expect(v is True or text(v) == "OK", f"SELECT 0 should reply OK, got {v!r}")

        check(f"{p} SELECT 0", select0)

        if AUTH:
            # redis-py 8 retries a failed connect 10 times with backoff (seconds in all);
            # the clients meant to fail do not retry.
            no_retry = {"retry": Retry(NoBackoff(), 0)}

            def no_password():
                bare = client(**no_retry, **proto_kwargs)
                try:
                    got = bare.execute_command(*next_args(42, 5))
                except redis.exceptions.AuthenticationError as e:
                    return f"AuthenticationError: {e}"
                except redis.exceptions.ResponseError as e:
                    expect("NOAUTH" in str(e), f"want NOAUTH, got ResponseError: {e}")
                    return f"ResponseError: {e}"
                finally:
                    bare.close()
                raise AssertionError(f"NEXT without a password should fail with NOAUTH, got {got!r}")

            check(f"{p} no password -> NOAUTH", no_password)

            def wrong_password():
                wrong = client(password=AUTH + "-wrong", **no_retry, **proto_kwargs)
                try:
                    got = wrong.ping()
                except redis.exceptions.AuthenticationError as e:
                    return f"AuthenticationError: {e}"
                finally:
                    wrong.close()
                raise AssertionError(f"a wrong password should fail to connect, PING gave {got!r}")

            check(f"{p} wrong password -> AuthenticationError", wrong_password)

            def user_default():
                named = client(username="default", password=AUTH, **proto_kwargs)
                try:
                    expect(named.ping() is True, "PING as user default should reply PONG")
                finally:
                    named.close()

            check(f"{p} user default + token", user_default)

        def asyncio_next():
            async def go():
                ar = redis.asyncio.Redis(host=HOST, port=PORT, password=AUTH, **proto_kwargs)
                try:
                    return await ar.execute_command(*next_args(42, 6))
                finally:
                    await ar.aclose()

            v = asyncio.run(go())
            expect(is_int(v), f"redis.asyncio NEXT 42 6 should reply an integer, got {v!r}")
            return next_first(v)

        check(f"{p} redis.asyncio NEXT 42 6 -> int", asyncio_next)
    finally:
        r.close()


print(f"redis-py {redis.__version__} against 127.0.0.1:{PORT}" + (" (fake: real Redis)" if FAKE else ""))
run_pass("default", {})
run_pass("protocol=2", {"protocol": 2})
_watchdog.cancel()
print(f"redis-py: {len(passed)} passed, {len(failures)} failed")
for label in failures:
    print(f"  failed: {label}")
sys.exit(1 if failures else 0)
