// Shared by bench mechanisms: pinning, peer processes and checked payloads.
//
// A mechanism module (bench/mechanisms/<file>.mjs) default-exports an array of mechanisms:
//   {
//     id: 'queue-spin',                    // unique, kebab-case
//     label: 'shm Queue, spinning receiver',
//     family: 'interprocess' | 'baseline',
//     sizes: [64, 4096, 65536, 1048576],   // message sizes it supports (bytes)
//     waits: 'spin' | 'block' | 'event-loop',  // how the receiving side waits (for the advice)
//     roundTrip({ size, count, cpus }) -> Promise<Float64Array>   // `count` round trips in ns
//                                        (or { n, p50, p99, p999 } from an external program)
//     throughput({ size, count, warmup, cpus }) -> Promise<{ messages, seconds, warmup, note?,
//                 cpuUsPerMessage?, shmBytesPerMessage?, shmBytesPerPayloadByte? }>  // one way:
//                                        warmup + count messages sent, the last `count` timed by
//                                        the receiver (SinkClock); `warmup` as it was done
//     idle({ cpus }) -> Promise<{ cpuPercent, cpuUsPerSecond }>  // optional: a receiver waiting
//                                        on nothing, its CPU (see idleCpu)
//     count: { quick, full },              // optional: operations per trial, instead of the default
//     sustained: true,                     // optional: millions of small messages a second, so a
//                                        throughput trial gets up to 8 M messages (JIT warm-up
//                                        then weighs little)
//     trials: 3,                           // optional: trials per row, the median one reported (for
//                                        rows the targets compare: spinning rates swing 2x)
//     unavailable: 'reason',               // optional: left out of the run, with this note
//   }
// The harness runs every trial in a fresh process pinned to cpus[0]; the mechanism starts its
// peer with forkPeer (pinned to cpus[1]) and removes everything it created. Every reply and
// every message is checked (size and sequence number), so nothing can be silently lost.
import { execFile, execFileSync, fork } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/**
 * Pins this process's JS thread to `cpu` (or to $BENCH_CPU) with taskset (util-linux): the
 * main thread only, like sched_setaffinity(0); threads started later inherit it.
 */
export function pinSelf(cpu = process.env.BENCH_CPU) {
  if (cpu === undefined || cpu === '') return;
  try {
    execFileSync('taskset', ['-p', '-c', String(Number(cpu)), String(process.pid)], { stdio: 'ignore' });
  } catch {
    // no taskset, or a machine with fewer cores: run unpinned
  }
}

let compiler;
/** The C compiler for the C references ($CC, cc, gcc or clang), or undefined when there is none. */
export function cCompiler() {
  if (compiler === undefined) {
    compiler = [process.env.CC, 'cc', 'gcc', 'clang'].filter(Boolean).find((cc) => {
      try {
        execFileSync(cc, ['--version'], { stdio: 'ignore' });
        return true;
      } catch {
        return false;
      }
    }) ?? null;
  }
  return compiler ?? undefined;
}

/** Why the C references are left out on this machine, or undefined when they can be built. */
export function cReferencesNote(ids) {
  return cCompiler() === undefined ? `${ids.join(', ')}: left out, no C compiler (cc) to build bench/native/*.c` : undefined;
}

/**
 * Builds bench/native/NAME.c into a scratch folder (when the benchmark runs it, never at
 * install), runs it with `args` and resolves with its JSON output; the folder is removed after.
 */
export function runCReference(name, args) {
  return new Promise((resolve, reject) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'interprocess-bench-c-'));
    const binary = path.join(dir, name);
    const done = (err, value) => {
      fs.rmSync(dir, { recursive: true, force: true });
      if (err) reject(err);
      else resolve(value);
    };
    try {
      execFileSync(cCompiler() ?? 'cc', ['-O2', '-Wall', '-o', binary, path.join(here, 'native', `${name}.c`), '-lpthread', '-lrt'], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (err) {
      return done(new Error(`cannot build bench/native/${name}.c: ${String(err.stderr ?? err.message).split('\n')[0]}`));
    }
    execFile(binary, args.map(String), { timeout: 120_000 }, (err, stdout) => {
      if (err) return done(err);
      try {
        done(null, JSON.parse(stdout));
      } catch (parseError) {
        done(parseError);
      }
    });
  });
}

