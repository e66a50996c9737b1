/**
 * The benchmark's report: its types, number formatting, the text table and the advice lines.
 * Both the runner (bench.ts) and the HTML chart (bench-html.ts) use it, so neither imports the
 * other.
 */
import { table } from './args.js';
import type { TargetCheck } from './targets.js';

/** idle: the CPU of a receiver waiting on nothing (no payload, no size). */
export type Mode = 'roundTrip' | 'throughput' | 'idle';
export type Waits = 'spin' | 'block' | 'event-loop';

export interface MechanismInfo {
  file: string;
  id: string;
  label: string;
  family: string;
  waits: Waits;
  sizes: number[];
  modes: Mode[];
  /** Environment the trial (and its peer) runs with, e.g. to force the futex_waitv fallback. */
  env?: Record<string, string>;
  /** Operations per trial for this mechanism (quick / full), where the size-based default does not fit. */
  count?: { quick: number; full: number };
  /** Moves millions of small messages a second: longer throughput trials (see bench.ts). */
  sustained?: boolean;
  /** Bytes a full run's throughput trial moves, for rows too slow for the default 1 GiB (see bench.ts). */
  trialBytes?: number;
  /** Trials per row, reported as the median one (default 1): for rows the targets compare. */
  trials?: number;
}

export interface TrialResult {
  id: string;
  label: string;
  family: string;
  waits: Waits;
  mode: Mode;
  size: number;
  count: number;
  error?: string;
  /** A row run as several trials: each one's figure (p50 or bytes/s); this result is the median one. */
  figures?: number[];
  /** A fact the mechanism measured besides its rate (e.g. bytes per entry). */
  note?: string;
  /** The placement probe's last p50 before this row (ns): rows with like figures ran on like cores. */
  placementNs?: number;
  n?: number;
  p50?: number;
  p99?: number;
  p999?: number;
  seconds?: number;
  /** Throughput: messages sent before the `n` timed ones, untimed (bench/util.mjs warmupFor; 0 for loops of operations). */
  warmup?: number;
  messagesPerSecond?: number;
  bytesPerSecond?: number;
  /** Fan-out (one publisher, several subscribers): the publisher's own rate and each subscriber's. */
  publisherMessagesPerSecond?: number;
  subscribers?: { messagesPerSecond: number }[];
  /** Throughput: CPU time of both processes over the run, per message (µs). */
  cpuUsPerMessage?: number;
  /** Throughput: shared memory per message the mechanism can hold (segment / capacity), and per payload byte. */
  shmBytesPerMessage?: number;
  shmBytesPerPayloadByte?: number;
  /** Idle: CPU of the waiting process, percent of one core and µs per second. */
  cpuPercent?: number;
  cpuUsPerSecond?: number;
}

export interface BenchReport {
  machine: Record<string, string | number>;
  date: string;
  quick: boolean;
  results: TrialResult[];
  advice: string[];
  /** Why some mechanisms were left out on this machine (no C compiler, a missing package). */
  notes?: string[];
  /** Where the two cores were during the run, by a cache-line ping-pong between them (bench.ts PROBES). */
  placement?: Placement;
  /** The performance targets read off this run's rows (targets.ts). */
  targets?: TargetCheck[];
}

/** The placement probe's samples: its p50 round trip (ns), taken before row `beforeTrial` (the row count: after the last). */
export interface Placement {
  probe: string;
  samples: { beforeTrial: number; at: string; p50: number }[];
}

/** A probe's spread past which the cores count as moved during the run. */
const MOVED = 1.5;

/**
 * One line on the placement probe: steady, or moved during the run (then rows far apart in the
 * run compare less well than their numbers suggest). Undefined without samples.
 */
export function placementLine(placement: Placement): string | undefined {
  const values = placement.samples.map((s) => s.p50);
  if (values.length === 0) return undefined;
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const what = `placement (${placement.probe}, one cache line between the two cores, p50 round trip):`;
  if (hi < MOVED * lo) return `${what} steady, ${formatNs(lo)}${hi !== lo ? ` to ${formatNs(hi)}` : ''} over ${values.length} samples`;
  return (
    `${what} MOVED during the run, ${formatNs(values[0]!)} at the start, ${formatNs(values[values.length - 1]!)} at the end, ` +
    `${formatNs(lo)} to ${formatNs(hi)} over ${values.length} samples: the host moved the cores, and spinning rows move with it; ` +
    'compare rows measured at like placements (each row\'s placementNs in the JSON)'
  );
}

/** How many targets were met, not met and not measured: the first line of the targets' section. */
export function targetsSummary(targets: TargetCheck[], quick: boolean): string {
  const count = (met: boolean | undefined): number => targets.filter((t) => t.met === met).length;
  const missing = count(undefined);
  return `performance targets (the spec's and issue 14's), read off this run: ${count(true)} met, ${count(false)} not met` +
    (missing > 0 ? `, ${missing} not measured` : '') +
    (quick ? " (a quick run's short trials are no test of them)" : '');
}

