// The suite's final step (`npm test` runs test/final/ after every test/*.test.mjs has passed):
// nothing the suite created may remain in /dev/shm, the message-queue namespace or the socket
// folder. Every test names its objects `t-...`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

// Test names are t-<pid>-...: an object whose creating process still runs belongs to another
// test run in progress on this machine, not to this run (all of whose processes have exited).
function ours(dir, prefix) {
  let entries;
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return entries.filter((e) => {
    if (!e.startsWith(prefix)) return false;
    const pid = Number(/^t-(\d+)-/.exec(e.slice(prefix.length - 2))?.[1]);
    return !(pid > 0 && alive(pid));
  });
}

test('no leftovers in /dev/shm, /dev/mqueue or the socket folder', () => {
  assert.deepEqual(ours('/dev/shm', 'interprocess.t-'), []);
  assert.deepEqual(ours('/dev/mqueue', 'interprocess.t-'), []);
  assert.deepEqual(ours(os.tmpdir(), 'interprocess-t-'), []);
  assert.deepEqual(ours(path.join(os.tmpdir(), 'interprocess'), 't-'), []);
});
