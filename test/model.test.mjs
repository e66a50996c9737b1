// The Spin models of the queue and topic protocols (test/model/README.md): the correct protocol passes an
// exhaustive search, and each broken variant fails, which proves the checks bite. Skipped,
// with the reason, where spin or a C compiler is missing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const STRESS = process.env.INTERPROCESS_STRESS === '1';
const here = path.join(path.dirname(fileURLToPath(import.meta.url)), 'model');

const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const missing = !has('spin') ? 'spin is not installed (apt-get install spin)' : !has('cc') ? 'no C compiler (cc)' : undefined;

/** Generates, compiles and runs the verifier; returns its output. */
function verify(model, defines, { memoryMb = 2000, bitstate = false } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'interprocess-model-'));
  try {
    fs.copyFileSync(path.join(here, model), path.join(dir, model));
    execFileSync('spin', ['-a', ...defines, model], { cwd: dir, stdio: 'pipe' });
    const flags = bitstate ? ['-DBITSTATE'] : ['-DCOLLAPSE', `-DMEMLIM=${memoryMb}`];
    execFileSync('cc', ['-w', '-O2', '-DSAFETY', ...flags, '-o', 'pan', 'pan.c'], { cwd: dir, stdio: 'pipe' });
    const run = spawnSync('./pan', bitstate ? ['-m1000000', '-w30'] : ['-m1000000'], { cwd: dir, encoding: 'utf8', maxBuffer: 1 << 24 });
    return run.stdout + run.stderr;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const states = (out) => out.match(/([\d.e+]+) states, stored/)?.[1] ?? '?';

function mustPass(t, model, defines, options) {
  const out = verify(model, defines, options);
  t.diagnostic(`${model} ${defines.join(' ')}: ${states(out)} states${options?.bitstate ? ' (bitstate: a partial search)' : ''}`);
  assert.match(out, /errors: 0/, out);
  if (!options?.bitstate) assert.doesNotMatch(out, /hint: to reduce memory|Search not completed/, `the search did not complete:\n${out}`);
}

function mustFail(t, model, defines, what) {
  const out = verify(model, defines);
  t.diagnostic(`${model} ${defines.join(' ')}: ${out.match(/pan:1: [^\n]*/)?.[0] ?? 'no error'}`);
  assert.match(out, what, out);
}

test('queue.pml: the claims table keeps what a paused claimant holds; nothing lost, torn, duplicated or reordered; no hang', { skip: missing }, (t) => {
  mustPass(t, 'queue.pml', ['-DNONEWCOMER', '-DDEATHS=1', '-DMSGS1=1']);
  if (STRESS) {
    mustPass(t, 'queue.pml', ['-DDEATHS=1', '-DMSGS=1', '-DMSGS1=1']);
    mustPass(t, 'queue.pml', ['-DDEATHS=1', '-DMSGS1=1'], { memoryMb: 4000 });
    mustPass(t, 'queue.pml', ['-DDEATHS=2', '-DMSGS1=1'], { memoryMb: 4000 });
  }
});

test('queue.pml variants fail: the claimant recorded after its CAS (before issue 11), a stale intent kept', { skip: missing }, (t) => {
  mustFail(t, 'queue.pml', ['-DBUGGY', '-DDEATHS=1', '-DMSGS=1', '-DMSGS1=1'], /assertion violated \(seq\[s\]==pos\)/);
  mustFail(t, 'queue.pml', ['-DNOCLEAR', '-DDEATHS=1', '-DMSGS=1', '-DMSGS1=1'], /invalid end state/);
});

test('lease.pml: a dead or released lease is delivered again, no job lost, none done twice without a cause; no hang', { skip: missing }, (t) => {
  mustPass(t, 'lease.pml', ['-DNONEWCOMER']);
  if (STRESS) {
    mustPass(t, 'lease.pml', []);
    mustPass(t, 'lease.pml', ['-DEXPIRY'], { bitstate: true });
    mustPass(t, 'lease.pml', ['-DPLAIN'], { bitstate: true });
  }
});

test('lease.pml variant fails: a dead lease taker\'s record freed instead of given back loses the job', { skip: missing }, (t) => {
  mustFail(t, 'lease.pml', ['-DNOGIVEBACK', '-DNONEWCOMER'], /invalid end state|assertion violated/);
});

test('span.pml: a span is committed interior first and claimed whole; nothing lost, torn, duplicated or reordered; no hang', { skip: missing }, (t) => {
  mustPass(t, 'span.pml', []);
  mustPass(t, 'span.pml', ['-DCAP=4']);
  if (STRESS) mustPass(t, 'span.pml', ['-DCAP=4', '-DDEATHS=2'], { memoryMb: 4000 });
});

test('span.pml variants fail: the first slot committed before the interior, a skip without re-reading the slot', { skip: missing }, (t) => {
  mustFail(t, 'span.pml', ['-DNOORDER'], /assertion violated \(seq\[\(\(pos\+1\)%2\)\]==\(pos\+2\)\)/);
  mustFail(t, 'span.pml', ['-DNORECHECK', '-DCAP=4'], /assertion violated\s+!\(completed\[a\]\)/);
});

test("wake.pml: an exclusive publisher's plain commit never costs a sleeping subscriber its wake-up (store buffers, membarrier)", { skip: missing }, (t) => {
  mustPass(t, 'wake.pml', ['-DMSGS=4']);
  mustPass(t, 'wake.pml', ['-DNOFENCE', '-DSEQCST']); // a shared topic's seq-cst commit needs no fence
});

test('wake.pml variant fails: without the heavy fence the subscriber sleeps through a buffered commit', { skip: missing }, (t) => {
  mustFail(t, 'wake.pml', ['-DNOFENCE'], /invalid end state/);
});

test('join.pml: a joiner that an exclusive publisher\'s scan misses starts at or after the tail that scan read', { skip: missing }, (t) => {
  mustPass(t, 'join.pml', ['-DMSGS=5']);
});

test('join.pml variant fails: a scan that reads its own buffered tail lets a joiner start behind the gate', { skip: missing }, (t) => {
  mustFail(t, 'join.pml', ['-DNOSCANFENCE'], /assertion violated/);
});
