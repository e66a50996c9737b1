// How the addon is found (src/os/native.ts), on a staged copy of the package: the prebuild for
// this Node's ABI when the local build cannot load, and, when neither exists, an
// IPC_ERR_NATIVE_UNAVAILABLE that says which Node, ABI and platform was looked for and how to
// fix it. Each case runs in a fresh process: the loader keeps its first answer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { uniqueName } from './helpers.mjs';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const abi = process.versions.modules;

/** A copy of the package's JavaScript with `files` ({ relative path: source file or text }) added. */
function stage(t, files) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'interprocess-t-stage-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.cpSync(path.join(root, 'dist'), path.join(dir, 'dist'), { recursive: true });
  fs.copyFileSync(path.join(root, 'package.json'), path.join(dir, 'package.json'));
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules')); // its dependencies
  for (const [rel, from] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    if (from.startsWith('/')) fs.copyFileSync(from, path.join(dir, rel));
    else fs.writeFileSync(path.join(dir, rel), from);
  }
  return dir;
}

/** Creates and removes a SharedMemory through the staged package; resolves with what happened. */
function tryStaged(dir) {
  const name = uniqueName('stage');
  const script = `
    const { SharedMemory } = require(${JSON.stringify(path.join(dir, 'dist', 'cjs', 'index.js'))});
    try {
      SharedMemory.create(${JSON.stringify(name)}, { byteLength: 4096 }).close();
      console.log(JSON.stringify({ ok: SharedMemory.remove(${JSON.stringify(name)}) }));
    } catch (err) {
      console.log(JSON.stringify({ code: err.code, message: err.message }));
    }`;
  const env = { ...process.env };
  delete env.INTERPROCESS_NATIVE;
  return new Promise((resolve, reject) =>
    execFile(process.execPath, ['-e', script], { env, timeout: 30_000 }, (err, stdout) => (err ? reject(err) : resolve(JSON.parse(stdout)))),
  );
}

test('the prebuild for this Node ABI is loaded when the local build is missing or cannot load', async (t) => {
  const { createRequire } = await import('node:module');
  const req = createRequire(import.meta.url);
  const addon = [path.join(root, 'build', 'Release', 'interprocess.node'), path.join(root, 'prebuilds', 'linux-x64', `node.abi${abi}.glibc.node`)].find((f) => {
    try {
      req(f);
      return true;
    } catch {
      return false;
    }
  });
  assert.ok(addon, 'this checkout has a loadable addon');
  const prebuild = `prebuilds/linux-x64/node.abi${abi}.glibc.node`;
  assert.deepEqual(await tryStaged(stage(t, { [prebuild]: addon })), { ok: true });
  // A local build for another Node (here: not a shared object at all) does not hide the prebuild.
  assert.deepEqual(await tryStaged(stage(t, { [prebuild]: addon, 'build/Release/interprocess.node': 'not an addon' })), { ok: true });
});

test('IPC_ERR_NATIVE_UNAVAILABLE names the Node, ABI and platform looked for, what ships, and the fix', async (t) => {
  const other = stage(t, { 'prebuilds/linux-x64/node.abi1.glibc.node': 'an addon for another Node' });
  const r = await tryStaged(other);
  assert.equal(r.code, 'IPC_ERR_NATIVE_UNAVAILABLE');
  assert.ok(r.message.includes(`Node ${process.version} (ABI ${abi}) on linux-${process.arch} glibc`), r.message);
  assert.ok(r.message.includes(`prebuilds/linux-x64/node.abi${abi}.glibc.node (missing)`), r.message);
  assert.ok(r.message.includes('build/Release/interprocess.node (missing)'), r.message);
  assert.match(r.message, /ships prebuilds for linux-x64 glibc: ABIs 1 /);
  assert.match(r.message, /npm rebuild interprocess/);
});
