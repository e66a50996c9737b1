// What owner identity costs: an uncontended Mutex lock + unlock, one owner check (is the
// thread holding this token alive?) for a live and for a dead token, and a handle's whole life
// (open by name, lock, unlock, close: with nothing else open, each takes and drops a lifeline). Compares builds side by
// side in one run: this package and every package root given as an argument (e.g. a checkout
// of an earlier commit with dist/ and build/ made), alternating, each trial in a fresh process;
// prints the median ns per operation of each.
//
//   node bench/lifeline-cost.mjs [otherRoot...] [--trials N]
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const at = args.indexOf('--trials');
const trials = at >= 0 ? Number(args.splice(at, 2)[1]) : 7;
const roots = [here, ...args.map((r) => path.resolve(r))];

// One trial, in a child: the package root is argv[1]. A worker holds a Mutex (a live owner);
// token 12345 is one nobody holds (a dead owner). Either lifeline API is measured as it is.
const trial = String.raw`
const root = process.argv[1];
const { Mutex, SharedMemory } = require(root + '/dist/cjs/index.js');
const lifeline = require(root + '/dist/cjs/os/lifeline.js');
const { Worker } = require('node:worker_threads');
const name = 't-bench-lifeline-' + process.pid;
const held = Mutex.create(name + '-held');
const m = Mutex.create(name);
const worker = new Worker("const { workerData, parentPort } = require('node:worker_threads');" +
  "const { Mutex } = require(workerData.entry); Mutex.open(workerData.held).lockSync();" +
  "parentPort.postMessage(0); setInterval(() => {}, 1 << 30);", { eval: true, workerData: { entry: root + '/dist/cjs/index.js', held: name + '-held' } });
worker.once('message', () => {
  const shm = SharedMemory.open(name + '-held');
  const owner = Atomics.load(new Int32Array(shm.buffer, 64, 1), 0) & 0x0fffffff;
  const alive = lifeline.openLifeline ? lifeline.openLifeline(shm.buffer) : undefined;
  const isAlive = alive && !lifeline.isAlive ? (t) => alive.isAlive(t) : lifeline.isAlive;
  if (!isAlive(owner) || isAlive(12345)) throw new Error('liveness is wrong');
  const time = (n, fn) => { fn(n >> 4); const t0 = process.hrtime.bigint(); fn(n); return Number(process.hrtime.bigint() - t0) / n; };
  const out = {
    lockUnlock: time(4e6, (n) => { for (let i = 0; i < n; i++) { m.lockSync(); m.unlock(); } }),
    tryLockUnlock: time(4e6, (n) => { for (let i = 0; i < n; i++) { m.tryLock(); m.unlock(); } }),
    aliveCheck: time(2e5, (n) => { for (let i = 0; i < n; i++) isAlive(owner); }),
    deadCheck: time(2e5, (n) => { for (let i = 0; i < n; i++) isAlive(12345); }),
    openLockClose: time(2e4, (n) => { for (let i = 0; i < n; i++) { const h = Mutex.open(name); h.lockSync(); h.unlock(); h.close(); } }),
  };
  process.stdout.write(JSON.stringify(out));
  SharedMemory.remove(name); SharedMemory.remove(name + '-held');
  process.exit(0);
});`;

const results = roots.map(() => []);
for (let t = 0; t < trials; t++) {
  for (let r = 0; r < roots.length; r++) {
    results[r].push(JSON.parse(execFileSync(process.execPath, ['-e', trial, roots[r]], { encoding: 'utf8' })));
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
console.log(`median ns per operation, ${trials} alternating trials each (node ${process.version})`);
const keys = Object.keys(results[0][0]);
console.log(['build'.padEnd(40), ...keys.map((k) => k.padStart(14))].join(''));
roots.forEach((root, r) => {
  console.log([(r === 0 ? 'this tree' : root).padEnd(40), ...keys.map((k) => median(results[r].map((x) => x[k])).toFixed(1).padStart(14))].join(''));
});
