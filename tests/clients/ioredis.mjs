// ioredis against a running `seqd serve`.
//
// Env contract (see tests/clients/README.md):
//   SEQD_PORT          required: the daemon's RESP port on 127.0.0.1.
//   SEQD_AUTH          optional: the daemon's --auth-token; when set, the auth checks run too.
//   SEQD_NODE_MODULES  the node_modules directory that holds `ioredis` (CI:
//                      $SEQD_CLIENTS_DIR/node/node_modules). ES modules ignore NODE_PATH, so
//                      the package is loaded from there with createRequire; when unset, the
//                      first entry of NODE_PATH, then $SEQD_CLIENTS_DIR/node/node_modules.
//   SEQD_CLIENT_TIMEOUT  optional: seconds before the whole script gives up (default 20).
//   SEQD_FAKE_REDIS    optional, =1: talk to a real Redis server instead, with NEXT/PEEK/GETSEQ
//                      mapped to INCRBY on keys `seqd:*` (only to validate this script).
//
// Two passes: `new Redis({ port, host, password })` at its defaults (ioredis 6: `HELLO 3`,
// RESP3, falling back to RESP2 only on NOPROTO or "unknown command 'HELLO'"; then its ready
// check sends INFO and waits while `loading:1`), then the same checks with the other protocol
// set explicitly. One line per check; exit 0 when all passed, 1 when any failed, 2 on a bad
// environment, 3 when the package cannot be loaded, 4 on the global timeout.

import {
  BAD_REPLY_TEXT, FAKE, badArgs, badReplyArgs, check, consecutive, errText, expect, failures, firstError,
  finish, getseqArgs, isInt, nextArgs, nextFirst, passed, peekArgs, peekValue, requireFrom, setup,
} from './harness.mjs';

const { PORT, AUTH, HOST } = setup('ioredis', 'ioredis.mjs');

let Redis, version, defaultProtocol;
try {
  const require = requireFrom('ioredis');
  Redis = require('ioredis');
  Redis = Redis.default ?? Redis;
  version = require('ioredis/package.json').version;
  try {
    defaultProtocol = require('ioredis/built/redis/RedisOptions').DEFAULT_REDIS_OPTIONS.protocol;
  } catch {
    defaultProtocol = undefined; // ioredis 5 had no option (RESP2 only); 6 has protocol: 3
  }
} catch (e) {
  console.log(`ioredis.mjs: cannot load ioredis: ${e.message}`);
  process.exit(3);
}
// The second pass sets the protocol that the default does not use.
const OTHER_PROTOCOL = (defaultProtocol ?? 3) === 3 ? 2 : 3;

/** [[err, value], ...] from pipeline/multi exec -> values; throws on the first error. */
function values(results) {
  expect(Array.isArray(results), `exec() should give an array, got ${JSON.stringify(results)}`);
  return results.map(([err, v], i) => {
    if (err) throw new Error(`command ${i + 1} failed: ${errText(err)}`);
    return v;
  });
}

// A client whose connect must fail: ioredis retries a failed handshake (with backoff), so
// take its first 'error' event, or the rejection of `command` if that comes first, then
// disconnect it (which also rejects what it still has queued).
async function connectError(options, command) {
  const c = new Redis(options);
  try {
    return await firstError(c, command, () => (command ? c.call(...command) : null));
  } finally {
    c.disconnect();
  }
}

