// Side-by-side trials, alternated: each round runs every variant once (each trial in a fresh
// process, as `interprocess bench` does), so that load on a shared machine hits all of them
// alike; the figures are medians over the rounds, and ratios to the first variant of the same
// mode.
//
//   node bench/ab.mjs [--rounds N] [--save FILE] MODE:ID:SIZE:COUNT ...
//   e.g. node bench/ab.mjs --rounds 5 throughput:memcpy:1048576:2000 throughput:queue-spin:1048576:2000
// MODE is roundTrip, throughput or idle (SIZE and COUNT then 64:1); ID a mechanism id from bench/mechanisms/queue.mjs (or
// FILE.mjs#ID for another file, relative to bench/mechanisms or absolute, e.g. another
// checkout's, to compare commits). Ratios are to the first variant of the same mode and size.
// Prints one JSON document (and writes it with --save).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const take = (flag, fallback) => {
  const at = argv.indexOf(flag);
  if (at < 0) return fallback;
  const [, value] = argv.splice(at, 2);
  return value;
};
const rounds = Number(take('--rounds', 3));
const save = take('--save', undefined);
const variants = argv.map((spec) => {
  const [mode, idSpec, size, count] = spec.split(':');
  const [file, id] = idSpec.includes('#') ? idSpec.split('#') : ['queue.mjs', idSpec];
  if (!['roundTrip', 'throughput', 'idle'].includes(mode) || !id || !Number(size) || !Number(count)) throw new Error(`bad variant ${spec}`);
  return { spec, mode, file: path.resolve(here, 'mechanisms', file), id, size: Number(size), count: Number(count), runs: [] };
});
const cpus = os.availableParallelism() >= 2 ? ['0', '1'] : ['-', '-'];
const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1];
const figureOf = (v, r) => (v.mode === 'roundTrip' ? r.p50 : v.mode === 'idle' ? r.cpuPercent : r.bytesPerSecond);
const figureName = { roundTrip: 'p50Ns', throughput: 'bytesPerSecond', idle: 'cpuPercent' };
const show = (mode, value, r) =>
  mode === 'roundTrip' ? `p50 ${(value / 1e3).toFixed(1)} µs` : mode === 'idle' ? `${value.toFixed(3)} % CPU` : `${(value / 2 ** 30).toFixed(2)} GiB/s${r ? `, ${(r.messagesPerSecond / 1e6).toFixed(3)} M msg/s` : ''}`;

for (let round = 0; round < rounds; round++) {
  for (const v of variants) {
    const out = execFileSync(process.execPath, [path.join(here, 'trial.mjs'), v.file, v.id, v.mode, String(v.size), String(v.count), ...cpus], { encoding: 'utf8', timeout: 300_000 });
    const r = JSON.parse(out.trim().split('\n').pop());
    v.runs.push(r);
    process.stderr.write(`round ${round + 1}/${rounds} ${v.spec}: ${show(v.mode, figureOf(v, r), r)}\n`);
  }
}
const summary = variants.map((v) => {
  const figure = median(v.runs.map((r) => figureOf(v, r)));
  // Ratios compare like with like: to the first variant of the same mode and size (so that one
  // run can alternate several sizes).
  const head = variants.find((w) => w.mode === v.mode && w.size === v.size);
  const first = median(head.runs.map((r) => figureOf(head, r)));
  const extra = {};
  for (const key of Object.keys(v.runs[0])) {
    if (typeof v.runs[0][key] === 'number') extra[`median_${key}`] = median(v.runs.map((r) => r[key]));
  }
  return { spec: v.spec, mode: v.mode, id: v.id, size: v.size, count: v.count, [figureName[v.mode]]: figure, ratioToFirst: figure / first, ...extra, runs: v.runs };
});
let commit = 'unknown';
try {
  commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: here, encoding: 'utf8' }).trim();
} catch {}
const report = {
  command: `node bench/ab.mjs --rounds ${rounds} ${variants.map((v) => v.spec).join(' ')}`,
  machine: { cpu: os.cpus()[0]?.model, cores: os.availableParallelism(), node: process.version, loadavg: os.loadavg(), commit },
  date: new Date().toISOString(),
  rounds,
  summary,
};
for (const s of summary) {
  process.stderr.write(`${s.spec.padEnd(44)} median ${show(s.mode, s[figureName[s.mode]])}  ratio ${s.ratioToFirst.toFixed(3)}\n`);
}
const json = JSON.stringify(report, null, 2) + '\n';
if (save) fs.writeFileSync(save, json);
process.stdout.write(json);
