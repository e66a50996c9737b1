// A server process answers requests over a channel; the client sends plain messages and makes
// concurrent requests. Change the address (unix://, tcp://, shm://) and nothing else changes.
import { fork } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { listen, connect } from 'interprocess';

const name = process.argv[2] ?? `example-channel-${process.pid}`;
const address = process.argv[4] ?? `unix://${path.join(os.tmpdir(), `interprocess-${name}.sock`)}`;

if (process.argv[3] === 'server') {
  const server = await listen(address, { codec: 'json' });
  process.send('listening');
  for await (const ch of server) {
    ch.handle(async ({ a, b }) => ({ sum: a + b }));     // request/reply, with correlation ids
    for await (const msg of ch) console.log(`server got: ${msg.text}`);
    await server.close();                              // one client, then done
  }
} else {
  const server = fork(new URL(import.meta.url).pathname, [name, 'server', address]);
  await new Promise((resolve) => server.once('message', resolve));
  const ch = await connect(address, { codec: 'json' });
  await ch.send({ text: 'hello over a channel' });
  const replies = await Promise.all([1, 2, 3].map((i) => ch.request({ a: i, b: 10 }, { timeout: 5000 })));
  console.log(`sums: ${replies.map((r) => r.sum).join(', ')}`);
  await ch.close();
  await new Promise((resolve) => server.once('exit', resolve));
}