/**
 * The async-wait fallback for kernels without futex_waitv (Linux < 5.16), forced for a trial
 * and its peer by this environment, so that `bench` shows what it costs on any kernel.
 */
export const FALLBACK_ENV = { INTERPROCESS_FUTEX_WAITV: '0' };

/** Wraps a trial function: refuses to measure unless the fallback is really in use. */
export function inFallback(trial) {
  return async (args) => {
    const { asyncWaitMechanism } = createRequire(import.meta.url)('../dist/cjs/os/futex.js');
    if (asyncWaitMechanism() !== 'threads') throw new Error('the futex_waitv fallback is not in use (INTERPROCESS_FUTEX_WAITV=0 missing?)');
    return trial(args);
  };
}

/** Forks a peer script pinned to `cpu`, with Node's IPC channel for control messages. */
export function forkPeer(script, args = [], cpu) {
  return fork(script, args.map(String), {
    env: { ...process.env, BENCH_CPU: cpu === undefined ? '' : String(cpu) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

/** Resolves with the next IPC message from `child` (optionally the first with .type === type). */
export function nextMessage(child, type) {
  return new Promise((resolve, reject) => {
    const onMessage = (msg) => {
      if (type !== undefined && msg?.type !== type) return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(msg);
    };
    const onExit = (code, signal) => reject(new Error(`peer exited (code ${code}, signal ${signal})`));
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

/** A payload of `size` bytes carrying `seq` in its first 4 bytes (size >= 4). */
export function stamp(buf, seq) {
  buf[0] = seq & 0xff;
  buf[1] = (seq >>> 8) & 0xff;
  buf[2] = (seq >>> 16) & 0xff;
  buf[3] = (seq >>> 24) & 0xff;
  return buf;
}

export function seqOf(buf) {
  return (buf[0] | (buf[1] << 8) | (buf[2] << 16) | (buf[3] << 24)) >>> 0;
}

/** Throws unless `buf` has `size` bytes and carries `seq`: a bench must never count a lost message. */
export function check(buf, size, seq, what) {
  if (buf.byteLength !== size || seqOf(buf) !== seq >>> 0) {
    throw new Error(`${what}: expected message ${seq} of ${size} bytes, got ${seqOf(buf)} of ${buf.byteLength}`);
  }
}

export const now = () => process.hrtime.bigint();

/**
 * A sink's last word over its own transport (a socket, a broker), for sinks that cannot use
 * Node's IPC channel: how many messages it received (u32) and the seconds
 * its clock measured for the timed ones (f64), both little-endian.
 */
export function doneFrame(received, seconds) {
  const done = Buffer.alloc(12);
  done.writeUInt32LE(received, 0);
  done.writeDoubleLE(seconds, 4);
  return done;
}

/** The seconds of a sink's doneFrame, after checking that it received all `total` messages. */
export function secondsOf(done, total) {
  if (done.readUInt32LE(0) !== total) throw new Error(`peer received ${done.readUInt32LE(0)} of ${total}`);
  return done.readDoubleLE(4);
}

/**
 * The slots a ring of `size`-byte messages gets in the queue, topic, JavaScript ring and C ring
 * rows (bench/native/ring.c's capacity_for is the same rule): a power of two, 2 to 4096, whose
 * slots fit in RING_BYTES. A ring that stays in a core's cache moves large messages faster than
 * a long one whose lines go out to memory and back: on the 2-core Xeon VM (4 MiB of L2 per
 * core), queue-spin went 1.25x faster at 1 MiB with 2 slots than with 8, 1.3x at 64 KiB with 16
 * than 256, 1.3x at 4 KiB with 256 than 4096 (bench/results/2026-12-02-stop28-ring-bytes.md).
 * Until stop 28 the rings took 16 MiB. That depth is still what a ring needs when its readers
 * share a core and take turns on it (the topic's fan-out rows): it must hold what the writer
 * makes in a time slice (topic-fanout-2 ran 0.60-0.73x with 2 MiB), so those rows pass
 * DEEP_RING_BYTES.
 */
export const RING_BYTES = 2 << 20;
export const DEEP_RING_BYTES = 16 << 20;
export const capacityFor = (size, ringBytes = RING_BYTES) => Math.max(2, Math.min(4096, 2 ** Math.floor(Math.log2(ringBytes / (size + 16)))));

/**
 * How many messages a throughput trial sends before the `count` it times: a quarter as many,
 * and at least 64 MiB of them (up to `count` itself, for the quick run's short trials). A trial
 * starts two fresh processes, and their first laps pay for what a long-running program pays
 * once: first touches of the ring's or the socket's pages and of fresh heap (~18 µs a page on
 * the project's VM), heap growth, JIT compilation. One way, 1 MiB messages, the first 64 MiB ran
 * at 0.1-1.9 GiB/s and the rest at 10-16 (bench/results/2026-12-02-stop23-warm-trials.md):
 * timed from the first message, a 1 GiB trial measured mostly its start. Every row gets the same
 * warm-up, so that rows still compare.
 */
export const warmupFor = (count, size) => Math.max(Math.ceil(count / 4), Math.min(count, Math.ceil((64 << 20) / size)));

/**
 * A throughput sink's clock, on the receiving side: `at(seq)` for every message received, in
 * order. It starts when the last warm-up message (seq warmup - 1) arrives (when it is made, with
 * no warm-up) and stops when the last of the timed `count` does, so `seconds` is what the timed
 * messages took to arrive, on one process's clock. The sender sends warmup + count messages.
 */
export class SinkClock {
  constructor(warmup, count) {
    this.warmup = warmup;
    this.last = warmup + count - 1;
    this.start = warmup === 0 ? now() : undefined;
    this.end = undefined;
  }

  at(seq) {
    if (seq === this.warmup - 1) this.start = now();
    if (seq === this.last) this.end = now();
  }

  /** The timed part in seconds; throws if the trial never got there (a bench counts nothing it did not see). */
  get seconds() {
    if (this.start === undefined || this.end === undefined) throw new Error(`the sink's clock never ${this.start === undefined ? 'started' : 'stopped'}`);
    return Number(this.end - this.start) / 1e9;
  }
}

/**
 * ns on CPU of every thread of `pid` so far (the schedstat of each /proc/<pid>/task: the futex.waitAsync
 * watcher and V8's threads included), and, as a cross-check, utime + stime in clock ticks
 * (/proc/<pid>/stat). Linux only.
 */
export function cpuOf(pid) {
  let ns = 0;
  for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(fs.readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // a thread that ended meanwhile
    }
  }
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { ns, ticks: Number(fields[11]) + Number(fields[12]) };
}

let ticksPerSecond;
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The CPU a waiting process `pid` uses over `seconds`, measured after `settleMs` (past any
 * spin before it parks): percent of one core and µs of CPU per second, from schedstat, and the
 * same percent from /proc/<pid>/stat ticks as a cross-check.
 */
/**
 * USER_HZ, the unit of /proc/<pid>/stat times. getconf may be missing (an installed package run
 * with a minimal PATH, a slim image); USER_HZ is 100 on every Linux architecture we support.
 */
function clockTicks() {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()) || 100;
  } catch {
    return 100;
  }
}

export async function idleCpu(pid, settleMs, seconds) {
  ticksPerSecond ??= clockTicks();
  await sleep(settleMs);
  const a = cpuOf(pid);
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const b = cpuOf(pid);
  const elapsed = (performance.now() - t0) / 1000;
  return {
    cpuPercent: ((b.ns - a.ns) / 1e9 / elapsed) * 100,
    cpuUsPerSecond: (b.ns - a.ns) / 1e3 / elapsed,
    statPercent: ((b.ticks - a.ticks) / ticksPerSecond / elapsed) * 100,
  };
}
