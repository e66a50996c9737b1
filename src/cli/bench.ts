/**
 * `interprocess bench`: the same workloads over every mechanism in bench/mechanisms/, each
 * trial in a fresh process pinned to its own core (the peer to another), side by side in one
 * run. Prints progress, a table, one line of advice per use case; writes an HTML report with
 * charts and, with --json, machine-readable results.
 */
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { asyncWaitMechanism } from '../os/futex.js';
import { UsageError, numberFlag, parseArgs } from './args.js';
import { renderHtml } from './bench-html.js';
import { checkTargets, targetCompares, targetNeeds } from './targets.js';
import { advise, formatBytes, formatNs, formatRate, formatSize, placementLine, renderText, type BenchReport, type MechanismInfo, type Mode, type Placement, type TrialResult, type Waits } from './report.js';

/** The package (a checkout or node_modules/interprocess): the workloads ship in its bench/. */
const ROOT = path.join(__dirname, '..', '..', '..');
const BENCH_DIR = path.join(ROOT, 'bench');
const ALL_SIZES = [64, 4096, 65536, 1048576];
const TRIAL_TIMEOUT_MS = 120_000;
/**
 * A sustained mechanism (queue, topic, the JavaScript and C rings, memcpy) moves 64 B messages
 * at millions a second, so 2 M messages last a few tenths of a second: its throughput trials get
 * up to SUSTAINED_COUNT messages (a second or so), so that the timer's grain and a stray
 * scheduling hiccup weigh little. For the same reason its trials of large messages move
 * SUSTAINED_BYTES, not the 1 GiB of other rows: 1024 messages of 1 MiB took the queue ~0.1 s, and
 * single trials read 6.3-10.7 GiB/s there against 8.9-10.5 from 4096 messages on (a collection
 * or a compilation weighs a third of so short a trial; the C ring read the same either way:
 * bench/results/2026-12-02-stop27-trial-length.md). Every throughput trial also sends a quarter
 * as many messages first (at least 64 MiB of them), untimed (bench/util.mjs warmupFor): JIT
 * compilation, first touches.
 */
const SUSTAINED_COUNT = 8_000_000;
const SUSTAINED_BYTES = 2 ** 32;
/**
 * The placement probe: a spinning ping-pong of one cache line between the two cores (the C one
 * when it was built, else JavaScript's), run before the first row, again between rows once
 * PROBE_EVERY_MS have passed, and after the last. A virtual machine's host moves its vCPUs:
 * on this project's 2-vCPU VM between cores that share a cache (c-spin ~160 ns) and cores that
 * do not (~460 ns), for minutes to hours at a time, and the spinning rows move 2-6x with it
 * (run 9 started near and ended far: bench/results/2026-12-02-stop25-adaptive-stream.md). The
 * report says whether that happened, and every row carries the last probe before it.
 */
const PROBES = ['c-spin', 'word-spin'];
/** Trials at least of a row a performance target reads (trialsOf). */
const TARGET_TRIALS = 3;
const PROBE_EVERY_MS = 60_000;

export const BENCH_HELP = `usage: interprocess bench [--quick] [--targets] [--json] [--only ID,...] [--sizes 64,4096,...]
                         [--count N] [--html FILE | --no-html] [--save]
  --quick    round trips at 64 B and throughput at 64 B and 1 MiB, small counts (well under a minute)
  --targets  run only the rows the performance targets compare (every report ends with the
             targets read off its rows: met, not met, or not measured)
  --only     run only mechanisms whose id contains one of these words (e.g. queue,unix)
  --sizes    message sizes in bytes (default 64,4096,65536,1048576)
  --count    timed messages per throughput trial (overrides the size-based default; a
             quarter as many, at least 64 MiB, go first as an untimed warm-up)
  --html     where to write the HTML report (default ./interprocess-bench.html)
  --save     also write the JSON results to ./interprocess-bench-<date>.json
  --json     print the results as JSON on stdout (progress still goes to stderr)`;

