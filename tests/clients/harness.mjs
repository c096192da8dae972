// What the Node client scripts share: the environment contract (README.md), the global
// timeout, loading a package from $SEQD_NODE_MODULES, the seqd commands as argument lists
// (INCRBY on a real Redis under SEQD_FAKE_REDIS=1), and the check/summary helpers.

import { createRequire } from 'node:module';
import path from 'node:path';

/** Starts the global timeout and reads the environment; exits 2 without SEQD_PORT. */
export function setup(name, script) {
  const timeout = Number(process.env.SEQD_CLIENT_TIMEOUT || 20);
  setTimeout(() => {
    console.log(`FAIL ${name}: global timeout of ${timeout}s (a check hung, or a connection was left open)`);
    process.exit(4);
  }, timeout * 1000).unref();
  const port = Number(process.env.SEQD_PORT);
  if (!Number.isInteger(port) || port <= 0) {
    console.error(`${script}: set SEQD_PORT to the daemon's RESP port`);
    process.exit(2);
  }
  return { PORT: port, AUTH: process.env.SEQD_AUTH || undefined, HOST: '127.0.0.1' };
}

export const FAKE = process.env.SEQD_FAKE_REDIS === '1';

function modulesDir() {
  if (process.env.SEQD_NODE_MODULES) return process.env.SEQD_NODE_MODULES;
  const fromPath = (process.env.NODE_PATH || '').split(path.delimiter).filter(Boolean)[0];
  if (fromPath) return fromPath;
  if (process.env.SEQD_CLIENTS_DIR) return path.join(process.env.SEQD_CLIENTS_DIR, 'node', 'node_modules');
  return undefined;
}

/** A require() rooted in the node_modules directory that holds `pkg` (ES modules ignore
 * NODE_PATH); throws when there is none. */
export function requireFrom(pkg) {
  const dir = modulesDir();
  if (!dir) throw new Error(`set SEQD_NODE_MODULES to the node_modules directory holding ${pkg}`);
  return createRequire(path.join(path.resolve(dir), 'noop.js'));
}

// The seqd commands as argument lists, and how to read their replies; under SEQD_FAKE_REDIS,
// INCRBY on a real Redis (whose reply is the last number, not the first).
const s = (v) => String(v);
export const nextArgs = (ws, seq, count) =>
  FAKE ? ['INCRBY', `seqd:${ws}:${seq}`, s(count ?? 1)] : ['NEXT', s(ws), s(seq), ...(count === undefined ? [] : [s(count)])];
export const nextFirst = (reply, count) => (FAKE ? reply - (count ?? 1) + 1 : reply);
export const peekArgs = (ws, seq) => (FAKE ? ['INCRBY', `seqd:${ws}:${seq}`, '0'] : ['PEEK', s(ws), s(seq)]);
export const peekValue = (reply) => (FAKE ? reply + 1 : reply);
export const getseqArgs = () => (FAKE ? ['INCR', 'seqd:getseq'] : ['GETSEQ']);
// Invalid when queued in MULTI: seqd checks arguments then; Redis only arity.
export const badArgs = (ws) => (FAKE ? ['INCRBY', `seqd:${ws}:1`] : ['NEXT', s(ws), 'x']);
export const badReplyArgs = () => (FAKE ? ['INCRBY', 'seqd:1:1', 'x'] : ['NEXT', '1', 'x']);
export const BAD_REPLY_TEXT = FAKE ? 'not an integer' : 'sequence';

export const passed = [];
export const failures = [];
/** Runs one check: `ok   label[: detail]` or `FAIL label: error`. */
export async function check(label, fn) {
  try {
    const detail = await fn();
    passed.push(label);
    console.log(`ok   ${label}${detail === undefined ? '' : `: ${detail}`}`);
  } catch (e) {
    failures.push(label);
    console.log(`FAIL ${label}: ${e && e.stack ? e.stack.split('\n').slice(0, 4).join('\n    ') : e}`);
  }
}
export function expect(cond, message) {
  if (!cond) throw new Error(message);
}
export const isInt = (v) => typeof v === 'number' && Number.isInteger(v);
export const consecutive = (xs) => xs.every((v, i) => v === xs[0] + i);
export const errText = (e) => `${e?.constructor?.name}: ${e?.message}`;

/**
 * For a client whose connect must fail (clients retry a failed handshake): the first of its
 * 'error' events and the rejection of `command`, within 5 s; throws if the command replied
 * instead or nothing came. `start()` runs once the 'error' listener is in place: it connects
 * if the library needs to be told, and sends `command` (a promise of its reply) unless it is
 * `null`. The caller disconnects the client afterwards.
 */
export async function firstError(client, command, start) {
  const firstErr = new Promise((resolve) => client.on('error', resolve));
  let reply;
  const started = start();
  const sent = command
    ? started.then((v) => { reply = v; return 'replied'; }, (e) => e)
    : new Promise(() => {});
  let timer;
  const timeout = new Promise((resolve) => { timer = setTimeout(resolve, 5000, 'timeout'); });
  try {
    const first = await Promise.race([firstErr, sent, timeout]);
    if (first === 'replied') throw new Error(`${command.join(' ')} should fail, it replied ${JSON.stringify(reply)}`);
    if (first === 'timeout') throw new Error('neither an error nor a reply within 5 s');
    return first;
  } finally {
    clearTimeout(timer);
  }
}

/** The summary line and the exit code (0 all passed, 1 some failed). */
export function finish(name) {
  console.log(`${name}: ${passed.length} passed, ${failures.length} failed`);
  for (const label of failures) console.log(`  failed: ${label}`);
  process.exitCode = failures.length ? 1 : 0;
}
