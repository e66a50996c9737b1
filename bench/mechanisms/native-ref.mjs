// C references, measured in the same run as everything else: a futex ping-pong where the
// waiting side always sleeps, and a spinning one. Round trips of one word (no payload).
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const binary = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'build', 'Release', 'futex_pingpong');

function run(mode, { count, cpus }) {
  return new Promise((resolve, reject) => {
    const args = [mode, String(count), String(cpus[0] ?? -1), String(cpus[1] ?? -1)];
    execFile(binary, args, { timeout: 120_000 }, (err, stdout) => {
      if (err) return reject(err);
      const r = JSON.parse(stdout);
      resolve({ n: r.n, p50: r.p50, p99: r.p99, p999: r.p999 });
    });
  });
}

export default [
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
