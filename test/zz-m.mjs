import { Queue } from 'interprocess';
const q = Queue.create('t-m-q', { capacity: 128, maxMessageSize: 8204, wait: 'block' });
Queue.remove('t-m-q');
const payload = Buffer.alloc(64, 1);
const N = 1e6;
const write = (view) => { view[0] = 1; view[4] = 0; view[8] = 64; view.set(payload, 12); };
let got;
const read = (view) => { const b = Buffer.allocUnsafe(view.length - 12); b.set(view.subarray(12)); got = b; };
const res = {};
const bench = (label, fn) => { const t = performance.now(); for (let i = 0; i < N; i++) fn(); (res[label] ??= []).push(((performance.now() - t) / N * 1e6)); };
for (let r = 0; r < 6; r++) {
  bench('with', () => { q.trySendWith(76, write); q.tryReceiveWith(read); });
  bench('plain', () => { q.trySend(payload); q.tryReceive(); });
}
for (const [k, v] of Object.entries(res)) console.log(k, v.map((x) => x.toFixed(0)).join(' '));
q.close();
