// Helpers for multi-process tests. Children are fixture scripts in test/fixtures/ that report
// each state they reach over Node's fork IPC channel (the control channel, always separate from
// the mechanism under test); the parent waits for those reports instead of sleeping.
import assert from 'node:assert/strict';
import { execFileSync, fork, spawn } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
let counter = 0;

/**
 * Every name this test run creates starts with runPrefix: `t-<run>-` under `npm test` (which
 * sets INTERPROCESS_TEST_RUN for all its processes), `t-<pid>-` for a file run alone. The
 * leftover check and `gc --prefix` look at this run's names only, never at another run's on
 * the same machine.
 */
export const runPrefix = `t-${process.env.INTERPROCESS_TEST_RUN ?? process.pid}-`;

/** A name no other test (or run) uses. */
export function uniqueName(tag = 'x') {
  return `${runPrefix}${process.pid}-${tag}-${counter++}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * Builds test/fixtures/refuse-syscalls.c (a launcher that plays a kernel without some system
 * calls) into a scratch folder removed after test `t`: { launcher }, or { why } without a C
 * compiler. Run a child under it with startChild's `wrap: [launcher, 'membarrier']`.
 */
export function refuseSyscallsLauncher(t) {
  const cc = ['cc', 'gcc', 'clang'].find((c) => {
    try {
      execFileSync(c, ['--version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  });
  if (cc === undefined) return { why: 'no C compiler (cc, gcc or clang) to build test/fixtures/refuse-syscalls.c' };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'interprocess-t-launcher-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const launcher = path.join(dir, 'refuse-syscalls');
  execFileSync(cc, ['-O2', '-Wall', '-o', launcher, path.join(here, 'fixtures', 'refuse-syscalls.c')]);
  return { launcher };
}

/**
 * Starts test/fixtures/<fixture> (or the script at an absolute path) with args. With `wrap`, the
 * child runs under that command (e.g. `['setpriv', '--reuid=65534', ...]` or `unshare`), which
 * must exec node (`execPath`) in the end: the control channel survives the exec. Returns a handle:
 *   next(state?)  resolves with the next control message (whose .state equals `state` if given)
 *   send(msg)     sends a control message to the child
 *   exited        resolves with { code, signal } when the child ends
 *   kill(signal)  kills the child
 */
export function startChild(fixture, args = [], { env, execArgv, wrap, cwd, execPath = process.execPath } = {}) {
  const script = path.isAbsolute(fixture) ? fixture : path.join(here, 'fixtures', fixture);
  const options = { env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], ...(cwd ? { cwd } : {}) };
  const child =
    wrap === undefined
      ? fork(script, args.map(String), { ...options, execArgv: execArgv ?? [] })
      : spawn(wrap[0], [...wrap.slice(1), execPath, ...(execArgv ?? []), script, ...args.map(String)], options);
  const inbox = [];
  const waiting = [];
  child.on('message', (msg) => {
    const i = waiting.findIndex((w) => w.state === undefined || w.state === msg.state);
    if (i >= 0) waiting.splice(i, 1)[0].resolve(msg);
    else inbox.push(msg);
  });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  exited.then(({ code, signal }) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`child ${fixture} exited (code ${code}, signal ${signal}) before reporting ${w.state ?? 'a message'}`));
  });
  return {
    child,
    pid: child.pid,
    exited,
    next(state) {
      const i = inbox.findIndex((m) => state === undefined || m.state === state);
      if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0]);
      if (child.exitCode !== null || child.signalCode !== null) {
        return Promise.reject(new Error(`child ${fixture} already exited before reporting ${state ?? 'a message'}`));
      }
      return new Promise((resolve, reject) => waiting.push({ state, resolve, reject }));
    },
    send(msg) {
      child.send(msg);
    },
    kill(signal = 'SIGKILL') {
      child.kill(signal);
    },
  };
}

/** Rejects if `promise` has not settled within ms: every multi-process test has a watchdog. */
export function watchdog(promise, ms, what = 'operation') {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`watchdog: ${what} did not finish within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Asserts fn throws/rejects an IpcError with `code`. */
export async function expectCode(fn, code) {
  try {
    await fn();
  } catch (err) {
    if (err?.code === code) return err;
    throw new Error(`expected ${code}, got ${err?.code ?? err}`, { cause: err });
  }
  throw new Error(`expected ${code}, but nothing was thrown`);
}

/**
 * Every way a wait that cannot succeed gives up: `wait(options)` (async) and
 * `waitSync(options)` time out after 20 ms and at 0 with IPC_ERR_TIMEOUT, and an abort during
 * the wait or before it rejects with IPC_ERR_ABORTED. The caller then checks that nothing
 * changed.
 */
export async function expectGivingUp(wait, waitSync) {
  await expectCode(() => wait({ timeout: 20 }), 'IPC_ERR_TIMEOUT');
  await expectCode(() => wait({ timeout: 0 }), 'IPC_ERR_TIMEOUT');
  await expectCode(() => waitSync({ timeout: 20 }), 'IPC_ERR_TIMEOUT');
  await expectCode(() => waitSync({ timeout: 0 }), 'IPC_ERR_TIMEOUT');
  const ac = new AbortController();
  const pending = wait({ signal: ac.signal });
  ac.abort();
  await expectCode(() => pending, 'IPC_ERR_ABORTED');
  await expectCode(() => wait({ signal: AbortSignal.abort() }), 'IPC_ERR_ABORTED');
}

/** Timeouts beyond Node's timer range (2^31-1 ms): a setTimeout that long fires after 1 ms. */
export const LONG_TIMEOUTS = [2 ** 31, 2 ** 32];

/**
 * Proves that a wait with a long timeout neither ends at once nor hangs: `start()` begins it
 * (a promise), a short real wait gives a mis-armed timer the time to fire, then `release()`
 * provides what the wait waits for, and the wait must settle with it (its value is returned).
 */
export async function settlesAfterLongWait(start, release, what) {
  let settled = false;
  const pending = start();
  pending.then(() => (settled = true), () => (settled = true));
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(settled, false, `${what} settled before it was released`);
  release();
  return watchdog(pending, 10_000, what);
}

/**
 * The same for a blocking receiveSync({ timeout: 2^32 }) of a `kind` ('Queue' or 'MessageQueue')
 * named `name`, run in a worker (test/fixtures/receive-sync-worker.mjs) so that this thread stays
 * free: resolves with what the worker received (`{ got: [...bytes] }` or `{ code }`).
 */
export async function receiveSyncAfterLongWait(kind, name, send) {
  const worker = new Worker(new URL('./fixtures/receive-sync-worker.mjs', import.meta.url), { workerData: { kind, name, timeout: 2 ** 32 } });
  try {
    const posted = [];
    let wake;
    worker.on('message', (message) => {
      posted.push(message);
      wake?.();
    });
    const next = () => new Promise((resolve) => (posted.length > 0 ? resolve() : (wake = resolve))).then(() => posted.shift());
    assert.equal(await watchdog(next(), 10_000, 'worker ready'), 'waiting');
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.deepEqual(posted, [], 'receiveSync returned before anything was sent');
    send();
    return await watchdog(next(), 10_000, 'worker receive');
  } finally {
    await worker.terminate();
  }
}
