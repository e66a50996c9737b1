// The far side of the word ping-pong (bench/mechanisms/futex.mjs): waits for the word to become
// 1 and sets it back to 0, until it becomes 2. STYLE: spin | wait | waitAsync.
import { createRequire } from 'node:module';
import { pinSelf } from '../util.mjs';

const require = createRequire(import.meta.url);
const { SharedMemory, futex } = require('../../dist/cjs/index.js');
pinSelf();
const [name, style] = process.argv.slice(2);
const shm = SharedMemory.open(name);
const word = new Int32Array(shm.buffer);
process.send({ type: 'ready' });

for (;;) {
  let v;
  if (style === 'spin') while ((v = Atomics.load(word, 0)) === 0);
  else if (style === 'wait') while ((v = Atomics.load(word, 0)) === 0) futex.wait(word, 0, 0);
  else while ((v = Atomics.load(word, 0)) === 0) await futex.waitAsync(word, 0, 0);
  if (v === 2) break;
  Atomics.store(word, 0, 0);
  if (style !== 'spin') futex.notify(word, 0, 1);
}
shm.close();
process.disconnect();
