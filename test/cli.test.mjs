// The CLI end to end, as a user runs it: real processes, real output, documented exit codes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const bin = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'interprocess.js');

export function cli(args, options = {}) {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { timeout: 120_000, ...options }, (err, stdout, stderr) => {
      resolve({ code: err ? err.code : 0, stdout, stderr });
    });
  });
}

test('bench --quick on a tiny budget: progress, table, advice, JSON and an HTML report', async () => {
  const html = path.join(os.tmpdir(), `interprocess-t-bench-${process.pid}.html`);
  try {
    const { code, stdout, stderr } = await cli(['bench', '--quick', '--only', 'word-spin,futex-wait,c-futex,message-port,queue-spin,js-ring,c-ring', '--count', '200', '--json', '--html', html]);
    assert.equal(code, 0, stderr);
    assert.match(stderr, /\[1\/\d+\] /);
    const report = JSON.parse(stdout);
    assert.ok(report.machine.node.startsWith('v'));
    const ids = new Set(report.results.map((r) => r.id));
    for (const id of ['word-spin', 'futex-wait', 'futex-waitAsync', 'c-futex', 'message-port', 'queue-spin', 'js-ring-threads', 'js-ring-processes', 'c-ring', 'c-ring-malloc']) assert.ok(ids.has(id), id);
    // The JavaScript limit (SharedArrayBuffer spin rings) and the C ring between processes (the
    // hardware limit, bench/native/ring.c really built and run) in both modes, as references.
    for (const id of ['js-ring-threads', 'js-ring-processes', 'c-ring', 'c-ring-malloc']) {
      const rows = report.results.filter((r) => r.id === id);
      assert.deepEqual([...new Set(rows.map((r) => r.mode))].sort(), ['roundTrip', 'throughput'], id);
      assert.ok(rows.every((r) => r.family === 'reference' && r.waits === 'spin'), id);
    }
    // The C ring's throughput rows at 64 B and 1 MiB carry rates, CPU and shared memory like the queue's.
    for (const r of report.results.filter((x) => x.id === 'c-ring' && x.mode === 'throughput')) {
      assert.ok(r.messagesPerSecond > 0 && r.bytesPerSecond === r.messagesPerSecond * r.size, 'c-ring rate');
      assert.ok(r.cpuUsPerMessage > 0, 'c-ring cpuUsPerMessage');
      assert.ok(r.shmBytesPerMessage >= r.size && r.shmBytesPerPayloadByte >= 1, 'c-ring shm per message');
    }
    assert.deepEqual(report.results.filter((x) => x.id === 'c-ring' && x.mode === 'throughput').map((r) => r.size).sort((a, b) => a - b), [64, 1048576]);
    for (const r of report.results) {
      assert.equal(r.error, undefined, `${r.id}: ${r.error}`);
      assert.equal(r.n, r.mode === 'roundTrip' && r.id.startsWith('c-') ? 200 : r.count);
    }
    // Every message-passing throughput row is timed warm, the C ring's included: 200 timed
    // messages after 200 untimed at 64 B, 64 at 1 MiB (a quarter, but at least 64 MiB).
    const throughput = report.results.filter((r) => r.mode === 'throughput' && r.family !== 'primitive');
    assert.ok(throughput.length >= 10, String(throughput.length));
    for (const r of throughput) assert.equal(r.warmup, { 64: 200, 1048576: 64 }[r.size], `${r.id} ${r.size}`);
    // The queue's throughput rows carry CPU and shared memory per message; its idle rows the
    // CPU of a receiver waiting on nothing (spinning: busy; spin-then-block: parked).
    for (const r of report.results.filter((x) => x.id === 'queue-spin' && x.mode === 'throughput')) {
      assert.ok(r.cpuUsPerMessage > 0, 'cpuUsPerMessage');
      assert.ok(r.shmBytesPerMessage >= r.size && r.shmBytesPerPayloadByte >= 1, 'shm per message');
    }
    for (const id of ['queue-spin', 'queue-spin-then-block']) {
      const r = report.results.find((x) => x.id === id && x.mode === 'idle');
      assert.ok(r !== undefined && r.cpuPercent >= 0 && r.cpuUsPerSecond >= 0, `${id} idle`);
    }
    assert.ok(report.advice.some((a) => a.startsWith('lowest latency with a core to spare: queue-spin')), report.advice.join('\n'));
    assert.ok(!report.advice.some((a) => a.includes('word-spin')), 'primitives are not advice for message passing');
    // The placement probe (the C ping-pong, built here) ran before the first row and after the
    // last; every row carries the last figure before it, and the report says whether it moved.
    assert.equal(report.placement.probe, 'c-spin');
    assert.ok(report.placement.samples.length >= 2, JSON.stringify(report.placement));
    assert.equal(report.placement.samples[0].beforeTrial, 0);
    assert.equal(report.placement.samples.at(-1).beforeTrial, report.results.length);
    for (const sample of report.placement.samples) assert.ok(sample.p50 > 0 && !Number.isNaN(Date.parse(sample.at)), JSON.stringify(sample));
    for (const r of report.results) assert.ok(report.placement.samples.some((p) => p.p50 === r.placementNs), `${r.id}: placementNs ${r.placementNs}`);
    assert.match(stderr, /^placement \(c-spin, one cache line between the two cores, p50 round trip\): (steady|MOVED)/m);
    // The targets read off the run: the ones whose rows ran are met or not, the rest not measured.
    const first = report.targets.find((t) => t.target.startsWith('queue, 64 B round trip, busy-wait: within 1.5x'));
    assert.equal(typeof first.met, 'boolean', JSON.stringify(first));
    assert.match(first.measured, /^queue-spin p50 .*js-ring-threads/);
    assert.ok(first.placementNs.length === 2 && first.placementNs.every((p) => p > 0), JSON.stringify(first));
    const map = report.targets.find((t) => t.target.startsWith('SharedMap: get'));
    assert.deepEqual([map.met, map.measured], [undefined, 'not measured in this run (no map-get throughput 64 B, map-set throughput 64 B)']);
    const page = fs.readFileSync(html, 'utf8');
    assert.match(page, /<svg/);
    assert.match(page, /word-spin/);
    assert.match(page, /placement \(c-spin/);
    assert.match(page, /<h2>Targets<\/h2><p>performance targets .*: \d+ met, \d+ not met, \d+ not measured/);
  } finally {
    fs.rmSync(html, { force: true });
  }
});

test('bench text report: the spinning queue against the JavaScript limit and the C ring of the same run', async () => {
  const { renderText } = await import('../dist/cjs/cli/report.js');
  const reference = (id) => id.startsWith('js-') || id.startsWith('c-') || id === 'memcpy';
  const row = (id, mode, size, figures) => ({ id, label: id, family: reference(id) ? 'reference' : 'interprocess', waits: 'spin', mode, size, count: 1, n: 1, ...figures });
  const rate = (m, size) => ({ seconds: 1, messagesPerSecond: m, bytesPerSecond: m * size });
  const results = [
    row('js-ring-threads', 'roundTrip', 64, { p50: 400, p99: 500, p999: 600 }),
    row('queue-spin', 'roundTrip', 64, { p50: 600, p99: 700, p999: 800 }),
    row('js-ring-processes', 'throughput', 64, rate(10e6, 64)),
    row('queue-spin', 'throughput', 64, rate(4e6, 64)),
    row('js-ring-processes', 'throughput', 1048576, rate(2000, 1048576)),
    row('queue-spin', 'throughput', 1048576, rate(1000, 1048576)),
    row('c-ring', 'throughput', 64, rate(16e6, 64)),
    row('c-ring', 'throughput', 4096, rate(1e6, 4096)),
    row('c-ring', 'throughput', 1048576, rate(8000, 1048576)),
    row('memcpy', 'throughput', 1048576, rate(24000, 1048576)),
  ];
  const text = renderText({ machine: {}, date: '', quick: true, results, advice: [] });
  assert.match(text, /against the JavaScript limit/);
  assert.match(text, /queue-spin one way, 64 B: 4\.00 M msg\/s .*0\.40 of js-ring-processes \(10\.00 M msg\/s\)/);
  assert.match(text, /queue-spin one way, 1 MiB: .*0\.50 of js-ring-processes/);
  assert.match(text, /queue-spin round trip, 64 B: p50 600 ns, 1\.50x js-ring-threads \(400 ns\)/);
  // Against the C ring at its smallest and largest sizes (not 4 KiB); memcpy at the largest only.
  assert.match(text, /c-ring \(C spin ring between processes\) one way, 64 B: 16\.00 M msg\/s \(976\.6 MiB\/s\); queue-spin 0\.25 of it, js-ring-processes 0\.63 of it$/m);
  assert.match(text, /c-ring \(C spin ring between processes\) one way, 1 MiB: 8\.0 k msg\/s \(7\.81 GiB\/s\); queue-spin 0\.13 of it, js-ring-processes 0\.25 of it, memcpy in one process 3\.00x it \(23\.44 GiB\/s\)$/m);
  assert.doesNotMatch(text, /c-ring .*one way, 4 KiB/);
  // The C ring alone still gets its line; without any of the rings (a run with --only queue), no such section.
  assert.match(renderText({ machine: {}, date: '', quick: true, results: results.filter((r) => !r.id.startsWith('js-')), advice: [] }), /c-ring .*64 B: 16\.00 M msg\/s \(976\.6 MiB\/s\); queue-spin 0\.25 of it$/m);
  assert.doesNotMatch(renderText({ machine: {}, date: '', quick: true, results: results.filter((r) => !reference(r.id)), advice: [] }), /JavaScript limit/);
  // The placement probe: steady within 1.5x, else the report says the cores moved, and how.
  const probe = (...p50s) => ({ probe: 'c-spin', samples: p50s.map((p50, k) => ({ beforeTrial: k * 10, at: '2026-12-02T07:00:00Z', p50 })) });
  assert.match(renderText({ machine: {}, date: '', quick: true, results, advice: [], placement: probe(461, 481, 470) }), /^placement \(c-spin, .*\): steady, 461 ns to 481 ns over 3 samples$/m);
  assert.match(
    renderText({ machine: {}, date: '', quick: true, results, advice: [], placement: probe(160, 171, 532) }),
    /^placement \(c-spin, .*\): MOVED during the run, 160 ns at the start, 532 ns at the end, 160 ns to 532 ns over 3 samples: .*placementNs/m,
  );
  assert.doesNotMatch(renderText({ machine: {}, date: '', quick: true, results, advice: [], placement: probe() }), /placement/);
  assert.doesNotMatch(text, /placement/);
});

test('bench targets: met, not met or not measured, read off the rows, with where the cores were', async () => {
  const { checkTargets, targetCompares, targetNeeds } = await import('../dist/cjs/cli/targets.js');
  // Which rows a target reads (--targets runs them) and compares (full runs give them three trials):
  // a fan-out row only has to be measured.
  assert.deepEqual([targetNeeds('memcpy', 'throughput', 1048576), targetCompares('memcpy', 'throughput', 1048576)], [true, true]);
  assert.deepEqual([targetNeeds('memcpy', 'throughput', 64), targetCompares('memcpy', 'throughput', 64)], [false, false]);
  assert.deepEqual([targetNeeds('topic-fanout-2', 'throughput', 4096), targetCompares('topic-fanout-2', 'throughput', 4096)], [true, false]);
  assert.deepEqual([targetNeeds('channel-shm', 'roundTrip', 65536), targetCompares('channel-shm', 'roundTrip', 65536)], [true, true]);
  const { renderText } = await import('../dist/cjs/cli/report.js');
  const row = (id, mode, size, figures, placementNs = 461) => ({ id, label: id, family: 'interprocess', waits: 'spin', mode, size, count: 1, n: 1, placementNs, ...figures });
  const rt = (p50) => ({ p50, p99: p50, p999: p50 });
  const rate = (m, size) => ({ seconds: 1, messagesPerSecond: m, bytesPerSecond: m * size });
  const find = (checks, start) => checks.find((t) => t.target.startsWith(start));
  const results = [
    row('js-ring-threads', 'roundTrip', 64, rt(400), 180),
    row('queue-spin', 'roundTrip', 64, rt(600)),
    row('queue-spin', 'throughput', 64, rate(7e6, 64)),
    row('queue-batch', 'throughput', 64, rate(11e6, 64)),
    row('c-ring', 'throughput', 64, rate(6e6, 64)),
    row('queue-async', 'throughput', 64, { ...rate(4e6, 64), figures: [2e6 * 64, 4e6 * 64, 9e6 * 64] }),
    row('queue-spin', 'throughput', 1048576, rate(10000, 1048576)),
    row('queue-loan', 'throughput', 1048576, rate(20000, 1048576)),
    row('memcpy', 'throughput', 1048576, rate(30000, 1048576)),
    row('queue-zero-copy', 'throughput', 1048576, { error: 'peer exited' }),
    ...[64, 1048576].flatMap((size) => [
      row('channel-shm', 'roundTrip', size, rt(1000)),
      row('channel-unix', 'roundTrip', size, rt(size === 64 ? 40000 : 2500)),
      row('channel-shm', 'throughput', size, rate(3e6, size)),
      row('channel-unix', 'throughput', size, rate(1e6, size)),
    ]),
  ];
  const checks = checkTargets(results);
  // Exactly 1.5x the threads ring is within it; the placement of both rows is kept.
  assert.deepEqual(find(checks, 'queue, 64 B round trip, busy-wait: within 1.5x'), {
    target: 'queue, 64 B round trip, busy-wait: within 1.5x of the Node-threads spin ring',
    measured: 'queue-spin p50 600 ns, 1.50x js-ring-threads (400 ns)',
    met: true,
    placementNs: [461, 180],
  });
  assert.equal(checkTargets(results.map((r) => (r.id === 'queue-spin' && r.mode === 'roundTrip' ? { ...r, p50: 601 } : r))).find((t) => t.target.startsWith('queue, 64 B round trip, busy-wait: within')).met, false);
  // The best of the queue's one-way rows, named, beside queue-spin and the C ring of the run.
  const oneWay = find(checks, 'queue, 64 B one way: at least 10 M');
  assert.deepEqual([oneWay.met, oneWay.measured], [true, 'queue-batch 11.00 M msg/s (queue-spin 7.00 M msg/s); c-ring 6.00 M msg/s in this run']);
  const awaited = find(checks, 'queue, 64 B one way, `await receive()`');
  assert.deepEqual([awaited.met, awaited.measured], [false, 'queue-async 4.00 M msg/s (trials 2.00 M, 4.00 M, 9.00 M msg/s)']);
  // 1 MiB: plain receives against memcpy, the loan beside; a failed row is not measured, never met.
  const plain = find(checks, 'queue, 1 MiB one way with plain');
  assert.equal(plain.met, false);
  assert.match(plain.measured, /^queue-spin 9\.77 GiB\/s, 0\.33 of memcpy \(29\.30 GiB\/s\); receiveLoan \(queue-loan\) 19\.53 GiB\/s, 0\.67 of it$/);
  assert.deepEqual([find(checks, 'queue, 1 MiB one way, zero-copy').met, find(checks, 'queue, 1 MiB one way, zero-copy').placementNs], [undefined, []]);
  // Every size, both modes: one pair under 3x (throughput 3.00x passes, round trip at 1 MiB 2.50x does not).
  const shm = find(checks, 'shm:// channel');
  assert.deepEqual([shm.met, shm.measured], [false, 'channel-shm against channel-unix: round trip 40.0x at 64 B, 2.50x at 1 MiB; one way 3.00x at 64 B, 3.00x at 1 MiB']);
  assert.equal(find(checks, 'SharedMap: get').met, undefined);
  // Not measured says which rows the run lacks; an optional comparison also how to have it.
  assert.equal(find(checks, 'queue, 1 MiB one way, zero-copy').measured, 'not measured in this run (no queue-in-place throughput 1 MiB, queue-in-place throughput 64 B, queue-zero-copy throughput 1 MiB)');
  // Zero-copy is judged on the transfer of a message built in place; a producer that copies its
  // payload in is shown beside it, and a transfer slower than memcpy is not met.
  const inPlace = (mps) => [...results.filter((r) => r.id !== 'queue-zero-copy'), row('queue-in-place', 'throughput', 1048576, rate(mps, 1048576)), row('queue-in-place', 'throughput', 64, rate(4e6, 64)), row('queue-zero-copy', 'throughput', 1048576, rate(9000, 1048576))];
  const zeroCopy = find(checkTargets(inPlace(2e6)), 'queue, 1 MiB one way, zero-copy');
  assert.deepEqual([zeroCopy.met, zeroCopy.measured], [true, 'queue-in-place 2.00 M msg/s (500 ns a message, 4.00 M msg/s at 64 B), 66.7x memcpy (29.30 GiB/s, 33.3 µs a copy); a producer copying its payload in (queue-zero-copy) 8.79 GiB/s, 0.30 of memcpy']);
  assert.equal(find(checkTargets(inPlace(29999)), 'queue, 1 MiB one way, zero-copy').met, false);
  assert.match(find(checks, 'socket channels: faster than node-ipc').measured, /^not measured in this run \(no node-ipc round trip, node-ipc throughput; node-ipc is an optional comparison.*INTERPROCESS_BENCH_DEPS\)$/);
  // The text report ends with them: the counts, then each target, its figures and placement.
  const text = renderText({ machine: {}, date: '', quick: false, results, advice: [], targets: checks });
  const counts = { met: checks.filter((t) => t.met === true).length, not: checks.filter((t) => t.met === false).length, none: checks.filter((t) => t.met === undefined).length };
  assert.ok(counts.met >= 2 && counts.not >= 3 && counts.none >= 5, JSON.stringify(counts));
  assert.match(text, new RegExp(`^performance targets \\(the spec's and issue 14's\\), read off this run: ${counts.met} met, ${counts.not} not met, ${counts.none} not measured$`, 'm'));
  assert.match(text, /^- met +queue, 64 B round trip, busy-wait: within 1\.5x of the Node-threads spin ring\n +queue-spin p50 600 ns, 1\.50x js-ring-threads \(400 ns\)  \[placement 180 ns to 461 ns\]$/m);
  assert.match(text, /^- NOT MET +shm:\/\/ channel/m);
  assert.match(text, /^- not measured SharedMap: get .*\n +not measured in this run \(no map-get throughput 64 B, map-set throughput 64 B\)$/m);
  assert.match(text, /^- not measured socket channels: faster than node-ipc .*\n +not measured in this run \(no node-ipc round trip, node-ipc throughput; node-ipc is an optional/m);
  // A saved report from before the targets renders as it did.
  assert.doesNotMatch(renderText({ machine: {}, date: '', quick: false, results, advice: [] }), /performance targets/);
});

test('bench --targets runs only the rows the targets compare', async () => {
  const { code, stdout, stderr } = await cli(['bench', '--targets', '--quick', '--only', 'memcpy,word-spin', '--json', '--no-html']);
  assert.equal(code, 0, stderr);
  const report = JSON.parse(stdout);
  // memcpy is read at 1 MiB only (the plain and zero-copy 1 MiB targets); word-spin by none.
  assert.deepEqual(report.results.map((r) => [r.id, r.mode, r.size]), [['memcpy', 'throughput', 1048576]]);
  assert.match(stderr, /interprocess bench: 1 trials over 1 mechanisms/);
  assert.ok(report.targets.some((t) => t.met === undefined) && report.targets.every((t) => t.met === undefined || t.measured.includes('memcpy')), JSON.stringify(report.targets));
  const none = await cli(['bench', '--targets', '--only', 'word-spin', '--no-html']);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /no trial of --only word-spin is one the targets compare/);
});

test('bench: a row the targets compare is the median of three trials, and keeps each figure', async () => {
  // js-ring-threads asks for three trials; word-spin for the default one; memcpy for one too,
  // but a target reads it at 1 MiB (against the plain and zero-copy receives). Without --quick.
  const { code, stdout, stderr } = await cli(['bench', '--only', 'js-ring-threads,word-spin', '--sizes', '64', '--count', '2000', '--json', '--no-html']);
  assert.equal(code, 0, stderr);
  assert.match(stderr, /js-ring-threads throughput 64 B .*median of 3/);
  const { results } = JSON.parse(stdout);
  const ring = results.filter((r) => r.id === 'js-ring-threads');
  assert.deepEqual(ring.map((r) => r.mode).sort(), ['roundTrip', 'throughput']);
  for (const r of ring) {
    assert.equal(r.figures.length, 3);
    const median = [...r.figures].sort((a, b) => a - b)[1];
    assert.equal(r.mode === 'roundTrip' ? r.p50 : r.bytesPerSecond, median);
  }
  for (const r of results.filter((r) => r.id === 'word-spin')) assert.equal(r.figures, undefined);
  const copies = await cli(['bench', '--only', 'memcpy', '--sizes', '64,1048576', '--count', '200', '--json', '--no-html']);
  assert.equal(copies.code, 0, copies.stderr);
  const memcpy = (size) => JSON.parse(copies.stdout).results.find((r) => r.id === 'memcpy' && r.size === size);
  assert.equal(memcpy(64).figures, undefined);
  assert.equal(memcpy(1048576).figures.length, 3);
  assert.equal(memcpy(1048576).bytesPerSecond, [...memcpy(1048576).figures].sort((a, b) => a - b)[1]);
});

test('bench: a failed trial takes its peers, its sockets and its shared memory with it', async () => {
  // A mechanism that leaves all three behind and fails before any cleanup could run.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'interprocess-t-mech-'));
  const dist = path.join(path.dirname(bin), '..', 'dist', 'cjs', 'index.js');
  const pidFile = path.join(dir, 'peer.pid');
  fs.writeFileSync(
    path.join(dir, 'leaky.mjs'),
    `import { fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
if (process.argv[2] === 'peer') for (;;);
const { SharedMemory } = createRequire(import.meta.url)(${JSON.stringify(dist)});
export default [{ id: 'leaky', label: 'leaky', sizes: [64], async throughput() {
  SharedMemory.create('bench-leaky-' + process.pid + '-x', { byteLength: 4096 });
  fs.writeFileSync(path.join(os.tmpdir(), 'leaky.sock'), '');
  fs.writeFileSync(${JSON.stringify(pidFile)}, String(fork(fileURLToPath(import.meta.url), ['peer']).pid));
  await new Promise((resolve) => setTimeout(resolve, 200));
  throw new Error('leaky failed on purpose');
} }];
`,
  );
  const scratchBefore = fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('interprocess-bench-trial-'));
  try {
    const started = Date.now();
    const { code, stderr } = await cli(['bench', '--only', 'leaky', '--no-html'], { env: { ...process.env, INTERPROCESS_BENCH_MECHANISMS: dir } });
    assert.equal(code, 1, stderr);
    assert.match(stderr, /leaky throughput 64 B .*FAILED: .*leaky failed on purpose/);
    assert.ok(Date.now() - started < 60_000, 'the live peer must not hold the failed trial until its timeout');
    assertCleared(Number(fs.readFileSync(pidFile, 'utf8')), 'peer', 'bench-leaky-', scratchBefore);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * A killed bench process (`who`: a trial or its peer) is gone, or a zombie waiting for init to
 * reap it, and its shared memory (names with `shmTag`) and scratch folder went with it.
 */
function assertCleared(pid, who, shmTag, scratchBefore) {
  const state = fs.existsSync(`/proc/${pid}/stat`) ? fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] : 'gone';
  assert.ok(state === 'gone' || state === 'Z', `the ${who} is still running (${state})`);
  assert.deepEqual(fs.readdirSync('/dev/shm').filter((f) => f.includes(shmTag)), []);
  assert.deepEqual(fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('interprocess-bench-trial-')), scratchBefore);
}

test('bench stopped by a signal mid-trial: the trial, its sockets folder and its shared memory go with it', async () => {
  const { spawn } = await import('node:child_process');
  // A trial that makes a segment and a socket file, says so, then runs until it is killed.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'interprocess-t-stop-'));
  const dist = path.join(path.dirname(bin), '..', 'dist', 'cjs', 'index.js');
  const readyFile = path.join(dir, 'ready');
  fs.writeFileSync(
    path.join(dir, 'stuck.mjs'),
    `import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
const { SharedMemory } = createRequire(import.meta.url)(${JSON.stringify(dist)});
export default [{ id: 'stuck', label: 'stuck', sizes: [64], async throughput() {
  SharedMemory.create('bench-stuck-' + process.pid + '-x', { byteLength: 4096 });
  fs.writeFileSync(path.join(os.tmpdir(), 'stuck.sock'), '');
  fs.writeFileSync(${JSON.stringify(readyFile)}, String(process.pid));
  await new Promise(() => {});
} }];
`,
  );
  const scratchBefore = fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('interprocess-bench-trial-'));
  try {
    const bench = spawn(process.execPath, [bin, 'bench', '--only', 'stuck', '--no-html'], { env: { ...process.env, INTERPROCESS_BENCH_MECHANISMS: dir }, stdio: 'ignore' });
    const exited = new Promise((resolve) => bench.once('exit', (code, signal) => resolve({ code, signal })));
    const deadline = Date.now() + 60_000;
    while (!fs.existsSync(readyFile)) {
      assert.ok(Date.now() < deadline, 'the trial never started');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const trial = Number(fs.readFileSync(readyFile, 'utf8'));
    bench.kill('SIGTERM');
    const { code, signal } = await exited;
    assert.ok(signal === 'SIGTERM' || code !== 0, `the bench exited with ${code}`);
    assertCleared(trial, 'trial', 'bench-stuck-', scratchBefore);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('bench: the trials of the rows of one mode and size alternate, and a row that fails runs no more', async () => {
  // Mechanisms that log each trial they run: alpha and beta ask for three trials, gamma for one,
  // delta for three but fails in its second.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'interprocess-t-order-'));
  const logFile = path.join(dir, 'trials.log');
  fs.writeFileSync(
    path.join(dir, 'order.mjs'),
    `import * as fs from 'node:fs';
const trial = (id) => async ({ size, count }) => {
  fs.appendFileSync(${JSON.stringify(logFile)}, id + ' ' + size + '\\n');
  const ran = fs.readFileSync(${JSON.stringify(logFile)}, 'utf8').split('\\n').filter((l) => l === id + ' ' + size).length;
  if (id === 'delta' && ran === 2) throw new Error('delta failed on purpose');
  return new Float64Array(count).fill(1000 * ran);
};
export default ['alpha', 'beta', 'gamma', 'delta'].map((id) => ({ id, label: id, sizes: [64, 128], trials: id === 'gamma' ? 1 : 3, roundTrip: trial(id) }));
`,
  );
  try {
    const { code, stdout, stderr } = await cli(['bench', '--only', 'alpha,beta,gamma,delta', '--sizes', '64,128', '--count', '10', '--json', '--no-html'], { env: { ...process.env, INTERPROCESS_BENCH_MECHANISMS: dir } });
    assert.equal(code, 1, stderr); // delta failed
    const round = (size, ids) => ids.map((id) => `${id} ${size}`);
    const order = fs.readFileSync(logFile, 'utf8').trim().split('\n');
    assert.deepEqual(order, [
      ...round(64, ['alpha', 'beta', 'gamma', 'delta']), ...round(64, ['alpha', 'beta', 'delta']), ...round(64, ['alpha', 'beta']),
      ...round(128, ['alpha', 'beta', 'gamma', 'delta']), ...round(128, ['alpha', 'beta', 'delta']), ...round(128, ['alpha', 'beta']),
    ]);
    const { results } = JSON.parse(stdout);
    const row = (id, size) => results.find((r) => r.id === id && r.size === size);
    assert.deepEqual(row('alpha', 64).figures, [1000, 2000, 3000]);
    assert.equal(row('alpha', 64).p50, 2000);
    assert.equal(row('gamma', 128).figures, undefined);
    assert.match(row('delta', 64).error, /delta failed on purpose/);
    assert.match(stderr, /\[\d+\/8\] delta round trip 64 B +FAILED: .*delta failed on purpose/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("bench: a row's trialBytes caps its full throughput trials (at least 32 messages); other rows move 1 GiB", async () => {
  // Two throughput mechanisms that report the count they were given; slow declares 16 MiB.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'interprocess-t-bytes-'));
  fs.writeFileSync(
    path.join(dir, 'bytes.mjs'),
    `const throughput = async ({ count, warmup = 0 }) => ({ messages: count, seconds: 0.001, warmup });
export default [
  { id: 'plain', label: 'plain', sizes: [65536, 1 << 20], throughput },
  { id: 'slow', label: 'slow', sizes: [65536, 1 << 20], trialBytes: 16 << 20, throughput },
];
`,
  );
  try {
    const { code, stdout, stderr } = await cli(['bench', '--only', 'plain,slow', '--json', '--no-html'], { env: { ...process.env, INTERPROCESS_BENCH_MECHANISMS: dir } });
    assert.equal(code, 0, stderr);
    const count = (id, size) => JSON.parse(stdout).results.find((r) => r.id === id && r.size === size).count;
    assert.equal(count('plain', 65536), 16384); // 1 GiB
    assert.equal(count('slow', 65536), 256); // 16 MiB
    assert.equal(count('plain', 1 << 20), 1024);
    assert.equal(count('slow', 1 << 20), 32); // 16 messages would do: trialBytes' floor
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("bench's warm-up: a quarter of the timed count, at least 64 MiB, and a sink clock that refuses a trial it did not see", async () => {
  const { SinkClock, warmupFor } = await import('../bench/util.mjs');
  assert.equal(warmupFor(8_000_000, 64), 2_000_000); // a quarter
  assert.equal(warmupFor(1024, 1 << 20), 256);
  assert.equal(warmupFor(100, 1 << 20), 64); // at least 64 MiB...
  assert.equal(warmupFor(200, 64), 200); // ...but never more than the timed count
  const clock = new SinkClock(2, 3);
  clock.at(0);
  assert.throws(() => clock.seconds, /never started/);
  clock.at(1); // the last warm-up message: the clock starts
  clock.at(2);
  clock.at(3);
  assert.throws(() => clock.seconds, /never stopped/);
  clock.at(4); // the last of the three timed ones
  assert.ok(clock.seconds >= 0 && clock.seconds < 1, String(clock.seconds));
  const cold = new SinkClock(0, 1); // no warm-up: timed from its making
  cold.at(0);
  assert.ok(cold.seconds >= 0);
});

test('bench prints a table by default and rejects bad options with exit code 2', async () => {
  const ok = await cli(['bench', '--only', 'word-spin', '--sizes', '64', '--count', '100', '--no-html']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /synchronization primitives \(no payload\): round trip/);
  assert.match(ok.stdout, /word-spin\s+spin/);
  assert.equal((await cli(['bench', '--bogus'])).code, 2);
  assert.equal((await cli(['bench', '--sizes', 'abc'])).code, 2);
  assert.equal((await cli(['bench', '--only', 'no-such-mechanism'])).code, 2);
  assert.equal((await cli(['frobnicate'])).code, 2);
  const help = await cli(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /bench/);
});

test('ls, inspect, rm and gc: gc removes only objects no live process uses', async (t) => {
  const { runPrefix, startChild, uniqueName, watchdog } = await import('./helpers.mjs');
  const held = uniqueName('held');
  const orphan = uniqueName('orphan');
  const holder = startChild('shm-child.mjs', ['hold', held, 4096]);
  let creator;
  // A failed assertion must not leave the holder running: the suite would wait for it forever.
  t.after(() => {
    holder.kill('SIGKILL');
    creator?.kill('SIGKILL');
    for (const n of [held, orphan]) fs.rmSync(`/dev/shm/interprocess.${n}`, { force: true });
  });
  const { pid } = await watchdog(holder.next('holding'), 10_000, 'holder');
  creator = startChild('shm-child.mjs', ['create', orphan, 128]);
  await watchdog(creator.next('created'), 10_000, 'creator');
  creator.send({ cmd: 'exit' });
  await creator.exited;

  const ls = await cli(['ls', '--json']);
  assert.equal(ls.code, 0, ls.stderr);
  const objects = JSON.parse(ls.stdout);
  const heldInfo = objects.find((o) => o.name === held);
  assert.equal(heldInfo.kind, 'shm');
  assert.equal(heldInfo.byteLength, 4096);
  assert.deepEqual(heldInfo.attached.map((a) => a.pid), [pid]);
  assert.deepEqual(objects.find((o) => o.name === orphan).attached, []);
  assert.match((await cli(['ls'])).stdout, new RegExp(`${held}\\s+4096`));

  const inspect = await cli(['inspect', held, '--json']);
  assert.equal(inspect.code, 0);
  assert.equal(JSON.parse(inspect.stdout).mode, 0o600);
  // The program the holder runs (argv[0]), not the thread name Node 24+ gives its main thread.
  assert.match((await cli(['inspect', held])).stdout, new RegExp(`attached\\s+${pid} \\(${path.basename(process.execPath)}\\)`));
  const missing = await cli(['inspect', uniqueName('none')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /IPC_ERR_NOT_FOUND/);
  assert.match((await cli(['inspect', 'bad/name'])).stderr, /IPC_ERR_INVALID_NAME/);
  assert.equal((await cli(['inspect'])).code, 2);

  // --prefix keeps the test from collecting anything but its own objects on this machine.
  const young = JSON.parse((await cli(['gc', '--json', '--prefix', runPrefix, '--min-age', '3600'])).stdout);
  assert.ok(!young.removed.includes(orphan), 'objects younger than --min-age are kept');
  const dry = JSON.parse((await cli(['gc', '--json', '--prefix', runPrefix, '--dry-run', '--min-age', '0'])).stdout);
  assert.ok(dry.removed.includes(orphan));
  assert.ok(fs.existsSync(`/dev/shm/interprocess.${orphan}`), 'dry run removes nothing');
  const gc = JSON.parse((await cli(['gc', '--json', '--prefix', runPrefix, '--min-age', '0'])).stdout);
  assert.ok(gc.removed.every((n) => n.startsWith('t-')) && gc.kept.every((k) => k.name.startsWith('t-')));
  assert.ok(gc.removed.includes(orphan));
  assert.ok(!gc.removed.includes(held));
  assert.ok(gc.kept.some((k) => k.name === held && k.reason.includes(String(pid))));
  assert.ok(!fs.existsSync(`/dev/shm/interprocess.${orphan}`));
  assert.ok(fs.existsSync(`/dev/shm/interprocess.${held}`), 'gc never touches a live object');

  holder.send({ cmd: 'exit' });
  await holder.exited;
  const rm = await cli(['rm', held, '--json']);
  assert.equal(rm.code, 0);
  assert.deepEqual(JSON.parse(rm.stdout), { removed: [held], missing: [] });
  const again = await cli(['rm', held]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /IPC_ERR_NOT_FOUND/);
});

test('ls and inspect show the kind and state of library objects', async (t) => {
  const { Mutex, Semaphore, SharedMemory } = await import('interprocess');
  const { uniqueName } = await import('./helpers.mjs');
  const m = uniqueName('mx');
  const s = uniqueName('sem');
  t.after(() => [m, s].forEach((n) => SharedMemory.remove(n)));
  const mutex = Mutex.create(m);
  mutex.lockSync();
  Semaphore.create(s, { initial: 3 });
  const objects = JSON.parse((await cli(['ls', '--json'])).stdout);
  const mi = objects.find((o) => o.name === m);
  assert.equal(mi.kind, 'Mutex');
  assert.equal(mi.header.valid, true);
  assert.deepEqual(mi.details, { state: 'held', ownerAlive: true, waiters: false });
  assert.deepEqual(objects.find((o) => o.name === s).details, { permits: 3, sleepers: 0 });
  mutex.unlock();
  assert.equal(JSON.parse((await cli(['inspect', m, '--json'])).stdout).details.state, 'free');
  assert.match((await cli(['inspect', s])).stdout, /permits\s+3/);
});

test('inspect shows the fields of every kind, read from its layout', async (t) => {
  const { Barrier, Condition, Mutex, Queue, RWLock, SharedMemory } = await import('interprocess');
  const { startChild, uniqueName, watchdog } = await import('./helpers.mjs');
  const names = { mutex: uniqueName('mx'), cond: uniqueName('cv'), rw: uniqueName('rw'), writer: uniqueName('rw'), barrier: uniqueName('br'), queue: uniqueName('q') };
  t.after(() => Object.values(names).forEach((n) => SharedMemory.remove(n)));
  const details = async (name) => {
    const { code, stdout, stderr } = await cli(['inspect', name, '--json']);
    assert.equal(code, 0, stderr);
    return JSON.parse(stdout).details;
  };

  // A mutex whose holder was killed: held, by an owner the kernel says is dead.
  Mutex.create(names.mutex).close();
  const holder = startChild('sync-child.mjs', ['hold', names.mutex, 'sync']);
  await watchdog(holder.next('holding'), 10_000, 'holding');
  holder.kill();
  await holder.exited;
  assert.deepEqual(await details(names.mutex), { state: 'held', ownerAlive: false, waiters: false });

  // A condition notified twice, with one waiter asleep.
  const c = Condition.create(names.cond);
  const cm = Mutex.createAt(new SharedArrayBuffer(Mutex.byteLength), 0);
  c.notify();
  c.notifyAll();
  cm.lockSync();
  const waiting = c.wait(cm);
  assert.deepEqual(await details(names.cond), { sequence: 2, sleepers: 1 });
  c.notify();
  await watchdog(waiting, 10_000, 'condition wait');
  cm.unlock();

  // A read-write lock with two read locks, and one with its writer in.
  const rw = RWLock.create(names.rw);
  rw.readLockSync();
  rw.readLockSync();
  assert.deepEqual(await details(names.rw), { writer: 'free', readLocks: 2 });
  rw.readUnlock();
  rw.readUnlock();
  const writer = RWLock.create(names.writer);
  assert.equal(writer.tryWriteLock(), true);
  assert.deepEqual(await details(names.writer), { writer: 'held', writerAlive: true, readLocks: 0 });
  writer.writeUnlock();

  // A barrier of three in its second round, one party arrived.
  const b = Barrier.create(names.barrier, { parties: 3 });
  const [p1, p2] = [b.wait(), b.wait()];
  assert.equal(b.tryWait(), true);
  await watchdog(Promise.all([p1, p2]), 10_000, 'round 0');
  const arrived = b.wait();
  const shown = await details(names.barrier);
  assert.deepEqual(shown, { parties: 3, arrived: 1, round: 1 });
  assert.match((await cli(['inspect', names.barrier])).stdout, /kind\s+Barrier[\s\S]*parties\s+3\n[\s\S]*arrived\s+1\n/);
  const second = b.wait();
  assert.equal(b.tryWait(), true);
  await watchdog(Promise.all([arrived, second]), 10_000, 'round 1');

  // A queue holding two messages.
  const q = Queue.create(names.queue, { capacity: 4, maxMessageSize: 16 });
  q.trySend(new Uint8Array(3));
  q.trySend(new Uint8Array(5));
  assert.deepEqual(await details(names.queue), {
    capacity: 4, slotSize: 16, maxMessageSize: 16, depth: 2, handles: 1, maxHandles: 64, leased: 0, skippedRecords: 0, reclaimedSlots: 0, redelivered: 0,
    sleepingReceivers: 0, sleepingSenders: 0,
  });
  q.close();
});

test('ls, inspect, gc and rm cover POSIX message queues where an mqueue file system is mounted', async (t) => {
  const { uniqueName } = await import('./helpers.mjs');
  const { execFileSync } = await import('node:child_process');
  const held = uniqueName('mqheld');
  const orphan = uniqueName('mqorphan');
  const fixture = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'cli-mq.mjs');
  let out;
  try {
    out = JSON.parse(execFileSync('unshare', ['-m', '--propagation', 'private', process.execPath, fixture, held, orphan], { encoding: 'utf8', timeout: 60_000 }));
  } catch (err) {
    return t.skip(`cannot mount a private mqueue file system here: ${String(err.stderr ?? err.message).split('\n')[0]}`);
  }
  const h = out.ls.find((o) => o.name === held);
  assert.equal(h.kind, 'MessageQueue');
  assert.equal(h.namespace, 'mqueue');
  assert.equal(h.mode, 0o600);
  assert.deepEqual(h.details, { depth: 2, capacity: 4, maxMessageSize: 64 });
  assert.deepEqual(h.attached.map((a) => a.pid), [out.pid]);
  assert.deepEqual(out.ls.find((o) => o.name === orphan).attached, []);
  assert.equal(out.inspect.details.depth, 2);
  assert.ok(out.gc.removed.includes(orphan));
  assert.ok(!out.gc.removed.includes(held), 'gc never touches a queue a live process holds open');
  assert.equal(out.orphanLeft, false);
  assert.deepEqual(out.rm, { removed: [held], missing: [] });
  assert.equal(out.heldLeft, false);
});

test('ls and gc keep working while another process creates and removes objects under them', async (t) => {
  const { startChild, uniqueName, watchdog } = await import('./helpers.mjs');
  const churn = startChild('churn.mjs', [uniqueName('churn')]);
  t.after(() => churn.kill());
  await watchdog(churn.next('churning'), 10_000, 'churn');
  for (let i = 0; i < 6; i++) {
    const ls = await cli(['ls', '--json']);
    assert.equal(ls.code, 0, ls.stderr);
    JSON.parse(ls.stdout);
    const gc = await cli(['gc', '--json', '--prefix', uniqueName('none'), '--dry-run']);
    assert.equal(gc.code, 0, gc.stderr);
  }
  churn.send({ cmd: 'stop' });
  assert.ok((await watchdog(churn.next('stopped'), 10_000, 'churn stop')).churned > 0);
});