/** Where the cores were for a target's rows: one figure, or the range when they differ. */
export function targetPlacement(t: TargetCheck): string {
  if (t.placementNs.length === 0) return '';
  const lo = Math.min(...t.placementNs);
  const hi = Math.max(...t.placementNs);
  return `placement ${lo === hi ? formatNs(lo) : `${formatNs(lo)} to ${formatNs(hi)}`}`;
}

export const targetVerdict = (t: TargetCheck): string => (t.met === undefined ? 'not measured' : t.met ? 'met' : 'NOT MET');

function renderTargets(targets: TargetCheck[], quick: boolean): string {
  const out = [targetsSummary(targets, quick)];
  for (const t of targets) {
    out.push(`- ${targetVerdict(t).padEnd(12)} ${t.target}`);
    const where = targetPlacement(t);
    out.push(`  ${' '.repeat(12)} ${t.measured}${where === '' ? '' : `  [${where}]`}`);
  }
  return out.join('\n');
}

export function formatNs(ns: number): string {
  if (ns < 1000) return `${ns.toFixed(0)} ns`;
  if (ns < 1e6) return `${(ns / 1000).toFixed(ns < 1e4 ? 2 : 1)} µs`;
  return `${(ns / 1e6).toFixed(2)} ms`;
}

export function formatRate(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
  return n.toFixed(0);
}

