// Soak workload: channels over unix:// and shm:// with clients killed and paused mid-stream,
// and a long-lived server per transport (paused now and then, never killed) whose memory and
// descriptors the summary follows across the whole run.
//
// Invariants, exact at the end of every epoch: on every connection the server sees sequence
// numbers 0, 1, 2... with no gap, duplicate, reordering or torn byte; and every send a client
// completed (recorded after `await send` resolved) has arrived, even from a client SIGKILLed
// right after (what a send resolved survives its process).
import * as os from 'node:os';
import * as path from 'node:path';
import { connect, listen, SharedMemory } from 'interprocess';

export const name = 'channel';

const MAX_CLIENTS = 4096;
// Ledger (Int32Array) for the run: [ACKED + slot] completed sends, [RECEIVED + slot] arrived.
const ACKED = 0;
const RECEIVED = MAX_CLIENTS;
const TRANSPORTS = ['unix', 'shm'];

const check = (slot, seq) => (Math.imul(slot + 7, 0x27d4eb2d) ^ Math.imul(seq + 1, 0x165667b1)) | 0;

function message(slot, seq) {
  const msg = new Uint8Array(12 + ((seq * 29) % 500));
  const dv = new DataView(msg.buffer);
  dv.setUint32(0, slot, true);
  dv.setUint32(4, seq, true);
  dv.setInt32(8, check(slot, seq), true);
  for (let i = 12; i < msg.length; i++) msg[i] = (seq ^ (i * 3)) & 255;
  return msg;
}

function parse(bytes) {
  if (bytes.length < 12) return `message of ${bytes.length} bytes`;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const slot = dv.getUint32(0, true);
  const seq = dv.getUint32(4, true);
  if (slot >= MAX_CLIENTS || dv.getInt32(8, true) !== check(slot, seq)) return `bad header (slot ${slot}, seq ${seq})`;
  for (let i = 12; i < bytes.length; i++) if (bytes[i] !== ((seq ^ (i * 3)) & 255)) return `torn byte ${i} (slot ${slot}, seq ${seq})`;
  return [slot, seq];
}

export const roles = {
  async server({ address, ledger: ledgerName }, control) {
    const server = await listen(address);
    const ledger = new Int32Array(SharedMemory.open(ledgerName).buffer);
    let connections = 0;
    let received = 0;
    const serve = async (ch) => {
      connections++;
      let expected = 0;
      let slot = -1;
      try {
        for await (const bytes of ch) {
          const parsed = parse(bytes);
          if (typeof parsed === 'string') {
            control.violation(parsed);
            continue;
          }
          const [s, seq] = parsed;
          if (slot === -1) slot = s;
          if (s !== slot || seq !== expected) control.violation(`slot ${s} seq ${seq}, expected slot ${slot} seq ${expected}`);
          expected = seq + 1;
          received++;
          Atomics.store(ledger, RECEIVED + slot, expected);
        }
      } catch (err) {
        // A client killed mid-stream ends its channel with IPC_ERR_CLOSED; nothing else may happen.
        if (err.code !== 'IPC_ERR_CLOSED') control.violation(`connection ended with ${err.code ?? err}`);
      }
    };
    const accepting = (async () => {
      for await (const ch of server) void serve(ch);
    })();
    control.report('ready', { address: server.address });
    while (!control.stopping) await new Promise((r) => setTimeout(r, 20));
    await server.close();
    await accepting;
    return { connections, received };
  },

  async client({ address, ledger: ledgerName, slot }, control) {
    const ledger = new Int32Array(SharedMemory.open(ledgerName).buffer);
    const ch = await connect(address, { timeout: 10_000 });
    control.report('ready');
    let seq = 0;
    for (; !control.stopping; seq++) {
      await ch.send(message(slot, seq));
      Atomics.store(ledger, ACKED + slot, seq + 1); // completed: it must arrive
    }
    await ch.close();
    return { sent: seq };
  },
};

let servers;
let shared;
let state;

function spawnClient(ctx, transport) {
  if (shared.nextSlot >= MAX_CLIENTS) return;
  const slot = shared.nextSlot++;
  state.slots.push(slot);
  state.procs.push(ctx.spawn(name, 'client', { address: servers.get(transport).address, ledger: shared.ledgerName, slot }, { chaos: 'kill' }));
  state.procs.at(-1).transport = transport;
}

export async function start(ctx) {
  if (servers === undefined) {
    // Slots are numbered across the run, so one ledger serves every epoch.
    shared = { ledgerName: `${ctx.run}-cl`, nextSlot: 0 };
    shared.ledger = SharedMemory.create(shared.ledgerName, { byteLength: 2 * MAX_CLIENTS * 4 });
    servers = new Map();
    for (const transport of TRANSPORTS) {
      const address = transport === 'unix' ? `unix://${path.join(os.tmpdir(), `${ctx.run}.sock`)}` : `shm://${ctx.run}-ch`;
      const proc = ctx.spawn(name, 'server', { address, ledger: shared.ledgerName }, { chaos: 'pause' });
      proc.address = (await proc.next('ready')).address;
      proc.label = ` ${transport}`;
      servers.set(transport, proc);
    }
  }
  state = { slots: [], procs: [], kills: 0 };
  for (const transport of TRANSPORTS) spawnClient(ctx, transport);
  await Promise.all(state.procs.map((p) => p.next('ready')));
}

export function respawn(ctx, victim) {
  state.kills++;
  spawnClient(ctx, victim.transport);
}

export async function finish(ctx) {
  await Promise.all(state.procs.filter((p) => !p.dead && !p.killedByChaos).map((p) => p.stop(60_000)));
  const l = new Int32Array(shared.ledger.buffer);
  // Give the servers time to take what the last clients committed (bounded: a violation otherwise).
  const deadline = Date.now() + 15_000;
  const missing = () => state.slots.filter((s) => Atomics.load(l, RECEIVED + s) < Atomics.load(l, ACKED + s));
  while (missing().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  for (const s of missing()) ctx.violation(name, `client slot ${s}: ${Atomics.load(l, ACKED + s)} sends completed, ${Atomics.load(l, RECEIVED + s)} arrived`);
  let messages = 0;
  for (const s of state.slots) messages += Atomics.load(l, RECEIVED + s);
  ctx.add(name, { operations: messages, connections: state.slots.length, clientKills: state.kills });
}

export async function close() {
  for (const server of servers?.values() ?? []) await server.stop(30_000).catch(() => {});
  if (shared === undefined) return;
  shared.ledger.close();
  SharedMemory.remove(shared.ledgerName);
}
