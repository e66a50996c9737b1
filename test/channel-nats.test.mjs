// nats:// beyond the conformance suite (which runs over nats:// too): a real nats-server per
// scenario, processes killed with SIGKILL, the NATS server itself killed mid-stream, forged
// messages standing for dropped ones, credentials and TLS, and the server's own limits.
// Skipped, with the reason, when nats-server is not installed (.ci/run installs it).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { listen, connect } from 'interprocess';
import { expectCode, startChild, uniqueName, watchdog } from './helpers.mjs';
import { checkPayload, checkStamped, killHolder, killSenderRound, payload, sendExitRound, serveClients, tmpPath } from './channel-common.mjs';
import { NATS_MISSING, startNatsServer } from '../bench/nats-server.mjs';

const require = createRequire(import.meta.url);
const WATCHDOG = 20_000;
const subject = () => uniqueName('nats');
const sizeOf = (seq) => 64 + (seq % 7) * 1000; // what channel-peer.mjs 'stream' sends

/** Runs `fn(natsServer)` against a private nats-server started with `config`, then stops it. */
async function withServer(config, fn) {
  const ns = await startNatsServer({ config });
  try {
    return await fn(ns);
  } finally {
    await ns.kill();
  }
}

test('importing the library does not load the NATS client', () => {
  const out = execFileSync(process.execPath, ['-e', "require('interprocess'); console.log(Object.keys(require.cache).filter((k) => k.includes('@nats-io')).length)"], {
    encoding: 'utf8',
  });
  assert.equal(out.trim(), '0');
});

test('malformed nats:// addresses and options are TypeErrors naming the problem', async () => {
  for (const bad of [
    'nats://127.0.0.1:4222',
    'nats://127.0.0.1:4222/',
    'nats://127.0.0.1:4222/a..b',
    'nats://127.0.0.1:4222/a.*',
    'nats://127.0.0.1:4222/a.>',
    'nats://127.0.0.1:4222/a b',
    'nats://127.0.0.1:4222/a/b',
    'nats://127.0.0.1:0/a',
    'nats://user:secret@127.0.0.1:4222/a',
    'nats://127.0.0.1:4222/a?x=1',
    'nats:///a',
    `nats://127.0.0.1:4222/${'a'.repeat(201)}`,
  ]) {
    await assert.rejects(() => connect(bad), TypeError, bad);
    await assert.rejects(() => listen(bad), TypeError, bad);
  }
  const address = 'nats://127.0.0.1:1/a';
  await assert.rejects(() => connect(address, { bogus: 1 }), /unknown option 'bogus'/);
  await assert.rejects(() => connect(address, { tls: { caFile: '/x', bogus: 1 } }), /tls: unknown option 'bogus'/);
  await assert.rejects(() => connect(address, { token: 't', user: 'u', pass: 'p' }), /exclusive/);
  await assert.rejects(() => connect(address, { user: 'u' }), /go together/);
  await assert.rejects(() => connect(address, { tls: { certFile: '/x' } }), /go together/);
  await assert.rejects(() => connect(address, { heartbeatInterval: 5 }), RangeError);
  await assert.rejects(() => listen(address, { token: '' }), TypeError);
  // The nats options belong to nats:// only.
  await assert.rejects(() => connect(`unix://${tmpPath('x')}`, { token: 't' }), /unknown option 'token'/);
  await assert.rejects(() => listen('tcp://127.0.0.1:0', { heartbeatInterval: 100 }), /unknown option 'heartbeatInterval'/);
});

