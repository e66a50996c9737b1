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
    const { code, stdout, stderr } = await cli(['bench', '--quick', '--only', 'word-spin,futex-wait,c-futex,message-port', '--count', '200', '--json', '--html', html]);
    assert.equal(code, 0, stderr);
    assert.match(stderr, /\[1\/\d+\] /);
    const report = JSON.parse(stdout);
    assert.ok(report.machine.node.startsWith('v'));
    const ids = new Set(report.results.map((r) => r.id));
    for (const id of ['word-spin', 'futex-wait', 'futex-waitAsync', 'c-futex', 'message-port']) assert.ok(ids.has(id), id);
    for (const r of report.results) {
      assert.equal(r.error, undefined, `${r.id}: ${r.error}`);
      assert.equal(r.n, r.mode === 'roundTrip' && r.id.startsWith('c-') ? 200 : r.count);
    }
    assert.ok(report.advice.some((a) => a.startsWith('lowest latency')));
    const page = fs.readFileSync(html, 'utf8');
    assert.match(page, /<svg/);
    assert.match(page, /word-spin/);
  } finally {
    fs.rmSync(html, { force: true });
  }
});

test('bench prints a table by default and rejects bad options with exit code 2', async () => {
  const ok = await cli(['bench', '--only', 'word-spin', '--sizes', '64', '--count', '100', '--no-html']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /round trip, 64 B/);
  assert.match(ok.stdout, /word-spin\s+spin/);
  assert.equal((await cli(['bench', '--bogus'])).code, 2);
  assert.equal((await cli(['bench', '--sizes', 'abc'])).code, 2);
  assert.equal((await cli(['bench', '--only', 'no-such-mechanism'])).code, 2);
  assert.equal((await cli(['frobnicate'])).code, 2);
  const help = await cli(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /bench/);
});
