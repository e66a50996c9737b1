// What waiting in the sync primitives costs in CPU, beside what it costs in time:
//
//   per wait   the hand-off trials of bench/mechanisms/sync.mjs (the waiter still spinning:
//              handoff; asleep: wakeup), with this process's CPU time (process.cpuUsage: every
//              thread, the futex.waitAsync watcher included) and wall time measured around each
//              wait and each hand-over of this side; medians of the per-round figures.
//   idle       a process parked in each primitive while nothing happens, from SETTLE_MS after
//              it began to wait (past the spin and the first, closer owner checks of robust
//              locks) for --idle-seconds: its CPU over the window, summed over its threads from /proc/<pid>/task/*/schedstat
//              (ns) and, as a cross-check, utime + stime from /proc/<pid>/stat (clock ticks).
//              Beside it, a busy-polling waiter (tryLock in a loop), the other way to wait.
//
//   node bench/sync-cpu.mjs [--rounds N] [--idle-seconds S] [--only kind,...] [--save]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { forkPeer, idleCpu, nextMessage, pinSelf } from './util.mjs';
import { handoff, layout, openSide } from './mechanisms/sync.mjs';

const require = createRequire(import.meta.url);
const { SharedMemory } = require('../dist/cjs/index.js');
const here = path.dirname(fileURLToPath(import.meta.url));
const peer = path.join(here, 'peers', 'sync-peer.mjs');

const argv = process.argv.slice(2);
const flag = (name, fallback) => {
  const at = argv.indexOf(`--${name}`);
  return at >= 0 ? argv[at + 1] : fallback;
};
const rounds = Number(flag('rounds', 2000));
const idleSeconds = Number(flag('idle-seconds', 5));
const SETTLE_MS = 2000;
const kinds = flag('only', 'mutex,semaphore,rwlock,condition,barrier').split(',');
const cpus = os.availableParallelism() >= 2 ? [0, 1] : [undefined, undefined];
pinSelf(cpus[0]);

const median = (values) => {
  const sorted = Float64Array.from(values).sort();
  return sorted[sorted.length >> 1];
};

/** Runs `body(shm, side)` with this side of `kind` open (creator, me 0) and the peer started with `args`. */
async function withPeer(kind, useAsync, args, body) {
  const name = `bench-sync-cpu-${process.pid}-${kind}`;
  const shm = SharedMemory.create(name, { byteLength: layout.byteLength });
  let child;
  try {
    const side = openSide(kind, shm, 0, useAsync);
    child = forkPeer(peer, [name, ...args], cpus[1]);
    await nextMessage(child, 'ready');
    return await body(shm, side, child);
  } finally {
    child?.kill();
    shm.close();
    SharedMemory.remove(name);
  }
}

/** CPU and wall µs of this process around each wait and each hand-over, in `rounds` hand-offs each way. */
async function perWait(kind, useAsync, holdNs) {
  return withPeer(kind, useAsync, ['handoff', kind, useAsync ? 'async' : 'sync', holdNs, rounds], async (shm, side, child) => {
    const waitCpu = [];
    const waitWall = [];
    const overCpu = [];
    const measured = (fn, cpu, wall) => () => {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      const done = () => {
        const c = process.cpuUsage(c0);
        cpu.push(c.user + c.system);
        wall?.push((performance.now() - t0) * 1000);
      };
      const pending = fn();
      if (pending === undefined) return done();
      return pending.then(done);
    };
    const metered = { ...side, wait: measured(side.wait, waitCpu, waitWall), handOver: measured(side.handOver, overCpu) };
    const exited = new Promise((resolve) => child.once('exit', resolve));
    await handoff(metered, shm, 2 * rounds, true, holdNs, null);
    await exited;
    return { waitCpuUs: median(waitCpu), waitWallUs: median(waitWall), handOverCpuUs: median(overCpu), meanWaitCpuUs: waitCpu.reduce((a, b) => a + b, 0) / waitCpu.length };
  });
}

/** A peer parked in `kind` (or busy-polling, `how` 'poll') for idleSeconds: its CPU share. */
async function idle(kind, how) {
  return withPeer(kind, how === 'async', ['idle', kind, how], async (shm, side, child) => {
    const usage = await idleCpu(child.pid, SETTLE_MS, idleSeconds);
    // Let it go, and see it through: it really was waiting in the primitive.
    const done = nextMessage(child, 'done');
    const prepared = side.prepare?.();
    if (prepared !== undefined) await prepared;
    const handed = side.handOver();
    if (handed !== undefined) await handed;
    await done;
    return usage;
  });
}

const results = { machine: { cpu: os.cpus()[0]?.model, cores: os.availableParallelism(), node: process.version, loadavg: os.loadavg() }, date: new Date().toISOString(), rounds, idleSeconds, perWait: [], idle: [] };
const fmt = (n, digits = 2) => n.toFixed(digits);
process.stderr.write(`sync-cpu: ${rounds} hand-offs each way per trial, idle windows of ${idleSeconds} s\n`);
for (const kind of kinds) {
  for (const how of ['sync', 'async']) {
    for (const [regime, holdNs] of [['handoff', 5_000n], ['wakeup', 50_000n]]) {
      const r = await perWait(kind, how === 'async', holdNs);
      results.perWait.push({ kind, how, regime, ...r });
      process.stderr.write(`${kind} ${how} ${regime}: wait ${fmt(r.waitWallUs)} µs wall, ${fmt(r.waitCpuUs)} µs CPU (mean ${fmt(r.meanWaitCpuUs)}); hand-over ${fmt(r.handOverCpuUs)} µs CPU\n`);
    }
  }
}
for (const kind of kinds) {
  for (const how of kind === 'mutex' ? ['sync', 'async', 'poll'] : ['sync', 'async']) {
    const r = await idle(kind, how);
    results.idle.push({ kind, how, ...r });
    process.stderr.write(`idle ${kind} ${how}: ${fmt(r.cpuPercent, 3)} % CPU (${fmt(r.cpuUsPerSecond, 1)} µs/s; /proc/stat ${fmt(r.statPercent, 1)} %)\n`);
  }
}
process.stdout.write(JSON.stringify(results, null, 2) + '\n');
if (argv.includes('--save')) {
  const file = path.join(here, 'results', `${results.date.slice(0, 19).replace(/[:T]/g, '-')}-sync-cpu.json`);
  fs.writeFileSync(file, JSON.stringify(results, null, 2) + '\n');
  process.stderr.write(`saved: ${file}\n`);
}
