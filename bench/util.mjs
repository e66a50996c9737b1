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
//     throughput({ size, count, cpus }) -> Promise<{ messages, seconds, note? }>  // one way
//     count: { quick, full },              // optional: operations per trial, instead of the default
//     unavailable: 'reason',               // optional: left out of the run, with this note
//   }
// The harness runs every trial in a fresh process pinned to cpus[0]; the mechanism starts its
// peer with forkPeer (pinned to cpus[1]) and removes everything it created. Every reply and
// every message is checked (size and sequence number), so nothing can be silently lost.
import { fork } from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** Pins this process's JS thread to `cpu` (or to $BENCH_CPU) if the machine has it. */
export function pinSelf(cpu = process.env.BENCH_CPU) {
  if (cpu === undefined || cpu === '') return;
  try {
    require('../dist/cjs/os/native.js').native().pinToCpu(Number(cpu));
  } catch {
    // a machine with fewer cores: run unpinned
  }
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