export async function benchCommand(argv: string[]): Promise<number> {
  const args = parseArgs(argv, ['only', 'sizes', 'count', 'html'], ['quick', 'targets', 'json', 'no-html', 'save', 'help']);
  if (args.flags.has('help')) {
    process.stdout.write(BENCH_HELP + '\n');
    return 0;
  }
  if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${args.positionals[0]}`);
  const quick = args.flags.has('quick');
  const targetsOnly = args.flags.has('targets');
  const json = args.flags.has('json');
  const only = (args.flags.get('only') as string | undefined)?.split(',').filter(Boolean);
  const sizes = args.flags.has('sizes')
    ? String(args.flags.get('sizes'))
        .split(',')
        .map((s) => {
          const n = Number(s);
          if (!Number.isInteger(n) || n < 8) throw new UsageError(`--sizes: ${s} is not a size in bytes (>= 8)`);
          return n;
        })
    : undefined;
  const count = numberFlag(args, 'count');
  const log = (line: string): void => void process.stderr.write(line + '\n');

  const { list, notes } = await loadMechanisms();
  for (const note of notes) log(`note: ${note}`);
  const mechanisms = list.filter((m) => only === undefined || only.some((w) => m.id.includes(w)));
  if (mechanisms.length === 0) throw new UsageError(`no mechanism matches --only ${only?.join(',')}`);
  const cpus = os.availableParallelism() >= 2 ? ['0', '1'] : ['-', '-'];
  const plan: { m: MechanismInfo; mode: Mode; size: number; count: number }[] = [];
  for (const m of mechanisms) {
    for (const mode of m.modes) {
      // An idle trial moves no message: it runs once, at the mechanism's first size.
      // --targets: the sizes the targets read, whatever --quick would pick (its counts still apply).
      const wanted = mode === 'idle' ? [m.sizes[0]!] : sizes ?? (quick && !targetsOnly ? (mode === 'roundTrip' ? [64] : [64, 1048576]) : ALL_SIZES);
      for (const size of wanted) {
        if (targetsOnly && !targetNeeds(m.id, mode, size)) continue;
        // A mechanism runs the sizes it lists; sizes asked for with --sizes also go to every
        // mechanism that takes a payload at all (those that list more than one size).
        if (!m.sizes.includes(size) && !(sizes !== undefined && m.sizes.length > 1)) continue;
        plan.push({ m, mode, size, count: mode === 'idle' ? 1 : count ?? m.count?.[quick ? 'quick' : 'full'] ?? defaultCount(mode, size, quick, m.sustained === true, m.trialBytes) });
      }
    }
  }
  if (targetsOnly && plan.length === 0) throw new UsageError(`no trial of ${only === undefined ? 'any mechanism' : `--only ${only.join(',')}`} is one the targets compare`);
  log(`interprocess bench: ${plan.length} trials over ${new Set(plan.map((t) => t.m)).size} mechanisms, ` +
    `${cpus[0] === '-' ? 'unpinned (one core)' : 'pinned to cores 0 and 1'}${quick ? ', quick' : ''}`);

  const probe = cpus[0] === '-' ? undefined : PROBES.map((id) => list.find((m) => m.id === id)).find((m) => m !== undefined);
  const placement: Placement | undefined = probe === undefined ? undefined : { probe: probe.id, samples: [] };
  let probedAt = -Infinity;
  const probePlacement = async (beforeTrial: number): Promise<void> => {
    probedAt = Date.now();
    try {
      const out = await runTrial(probe!, 'roundTrip', 64, defaultCount('roundTrip', 64, quick, false), cpus);
      placement!.samples.push({ beforeTrial, at: new Date().toISOString(), p50: out.p50! });
    } catch {
      // A probe that fails leaves a gap, nothing more: the rows are what the run is for.
    }
  };

  // Rows run grouped by mode and size, and the trials of a row alternate with those of the other
  // rows of its group (ABCABC, as bench/ab.mjs does): the rows that one table or one target
  // compares are measured over the same minutes, not minutes apart. On this project's VM a Unix
  // socket's round trip drifted from 29 to 42 µs within a run, which made the same channel read
  // 0.52x and 0.96x of it.
  interface Row {
    trial: (typeof plan)[number];
    times: number;
    runs: Partial<TrialResult>[];
    seconds: number;
    error?: string;
    placementNs?: number;
  }
  const groups = new Map<string, Row[]>();
  for (const trial of plan) {
    const key = `${trial.mode} ${trial.size}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key)!.push({ trial, times: quick || trial.mode === 'idle' ? 1 : trialsOf(trial.m, trial.mode, trial.size), runs: [], seconds: 0 });
  }
  const results: TrialResult[] = [];
  const finish = (row: Row): void => {
    const { trial } = row;
    const what = trial.mode === 'idle' ? `${trial.m.id} idle` : `${trial.m.id} ${trial.mode === 'roundTrip' ? 'round trip' : 'throughput'} ${formatSize(trial.size)}`;
    const base = {
      id: trial.m.id,
      label: trial.m.label,
      family: trial.m.family,
      waits: trial.m.waits,
      mode: trial.mode,
      size: trial.size,
      count: trial.count,
      ...(row.placementNs === undefined ? {} : { placementNs: row.placementNs }),
    };
    const at = `[${results.length + 1}/${plan.length}] ${what.padEnd(40)}`;
    if (row.error !== undefined) {
      results.push({ ...base, error: row.error });
      log(`${at} FAILED: ${row.error}`);
      return;
    }
    const out = medianRun(trial.mode, row.runs);
    results.push({ ...base, ...out });
    const shown =
      trial.mode === 'roundTrip'
        ? `p50 ${formatNs(out.p50!)}  p99 ${formatNs(out.p99!)}`
        : trial.mode === 'idle'
          ? `${out.cpuPercent!.toFixed(2)} % CPU`
          : `${formatRate(out.messagesPerSecond!)} msg/s  ${formatBytes(out.bytesPerSecond!)}/s`;
    // A row the targets compare runs several trials (a spinning pair's rate on a shared
    // two-core machine moves by 2x from one trial to the next): the median one is reported.
    const median = out.figures === undefined ? '' : `, median of ${out.figures.length}`;
    log(`${at} ${shown}  (${row.seconds.toFixed(1)} s${median})`);
  };
  for (const rows of groups.values()) {
    const rounds = Math.max(...rows.map((r) => r.times));
    for (let round = 0; round < rounds; round++) {
      for (const row of rows) {
        if (round >= row.times || row.error !== undefined) continue;
        if (placement !== undefined && Date.now() - probedAt >= PROBE_EVERY_MS) await probePlacement(results.length);
        if (round === 0) row.placementNs = placement?.samples.at(-1)?.p50;
        const started = Date.now();
        try {
          row.runs.push(await runTrial(row.trial.m, row.trial.mode, row.trial.size, row.trial.count, cpus));
        } catch (err) {
          row.error = (err as Error).message.split('\n')[0] ?? String(err);
        }
        row.seconds += (Date.now() - started) / 1000;
        if (row.error !== undefined || row.runs.length === row.times) finish(row);
      }
    }
  }

  if (placement !== undefined) {
    await probePlacement(results.length);
    // With --json the report on stdout is JSON: say it on stderr too, with the progress.
    const line = placementLine(placement);
    if (json && line !== undefined) log(line);
  }

  const report: BenchReport = {
    machine: await machineFacts(),
    date: new Date().toISOString(),
    quick,
    results,
    advice: advise(results),
    notes,
    targets: checkTargets(results),
    ...(placement === undefined ? {} : { placement }),
  };
  if (json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  else process.stdout.write(renderText(report) + '\n');
  if (!args.flags.has('no-html')) {
    const file = path.resolve(String(args.flags.get('html') ?? 'interprocess-bench.html'));
    fs.writeFileSync(file, renderHtml(report));
    log(`HTML report: ${file}`);
  }
  if (args.flags.has('save')) {
    // Under the current directory, never inside the package (node_modules may be read-only).
    const file = path.resolve(`interprocess-bench-${report.date.slice(0, 19).replace(/[:T]/g, '-')}${quick ? '-quick' : ''}.json`);
    fs.writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
    log(`saved: ${file}`);
  }
  return results.some((r) => r.error !== undefined) ? 1 : 0;
}