test('no NATS server there: IPC_ERR_NOT_FOUND; one that never answers: IPC_ERR_TIMEOUT within the connect timeout; IPC_ERR_ABORTED', async () => {
  // A free port: bind, note it, close.
  const free = net.createServer();
  await new Promise((r) => free.listen(0, '127.0.0.1', r));
  const port = free.address().port;
  await new Promise((r) => free.close(r));
  await expectCode(() => connect(`nats://127.0.0.1:${port}/a`, { timeout: 5000 }), 'IPC_ERR_NOT_FOUND');
  await expectCode(() => listen(`nats://127.0.0.1:${port}/a`), 'IPC_ERR_NOT_FOUND');
  // A server that accepts the TCP connection and never speaks NATS.
  const sockets = [];
  const silent = net.createServer((s) => sockets.push(s));
  await new Promise((r) => silent.listen(0, '127.0.0.1', r));
  try {
    const address = `nats://127.0.0.1:${silent.address().port}/a`;
    const err = await expectCode(() => connect(address, { timeout: 300 }), 'IPC_ERR_TIMEOUT');
    assert.match(err.message, /NATS server 127\.0\.0\.1/);
    const ac = new AbortController();
    const pending = connect(address, { signal: ac.signal });
    setImmediate(() => ac.abort());
    await expectCode(() => pending, 'IPC_ERR_ABORTED');
    await expectCode(() => connect(address, { signal: AbortSignal.abort() }), 'IPC_ERR_ABORTED');
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((r) => silent.close(r));
  }
});

