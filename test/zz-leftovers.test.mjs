// Runs last: nothing the suite created may remain in /dev/shm, the message-queue namespace or
// the socket folder. Every test names its objects `t-...`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

function ours(dir, prefix) {
  try {
    return fs.readdirSync(dir).filter((e) => e.startsWith(prefix));
  } catch {
    return [];
  }
}

test('no leftovers in /dev/shm, /dev/mqueue or the socket folder', () => {
  assert.deepEqual(ours('/dev/shm', 'interprocess.t-'), []);
  assert.deepEqual(ours('/dev/mqueue', 'interprocess.t-'), []);
  assert.deepEqual(ours(os.tmpdir(), 'interprocess-t-'), []);
  assert.deepEqual(ours(path.join(os.tmpdir(), 'interprocess'), 't-'), []);
});