/**
 * A row's own trialBytes (an optional baseline whose receiver slows down with the bytes of a
 * trial: node-ipc, see sockets.mjs) caps a full throughput trial, at least 32 messages; the quick
 * run's 64 MiB stays as it is.
 */
function defaultCount(mode: Mode, size: number, quick: boolean, sustained: boolean, trialBytes?: number): number {
  const clamp = (n: number, lo: number, hi: number): number => Math.max(lo, Math.min(hi, Math.floor(n)));
  if (mode === 'roundTrip') return quick ? clamp(2 ** 24 / size, 50, 2000) : clamp(2 ** 28 / size, 200, 20000);
  if (quick) return clamp(2 ** 26 / size, 100, 200_000);
  if (trialBytes !== undefined) return clamp(trialBytes / size, 32, 2_000_000);
  return clamp((sustained ? SUSTAINED_BYTES : 2 ** 30) / size, 500, sustained ? SUSTAINED_COUNT : 2_000_000);
}

async function loadMechanisms(): Promise<{ list: MechanismInfo[]; notes: string[] }> {
  // Another folder of mechanisms only for the harness's own tests (a trial made to fail).
  const dir = process.env['INTERPROCESS_BENCH_MECHANISMS'] ?? path.join(BENCH_DIR, 'mechanisms');
  const out: MechanismInfo[] = [];
  const notes: string[] = [];
  for (const entry of fs.readdirSync(dir).filter((f) => f.endsWith('.mjs')).sort()) {
    const file = path.join(dir, entry);
    const mod = (await import(pathToFileURL(file).href)) as { default: Array<Record<string, unknown>>; notes?: string[] };
    notes.push(...(mod.notes ?? []));
    for (const m of mod.default) {
      // A mechanism that needs what this machine lacks (nats-server) says so and sits out.
      if (typeof m['unavailable'] === 'string') {
        notes.push(`${String(m['id'])}: left out, ${m['unavailable']}`);
        continue;
      }
      const modes: Mode[] = [];
      if (typeof m['roundTrip'] === 'function') modes.push('roundTrip');
      if (typeof m['throughput'] === 'function') modes.push('throughput');
      if (typeof m['idle'] === 'function') modes.push('idle');
      const id = String(m['id']);
      out.push({
        file,
        id,
        label: String(m['label'] ?? id),
        family: String(m['family'] ?? 'interprocess'),
        waits: (m['waits'] as Waits | undefined) ?? (id.includes('spin') ? 'spin' : id.includes('block') ? 'block' : 'event-loop'),
        sizes: (m['sizes'] as number[] | undefined) ?? ALL_SIZES,
        modes,
        ...(m['env'] !== undefined ? { env: m['env'] as Record<string, string> } : {}),
        ...(m['count'] !== undefined ? { count: m['count'] as { quick: number; full: number } } : {}),
        ...(m['sustained'] === true ? { sustained: true } : {}),
        ...(typeof m['trialBytes'] === 'number' ? { trialBytes: m['trialBytes'] } : {}),
        ...(typeof m['trials'] === 'number' ? { trials: m['trials'] } : {}),
      });
    }
  }
  // References and baselines first, so a table reads "what you have, then what we add";
  // synchronization primitives (no payload) last, in tables of their own.
  const order = (f: string): number => ['reference', 'baseline', 'interprocess', 'primitive', 'map'].indexOf(f);
  return { list: out.sort((a, b) => order(a.family) - order(b.family)), notes };
}

