// C references, measured in the same run as everything else, built from bench/native/*.c when a
// trial runs them; without a C compiler they are left out (with a note in the report).
//   c-futex, c-spin  a futex ping-pong where the waiting side always sleeps, and a spinning
//                    one: round trips of one word, no payload (futex_pingpong.c)
//   c-ring           the hardware limit for messages between processes: a C single-producer
//                    single-consumer spin ring with js-ring.mjs's geometry, both processes
//                    copying each message (ring.c); throughput and round trips at every size
//   c-ring-malloc    the same, the receiver copying into a buffer malloc'd and freed per
//                    message (as JavaScript's fresh copy) instead of one reused buffer
import { cReferencesNote, runCReference } from '../util.mjs';

async function pingPong(mode, { count, cpus }) {
  const r = await runCReference('futex_pingpong', [mode, count, cpus[0] ?? -1, cpus[1] ?? -1]);
  return { n: r.n, p50: r.p50, p99: r.p99, p999: r.p999 };
}

/** ring.c's arguments: the buffer flavour after the cpus (-1: unpinned), then the warm-up. */
const ringArgs = (mode, { size, count, warmup = 0, cpus }, buffer) => [mode, size, count, cpus[0] ?? -1, cpus[1] ?? -1, buffer, warmup];

function cRing(buffer) {
  return {
    roundTrip: async (args) => {
      const r = await runCReference('ring', ringArgs('roundtrip', args, buffer));
      return { n: r.n, p50: r.p50, p99: r.p99, p999: r.p999 };
    },
    throughput: async (args) => {
      const r = await runCReference('ring', ringArgs('throughput', args, buffer));
      // The shared memory per message the ring holds, like js-ring-processes's and the queue's column.
      const shmBytesPerMessage = r.ringBytes / r.capacity;
      return { messages: r.messages, seconds: r.seconds, warmup: r.warmup, cpuUsPerMessage: r.cpuUsPerMessage, shmBytesPerMessage, shmBytesPerPayloadByte: shmBytesPerMessage / args.size };
    },
  };
}

const ids = ['c-futex', 'c-spin', 'c-ring', 'c-ring-malloc'];
export const notes = [cReferencesNote(ids)].filter(Boolean);

export default notes.length > 0
  ? []
  : [
      {
        id: 'c-futex',
        label: 'C futex ping-pong (reference)',
        family: 'reference',
        waits: 'block',
        sizes: [64],
        roundTrip: (args) => pingPong('futex', args),
      },
      {
        id: 'c-spin',
        label: 'C spinning ping-pong (reference)',
        family: 'reference',
        waits: 'spin',
        sizes: [64],
        roundTrip: (args) => pingPong('spin', args),
      },
      {
        id: 'c-ring',
        label: 'C spin ring between two processes, js-ring geometry (the hardware limit, reference)',
        family: 'reference',
        waits: 'spin',
        sizes: [64, 4096, 65536, 1048576],
        sustained: true,
        trials: 3,
        ...cRing('reuse'),
      },
      {
        id: 'c-ring-malloc',
        label: 'C spin ring between two processes, a malloc\'d copy per message (reference)',
        family: 'reference',
        waits: 'spin',
        sizes: [64, 4096, 65536, 1048576],
        sustained: true,
        trials: 3,
        ...cRing('fresh'),
      },
    ];
