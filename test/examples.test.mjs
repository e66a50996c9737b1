// Every folder in examples/ is run as a user would run it (with a unique object name as its
// first argument); it must exit 0 and print every line of its expected.txt (or exit 77, skipped,
// saying on stderr what the machine lacks).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { uniqueName } from './helpers.mjs';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'examples');

for (const dir of fs.readdirSync(root).sort()) {
  const main = path.join(root, dir, 'main.mjs');
  if (!fs.existsSync(main)) continue;
  test(`example ${dir}`, async (t) => {
    const { code, stdout, stderr } = await new Promise((resolve) =>
      execFile(process.execPath, [main, uniqueName(`ex-${dir}`)], { timeout: 60_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? err.code ?? err.signal : 0, stdout, stderr }),
      ),
    );
    // 77: the example needs something this machine lacks (e.g. nats-server) and says what.
    if (code === 77) return t.skip(stderr.trim());
    assert.equal(code, 0, stderr);
    const expected = path.join(root, dir, 'expected.txt');
    if (fs.existsSync(expected)) {
      for (const line of fs.readFileSync(expected, 'utf8').split('\n').filter(Boolean)) assert.ok(stdout.includes(line), `missing: ${line}\n${stdout}`);
    }
  });
}