export function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n.toFixed(0)} B`;
}

export function formatSize(n: number): string {
  return n >= 2 ** 20 ? `${n / 2 ** 20} MiB` : n >= 1024 ? `${n / 1024} KiB` : `${n} B`;
}

/** The Unix-socket figure every other mechanism is compared with, when it was measured. */
export function unixBaseline(results: TrialResult[], mode: Mode, size: number): TrialResult | undefined {
  for (const id of ['net-unix-raw', 'channel-unix']) {
    const r = results.find((x) => x.id === id && x.mode === mode && x.size === size && x.error === undefined);
    if (r !== undefined) return r;
  }
  return undefined;
}

export function renderText(report: BenchReport): string {
  const out: string[] = [];
  const m = report.machine;
  out.push(`machine: ${m['cpu']}, ${m['cores']} cores, ${m['memoryGiB']} GiB, ${m['os']}, Node ${m['node']}, ${m['package']}, commit ${m['commit']}, async waits: ${m['futexAsync']}`);
  for (const note of report.notes ?? []) out.push(`note: ${note}`);
  const placement = report.placement === undefined ? undefined : placementLine(report.placement);
  if (placement !== undefined) out.push(placement);
  const sizes = [...new Set(report.results.map((r) => r.size))].sort((a, b) => a - b);
  for (const primitives of [false, true]) for (const mode of ['roundTrip', 'throughput'] as const) {
    for (const size of sizes) {
      const rows = report.results.filter((r) => r.mode === mode && r.size === size && (r.family === 'primitive') === primitives && r.family !== 'map');
      if (rows.length === 0) continue;
      const base = unixBaseline(report.results, mode, size);
      const title = primitives ? 'synchronization primitives (no payload): ' : '';
      if (mode === 'roundTrip') {
        out.push(`\n${title}round trip${primitives ? '' : `, ${formatSize(size)}`} (lower is better)`);
        out.push(
          table(
            ['mechanism', 'waits', 'p50', 'p99', 'p99.9', 'vs unix socket'],
            rows.map((r) =>
              r.error !== undefined
                ? [r.id, r.waits, 'failed', '', '', r.error.slice(0, 60)]
                : [r.id, r.waits, formatNs(r.p50!), formatNs(r.p99!), formatNs(r.p999!), base ? `${(base.p50! / r.p50!).toFixed(1)}x` : '-'],
            ),
          ),
        );
      } else {
        out.push(`\n${title}${primitives ? 'operations' : `one-way throughput, ${formatSize(size)}`} (higher is better)`);
        // CPU and shared memory per message, where the mechanism measured them (the queue's rows).
        const costs = !primitives && rows.some((r) => r.cpuUsPerMessage !== undefined || r.shmBytesPerMessage !== undefined);
        const cost = (r: TrialResult): string[] =>
          costs
            ? [
                r.cpuUsPerMessage === undefined ? '-' : formatNs(r.cpuUsPerMessage * 1000),
                r.shmBytesPerMessage === undefined ? '-' : `${formatBytes(r.shmBytesPerMessage)} (${r.shmBytesPerPayloadByte!.toFixed(2)}/B)`,
              ]
            : [];
        // A primitive moves no payload: only its rate means something.
        const cells = (r: TrialResult): string[] =>
          primitives
            ? [r.id, r.waits, formatRate(r.messagesPerSecond!)]
            : [r.id, r.waits, formatRate(r.messagesPerSecond!), formatBytes(r.bytesPerSecond!), base ? `${(r.messagesPerSecond! / base.messagesPerSecond!).toFixed(1)}x` : '-', ...cost(r)];
        out.push(
          table(
            primitives
              ? ['mechanism', 'waits', 'operations/s']
              : ['mechanism', 'waits', 'messages/s', 'bytes/s', 'vs unix socket', ...(costs ? ['CPU/msg (both)', 'shm/msg (per payload B)'] : [])],
            rows.map((r) => (r.error !== undefined ? [r.id, r.waits, `failed: ${r.error.slice(0, 60)}`] : cells(r))),
          ),
        );
        for (const r of rows) {
          if (r.subscribers === undefined || r.publisherMessagesPerSecond === undefined) continue;
          out.push(`  ${r.id}: publisher ${formatRate(r.publisherMessagesPerSecond)} msg/s; each subscriber ${r.subscribers.map((s) => formatRate(s.messagesPerSecond)).join(', ')} msg/s`);
        }
      }
    }
  }
  const idle = report.results.filter((r) => r.mode === 'idle');
  if (idle.length > 0) {
    out.push('\nidle: CPU of a receiver waiting on an empty queue for ~1 s (lower is better)');
    out.push(
      table(
        ['mechanism', 'waits', 'CPU (% of a core)', 'CPU µs/s'],
        idle.map((r) => (r.error !== undefined ? [r.id, r.waits, `failed: ${r.error.slice(0, 60)}`, ''] : [r.id, r.waits, r.cpuPercent!.toFixed(2), r.cpuUsPerSecond!.toFixed(0)])),
      ),
    );
  }
  const maps = report.results.filter((r) => r.family === 'map');
  if (maps.length > 0) out.push('', renderMapTable(maps));
  const limit = jsLimit(report.results);
  if (limit.length > 0) out.push('\nagainst the JavaScript limit and the C ring (same run)', ...limit.map((l) => `- ${l}`));
  if (report.advice.length > 0) out.push('\nwhich to use', ...report.advice.map((a) => `- ${a}`));
  if (report.targets !== undefined && report.targets.length > 0) out.push('', renderTargets(report.targets, report.quick));
  return out.join('\n');
}

/**
 * The spinning queue beside the SharedArrayBuffer spin rings of bench/mechanisms/js-ring.mjs,
 * measured in the same run, because the performance targets are phrased against them: one way
 * as a fraction of the ring between processes (the same setting as the queue), the round trip
 * as a multiple of the ring between worker threads (the fastest JavaScript gets). At the
 * smallest and largest sizes both were measured at; nothing when either is missing. Then the
 * same rows (and memcpy) against the C ring between processes, when it ran.
 */
function jsLimit(results: TrialResult[]): string[] {
  const rows = (id: string, mode: Mode): TrialResult[] => results.filter((r) => r.id === id && r.mode === mode && r.error === undefined);
  // The queue's rows with the reference's row of the same size, smallest size first.
  const pairs = (mode: Mode, ref: string): [TrialResult, TrialResult][] =>
    rows('queue-spin', mode)
      .flatMap((q): [TrialResult, TrialResult][] => {
        const r = rows(ref, mode).find((x) => x.size === q.size);
        return r === undefined ? [] : [[q, r]];
      })
      .sort((a, b) => a[0].size - b[0].size);
  const ends = <T>(xs: T[]): T[] => (xs.length > 1 ? [xs[0]!, xs[xs.length - 1]!] : xs);
  const lines: string[] = [];
  for (const [q, ring] of ends(pairs('throughput', 'js-ring-processes'))) {
    lines.push(`queue-spin one way, ${formatSize(q.size)}: ${formatRate(q.messagesPerSecond!)} msg/s (${formatBytes(q.bytesPerSecond!)}/s), ` +
      `${(q.messagesPerSecond! / ring.messagesPerSecond!).toFixed(2)} of ${ring.id} (${formatRate(ring.messagesPerSecond!)} msg/s)`);
  }
  for (const [q, ring] of pairs('roundTrip', 'js-ring-threads').slice(0, 1)) {
    lines.push(`queue-spin round trip, ${formatSize(q.size)}: p50 ${formatNs(q.p50!)}, ${(q.p50! / ring.p50!).toFixed(2)}x ${ring.id} (${formatNs(ring.p50!)})`);
  }
  // The C ring between processes (bench/native/ring.c), where it was built: the machine's own
  // limit for copies between two cores, against which the queue, the JavaScript ring and (at the
  // largest size) memcpy in one process are read. At its smallest and largest sizes.
  const cRing = ends(rows('c-ring', 'throughput').sort((a, b) => a.size - b.size));
  for (const c of cRing) {
    const fractions = ['queue-spin', 'js-ring-processes'].flatMap((id) => {
      const r = rows(id, 'throughput').find((x) => x.size === c.size);
      return r === undefined ? [] : [`${id} ${(r.messagesPerSecond! / c.messagesPerSecond!).toFixed(2)} of it`];
    });
    // An in-cache copy in one process is what the 1 MiB target is phrased against.
    const memcpy = c === cRing[cRing.length - 1] ? rows('memcpy', 'throughput').find((x) => x.size === c.size) : undefined;
    if (memcpy !== undefined) fractions.push(`memcpy in one process ${(memcpy.bytesPerSecond! / c.bytesPerSecond!).toFixed(2)}x it (${formatBytes(memcpy.bytesPerSecond!)}/s)`);
    lines.push(`c-ring (C spin ring between processes) one way, ${formatSize(c.size)}: ${formatRate(c.messagesPerSecond!)} msg/s (${formatBytes(c.bytesPerSecond!)}/s)` +
      (fractions.length > 0 ? `; ${fractions.join(', ')}` : ''));
  }
  return lines;
}

/**
 * SharedMap beside the stores Node services use instead (bench/mechanisms/map.mjs): operations
 * per second, and how many times a Redis GET (one await at a time) each one is.
 */
function renderMapTable(rows: TrialResult[]): string {
  const redis = rows.find((r) => r.id === 'redis-get' && r.messagesPerSecond !== undefined);
  const cells = rows.map((r) => {
    if (r.error !== undefined) return [r.id, 'failed', '', r.error.slice(0, 60)];
    return [r.id, formatRate(r.messagesPerSecond!), redis ? `${(r.messagesPerSecond! / redis.messagesPerSecond!).toFixed(1)}x` : '-', r.note ?? ''];
  });
  return `SharedMap and the alternatives, 64 B values (operations/s, higher is better)\n${table(['mechanism', 'operations/s', 'vs redis-get', 'note'], cells)}`;
}

/** One line per use case, from what this run measured (never from folklore). */
export function advise(results: TrialResult[]): string[] {
  // The futex_waitv fallback runs on old kernels by itself: it is measured, never advised.
  const ok = results.filter((r) => r.error === undefined && r.family === 'interprocess' && !r.id.endsWith('-fallback'));
  const best = (rows: TrialResult[], key: 'p50' | 'messagesPerSecond' | 'bytesPerSecond', low: boolean): TrialResult | undefined =>
    rows.sort((a, b) => (low ? a[key]! - b[key]! : b[key]! - a[key]!))[0];
  const smallest = Math.min(...results.map((r) => r.size));
  const largest = Math.max(...results.map((r) => r.size));
  const rt = (w: Waits): TrialResult[] => ok.filter((r) => r.mode === 'roundTrip' && r.size === smallest && r.waits === w);
  const vsUnix = (r: TrialResult): string => {
    const base = unixBaseline(results, 'roundTrip', r.size);
    return base ? `, ${(base.p50! / r.p50!).toFixed(1)}x faster than a Unix socket` : '';
  };
  const lines: string[] = [];
  const spin = best(rt('spin'), 'p50', true);
  if (spin) lines.push(`lowest latency with a core to spare: ${spin.id} (p50 ${formatNs(spin.p50!)}${vsUnix(spin)}); it keeps a core busy while waiting`);
  const block = best(rt('block'), 'p50', true);
  if (block) lines.push(`low latency from a thread that may block, no busy core: ${block.id} (p50 ${formatNs(block.p50!)}${vsUnix(block)})`);
  const loop = best(rt('event-loop'), 'p50', true);
  if (loop) lines.push(`inside an async Node app (await on the event loop): ${loop.id} (p50 ${formatNs(loop.p50!)}${vsUnix(loop)})`);
  const many = best(ok.filter((r) => r.mode === 'throughput' && r.size === smallest), 'messagesPerSecond', false);
  if (many) lines.push(`many small messages (${formatSize(smallest)}): ${many.id} (${formatRate(many.messagesPerSecond!)} messages/s)`);
  const bulk = best(ok.filter((r) => r.mode === 'throughput' && r.size === largest && largest > smallest), 'bytesPerSecond', false);
  if (bulk) lines.push(`bulk data (${formatSize(largest)} messages): ${bulk.id} (${formatBytes(bulk.bytesPerSecond!)}/s)`);
  if (lines.length > 0) lines.push('across machines or containers without shared /dev/shm: a tcp:// channel, or nats:// through a NATS server; to non-Node peers: a socket with a documented format');
  return lines;
}