/**
 * Trials a row runs in a full run (its median is reported): what the mechanism asks for, and at
 * least TARGET_TRIALS for every row a performance target compares (targets.ts), its references
 * included (a Unix socket's round trip, memcpy, the C futex ping-pong): one trial of a baseline
 * on this VM can be 20% off, and a target read against it would be judged on that.
 */
function trialsOf(m: MechanismInfo, mode: Mode, size: number): number {
  return Math.max(m.trials ?? 1, targetCompares(m.id, mode, size) ? TARGET_TRIALS : 1);
}

/** A row's result from its trials: the one with the median figure (p50, or bytes/s), with every figure when there were several. */
function medianRun(mode: Mode, runs: Partial<TrialResult>[]): Partial<TrialResult> {
  if (runs.length === 1) return runs[0]!;
  const figure = (r: Partial<TrialResult>): number => (mode === 'roundTrip' ? r.p50! : r.bytesPerSecond!);
  const sorted = [...runs].sort((a, b) => figure(a) - figure(b));
  return { ...sorted[sorted.length >> 1]!, figures: runs.map(figure) };
}

/**
 * Runs one trial in a fresh process and resolves with what it printed last (JSON). The trial
 * leads a process group of its own, with its peers, and gets a scratch TMPDIR: a trial that
 * fails or times out (its finally blocks never ran) is killed with every peer it forked, and
 * its sockets go with the scratch folder, its shared memory with removeLeftovers() (the names a
 * trial makes carry its pid).
 */
