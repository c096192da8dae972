// node-redis (the npm package `redis`) against a running `seqd serve`.
//
// Env contract (see tests/clients/README.md):
//   SEQD_PORT          required: the daemon's RESP port on 127.0.0.1.
//   SEQD_AUTH          optional: the daemon's --auth-token; when set, the auth checks run too.
//   SEQD_NODE_MODULES  the node_modules directory that holds `redis` (CI:
//                      $SEQD_CLIENTS_DIR/node/node_modules). ES modules ignore NODE_PATH, so
//                      the package is loaded from there with createRequire; when unset, the
//                      first entry of NODE_PATH, then $SEQD_CLIENTS_DIR/node/node_modules.
//   SEQD_CLIENT_TIMEOUT  optional: seconds before the whole script gives up (default 20).
//   SEQD_FAKE_REDIS    optional, =1: talk to a real Redis server instead, with NEXT/PEEK/GETSEQ
//                      mapped to INCRBY on keys `seqd:*` (only to validate this script).
//
// Two passes: createClient at its defaults (node-redis 6 defaults to RESP3: `HELLO 3`), then
// the same checks with the other protocol set explicitly (RESP: 2). One line per check; exit
// 0 when all passed, 1 when any failed, 2 on a bad environment, 3 when the package cannot be
// loaded, 4 on the global timeout.

import {
  BAD_REPLY_TEXT, FAKE, badArgs, badReplyArgs, check, consecutive, errText, expect, failures, firstError,
  finish, getseqArgs, isInt, nextArgs, nextFirst, passed, peekArgs, peekValue, requireFrom, setup,
} from './harness.mjs';

const { PORT, AUTH, HOST } = setup('node-redis', 'node_redis.mjs');

let createClient, version, defaultResp;
try {
  const require = requireFrom('redis');
  ({ createClient } = require('redis'));
  version = require('redis/package.json').version;
  try {
    defaultResp = require('@redis/client/dist/lib/RESP/types').DEFAULT_RESP;
  } catch {
    defaultResp = undefined; // unknown: node-redis 6 has 3
  }
} catch (e) {
  console.log(`node_redis.mjs: cannot load node-redis: ${e.message}`);
  process.exit(3);
}
// The second pass sets the protocol that the default does not use.
const OTHER_RESP = (defaultResp ?? 3) === 3 ? 2 : 3;

function url(password, username) {
  const cred = password ? `${encodeURIComponent(username ?? '')}:${encodeURIComponent(password)}@` : '';
  return `redis://${cred}${HOST}:${PORT}`;
}

// A client whose connect must fail: node-redis retries a failed handshake forever, so take its
// first 'error' event, or the rejection of `command` (sent while it connects) if that comes
// first, then destroy it.
async function connectError(options, command) {
  const c = createClient(options);
  let connected;
  try {
    return await firstError(c, command, () => {
      connected = c.connect().then(() => 'connected', (e) => e);
      return command ? c.sendCommand(command) : null;
    });
  } finally {
    c.destroy();
    await connected;
  }
}