async function runPass(name, extra) {
  const p = `[${name}]`;
  const c = new Redis({ port: PORT, host: HOST, password: AUTH, ...extra });
  const clientErrors = [];
  c.on('error', (e) => clientErrors.push(e));
  // A failed handshake or ready check makes ioredis reconnect (and hold commands) for long.
  const errorEvent = new Promise((resolve) => c.once('error', resolve));
  const wanted = extra.protocol ?? defaultProtocol;
  try {
    await check(`${p} connect (ready check) + ping`, async () => {
      const pong = await Promise.race([
        c.ping(),
        errorEvent.then((e) => { throw new Error(`connect failed: ${errText(e)}`); }),
      ]);
      expect(pong === 'PONG', `PING should reply PONG, got ${JSON.stringify(pong)}`);
      expect(c.status === 'ready', `status should be ready, is ${c.status}`);
      // ioredis drops to RESP2 silently when HELLO fails: make sure it did not.
      const used = c.condition?.protocol;
      expect(wanted === undefined || used === undefined || used === wanted, `asked for RESP${wanted}, connected with RESP${used}`);
      return `protocol ${used ?? '?'}${extra.protocol ? '' : ' (default)'}`;
    });
    if (c.status !== 'ready') {
      console.log(`FAIL ${p} not connected; the other checks of this pass are skipped`);
      failures.push(`${p} (rest of pass)`);
      return;
    }

    await check(`${p} call NEXT 42 5 -> int`, async () => {
      const v = await c.call(...nextArgs(42, 5));
      expect(isInt(v), `NEXT 42 5 should reply an integer, got ${JSON.stringify(v)}`);
      return nextFirst(v);
    });

    await check(`${p} GETSEQ twice -> increasing`, async () => {
      const a = await c.call(...getseqArgs());
      const b = await c.call(...getseqArgs());
      expect(isInt(a) && isInt(b), `GETSEQ should reply integers, got ${a}, ${b}`);
      expect(b > a, `a second GETSEQ should reply more than the first: ${a} then ${b}`);
      return `${a}, ${b}`;
    });

    await check(`${p} NEXT 7 1 10 then PEEK 7 1 = first + 10`, async () => {
      const first = nextFirst(await c.call(...nextArgs(7, 1, 10)), 10);
      const after = peekValue(await c.call(...peekArgs(7, 1)));
      expect(isInt(first) && after === first + 10, `NEXT 7 1 10 -> ${first}, then PEEK 7 1 -> ${after}`);
      return `first ${first}, PEEK ${after}`;
    });

    await check(`${p} pipeline() of 100 NEXT 8 1 -> consecutive`, async () => {
      const pipe = c.pipeline();
      for (let i = 0; i < 100; i++) pipe.call(...nextArgs(8, 1));
      const got = values(await pipe.exec()).map((v) => nextFirst(v));
      expect(got.length === 100 && got.every(isInt), `100 integers expected, got ${JSON.stringify(got)}`);
      expect(consecutive(got), `not consecutive: ${JSON.stringify(got)}`);
      return `${got[0]}..${got[99]}`;
    });

    await check(`${p} multi() (MULTI/EXEC) of 10 NEXT 9 1 -> consecutive`, async () => {
      const m = c.multi();
      for (let i = 0; i < 10; i++) m.call(...nextArgs(9, 1));
      const got = values(await m.exec()).map((v) => nextFirst(v));
      expect(got.length === 10 && got.every(isInt), `10 integers expected, got ${JSON.stringify(got)}`);
      expect(consecutive(got), `not consecutive: ${JSON.stringify(got)}`);
      return `${got[0]}..${got[9]}`;
    });

    await check(`${p} multi() with an invalid command -> EXECABORT, nothing used`, async () => {
      const before = peekValue(await c.call(...peekArgs(9, 1)));
      let err;
      try {
        const got = await c.multi().call(...nextArgs(9, 1)).call(...badArgs(9)).call(...nextArgs(9, 1)).exec();
        throw new Error(`exec() should reject (EXECABORT), it resolved ${JSON.stringify(got)}`);
      } catch (e) {
        if (e.message.startsWith('exec() should reject')) throw e;
        err = e;
      }
      expect(err.message.includes('EXECABORT'), `want EXECABORT, got ${errText(err)}`);
      const after = peekValue(await c.call(...peekArgs(9, 1)));
      expect(after === before, `EXECABORT must use no numbers: PEEK 9 1 was ${before}, now ${after}`);
      expect((await c.ping()) === 'PONG', 'the connection should still work after EXECABORT');
      const why = (err.previousErrors || []).map((e) => e.message).join('; ');
      return `${errText(err)} (${why}); PEEK 9 1 stays ${after}`;
    });

    await check(`${p} call NEXT 1 x rejects`, async () => {
      try {
        const got = await c.call(...badReplyArgs());
        throw new Error(`NEXT 1 x should reply an error, got ${JSON.stringify(got)}`);
      } catch (e) {
        expect(e.message.includes(BAD_REPLY_TEXT), `the error should mention '${BAD_REPLY_TEXT}': ${errText(e)}`);
        expect((await c.ping()) === 'PONG', 'the connection should still work after an error reply');
        return errText(e);
      }
    });

    await check(`${p} info() has redis_version and loading:0`, async () => {
      const info = await c.info();
      expect(typeof info === 'string' && /^redis_version:/m.test(info), `INFO without redis_version: ${String(info).slice(0, 200)}`);
      expect(/^loading:0\r?$/m.test(info), 'INFO should have loading:0');
      return info.match(/^redis_version:(.*?)\r?$/m)[1];
    });

    await check(`${p} echo, time, dbsize`, async () => {
      const e = await c.echo('hello seqd');
      expect(e === 'hello seqd', `ECHO should return its argument, got ${JSON.stringify(e)}`);
      const t = await c.time();
      expect(Array.isArray(t) && t.length === 2, `TIME should reply two values, got ${JSON.stringify(t)}`);
      expect(Math.abs(Number(t[0]) - Date.now() / 1000) < 300, `TIME ${JSON.stringify(t)} is far from this machine's clock`);
      const n = await c.dbsize();
      expect(isInt(n) && n >= 0, `DBSIZE should reply an integer >= 0, got ${JSON.stringify(n)}`);
      return `time ${JSON.stringify(t)}, dbsize ${n}`;
    });

    await check(`${p} CLIENT ID/SETNAME/GETNAME/INFO/LIST, SELECT 0`, async () => {
      const id = await c.client('ID');
      expect(isInt(id) && id > 0, `CLIENT ID should reply a positive integer, got ${JSON.stringify(id)}`);
      expect((await c.client('SETNAME', 'seqd-ioredis')) === 'OK', 'CLIENT SETNAME should reply OK');
      const name = await c.client('GETNAME');
      expect(name === 'seqd-ioredis', `CLIENT GETNAME: want seqd-ioredis, got ${JSON.stringify(name)}`);
      const info = await c.client('INFO');
      expect(typeof info === 'string' && info.includes(`id=${id} `), `CLIENT INFO should show id=${id}: ${info}`);
      const list = await c.client('LIST');
      expect(typeof list === 'string' && list.includes(`id=${id} `), `CLIENT LIST should show id=${id}: ${list}`);
      expect((await c.select(0)) === 'OK', 'SELECT 0 should reply OK');
      return `id ${id}`;
    });

    if (AUTH) {
      await check(`${p} no password -> NOAUTH`, async () => {
        const e = await connectError({ port: PORT, host: HOST, ...extra }, nextArgs(42, 5));
        expect(e instanceof Error && e.message.includes('NOAUTH'), `want NOAUTH, got ${errText(e)}`);
        return errText(e);
      });
      await check(`${p} wrong password -> fails to connect`, async () => {
        const e = await connectError({ port: PORT, host: HOST, password: `${AUTH}-wrong`, ...extra }, null);
        expect(e instanceof Error && /WRONGPASS|invalid password/i.test(e.message), `want WRONGPASS, got ${errText(e)}`);
        return errText(e);
      });
      await check(`${p} user default + token`, async () => {
        const named = new Redis({ port: PORT, host: HOST, username: 'default', password: AUTH, ...extra });
        const failed = new Promise((resolve) => named.on('error', resolve));
        try {
          const pong = await Promise.race([
            named.ping(),
            failed.then((e) => { throw new Error(`connect failed: ${errText(e)}`); }),
          ]);
          expect(pong === 'PONG', 'PING as user default should reply PONG');
        } finally {
          named.disconnect();
        }
      });
    }
    await check(`${p} no 'error' events on the client`, async () => {
      expect(clientErrors.length === 0, `'error' events: ${clientErrors.map(errText).join('; ')}`);
    });
  } finally {
    if (c.status === 'ready') await c.quit();
    else c.disconnect();
  }
}

console.log(`ioredis ${version} against ${HOST}:${PORT}${FAKE ? ' (fake: real Redis)' : ''}`);
await runPass('default', {});
await runPass(`protocol ${OTHER_PROTOCOL}`, { protocol: OTHER_PROTOCOL });
finish('ioredis');
