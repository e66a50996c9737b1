// The channel example over shared memory: the same server and client code as
// examples/channel, with an shm:// address. Each connection is a pair of shared-memory queues;
// nothing is left in /dev/shm once both sides have closed.
import { fork } from 'node:child_process';
import { listen, connect } from 'interprocess';

const name = process.argv[2] ?? `example-shm-channel-${process.pid}`;
const address = `shm://${name}`;

if (process.argv[3] === 'server') {
  const server = await listen(address, { codec: 'json' });
  process.send('listening');
  for await (const ch of server) {
    ch.handle(async ({ a, b }) => ({ sum: a + b }));     // request/reply, with correlation ids
    for await (const msg of ch) console.log(`server got: ${msg.text}`);
    await server.close();                              // one client, then done
  }
} else {
  const server = fork(new URL(import.meta.url).pathname, [name, 'server']);
  await new Promise((resolve) => server.once('message', resolve));
  const ch = await connect(address, { codec: 'json' });
  await ch.send({ text: 'hello over shared memory' });
  const replies = await Promise.all([1, 2, 3].map((i) => ch.request({ a: i, b: 10 }, { timeout: 5000 })));
  console.log(`sums: ${replies.map((r) => r.sum).join(', ')}`);
  const t0 = performance.now();
  for (let i = 0; i < 1000; i++) await ch.request({ a: i, b: 0 });
  const microseconds = ((performance.now() - t0) * 1000) / 1000;   // ms -> µs, over 1000 requests
  console.log(`1000 round trips: ${microseconds.toFixed(1)} µs each`);
  await ch.close();
  await new Promise((resolve) => server.once('exit', resolve));
}
