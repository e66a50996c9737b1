// Price updates fanned out to worker processes: this process publishes, three worker processes
// subscribe, and every worker sees every update, in the same order. A late joiner with
// from: 'oldest' catches up on the retained history first.
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { Topic } from 'interprocess';

const name = process.argv[2] ?? `example-topic-${process.pid}`;
const UPDATES = 1000;
const SYMBOLS = ['ACME', 'INITECH', 'GLOBEX'];
const priceOf = (seq) => 100 + ((seq * 37) % 50) / 4;

if (process.argv[3] === 'worker') {
  const topic = Topic.open(name, { codec: 'json' });
  const sub = topic.subscribe(); // from: 'next', before the parent publishes anything
  process.send('ready');
  const latest = {};
  let count = 0;
  for await (const update of sub) {
    if (update.end) break;
    if (update.seq !== count++) throw new Error(`worker ${process.argv[4]}: update ${update.seq} out of order`);
    latest[update.symbol] = update.price;
  }
  process.send({ worker: process.argv[4], count, latest });
  topic.close();
} else {
  // 'block' (the default): a slow worker holds the publisher back instead of missing updates.
  // One feed publishes: exclusivePublisher makes that a rule (a second publishing process gets
  // IPC_ERR_LIMIT) and lets each publish go without a lock.
  const topic = Topic.create(name, { capacity: 256, maxMessageSize: 256, codec: 'json', exclusivePublisher: true });
  try {
    const workers = [0, 1, 2].map((i) => fork(new URL(import.meta.url).pathname, [name, 'worker', i]));
    await Promise.all(workers.map((w) => once(w, 'message')));
    const results = Promise.all(workers.map((w) => once(w, 'message')));
    for (let seq = 0; seq < UPDATES; seq++) {
      await topic.publish({ seq, symbol: SYMBOLS[seq % SYMBOLS.length], price: priceOf(seq) });
    }
    await topic.publish({ end: true });
    for (const [r] of await results) {
      console.log(`worker ${r.worker} saw ${r.count} updates in order; last ${SYMBOLS.map((s) => `${s} ${r.latest[s]}`).join(', ')}`);
    }
    // A late joiner replays what the topic retains (the last 256 messages), then goes on live.
    const late = topic.subscribe({ from: 'oldest' });
    let replayed = 0;
    for (let u = late.tryReceive(); u !== undefined; u = late.tryReceive()) replayed++;
    console.log(`a late joiner replayed ${replayed} retained messages`);
    // The feed has one publisher: another one is refused while this one has the topic open.
    const rival = Topic.open(name, { codec: 'json' });
    try {
      rival.tryPublish({ rival: true });
    } catch (err) {
      console.log(`a second publisher is refused: ${err.code}`);
    } finally {
      rival.close();
    }
    console.log(`topic stats: ${JSON.stringify(topic.stats())}`);
  } finally {
    topic.close();
    Topic.remove(name);
  }
}
