// The error contract: every code in docs/errors.md is a code of the ErrorCode union, has a row,
// and is produced by at least one test (a test names it in an assertion on err.code).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { IpcError, isIpcError } from 'interprocess';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const union = [...fs.readFileSync(path.join(root, 'src', 'errors.ts'), 'utf8').matchAll(/\| '(IPC_ERR_[A-Z_]+)'/g)].map((m) => m[1]);
const documented = [...fs.readFileSync(path.join(root, 'docs', 'errors.md'), 'utf8').matchAll(/^\| `(IPC_ERR_[A-Z_]+)`/gm)].map((m) => m[1]);

test('every ErrorCode has exactly one row in docs/errors.md, and every row is a code', () => {
  assert.ok(union.length >= 12);
  assert.deepEqual([...documented].sort(), [...union].sort());
});

test('every code is produced by some test', () => {
  const tests = fs
    .readdirSync(path.join(root, 'test'))
    .filter((f) => f.endsWith('.test.mjs') && f !== 'errors.test.mjs')
    .map((f) => fs.readFileSync(path.join(root, 'test', f), 'utf8'))
    .join('\n');
  for (const code of union) assert.ok(tests.includes(`'${code}'`), `no test expects ${code}`);
});

test('IpcError carries code, syscall and errno; isIpcError tells codes apart', () => {
  const err = new IpcError('IPC_ERR_NO_SPACE', 'shared memory x: full', { syscall: 'posix_fallocate', errno: 'ENOSPC' });
  assert.equal(err.name, 'IpcError');
  assert.equal(err.code, 'IPC_ERR_NO_SPACE');
  assert.equal(err.syscall, 'posix_fallocate');
  assert.equal(err.errno, 'ENOSPC');
  assert.match(err.message, /\(IPC_ERR_NO_SPACE\)$/);
  assert.ok(err instanceof Error);
  assert.ok(isIpcError(err));
  assert.ok(isIpcError(err, 'IPC_ERR_NO_SPACE'));
  assert.ok(!isIpcError(err, 'IPC_ERR_EXISTS'));
  assert.ok(!isIpcError(new Error('x')));
});
