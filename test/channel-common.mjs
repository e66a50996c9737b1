// Shared by the channel tests: a pair of connected channels for every transport, so the
// conformance suite is written once and run against each.
import { fork } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { listen, connect, childChannel } from 'interprocess';
import { uniqueName } from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

/** A path under os.tmpdir() named interprocess-t-* (the leftover test checks that prefix). */
export function tmpPath(tag) {
  return path.join(os.tmpdir(), `interprocess-${uniqueName(tag)}`);
}

export function addressFor(transport) {
  if (transport === 'unix') return `unix://${tmpPath('sock')}`;
  if (transport === 'tcp') return 'tcp://127.0.0.1:0';
  if (transport === 'fifo') return `fifo://${tmpPath('fifo')}`;
  if (transport === 'shm') return `shm://${uniqueName('shm')}`;
  throw new Error(`no listen address for ${transport}`);
}

/**
 * Forks test/fixtures/<fixture> with the control channel on fd 3 and `extra` more 'pipe'
 * descriptors from fd 4 on. Returns { child, next(state), exited, kill }.
 */
export function forkWithPipes(fixture, args, extra = 1, stdio = ['ignore', 'inherit', 'inherit']) {
  const child = fork(path.join(here, 'fixtures', fixture), args.map(String), {
    stdio: [...stdio, 'ipc', ...Array.from({ length: extra }, () => 'pipe')],
  });
  const inbox = [];
  const waiting = [];
  child.on('message', (msg) => {
    const i = waiting.findIndex((w) => w.state === msg.state);
    if (i >= 0) waiting.splice(i, 1)[0].resolve(msg);
    else inbox.push(msg);
  });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  exited.then(({ code, signal }) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`${fixture} exited (${code}, ${signal}) before ${w.state}`));
  });
  return {
    child,
    exited,
    next(state) {
      const i = inbox.findIndex((m) => m.state === state);
      if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0]);
      return new Promise((resolve, reject) => waiting.push({ state, resolve, reject }));
    },
    kill(signal = 'SIGKILL') {
      child.kill(signal);
    },
  };
}

/** Two connected channels [a, b] over `transport`, and cleanup(). */
export async function channelPair(transport, opts = {}) {
  if (transport === 'pipe') {
    const peer = forkWithPipes('channel-forwarder.mjs', [4, 5], 2);
    const a = childChannel(peer.child, { ...opts, fd: 4 });
    const b = childChannel(peer.child, { ...opts, fd: 5 });
    return {
      a,
      b,
      async cleanup() {
        await Promise.all([a.close(), b.close()]);
        peer.kill();
        await peer.exited;
      },
    };
  }
  const server = await listen(addressFor(transport), opts);
  const [a, b] = await Promise.all([connect(server.address, opts), server.accept()]);
  return {
    a,
    b,
    server,
    async cleanup() {
      await Promise.all([a.close(), b.close()]);
      await server.close();
    },
  };
}

export const transports = ['unix', 'tcp', 'fifo', 'pipe', 'shm'];

export function payload(size, seq) {
  const buf = Buffer.alloc(size);
  for (let i = 4; i < size; i++) buf[i] = (seq + i) & 0xff;
  if (size >= 4) buf.writeUInt32LE(seq, 0);
  return buf;
}

export function checkPayload(buf, size, seq) {
  if (buf.byteLength !== size) throw new Error(`message ${seq}: ${buf.byteLength} bytes, expected ${size}`);
  if (size >= 4 && buf.readUInt32LE(0) !== seq) throw new Error(`expected message ${seq}, got ${buf.readUInt32LE(0)}`);
  for (let i = 4; i < size; i++) if (buf[i] !== ((seq + i) & 0xff)) throw new Error(`message ${seq}: byte ${i} corrupt`);
}
