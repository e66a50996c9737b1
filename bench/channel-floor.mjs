// What a Channel costs per message before any transport: the floor under every transport's
// one-way rate, and so the most a faster transport can gain over another.
//
//   node bench/channel-floor.mjs [--rounds N] [--count N] [--size BYTES]
//
// The receiving side: frames are handed to a Channel straight from memory, each a fresh Buffer
// view of a private pack (as a shm:// receiver or a socket's decoder hands them over), and taken
// with one `await channel.receive()` each, as the bench's sinks do. The sending side: `trySend`
// into a link that accepts every frame at once. Both in one process pinned to CPU 0 (as the
// bench pins its trials), alternated per round. A one-way rate between two processes is bounded by the slower side's
// cost, so a transport T can beat unix:// by at most (unix:// cost per message) / (floor).
import { createRequire } from 'node:module';
import { pinSelf } from './util.mjs';

const require = createRequire(import.meta.url);
const { channelFromLink, resolveChannelOptions } = require('../dist/cjs/channel/channel.js');

const argv = process.argv.slice(2);
const flag = (name, fallback) => {
  const at = argv.indexOf(name);
  return at < 0 ? fallback : Number(argv[at + 1]);
};
const rounds = flag('--rounds', 5);
const count = flag('--count', 4_000_000);
const size = flag('--size', 64);

/** A Link that takes every write at once and lets the caller hand frames to the channel. */
function memoryLink() {
  const link = {
    handler: undefined,
    paused: false,
    start(handler) {
      link.handler = handler;
    },
    write(_type, _id, _payload, done) {
      done();
    },
    needsDrain: false,
    onceDrain(callback) {
      process.nextTick(callback);
    },
    pause() {
      link.paused = true;
    },
    resume() {
      link.paused = false;
    },
    close: async () => {},
    destroy() {},
  };
  return link;
}

const PACK = 64 * 1024;
const ENTRY = (size + 16 + 7) & ~7; // a shm:// pack entry: 16-byte header, 8-byte aligned
const perPack = Math.max(1, Math.floor(PACK / ENTRY));

async function receiveSide() {
  const link = memoryLink();
  const ch = channelFromLink(link, resolveChannelOptions({}, 'floor'), 'floor');
  let pack = Buffer.allocUnsafeSlow(PACK);
  const t0 = process.hrtime.bigint();
  let delivered = 0;
  let taken = 0;
  while (taken < count) {
    // One pack's worth of frames (fewer once reading pauses at readBufferBytes), then take them.
    for (let j = 0; j < perPack && delivered < count && !link.paused; j++, delivered++) {
      link.handler.frame(1, 0, pack.subarray(j * ENTRY + 16, j * ENTRY + 16 + size));
    }
    pack = Buffer.allocUnsafeSlow(PACK); // the next pack is a fresh copy, as a receiver's is
    while (taken < delivered) {
      const m = await ch.receive();
      if (m.byteLength !== size) throw new Error('wrong size');
      taken++;
    }
  }
  return Number(process.hrtime.bigint() - t0) / count;
}

function sendSide() {
  const link = memoryLink();
  const ch = channelFromLink(link, resolveChannelOptions({}, 'floor'), 'floor');
  const msg = Buffer.alloc(size);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    msg.writeUInt32LE(i, 0);
    if (!ch.trySend(msg)) throw new Error('the memory link is never full');
  }
  return Number(process.hrtime.bigint() - t0) / count;
}

pinSelf('0');
const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1];
const receive = [];
const send = [];
for (let r = 0; r < rounds; r++) {
  receive.push(await receiveSide());
  send.push(sendSide());
  process.stderr.write(`round ${r + 1}/${rounds}: receive ${receive[r].toFixed(0)} ns, send ${send[r].toFixed(0)} ns per message\n`);
}
const result = {
  size,
  count,
  rounds,
  node: process.version,
  receiveNsPerMessage: { median: median(receive), all: receive },
  sendNsPerMessage: { median: median(send), all: send },
  receiveMessagesPerSecond: 1e9 / median(receive),
};
process.stdout.write(JSON.stringify(result, null, 2) + '\n');
