// The receive side of a large message alone, in one process: a private copy of a message in a
// SharedArrayBuffer, dropped at once, N times, through each way the library has had to make it.
//   node bench/receive-copy.mjs [size] [N]
// allocUnsafeSlow + copyBytes (before the pool), copyOut (the addon's pool of pre-faulted
// blocks, native/copyout.cc), slice (V8's own copy). "pool" is what the pool holds afterwards.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { native } = require('../dist/cjs/os/native.js');
const a = native();
const size = Number(process.argv[2] ?? 1 << 20);
const N = Number(process.argv[3] ?? 5000);
const src = new Uint8Array(new SharedArrayBuffer(size)).fill(7);
let sink = 0;
const ways = {
  'allocUnsafeSlow+copyBytes': () => {
    const out = new Uint8Array(Buffer.allocUnsafeSlow(size).buffer, 0, size);
    a.copyBytes(out, src);
    return out;
  },
  copyOut: () => new Uint8Array(a.copyOut(src)),
  slice: () => src.slice(),
};
for (const name of ['allocUnsafeSlow+copyBytes', 'copyOut', 'slice', 'allocUnsafeSlow+copyBytes', 'copyOut']) {
  const f = ways[name];
  for (let i = 0; i < 200; i++) sink += f()[i & 1023];
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) sink += f()[i & 1023];
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`${name.padEnd(28)} ${((size * N) / seconds / 2 ** 30).toFixed(2)} GiB/s  pool ${(a.copyOutPoolBytes() / 2 ** 20).toFixed(0)} MiB`);
}
if (sink < 0) console.log(sink);
