// Soak workload: a shared-memory Queue with producers and consumers that are killed and paused.
//
// Invariants, checked exactly at the end of every epoch (producers stopped, queue drained):
//   - no message is torn (each carries its producer, sequence number and a checksum of every
//     byte), duplicated (a bit per (producer, seq) in a shared ledger, set with Atomics.or) or
//     reordered (a consumer sees each producer's sequence numbers increasing);
//   - every send a producer completed (recorded in the ledger after send returned) is received,
//     except at most one message per consumer killed by chaos (the documented at-most-once rule:
//     a consumer killed between taking a message and using it loses it);
//   - pauses (SIGSTOP past the stall timeout) lose nothing at all.
import { Queue, SharedMemory } from 'interprocess';

export const name = 'queue';

const MAX_PRODUCERS = 64;
const MAX_SEQ = 1 << 21;
const WORDS_PER_PRODUCER = MAX_SEQ / 32;
// Ledger (Int32Array): [0] violations, [16 + slot] completed sends, bitmaps from BITMAPS.
const SENT = 16;
const BITMAPS = 1024;
const LEDGER_BYTES = (BITMAPS + MAX_PRODUCERS * WORDS_PER_PRODUCER) * 4;
const STALL_MS = 200;

const check = (slot, seq) => (Math.imul(slot + 1, 0x9e3779b1) ^ Math.imul(seq, 0x85ebca6b)) | 0;

function fill(view, slot, seq) {
  const dv = new DataView(view.buffer, view.byteOffset, view.byteLength);
  dv.setUint32(0, slot, true);
  dv.setUint32(4, seq, true);
  dv.setInt32(8, check(slot, seq), true);
  for (let i = 12; i < view.length; i++) view[i] = (seq + i * 7 + slot) & 255;
}

/** Returns [slot, seq] or a string saying what is torn. */
function parse(bytes) {
  if (bytes.length < 12) return `message of ${bytes.length} bytes`;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const slot = dv.getUint32(0, true);
  const seq = dv.getUint32(4, true);
  if (slot >= MAX_PRODUCERS || dv.getInt32(8, true) !== check(slot, seq)) return `bad header (slot ${slot}, seq ${seq})`;
  for (let i = 12; i < bytes.length; i++) if (bytes[i] !== ((seq + i * 7 + slot) & 255)) return `torn payload at byte ${i} (slot ${slot}, seq ${seq})`;
  return [slot, seq];
}

const yieldNow = () => new Promise((r) => setImmediate(r));

export const roles = {
  async producer({ queue, ledger, slot, style }, control) {
    const q = Queue.open(queue, { stallTimeout: STALL_MS });
    const l = new Int32Array(SharedMemory.open(ledger).buffer);
    control.report('ready');
    let seq = 0;
    for (; seq < MAX_SEQ && !control.stopping; seq++) {
      const msg = new Uint8Array(16 + ((seq * 13) % 112));
      fill(msg, slot, seq);
      if (style === 'async') await q.send(msg);
      else q.sendSync(msg);
      Atomics.store(l, SENT + slot, seq + 1); // a completed send: it must be received
      if ((seq & 255) === 255 && style !== 'async') await yieldNow();
    }
    q.close();
    return { sent: seq };
  },

  async consumer({ queue, ledger, style }, control) {
    const q = Queue.open(queue, { stallTimeout: STALL_MS });
    const l = new Int32Array(SharedMemory.open(ledger).buffer);
    let last = new Map();
    let received = 0;
    control.report('ready');
    const take = (bytes) => {
      const parsed = parse(bytes);
      if (typeof parsed === 'string') {
        Atomics.add(l, 0, 1);
        return control.violation(parsed);
      }
      const [slot, seq] = parsed;
      const word = BITMAPS + slot * WORDS_PER_PRODUCER + (seq >>> 5);
      const bit = 1 << (seq & 31);
      if ((Atomics.or(l, word, bit) & bit) !== 0) {
        Atomics.add(l, 0, 1);
        control.violation(`duplicate: slot ${slot} seq ${seq}`);
      }
      if ((last.get(slot) ?? -1) >= seq) {
        Atomics.add(l, 0, 1);
        control.violation(`reordered: slot ${slot} seq ${seq} after ${last.get(slot)}`);
      }
      last.set(slot, seq);
      received++;
    };
    for (;;) {
      // A survivor lives across epochs: 'drain' (empty the queue, then say so) and 'epoch'
      // (the ledger was cleared) come between messages. Once asked to stop, it drains and leaves.
      const cmd = control.commands.shift();
      if (cmd?.cmd === 'epoch') {
        // The ledger was cleared and producers start again from slot 0.
        last = new Map();
        control.report('epoch');
      }
      let bytes;
      try {
        bytes = style === 'async' ? await q.receive({ timeout: 100 }) : q.receiveSync({ timeout: 100 });
      } catch (err) {
        if (err.code !== 'IPC_ERR_TIMEOUT') throw err;
        if (cmd?.cmd === 'drain') control.report('drained');
        else if (cmd !== undefined && cmd.cmd !== 'epoch') control.commands.unshift(cmd);
        if (control.stopping) break;
        await yieldNow();
        continue;
      }
      if (cmd?.cmd === 'drain') control.commands.unshift(cmd);
      take(bytes);
      if ((received & 255) === 0) await yieldNow();
    }
    q.close();
    return { received };
  },
};

