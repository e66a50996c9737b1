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

// Under `npm test` every name of this run starts with t-<run>- (test/helpers.mjs runPrefix).
// A file run alone names objects t-<pid>-...: then an object whose creating process still runs
// belongs to another test run in progress on this machine, not to this one.
const run = process.env.INTERPROCESS_TEST_RUN;

function ours(dir, prefix) {
  let entries;
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return entries.filter((e) => {
    if (!e.startsWith(prefix)) return false;
    const rest = e.slice(prefix.length - 2);
    if (run !== undefined) return rest.startsWith(`t-${run}-`);
    const pid = Number(/^t-(\d+)-/.exec(rest)?.[1]);
    return !(pid > 0 && alive(pid));
  });
}

test('no leftovers in /dev/shm, /dev/mqueue or the socket folder', () => {
  assert.deepEqual(ours('/dev/shm', 'interprocess.t-'), []);
  assert.deepEqual(ours('/dev/mqueue', 'interprocess.t-'), []);
  assert.deepEqual(ours(os.tmpdir(), 'interprocess-t-'), []);
  assert.deepEqual(ours(path.join(os.tmpdir(), 'interprocess'), 't-'), []);
});
