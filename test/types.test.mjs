// The public types: the codec option decides the message type (test/types/*.ts hold the cases,
// with @ts-expect-error on every line that must not compile). Runs tsc against the built
// declarations, as a user's project sees them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const here = path.dirname(fileURLToPath(import.meta.url));
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

test('the codec option decides the message type (tsc on test/types)', () => {
  let output = '';
  try {
    execFileSync(process.execPath, [tsc, '-p', path.join(here, 'types', 'tsconfig.json')], { encoding: 'utf8' });
  } catch (err) {
    output = `${err.stdout}${err.stderr}`;
  }
  assert.equal(output, '');
});