async function runPass(name, extra) {
  const p = `[${name}]`;
  const c = createClient({ url: url(AUTH), ...extra });
  const clientErrors = [];
  c.on('error', (e) => clientErrors.push(e));
  // A failed handshake makes node-redis reconnect forever instead of rejecting connect().
  const errorEvent = new Promise((resolve) => c.once('error', resolve));
  try {
    await check(`${p} connect + ping`, async () => {
      const failed = await Promise.race([c.connect().then(() => null), errorEvent]);
      if (failed) throw new Error(`connect failed: ${errText(failed)}`);
      const pong = await c.ping();
      expect(pong === 'PONG', `PING should reply PONG, got ${JSON.stringify(pong)}`);
      return `RESP ${extra.RESP ?? `default (${defaultResp ?? '?'})`}`;
    });
    if (!c.isReady) {
      console.log(`FAIL ${p} not connected; the other checks of this pass are skipped`);
      failures.push(`${p} (rest of pass)`);
      return;
    }

    await check(`${p} NEXT 42 5 -> int`, async () => {
      const v = await c.sendCommand(nextArgs(42, 5));
      expect(isInt(v), `NEXT 42 5 should reply an integer, got ${JSON.stringify(v)}`);
      return nextFirst(v);
    });

    await check(`${p} GETSEQ twice -> increasing`, async () => {
      const a = await c.sendCommand(getseqArgs());
      const b = await c.sendCommand(getseqArgs());
      expect(isInt(a) && isInt(b), `GETSEQ should reply integers, got ${a}, ${b}`);
      expect(b > a, `a second GETSEQ should reply more than the first: ${a} then ${b}`);
      return `${a}, ${b}`;
    });

    await check(`${p} NEXT 7 1 10 then PEEK 7 1 = first + 10`, async () => {
      const first = nextFirst(await c.sendCommand(nextArgs(7, 1, 10)), 10);
      const after = peekValue(await c.sendCommand(peekArgs(7, 1)));
      expect(isInt(first) && after === first + 10, `NEXT 7 1 10 -> ${first}, then PEEK 7 1 -> ${after}`);
      return `first ${first}, PEEK ${after}`;
    });

    await check(`${p} multi().execAsPipeline() of 100 NEXT 8 1 -> consecutive`, async () => {
      const m = c.multi();
      for (let i = 0; i < 100; i++) m.addCommand(nextArgs(8, 1));
      const got = (await m.execAsPipeline()).map((v) => nextFirst(v));
      expect(got.length === 100 && got.every(isInt), `100 integers expected, got ${JSON.stringify(got)}`);
      expect(consecutive(got), `not consecutive: ${JSON.stringify(got)}`);
      return `${got[0]}..${got[99]}`;
    });

    await check(`${p} 100 concurrent sendCommand NEXT 8 1 -> consecutive`, async () => {
      const got = (await Promise.all(Array.from({ length: 100 }, () => c.sendCommand(nextArgs(8, 1))))).map((v) =>
        nextFirst(v)
      );
      expect(got.every(isInt) && consecutive(got), `not 100 consecutive integers: ${JSON.stringify(got)}`);
      return `${got[0]}..${got[99]}`;
    });

    await check(`${p} multi() (MULTI/EXEC) of 10 NEXT 9 1 -> consecutive`, async () => {
      const m = c.multi();
      for (let i = 0; i < 10; i++) m.addCommand(nextArgs(9, 1));
      const got = (await m.exec()).map((v) => nextFirst(v));
      expect(got.length === 10 && got.every(isInt), `10 integers expected, got ${JSON.stringify(got)}`);
      expect(consecutive(got), `not consecutive: ${JSON.stringify(got)}`);
      return `${got[0]}..${got[9]}`;
    });

    await check(`${p} multi() with an invalid command rejects, nothing used`, async () => {
      const before = peekValue(await c.sendCommand(peekArgs(9, 1)));
      let err;
      try {
        const got = await c.multi().addCommand(nextArgs(9, 1)).addCommand(badArgs(9)).addCommand(nextArgs(9, 1)).exec();
        throw new Error(`exec() should reject (EXECABORT), it resolved ${JSON.stringify(got)}`);
      } catch (e) {
        if (e.message.startsWith('exec() should reject')) throw e;
        err = e;
      }
      const after = peekValue(await c.sendCommand(peekArgs(9, 1)));
      expect(after === before, `EXECABORT must use no numbers: PEEK 9 1 was ${before}, now ${after}`);
      expect((await c.ping()) === 'PONG', 'the connection should still work after EXECABORT');
      return `${errText(err)}; PEEK 9 1 stays ${after}`;
    });

    await check(`${p} NEXT 1 x rejects`, async () => {
      try {
        const got = await c.sendCommand(badReplyArgs());
        throw new Error(`NEXT 1 x should reply an error, got ${JSON.stringify(got)}`);
      } catch (e) {
        expect(e.message.includes(BAD_REPLY_TEXT), `the error should mention '${BAD_REPLY_TEXT}': ${errText(e)}`);
        expect((await c.ping()) === 'PONG', 'the connection should still work after an error reply');
        return errText(e);
      }
    });

    await check(`${p} info() has redis_version`, async () => {
      const info = await c.info();
      expect(typeof info === 'string' && /^redis_version:/m.test(info), `INFO without redis_version: ${String(info).slice(0, 200)}`);
      expect(/^loading:0\r?$/m.test(info), 'INFO should have loading:0');
      return info.match(/^redis_version:(.*?)\r?$/m)[1];
    });

    await check(`${p} echo, time, dbSize`, async () => {
      const e = await c.echo('hello seqd');
      expect(e === 'hello seqd', `ECHO should return its argument, got ${JSON.stringify(e)}`);
      const t = await c.time();
      expect(Array.isArray(t) && t.length === 2, `TIME should reply two values, got ${JSON.stringify(t)}`);
      const secs = Number(t[0]);
      expect(Math.abs(secs - Date.now() / 1000) < 300, `TIME ${JSON.stringify(t)} is far from this machine's clock`);
      const n = await c.dbSize();
      expect(isInt(n) && n >= 0, `DBSIZE should reply an integer >= 0, got ${JSON.stringify(n)}`);
      return `time ${JSON.stringify(t)}, dbsize ${n}`;
    });

    await check(`${p} clientId, clientSetName/GetName, clientInfo, clientList, select(0)`, async () => {
      const id = await c.clientId();
      expect(isInt(id) && id > 0, `CLIENT ID should reply a positive integer, got ${JSON.stringify(id)}`);
      expect((await c.clientSetName('seqd-node-redis')) === 'OK', 'CLIENT SETNAME should reply OK');
      const name = await c.clientGetName();
      expect(name === 'seqd-node-redis', `CLIENT GETNAME: want seqd-node-redis, got ${JSON.stringify(name)}`);
      const info = await c.clientInfo();
      expect(Number(info?.id) === id, `CLIENT INFO should show id ${id}: ${JSON.stringify(info)}`);
      const list = await c.clientList();
      expect(Array.isArray(list) && list.some((x) => Number(x.id) === id), `CLIENT LIST should show id ${id}`);
      await c.select(0);
      return `id ${id}, ${list.length} in CLIENT LIST`;
    });

    if (AUTH) {
      await check(`${p} no password -> NOAUTH`, async () => {
        const e = await connectError({ url: url(), ...extra }, nextArgs(42, 5));
        expect(e instanceof Error && e.message.includes('NOAUTH'), `want NOAUTH, got ${errText(e)}`);
        return errText(e);
      });
      await check(`${p} wrong password -> fails to connect`, async () => {
        const e = await connectError({ url: url(`${AUTH}-wrong`), ...extra }, null);
        expect(e instanceof Error && /WRONGPASS|invalid password/i.test(e.message), `want WRONGPASS, got ${errText(e)}`);
        return errText(e);
      });
      await check(`${p} user default + token (password option)`, async () => {
        const named = createClient({ socket: { host: HOST, port: PORT }, username: 'default', password: AUTH, ...extra });
        const failed = new Promise((resolve) => named.on('error', resolve));
        try {
          const e = await Promise.race([named.connect().then(() => null), failed]);
          if (e) throw new Error(`connect failed: ${errText(e)}`);
          expect((await named.ping()) === 'PONG', 'PING as user default should reply PONG');
        } finally {
          if (named.isReady) await named.close();
          else named.destroy();
        }
      });
    }
    await check(`${p} no 'error' events on the client`, async () => {
      expect(clientErrors.length === 0, `'error' events: ${clientErrors.map(errText).join('; ')}`);
    });
  } finally {
    if (c.isReady) await c.close();
    else c.destroy();
  }
}

console.log(`node-redis ${version} against ${HOST}:${PORT}${FAKE ? ' (fake: real Redis)' : ''}`);
await runPass('default', {});
await runPass(`RESP ${OTHER_RESP}`, { RESP: OTHER_RESP });
finish('node-redis');
