// A node:cluster HTTP server whose workers share their state through SharedMaps, with no
// server in between: sessions (any worker serves a user who logged in through another) and a
// per-client rate limit (a client's requests are counted across all workers, atomically).
// The primary starts two workers, plays the client over real HTTP, and shuts everything down.
import cluster from 'node:cluster';
import * as http from 'node:http';
import { randomUUID } from 'node:crypto';
import { SharedMap } from 'interprocess';

const name = process.argv[2] ?? `example-shared-map-${process.pid}`;
const WORKERS = 2;
const LIMIT = 10; // requests per client per window
const WINDOW_MS = 60_000;

if (cluster.isPrimary) {
  // Created once by the primary; workers open them by name. 'lru' keeps the newest sessions
  // when the map is full, and every entry expires on its own (ttl).
  const sessions = SharedMap.create(`${name}-sessions`, { capacity: 10_000, maxValueBytes: 256, codec: 'json', eviction: 'lru', ttl: 30 * 60_000 });
  const rates = SharedMap.create(`${name}-rate`, { capacity: 10_000, maxKeyBytes: 128, maxValueBytes: 16, codec: 'json', eviction: 'lru' });
  try {
    cluster.setupPrimary({ args: [name] });
    const port = await new Promise((resolve) => {
      let listening = 0;
      cluster.on('listening', (_worker, address) => {
        if (++listening === WORKERS) resolve(address.port);
      });
      for (let i = 0; i < WORKERS; i++) cluster.fork();
    });
    console.log(`${WORKERS} workers listening`);
    await client(port);
    console.log(`sessions: ${sessions.size}, rate counters: ${rates.size}`);
  } finally {
    await new Promise((resolve) => cluster.disconnect(resolve));
    sessions.close();
    rates.close();
    SharedMap.remove(`${name}-sessions`);
    SharedMap.remove(`${name}-rate`);
  }
} else {
  const sessions = SharedMap.open(`${name}-sessions`, { codec: 'json' });
  const rates = SharedMap.open(`${name}-rate`, { codec: 'json' });
  const server = http.createServer((req, res) => {
    const reply = (status, body, headers = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify({ ...body, worker: process.pid }));
    };
    // The rate limit: one atomic increment per request. The counter's ttl is set when the
    // client's first request creates it; later increments keep it, so it is a fixed window.
    const client = String(req.headers['x-client'] ?? req.socket.remoteAddress);
    const count = rates.increment(client, 1, { ttl: WINDOW_MS });
    if (count > LIMIT) return reply(429, { error: 'too many requests', count });

    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/login') {
      const sid = randomUUID();
      sessions.set(sid, { user: url.searchParams.get('user'), since: Date.now(), loginWorker: process.pid });
      return reply(200, { sid }, { 'set-cookie': `sid=${sid}; HttpOnly` });
    }
    if (url.pathname === '/me') {
      const sid = /(?:^|;\s*)sid=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
      const session = sid === undefined ? undefined : sessions.get(sid);
      if (session === undefined) return reply(401, { error: 'not logged in' });
      return reply(200, session);
    }
    reply(404, { error: 'not found' });
  });
  server.listen(0);
  cluster.worker.on('disconnect', () => {
    sessions.close();
    rates.close();
  });
}

/** One request on its own connection (so that the cluster spreads them over the workers). */
function request(port, path, headers = {}) {
  return new Promise((resolve, reject) => {
    http
      .get({ port, path, headers, agent: false }, (res) => {
        let body = '';
        res.on('data', (chunk) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: JSON.parse(body) }));
      })
      .on('error', reject);
  });
}

async function client(port) {
  const login = await request(port, '/login?user=alice', { 'x-client': 'alice' });
  const cookie = login.headers['set-cookie'][0].split(';')[0];
  const servedBy = new Set();
  for (let i = 0; i < 6; i++) {
    const me = await request(port, '/me', { cookie, 'x-client': 'alice' });
    if (me.status !== 200 || me.body.user !== 'alice') throw new Error(`unexpected /me: ${JSON.stringify(me)}`);
    servedBy.add(me.body.worker);
  }
  console.log(`session of alice (logged in through worker ${login.body.worker}) seen by ${servedBy.size} workers`);
  if ((await request(port, '/me', { 'x-client': 'bob' })).status !== 401) throw new Error('bob has no session');

  // A burst of 15 requests from one client: the workers count them together.
  const statuses = [];
  for (let i = 0; i < 15; i++) statuses.push((await request(port, '/me', { cookie, 'x-client': 'mallory' })).status);
  const allowed = statuses.filter((s) => s === 200 || s === 401).length;
  const rejected = statuses.filter((s) => s === 429).length;
  console.log(`rate limit: ${allowed} allowed, ${rejected} rejected (limit ${LIMIT} per client and window, shared by the workers)`);
}