describe('against a real nats-server', { skip: NATS_MISSING }, () => {
  test('nobody listens on the subject: connect fails at once with IPC_ERR_NOT_FOUND; a live subject is never taken twice', () =>
    withServer('', async (ns) => {
      await expectCode(() => connect(ns.address(subject())), 'IPC_ERR_NOT_FOUND');
      const address = ns.address(subject());
      const server = await listen(address);
      assert.equal(server.address, address);
      await expectCode(() => listen(address), 'IPC_ERR_EXISTS');
      await server.close();
      await expectCode(() => connect(address, { timeout: 5000 }), 'IPC_ERR_NOT_FOUND');
      const again = await listen(address); // released by close
      await again.close();
    }));

  test('one server serves 20 clients connecting at once, each on its own channel', () =>
    withServer('', async (ns) => {
      const server = await listen(ns.address(subject()), { codec: 'json' });
      assert.equal(await serveClients(server, 20, WATCHDOG), 20);
    }));

  test('what send resolved is delivered although the sender exits at once (1 KiB..1 MiB)', () =>
    withServer('', async (ns) => {
      const sizes = [1024, 4096, 65536, 262144, 1048576, 1048576];
      // The sender's end shows as a 503 to the server's next heartbeat: beat often.
      const server = await listen(ns.address(subject()), { heartbeatInterval: 50 });
      try {
        for (let run = 0; run < (process.env.INTERPROCESS_STRESS ? 20 : 2); run++) await sendExitRound(server, sizes, WATCHDOG);
      } finally {
        await server.close();
      }
    }));

  test('a peer killed with SIGKILL: what it sent arrives in order, then IPC_ERR_CLOSED (the server answers 503 for its subject)', () =>
    withServer('', async (ns) => {
      const server = await listen(ns.address(subject()), { heartbeatInterval: 50 });
      try {
        const rounds = process.env.INTERPROCESS_STRESS ? 20 : 2;
        let total = 0;
        for (let round = 0; round < rounds; round++) total += await killSenderRound(server, round, WATCHDOG);
        console.log(`# nats: ${rounds} sender kills, ${total} messages, each an exact prefix`);
        // The other direction: a receiver killed while the server has a request and a receive pending.
        const child = startChild('channel-peer.mjs', ['hold', server.address]);
        const ch = await watchdog(server.accept(), WATCHDOG, 'accept');
        await killHolder(ch, child, WATCHDOG);
        await ch.close();
      } finally {
        await server.close();
      }
    }));

  test('the NATS server killed (SIGKILL) mid-stream: every send was delivered or rejected with a coded error, exactly', () =>
    withServer('', async (ns) => {
      const server = await listen(ns.address(subject()));
      const child = startChild('channel-peer.mjs', ['stream-window', server.address, 64]);
      const ch = await watchdog(server.accept(), WATCHDOG, 'accept');
      let received = 0;
      await watchdog((async () => { while (received < 3000) checkStamped(await ch.receive(), sizeOf(received), received++); })(), WATCHDOG, 'first messages');
      await ns.kill('SIGKILL');
      // What had arrived is still delivered, in order and without a gap; then the end.
      await watchdog((async () => { for await (const m of ch) checkStamped(m, sizeOf(received), received++); })(), WATCHDOG, 'drain');
      await expectCode(() => ch.receive(), 'IPC_ERR_CLOSED');
      const { sent, resolved, rejected } = await watchdog(child.next('outcomes'), WATCHDOG, 'sender outcomes');
      resolved.sort((x, y) => x - y);
      // Resolved sends are exactly the first resolved.length messages, all of them received.
      resolved.forEach((seq, i) => assert.equal(seq, i, 'resolved sends form a prefix'));
      assert.ok(resolved.length <= received, `${resolved.length} sends resolved, ${received} messages received`);
      assert.deepEqual(Object.keys(rejected), ['IPC_ERR_CLOSED']);
      assert.equal(resolved.length + rejected.IPC_ERR_CLOSED, sent, 'every send settled one way');
      assert.ok(received <= sent);
      console.log(`# nats server killed: sent ${sent}, received ${received}, resolved ${resolved.length}, rejected ${rejected.IPC_ERR_CLOSED} (of which delivered ${received - resolved.length})`);
      assert.deepEqual(await watchdog(child.exited, WATCHDOG, 'child exit'), { code: 0, signal: null });
      // The server lost its connection too: it closed, and accept says so.
      await expectCode(() => server.accept(), 'IPC_ERR_CLOSED');
      await ch.close();
      await server.close();
    }));

  // The NATS server cuts a consumer whose socket takes nothing for write_deadline while data
  // waits for it (here 200 ms) or whose backlog passes max_pending. Checked to fail when the
  // window is made huge (the sender's 2000 sends in flight then flood the stalled reader).
  test('flow control keeps the NATS server from ever cutting a slow consumer (a reader that stalls its event loop past write_deadline)', () =>
    withServer('max_payload: 65536\nmax_pending: 262144\nwrite_deadline: "200ms"', async (ns) => {
      const server = await listen(ns.address(subject()), { readBufferBytes: 64 * 1024 });
      // 2000 sends in flight at once: only the credit window holds the sender back.
      const child = startChild('channel-peer.mjs', ['stream-window', server.address, 2000]);
      try {
        const ch = await watchdog(server.accept(), WATCHDOG, 'accept');
        let n = 0;
        await watchdog(
          (async () => {
            while (n < 900) {
              checkStamped(await ch.receive(), sizeOf(n), n++);
              if (n % 300 === 0) {
                // The event loop stops reading the NATS socket for longer than write_deadline:
                // without credit, the sender would push megabytes meanwhile and the server would
                // cut this connection as a slow consumer.
                const until = Date.now() + 300;
                while (Date.now() < until);
              }
            }
          })(),
          WATCHDOG,
          'stream',
        );
        assert.equal(ch.closed, false);
        assert.doesNotMatch(ns.log(), /Slow Consumer/i);
      } finally {
        child.kill('SIGKILL');
        await child.exited;
        await server.close();
      }
    }));

  test("frames larger than the server's max_payload travel in chunks; a server whose max_payload is below 1 KiB is IPC_ERR_INCOMPATIBLE", async () => {
    await withServer('max_payload: 4096', async (ns) => {
      const server = await listen(ns.address(subject()));
      const [a, b] = await Promise.all([connect(server.address), server.accept()]);
      const sizes = [0, 4079, 4080, 4081, 100_000, 1 << 20];
      const sends = sizes.map((size, i) => a.send(payload(size, i)));
      for (const [i, size] of sizes.entries()) {
        const m = await watchdog(b.receive(), WATCHDOG, 'receive');
        if (size >= 4) checkPayload(m, size, i);
        else assert.equal(m.byteLength, size);
      }
      await Promise.all(sends);
      await Promise.all([a.close(), b.close()]);
      await server.close();
    });
    await withServer('max_payload: 512', async (ns) => {
      await expectCode(() => listen(ns.address(subject())), 'IPC_ERR_INCOMPATIBLE');
      await expectCode(() => connect(ns.address(subject())), 'IPC_ERR_INCOMPATIBLE');
    });
  });

  test('a frame over the receiver\'s maxMessageSize closes that connection with IPC_ERR_PROTOCOL before it is kept', () =>
    withServer('', async (ns) => {
      const server = await listen(ns.address(subject()), { maxMessageSize: 64 * 1024 });
      const [a, b] = await Promise.all([connect(server.address, { maxMessageSize: 1 << 20 }), server.accept()]);
      const sent = a.send(payload(64 * 1024 + 1, 1)).then(() => 'sent', (e) => e.code);
      await expectCode(() => watchdog(b.receive(), WATCHDOG, 'receive'), 'IPC_ERR_PROTOCOL');
      assert.equal(await watchdog(sent, WATCHDOG, 'send'), 'IPC_ERR_CLOSED');
      await expectCode(() => watchdog(a.receive(), WATCHDOG, 'peer side'), 'IPC_ERR_CLOSED');
      await Promise.all([a.close(), b.close()]);
      await server.close();
    }));

  test('dropped, forged or malformed messages on a connection\'s subject: a gap is IPC_ERR_CLOSED, a bad message IPC_ERR_PROTOCOL, both sides told', () =>
    withServer('', async (ns) => {
      const { connect: natsConnect } = require('@nats-io/transport-node');
      const spy = await natsConnect({ servers: `127.0.0.1:${ns.port}` });
      try {
        const header = (kind, id, total, seq) => {
          const b = Buffer.alloc(16);
          b[0] = kind;
          b.writeUInt32LE(id, 4);
          b.writeUInt32LE(total, 8);
          b.writeUInt32LE(seq, 12);
          return b;
        };
        const count = (kind, n) => Buffer.from([kind, 0, 0, 0, n, 0, 0, 0]);
        const cases = [
          // (The reply below is chunk 0 of the direction.) A chunk numbered 5 where 1 was due: 1..4 were lost.
          { forged: Buffer.concat([header(1, 0, 3, 5), Buffer.from('abc')]), code: 'IPC_ERR_CLOSED', match: /lost in transit/ },
          // A heartbeat saying 3 chunks were sent: none arrived.
          { forged: count(33, 3), code: 'IPC_ERR_CLOSED', match: /lost in transit/ },
          { forged: count(34, 2), code: 'IPC_ERR_CLOSED', match: /lost in transit/ },
          { forged: Buffer.concat([header(1, 0, 1 << 30, 1), Buffer.from('abc')]), code: 'IPC_ERR_PROTOCOL', match: /over maxMessageSize/ },
          { forged: Buffer.concat([header(1, 0, 100_000, 1), Buffer.alloc(70_000)]), code: 'IPC_ERR_PROTOCOL', match: /more data than the credit/ },
          { forged: Buffer.concat([header(1, 7, 3, 1), Buffer.from('abc')]), code: 'IPC_ERR_PROTOCOL', match: /correlation id/ },
          { forged: Buffer.concat([header(17, 0, 3, 1), Buffer.from('abc')]), code: 'IPC_ERR_PROTOCOL', match: /continuation/ },
          { forged: Buffer.from([99, 1, 2]), code: 'IPC_ERR_PROTOCOL', match: /unknown kind/ },
          { forged: Buffer.from([32, 1]), code: 'IPC_ERR_PROTOCOL', match: /credit/ },
        ];
        for (const { forged, code, match } of cases) {
          const s = subject();
          // A 64 KiB window: the 70 000-byte chunk below is over the credit granted.
          const server = await listen(ns.address(s), { maxMessageSize: 1 << 20, readBufferBytes: 64 * 1024 });
          // Learn the connection's client -> server subject from its traffic.
          const seen = new Promise((resolve) => {
            const sub = spy.subscribe(`${s}.s.*`, { callback: (_err, msg) => (sub.unsubscribe(), resolve(msg.subject)) });
          });
          await spy.flush();
          const [a, b] = await Promise.all([connect(server.address), server.accept()]);
          a.handle(() => Buffer.from('x'));
          await b.request(Buffer.from('?')); // a's reply travels on the subject the spy watches
          spy.publish(await seen, forged);
          const err = await expectCode(() => watchdog(b.receive(), WATCHDOG, 'receive'), code);
          assert.match(err.message, match);
          // The peer is told (ABORT): its calls end too, and nothing it sends is reported delivered.
          await expectCode(() => watchdog(a.receive(), WATCHDOG, 'peer receive'), 'IPC_ERR_CLOSED');
          await expectCode(() => a.send(Buffer.from('late')), 'IPC_ERR_CLOSED');
          await Promise.all([a.close(), b.close()]);
          await server.close();
        }
      } finally {
        await spy.close();
      }
    }));

  test('a frozen peer (SIGSTOP) is taken for gone after 10 silent heartbeat intervals: IPC_ERR_CLOSED, what it sent before is delivered', () =>
    withServer('', async (ns) => {
      const server = await listen(ns.address(subject()));
      // The child beats every 50 ms: silent for 500 ms means gone.
      const child = startChild('channel-peer.mjs', ['stream', server.address, JSON.stringify({ heartbeatInterval: 50 })]);
      try {
        const ch = await watchdog(server.accept(), WATCHDOG, 'accept');
        let n = 0;
        await watchdog((async () => { while (n < 200) checkStamped(await ch.receive(), sizeOf(n), n++); })(), WATCHDOG, 'first');
        child.kill('SIGSTOP');
        const err = await watchdog(
          (async () => {
            try {
              for (;;) checkStamped(await ch.receive(), sizeOf(n), n++);
            } catch (e) {
              return e;
            }
          })(),
          WATCHDOG,
          'end after silence',
        );
        assert.equal(err.code, 'IPC_ERR_CLOSED');
        assert.match(err.message, /no word from the peer/);
        await ch.close();
      } finally {
        child.kill('SIGKILL');
        await child.exited;
        await server.close();
      }
    }));

  test('credentials: a token or a user and password pass through; wrong or none is IPC_ERR_PERMISSION', async () => {
    await withServer('authorization { token: "s3cret-token" }', async (ns) => {
      const address = ns.address(subject());
      await expectCode(() => listen(address), 'IPC_ERR_PERMISSION');
      await expectCode(() => listen(address, { token: 'wrong' }), 'IPC_ERR_PERMISSION');
      const server = await listen(address, { token: 's3cret-token' });
      await expectCode(() => connect(address), 'IPC_ERR_PERMISSION');
      const [a, b] = await Promise.all([connect(address, { token: 's3cret-token' }), server.accept()]);
      await a.send(Buffer.from('in'));
      assert.equal(String(await watchdog(b.receive(), WATCHDOG, 'receive')), 'in');
      await Promise.all([a.close(), b.close()]);
      await server.close();
    });
    await withServer('authorization { user: "svc", password: "pw-1" }', async (ns) => {
      const address = ns.address(subject());
      await expectCode(() => connect(address, { user: 'svc', pass: 'nope' }), 'IPC_ERR_PERMISSION');
      const server = await listen(address, { user: 'svc', pass: 'pw-1' });
      const [a, b] = await Promise.all([connect(address, { user: 'svc', pass: 'pw-1' }), server.accept()]);
      await b.send(Buffer.from('out'));
      assert.equal(String(await watchdog(a.receive(), WATCHDOG, 'receive')), 'out');
      await Promise.all([a.close(), b.close()]);
      await server.close();
    });
  });

  test('a user without permission on the subject: IPC_ERR_PERMISSION, not a silent drop', () =>
    withServer(
      'authorization { users: [ { user: "svc", password: "pw" }, { user: "guest", password: "pw", permissions: { publish: { deny: ">" } } } ] }',
      async (ns) => {
        const address = ns.address(subject());
        const server = await listen(address, { user: 'svc', pass: 'pw' });
        await expectCode(() => connect(address, { user: 'guest', pass: 'pw', timeout: 5000 }), 'IPC_ERR_PERMISSION');
        await server.close();
      },
    ));

  test('a publish the NATS server refuses mid-use ends the channel with IPC_ERR_PERMISSION (a refused message is never reported sent)', async () => {
    const s = subject();
    const users = `{ user: "svc", password: "pw" }, { user: "guest", password: "pw", permissions: { publish: { allow: ["${s}"] } } }`;
    await withServer(`authorization { users: [ ${users} ] }`, async (ns) => {
      const server = await listen(ns.address(s), { user: 'svc', pass: 'pw' });
      // The guest may knock (HELLO on the subject) but not send on its connection's subject.
      const [a, b] = await Promise.all([connect(server.address, { user: 'guest', pass: 'pw' }), server.accept()]);
      await expectCode(() => watchdog(a.send(Buffer.from('x')), WATCHDOG, 'send'), 'IPC_ERR_CLOSED');
      await expectCode(() => watchdog(a.receive(), WATCHDOG, 'receive'), 'IPC_ERR_PERMISSION');
      assert.equal(b.tryReceive(), undefined);
      await Promise.all([a.close(), b.close()]);
      await server.close();
    });
  });

  test('handshake: a listener refuses a HELLO of another version or with a bad id; a client refuses what is not a WELCOME', () =>
    withServer('', async (ns) => {
      const { connect: natsConnect } = require('@nats-io/transport-node');
      const raw = await natsConnect({ servers: `127.0.0.1:${ns.port}` });
      try {
        const s = subject();
        const server = await listen(ns.address(s));
        const ask = async (body, id) => {
          const inbox = `${s}.c.${id}`;
          const answer = new Promise((resolve) => {
            const sub = raw.subscribe(inbox, { callback: (_e, m) => (sub.unsubscribe(), resolve(m.data)) });
          });
          await raw.flush();
          raw.publish(s, Buffer.concat([Buffer.of(40), Buffer.from(JSON.stringify(body))]), { reply: inbox });
          const data = await watchdog(answer, WATCHDOG, 'answer');
          assert.equal(data[0], 42, 'REFUSE');
          return JSON.parse(Buffer.from(data.subarray(1)).toString());
        };
        const id = 'ab'.repeat(12);
        assert.equal((await ask({ v: 2, id, window: 65536, heartbeat: 1000 }, id)).code, 'IPC_ERR_INCOMPATIBLE');
        assert.equal((await ask({ v: 1, id: 'x', window: 65536, heartbeat: 1000 }, 'x')).code, 'IPC_ERR_PROTOCOL');
        assert.equal((await ask({ v: 1, id, window: 10, heartbeat: 1000 }, id)).code, 'IPC_ERR_PROTOCOL');
        await server.close();
        // Something that is not a listener answers on a subject.
        for (const [reply, code] of [
          [Buffer.concat([Buffer.of(42), Buffer.from('{"code":"IPC_ERR_INCOMPATIBLE","message":"v9"}')]), 'IPC_ERR_INCOMPATIBLE'],
          [Buffer.from('+OK hello'), 'IPC_ERR_PROTOCOL'],
          [Buffer.concat([Buffer.of(41), Buffer.from('{"v":1,"window":"big","heartbeat":1000}')]), 'IPC_ERR_PROTOCOL'],
        ]) {
          const t = subject();
          const sub = raw.subscribe(t, { callback: (_e, m) => m.respond(reply) });
          await raw.flush();
          await expectCode(() => connect(ns.address(t), { timeout: 5000 }), code);
          sub.unsubscribe();
        }
      } finally {
        await raw.close();
      }
    }));

  const openssl = ['/usr/bin/openssl', '/usr/local/bin/openssl'].find((p) => fs.existsSync(p));
  test("TLS: tls.caFile passes through and the certificate is checked against the address's host; without the CA: IPC_ERR_PERMISSION", { skip: openssl === undefined ? 'openssl is not installed (needed to make test certificates)' : undefined }, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `interprocess-${uniqueName('tls')}-`));
    try {
      const run = (...args) => execFileSync(openssl, args, { cwd: dir, stdio: 'ignore' });
      const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
      run('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=interprocess test CA');
      run('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
      fs.writeFileSync(path.join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
      run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '1', '-extfile', 'san.ext');
      const tlsConfig = `tls { cert_file: "${path.join(dir, 'server.pem')}", key_file: "${path.join(dir, 'server.key')}" }`;
      await withServer(tlsConfig, async (ns) => {
        const address = ns.address(subject());
        const tls = { caFile: path.join(dir, 'ca.pem') };
        const server = await listen(address, { tls });
        // Without the CA the server's certificate is not trusted; with a missing CA file, the file is named.
        assert.match((await expectCode(() => connect(address, { timeout: 5000 }), 'IPC_ERR_PERMISSION')).message, /certificate/);
        assert.match((await expectCode(() => connect(address, { tls: { caFile: path.join(dir, 'nope.pem') } }), 'IPC_ERR_NOT_FOUND')).message, /nope\.pem/);
        const [a, b] = await Promise.all([connect(address, { tls }), server.accept()]);
        await a.send(Buffer.from('sealed'));
        assert.equal(String(await watchdog(b.receive(), WATCHDOG, 'receive')), 'sealed');
        await Promise.all([a.close(), b.close()]);
        await server.close();
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