function runTrial(m: MechanismInfo, mode: Mode, size: number, count: number, cpus: string[]): Promise<Partial<TrialResult>> {
  return new Promise((resolve, reject) => {
    const args = [path.join(BENCH_DIR, 'trial.mjs'), m.file, m.id, mode, String(size), String(count), cpus[0]!, cpus[1]!];
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'interprocess-bench-trial-'));
    const env = { ...process.env, ...m.env, TMPDIR: scratch };
    const child = spawn(process.execPath, args, { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const group = child.pid!;
    const killGroup = (): void => {
      try {
        process.kill(-group, 'SIGKILL');
      } catch {
        // the group is gone already
      }
    };
    // A bench stopped by Ctrl-C or a signal takes the trial's group with it (it is not in the
    // terminal's foreground group, so the signal would not reach it), and what it left.
    const onSignal = (signal: NodeJS.Signals): void => {
      killGroup();
      // What a trial that never reached its finally blocks leaves behind.
      removeLeftovers(group);
      fs.rmSync(scratch, { recursive: true, force: true });
      process.kill(process.pid, signal);
    };
    process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-1 << 16)));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, TRIAL_TIMEOUT_MS);
    // Peers still alive when the trial exits (a failed trial never reached its finally) hold its
    // stdout and stderr open: the group goes at once, so that 'close' follows.
    child.on('exit', killGroup);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
      const failed = timedOut || code !== 0;
      if (failed) removeLeftovers(group);
      fs.rmSync(scratch, { recursive: true, force: true });
      if (failed) {
        const reason = (stderr.trim().split('\n').find((l) => /Error|error/.test(l)) ?? `exit ${code ?? signal}`).trim();
        return reject(new Error(timedOut ? `timed out after ${TRIAL_TIMEOUT_MS / 1000} s` : reason));
      }
      try {
        resolve(JSON.parse(stdout.trim().split('\n').pop()!) as Partial<TrialResult>);
      } catch {
        reject(new Error(`trial printed no result: ${stdout.slice(0, 200)}`));
      }
    });
  });
}

/** Removes the shared memory a failed trial (process `pid`) left: bench names carry the pid. */
function removeLeftovers(pid: number): void {
  let names: string[];
  try {
    names = fs.readdirSync('/dev/shm');
  } catch {
    return;
  }
  for (const name of names) {
    if (name.startsWith('interprocess.') && name.includes(`-${pid}-`)) fs.rmSync(path.join('/dev/shm', name), { force: true });
  }
}

async function machineFacts(): Promise<Record<string, string | number>> {
  // Only a checkout has a commit: an installed package may sit inside someone else's repository.
  const commit = !fs.existsSync(path.join(ROOT, '.git'))
    ? 'none (installed package)'
    : await new Promise<string>((resolve) =>
        execFile('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT }, (err, out) => resolve(err ? 'unknown' : out.trim())),
      );
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };
  let futexAsync: string;
  try {
    futexAsync = asyncWaitMechanism();
  } catch (err) {
    futexAsync = `unavailable (${(err as Error).message.split('\n')[0]})`;
  }
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    package: `${pkg.name}@${pkg.version}`,
    commit,
    // How futex.waitAsync waits here: futex_waitv (Linux 5.16+) or the thread-per-word fallback.
    futexAsync,
  };
}

// --- text ---------------------------------------------------------------------------------