let state;
let shared;

function spawnProducer(ctx) {
  if (state.nextSlot >= MAX_PRODUCERS) return;
  const slot = state.nextSlot++;
  state.slots.push(slot);
  const style = ctx.random.pick(['sync', 'async']);
  state.procs.push(ctx.spawn(name, 'producer', { queue: shared.queue, ledger: state.ledger, slot, style }, { chaos: 'kill' }));
}

function spawnConsumer(ctx) {
  const style = ctx.random.pick(['sync', 'async']);
  state.procs.push(ctx.spawn(name, 'consumer', { queue: shared.queue, ledger: state.ledger, style }, { chaos: 'kill' }));
}

export async function start(ctx) {
  state = { nextSlot: 0, slots: [], procs: [], consumerKills: 0, producerKills: 0 };
  if (shared === undefined) {
    // One queue for the whole run (its positions may wrap past 2^32 in a long one), one ledger
    // (cleared between epochs, while the queue is empty), and one consumer that is paused but
    // never killed, whose memory and descriptors the summary follows.
    shared = { queue: `${ctx.run}-q`, ledger: `${ctx.run}-ql` };
    shared.q = Queue.create(shared.queue, { capacity: 256, maxMessageSize: 128 });
    shared.l = SharedMemory.create(shared.ledger, { byteLength: LEDGER_BYTES });
    shared.survivor = ctx.spawn(name, 'consumer', { queue: shared.queue, ledger: shared.ledger, style: 'async' }, { chaos: 'pause' });
    await shared.survivor.next('ready');
  } else {
    new Int32Array(shared.l.buffer).fill(0);
    shared.survivor.send({ cmd: 'epoch' });
    await shared.survivor.next('epoch');
  }
  state.ledger = shared.ledger;
  spawnProducer(ctx);
  spawnProducer(ctx);
  spawnConsumer(ctx);
  await Promise.all(state.procs.map((p) => p.next('ready')));
}

export function respawn(ctx, victim) {
  if (victim.role === 'producer') {
    state.producerKills++;
    spawnProducer(ctx);
  } else {
    state.consumerKills++;
    spawnConsumer(ctx);
  }
}

export async function finish(ctx) {
  const live = (role) => state.procs.filter((p) => p.role === role && !p.dead && !p.killedByChaos);
  await Promise.all(live('producer').map((p) => p.stop(60_000)));
  await Promise.all(live('consumer').map((p) => p.stop(60_000)));
  shared.survivor.send({ cmd: 'drain' });
  await shared.survivor.next('drained');
  const l = new Int32Array(shared.l.buffer);
  let lost = 0;
  let sent = 0;
  let received = 0;
  for (const slot of state.slots) {
    const completed = Atomics.load(l, SENT + slot);
    sent += completed;
    const base = BITMAPS + slot * WORDS_PER_PRODUCER;
    for (let seq = 0; seq <= Math.min(completed, MAX_SEQ - 1); seq++) {
      const got = (l[base + (seq >>> 5)] & (1 << (seq & 31))) !== 0;
      if (got) received++;
      else if (seq < completed) lost++;
    }
    // Nothing beyond the one send that may have been under way when the producer died.
    for (let seq = completed + 1; seq < Math.min(MAX_SEQ, completed + 4096); seq++) {
      if ((l[base + (seq >>> 5)] & (1 << (seq & 31))) !== 0) ctx.violation(name, `slot ${slot} seq ${seq} received but never sent`);
    }
  }
  if (lost > state.consumerKills) ctx.violation(name, `${lost} completed sends lost, more than the ${state.consumerKills} consumers killed`);
  const stats = shared.q.stats();
  ctx.add(name, {
    operations: received,
    completedSends: sent,
    lostByRule: lost,
    consumerKills: state.consumerKills,
    producerKills: state.producerKills,
  });
  ctx.set(name, { skippedRecords: stats.skippedRecords, reclaimedSlots: stats.reclaimedSlots });
}

export async function close() {
  await shared?.survivor.stop(30_000).catch(() => {});
  if (shared === undefined) return;
  shared.q.close();
  shared.l.close();
  Queue.remove(shared.queue);
  SharedMemory.remove(shared.ledger);
}
