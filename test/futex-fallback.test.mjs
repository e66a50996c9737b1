// Kernels without futex_waitv (before Linux 5.16: RHEL 8, Debian 11, Ubuntu 20.04 and 22.04,
// Amazon Linux 2): async waits fall back to one pooled thread per waited word. The fallback is
// forced here two ways: INTERPROCESS_FUTEX_WAITV=0 (its limits, in a child), and for real by
// test/fixtures/refuse-syscalls.c, a launcher that makes the syscall fail with ENOSYS under a
// seccomp filter, as an old kernel does, and runs a representative subset of the futex, sync,
// queue and shm:// channel tests under it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SharedMemory } from 'interprocess';
import { refuseSyscallsLauncher, startChild, uniqueName, watchdog } from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

test('the fallback: a bounded pool, IPC_ERR_LIMIT past it, threads reused and given back by cancelled waits', async (t) => {
  const name = uniqueName('fallback');
  SharedMemory.create(name, { byteLength: 4096 }).close();
  t.after(() => SharedMemory.remove(name));
  const child = startChild('futex-fallback.mjs', ['limits', name], {
    env: { ...process.env, INTERPROCESS_FUTEX_WAITV: '0', INTERPROCESS_FUTEX_THREADS: '4' },
  });
  t.after(() => child.kill());
  const r = await watchdog(child.next('limits'), 30_000, 'fallback child');
  assert.equal(r.mechanism, 'threads');
  assert.equal(r.fifth.code, 'IPC_ERR_LIMIT');
  assert.match(r.fifth.message, /futex_waitv.*INTERPROCESS_FUTEX_THREADS/s);
  assert.equal(r.first, 'ok');
  assert.equal(r.reusedResult, 'ok');
  assert.deepEqual(r.rest, ['ok', 'ok', 'ok']);
  assert.deepEqual(r.outcomes, { 'timed-out': 200 });
  assert.ok(r.threads <= 4, `threads: ${r.threads}`);
  assert.deepEqual(await child.exited, { code: 0, signal: null });
});

/** Runs argv with futex_waitv refused; resolves with { code, output } (killed after `ms`). */
function runUnder(launcher, argv, ms) {
  return new Promise((resolve) => {
    // A test runner started from a test would otherwise see it is nested and run nothing.
    const { NODE_TEST_CONTEXT, ...env } = process.env;
    const child = spawn(launcher, ['futex_waitv', ...argv], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, output });
    });
  });
}

// What runs under the launcher: every futex and semaphore test, and the async, contended and
// owner-death tests of the mutex, queue and shm:// channel (a subset: the suite stays quick).
const SUBSET = [
  ['futex.test.mjs', []],
  ['sync-semaphore.test.mjs', []],
  ['sync-mutex.test.mjs', ['timeouts and aborts', 'owner killed while other processes wait']],
  ['queue-processes.test.mjs', ['an async receiver is woken', 'blocking waits only']],
  ['channel-shm.test.mjs', ['request/reply and echo']],
];

test('under a kernel without futex_waitv (seccomp: ENOSYS), futex, sync, queue and shm:// waits work', async (t) => {
  const { launcher, why } = refuseSyscallsLauncher(t);
  if (launcher === undefined) return t.skip(why);
  const probe = await new Promise((resolve, reject) =>
    execFile(launcher, ['futex_waitv', process.execPath, '-p', "require('./dist/cjs/os/futex.js').asyncWaitMechanism()"], { cwd: path.join(here, '..') }, (err, out) =>
      err ? reject(err) : resolve(out.trim()),
    ),
  );
  assert.equal(probe, 'threads', 'the launcher makes the addon pick the fallback');
  for (const [file, patterns] of SUBSET) {
    await t.test(file, async () => {
      const argv = [process.execPath, '--test', '--test-reporter=tap', '--test-concurrency=1', ...patterns.flatMap((p) => ['--test-name-pattern', p]), path.join(here, file)];
      const { code, signal, output } = await runUnder(launcher, argv, 120_000);
      // The first failure in full (or the end of the output when nothing failed).
      const lines = output.split('\n');
      const first = lines.findIndex((l) => /^not ok /.test(l));
      const tail = (first >= 0 ? lines.slice(Math.max(0, first - 60), first + 40) : lines.slice(-40)).join('\n');
      assert.equal(signal, null, `${file} did not finish in 120 s (killed):\n${tail}`);
      assert.equal(code, 0, `${file} failed under the launcher:\n${tail}`);
      const passed = Number(/^# pass (\d+)/m.exec(output)?.[1]);
      assert.ok(passed >= Math.max(1, patterns.length), `${file}: ${passed} tests passed:\n${tail}`);
      assert.match(output, /^# fail 0$/m);
    });
  }
});
