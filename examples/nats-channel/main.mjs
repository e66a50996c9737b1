// Two processes talk through a NATS server: the same Channel code as unix:// or shm://, but the
// peers may run on different hosts (each connects to the NATS server, nats://host:4222, and
// they meet on a subject). Set NATS_URL to use your server; without it, the example starts a
// private nats-server on a free loopback port (Debian: apt-get install nats-server).
import { fork, spawn } from 'node:child_process';
import { listen, connect } from 'interprocess';

const name = process.argv[2] ?? `example-nats-${process.pid}`; // the subject the two meet on
const [role, natsUrl] = process.argv.slice(3);

if (role === 'server') {
  const server = await listen(`${natsUrl}/${name}`, { codec: 'json' });
  process.send('listening');
  for await (const ch of server) {
    ch.handle(({ order }) => ({ order, status: 'accepted' })); // request/reply
    for await (const msg of ch) console.log(`server got: ${msg.text}`);
    await server.close(); // one client, then done
  }
} else {
  const nats = process.env.NATS_URL ? { url: process.env.NATS_URL, stop() {} } : await privateNatsServer();
  const server = fork(new URL(import.meta.url).pathname, [name, 'server', nats.url]);
  await new Promise((resolve) => server.once('message', resolve));
  const ch = await connect(`${nats.url}/${name}`, { codec: 'json', timeout: 5000 });
  await ch.send({ text: 'hello through NATS' });
  const replies = await Promise.all([1, 2, 3].map((order) => ch.request({ order }, { timeout: 5000 })));
  console.log(`replies: ${replies.map((r) => `${r.order} ${r.status}`).join(', ')}`);
  await ch.close(); // flushes, then the server's loop ends
  await new Promise((resolve) => server.once('exit', resolve));
  nats.stop();
}

/** Starts nats-server on 127.0.0.1 at a port it picks; resolves once it says it is ready. */
function privateNatsServer() {
  return new Promise((resolve) => {
    const child = spawn('nats-server', ['-a', '127.0.0.1', '-p', '-1'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin` } });
    child.on('error', () => {
      console.error('nats-server is not installed (apt-get install nats-server), and NATS_URL is not set');
      process.exit(77); // "skipped"
    });
    let log = '';
    child.stderr.on('data', (chunk) => {
      log += chunk;
      const port = /client connections on [^\s]*:(\d+)/.exec(log)?.[1];
      if (port && /Server is ready/.test(log)) resolve({ url: `nats://127.0.0.1:${port}`, stop: () => child.kill() });
    });
  });
}
