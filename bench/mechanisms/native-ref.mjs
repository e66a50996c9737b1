// C references, measured in the same run as everything else: a futex ping-pong where the
// waiting side always sleeps, and a spinning one. Round trips of one word (no payload).
// bench/native/futex_pingpong.c is built when a trial runs it; without a C compiler these two
// are left out (with a note in the report).
import { cReferencesNote, runCReference } from '../util.mjs';

async function run(mode, { count, cpus }) {
  const r = await runCReference('futex_pingpong', [mode, count, cpus[0] ?? -1, cpus[1] ?? -1]);
  return { n: r.n, p50: r.p50, p99: r.p99, p999: r.p999 };
}

const ids = ['c-futex', 'c-spin'];
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
        roundTrip: (args) => run('futex', args),
      },
      {
        id: 'c-spin',
        label: 'C spinning ping-pong (reference)',
        family: 'reference',
        waits: 'spin',
        sizes: [64],
        roundTrip: (args) => run('spin', args),
      },
    ];
