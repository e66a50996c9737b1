// Another local user, played by `nobody` (setpriv, as root): it cannot delay, deny or fake
// anything about objects it cannot open, and no open / openOrCreate silently uses an object it
// created first (squatting). What that user runs is staged in a directory it can read.
//
// The attack on machine-wide names (the lifeline registry of earlier versions) runs inside a
// private mount namespace with its own /dev/shm, so the suite never touches the machine's.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { connect, listen, MessageQueue, Mutex, Queue, SharedMemory } from 'interprocess';
import { expectCode, startChild, uniqueName, watchdog } from './helpers.mjs';
import { stageForOtherUser } from './stage.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..');
const NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];
/** How nobody runs python3: with the system PATH (root's may list directories nobody cannot read). */
const PYTHON = ['env', 'PATH=/usr/local/bin:/usr/bin:/bin', 'python3'];
const PRIVATE_SHM = ['unshare', '-m', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs -o mode=1777 tmpfs /dev/shm && exec "$@"', 'sh'];

function works(command, args) {
  try {
    execFileSync(command, args, { stdio: 'ignore', timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
}

const notRoot = process.getuid() !== 0 ? 'needs root (to run setpriv as user nobody)' : undefined;
const noSetpriv = notRoot ?? (works('setpriv', [...NOBODY.slice(1), 'true']) ? undefined : 'setpriv cannot switch to user nobody here');
const noPython = noSetpriv ?? (works(NOBODY[0], [...NOBODY.slice(1), ...PYTHON, '-c', 'import fcntl']) ? undefined : 'no python3 that user nobody can run');
const noNamespace = noPython ?? (works(PRIVATE_SHM[0], [...PRIVATE_SHM.slice(1), 'true']) ? undefined : 'cannot mount a private /dev/shm (unshare -m) here');

/** A copy of the package, the fixtures and (if needed) Node that user nobody can read (stage.mjs). */
let staged;
let stage;
before(() => {
  if (noSetpriv) return;
  staged = stageForOtherUser();
  stage = staged.dir;
});
after(() => staged?.remove());

/** Starts the staged other-user.mjs as user nobody. */
const asNobody = (role, ...args) => startChild(path.join(stage, 'fixtures', 'other-user.mjs'), [role, ...args], { wrap: NOBODY, cwd: stage, execPath: staged.node });

/** The staged lock-attacker.py as user nobody: ask(command) resolves with its JSON answer. */
function startAttacker() {
  const child = spawn(NOBODY[0], [...NOBODY.slice(1), ...PYTHON, path.join(stage, 'fixtures', 'lock-attacker.py')], { stdio: ['pipe', 'pipe', 'inherit'] });
  const answers = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return {
    async ask(line) {
      child.stdin.write(line + '\n');
      const { value, done } = await watchdog(answers.next(), 10_000, `attacker: ${line}`);
      assert.equal(done, false, `the attacker exited before answering ${line}`);
      return JSON.parse(value);
    },
    end: () => new Promise((resolve) => {
      child.on('exit', resolve);
      child.stdin.end();
    }),
  };
}

test('another user holding every lock it can reach, squatting the old registry name and unlinking what it can delays nothing', { skip: noNamespace }, async () => {
  const driver = startChild('other-users-driver.mjs', [path.join(stage, 'fixtures', 'lock-attacker.py')], { wrap: PRIVATE_SHM });
  const msg = await watchdog(driver.next(), 60_000, 'the attack scenario');
  await driver.exited;
  assert.equal(msg.state, 'done', msg.message);
  const f = msg.facts;
  assert.deepEqual(f.registry, { registry: 'read-locked', command: 'registry' }); // the attack on the old design is in place
  // nobody reaches nothing of ours: no object, no descriptor, no name
  assert.deepEqual(f.sweep.opened, []);
  assert.equal(f.sweep.denied.length, 1);
  assert.deepEqual(f.sweep.unlinked, []);
  assert.equal(f.sweep.foreignDescriptors, 0);
  assert.deepEqual(f.sweepWorker.opened, []);
  assert.equal(f.sweepWorker.foreignDescriptors, 0);
  assert.deepEqual(f.machineWideUsers, [], 'no process of ours opens a machine-wide file');
  assert.deepEqual(f.shmAfter, ['interprocess._lifelines'], 'only the attacker made a machine-wide name');
  // a live owner is never taken from; a dead one is recovered; inspect tells them apart
  assert.equal(f.liveTryLock, false);
  assert.equal(f.liveWait, 'IPC_ERR_TIMEOUT');
  assert.equal(f.inspectHeld, true);
  assert.equal(f.inspectDead, false);
  assert.equal(f.recovered, 'IPC_ERR_OWNER_DEAD');
  assert.deepEqual(f.workerLive, [false, false]);
  assert.deepEqual(f.workerRecovered, ['IPC_ERR_OWNER_DEAD', 'IPC_ERR_OWNER_DEAD']);
  // a new process still takes owner tokens
  assert.equal(f.queue, 'sent under attack');
});

test('names another user created first: open and openOrCreate refuse them (IPC_ERR_PERMISSION) unless allowOtherOwner', { skip: noSetpriv }, async (t) => {
  const [shm, mutex, queue, mq, channel, link] = ['shm', 'mx', 'q', 'mq', 'ch', 'ln'].map((tag) => uniqueName(tag));
  const squatter = asNobody('squat', 0o666, shm, mutex, queue, mq, channel, link);
  t.after(async () => {
    squatter.kill('SIGKILL');
    await squatter.exited;
    for (const name of [shm, mutex, queue, link, channel]) SharedMemory.remove(name);
    MessageQueue.remove(mq);
  });
  await watchdog(squatter.next('squatting'), 10_000, 'squatting');

  const refused = async (fn) => {
    const err = await expectCode(fn, 'IPC_ERR_PERMISSION');
    assert.match(err.message, /owned by uid 65534/);
    assert.match(err.message, /allowOtherOwner/);
  };
  await refused(() => SharedMemory.open(shm));
  await refused(() => SharedMemory.openOrCreate(shm, { byteLength: 4096 }));
  await refused(() => Mutex.open(mutex));
  await refused(() => Mutex.openOrCreate(mutex));
  await refused(() => Queue.open(queue));
  await refused(() => Queue.openOrCreate(queue, { capacity: 4, maxMessageSize: 64 }));
  await refused(() => MessageQueue.open(mq));
  await refused(() => MessageQueue.openOrCreate(mq, { maxMessages: 4, maxMessageSize: 64 }));
  await refused(() => connect(`shm://${channel}`, { timeout: 5000 }));
  await expectCode(() => Mutex.create(mutex), 'IPC_ERR_EXISTS');
  // A symbolic link in /dev/shm is never followed (shm_open opens with O_NOFOLLOW).
  await expectCode(() => SharedMemory.open(link, { allowOtherOwner: true }), 'IPC_ERR_PERMISSION');
  await expectCode(() => SharedMemory.create(link, { byteLength: 64 }), 'IPC_ERR_EXISTS');

  // Opting in hands over what the other user put there: that is what the check protects.
  const memory = SharedMemory.open(shm, { allowOtherOwner: true });
  assert.equal(Buffer.from(memory.buffer, 0, 17).toString(), 'written by nobody');
  memory.close();
  Mutex.openOrCreate(mutex, { allowOtherOwner: true }).close();
  const q = Queue.open(queue, { allowOtherOwner: true });
  assert.equal(Buffer.from(q.tryReceive()).toString(), 'from nobody');
  q.close();
  const m = MessageQueue.openOrCreate(mq, { maxMessages: 4, maxMessageSize: 64, allowOtherOwner: true });
  assert.equal(Buffer.from(m.tryReceive()).toString(), 'from nobody');
  m.close();
  const ch = await connect(`shm://${channel}`, { timeout: 10_000, allowOtherOwner: true, codec: 'json' });
  await ch.send('hello');
  assert.equal(await ch.receive({ timeout: 10_000 }), 'nobody saw hello');
  await ch.close();
});

test('another user cannot open a 0o600 object at all, opt-in or not', { skip: noSetpriv }, async (t) => {
  const [shm, mutex, queue, mq, channel] = ['shm', 'mx', 'q', 'mq', 'ch'].map((tag) => uniqueName(tag));
  const memory = SharedMemory.create(shm, { byteLength: 4096 });
  const m = Mutex.create(mutex);
  const q = Queue.create(queue, { capacity: 4, maxMessageSize: 64 });
  const mqueue = MessageQueue.create(mq, { maxMessages: 4, maxMessageSize: 64 });
  const server = await listen(`shm://${channel}`);
  t.after(async () => {
    for (const handle of [memory, m, q, mqueue]) handle.close();
    await server.close();
    for (const name of [shm, mutex, queue]) SharedMemory.remove(name);
    MessageQueue.remove(mq);
  });
  const nobody = asNobody('open', shm, mutex, queue, mq, channel);
  const tried = await watchdog(nobody.next('tried'), 20_000, 'nobody trying');
  await nobody.exited;
  assert.deepEqual(
    { shm: tried.shm, mutex: tried.mutex, queue: tried.queue, mq: tried.mq, channel: tried.channel, raw: tried.raw },
    { shm: 'IPC_ERR_PERMISSION', mutex: 'IPC_ERR_PERMISSION', queue: 'IPC_ERR_PERMISSION', mq: 'IPC_ERR_PERMISSION', channel: 'IPC_ERR_PERMISSION', raw: 'EACCES' },
  );
});

test('a dead server\'s shm:// accept point that another user owns is not taken over without the opt-in', { skip: noSetpriv }, async (t) => {
  const [shm, mutex, queue, mq, channel, link] = ['shm', 'mx', 'q', 'mq', 'ch', 'ln'].map((tag) => uniqueName(tag));
  const squatter = asNobody('squat', 0o666, shm, mutex, queue, mq, channel, link);
  t.after(() => {
    for (const name of [shm, mutex, queue, link, channel]) SharedMemory.remove(name);
    MessageQueue.remove(mq);
  });
  await watchdog(squatter.next('squatting'), 10_000, 'squatting');
  squatter.kill('SIGKILL'); // its accept point stays, with a dead server token
  await squatter.exited;
  await expectCode(() => listen(`shm://${channel}`), 'IPC_ERR_PERMISSION');
  const server = await listen(`shm://${channel}`, { allowOtherOwner: true });
  await server.close();
});

test('a connection is never more open than its accept point, whatever the point\'s mode field says', async (t) => {
  const name = uniqueName('ch');
  const server = await listen(`shm://${name}`); // 0o600
  t.after(() => server.close());
  // Someone who can write the point (only its owner, here) widens the field for connections.
  const point = SharedMemory.open(name);
  Atomics.store(new Int32Array(point.buffer), 21, 0o666);
  point.close();
  const accepted = server.accept({ timeout: 10_000 });
  const ch = await connect(`shm://${name}`, { timeout: 10_000 });
  const other = await accepted;
  // The connection's objects are unlinked once accepted; their descriptors (kept by the
  // mappings) still tell their mode.
  const modes = fs
    .readdirSync('/proc/self/fd')
    .filter((fd) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(`/dev/shm/interprocess.${name}.c`);
      } catch {
        return false;
      }
    })
    .map((fd) => fs.statSync(`/proc/self/fd/${fd}`).mode & 0o777);
  assert.ok(modes.length >= 3, `found the connection's objects (${modes.length})`);
  assert.deepEqual([...new Set(modes)], [0o600]);
  await Promise.all([ch.close(), other.close()]);
});

test('a user who can only read an object can keep new owners out (a coded error), never make a dead owner look alive', { skip: noPython }, async (t) => {
  const name = uniqueName('ro');
  const m = Mutex.create(name, { mode: 0o644 });
  const holder = startChild('sync-child.mjs', ['hold', name, 'sync']);
  const attacker = startAttacker();
  t.after(async () => {
    holder.kill('SIGKILL');
    await Promise.all([holder.exited, attacker.end()]);
    SharedMemory.remove(name);
  });
  await watchdog(holder.next('holding'), 10_000, 'holding');
  assert.equal(m.tryLock(), false); // alive; and this thread has taken its owner token
  assert.deepEqual(await attacker.ask(`lock interprocess.${name}`), { locked: 'read', command: 'lock' });
  // A thread that has no token yet cannot take one while every byte is read-locked...
  const entry = path.join(root, 'dist', 'cjs', 'index.js');
  const fresh = execFileSync(process.execPath, ['-e', `try { require(${JSON.stringify(entry)}).Mutex.open(${JSON.stringify(name)}).tryLock(); console.log('ok') } catch (e) { console.log(e.code, e.message) }`], { encoding: 'utf8' });
  assert.match(fresh, /^IPC_ERR_SYSTEM .*no free owner token/);
  // ...but read locks never pass for a live owner: once the holder is killed, the attacker
  // read-locks its byte too, and the holder is still recovered.
  holder.kill('SIGKILL');
  await holder.exited;
  assert.deepEqual(await attacker.ask(`lock interprocess.${name}`), { locked: 'read', command: 'lock' });
  await expectCode(() => m.lock({ timeout: 10_000 }), 'IPC_ERR_OWNER_DEAD');
  m.markConsistent();
  m.unlock();
  m.close();
});
