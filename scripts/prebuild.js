#!/usr/bin/env node
// `npm run prebuilds [-- MAJOR...]`: the prebuilt addons shipped inside the npm package, one per
// supported Node ABI, for linux-x64 glibc: prebuilds/linux-x64/node.abi<N>.glibc.node, the
// names node-gyp-build (install) and src/os/native.ts (runtime) look for.
//
// Each is built by prebuildify with that Node's official build (scripts/nodes.js: binary and
// headers from npm) first on PATH, in a scratch copy of binding.gyp and native/ (the checkout's
// own build/ is left alone), with portable=1 (native/portable.cc), then checked: it needs no
// newer glibc than the official Node binaries (2.28) nor libstdc++ than RHEL 8's, and that Node
// loads it and runs a futex round. Prebuilds are made here (and by .ci/run before packing),
// never committed.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { VERSIONS, nodeDir } = require('./nodes.js');

const ROOT = path.join(__dirname, '..');
const OUT = path.join(ROOT, 'prebuilds', 'linux-x64');
/** The newest symbol versions a prebuild may need: glibc 2.28 (RHEL 8, what Node needs), libstdc++ of gcc 8. */
const LIMITS = { GLIBC: [2, 28], GLIBCXX: [3, 4, 25], CXXABI: [1, 3, 11] };

function newerThan(version, limit) {
  for (let i = 0; i < Math.max(version.length, limit.length); i++) {
    const a = version[i] ?? 0;
    const b = limit[i] ?? 0;
    if (a !== b) return a > b;
  }
  return false;
}

/** Symbol versions the shared object needs beyond LIMITS (objdump comes with binutils, as g++ does). */
function tooNew(file) {
  const out = execFileSync('objdump', ['-T', file], { encoding: 'utf8' });
  const bad = new Set();
  for (const [, lib, version] of out.matchAll(/\((GLIBC|GLIBCXX|CXXABI)_([\d.]+)\)/g)) {
    if (newerThan(version.split('.').map(Number), LIMITS[lib])) bad.add(`${lib}_${version}`);
  }
  return [...bad];
}

function prebuild(major) {
  const dir = nodeDir(major);
  const node = path.join(dir, 'bin', 'node');
  const abi = execFileSync(node, ['-p', 'process.versions.modules'], { encoding: 'utf8' }).trim();
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'interprocess-prebuild-'));
  try {
    fs.copyFileSync(path.join(ROOT, 'binding.gyp'), path.join(stage, 'binding.gyp'));
    fs.cpSync(path.join(ROOT, 'native'), path.join(stage, 'native'), { recursive: true });
    const env = {
      ...process.env,
      PATH: `${path.join(dir, 'bin')}${path.delimiter}${process.env.PATH}`,
      npm_config_nodedir: dir,
      GYP_DEFINES: 'portable=1',
      PREBUILD_NODE_GYP: path.join(ROOT, 'node_modules', '.bin', 'node-gyp'),
    };
    const prebuildify = path.join(ROOT, 'node_modules', 'prebuildify', 'bin.js');
    const args = [prebuildify, '--napi=false', '--strip', '--tag-libc', `--target=node@${VERSIONS[major]}`, '--cwd', stage, '--out', stage];
    execFileSync(node, args, { env, stdio: ['ignore', 'ignore', 'inherit'] });
    const name = `node.abi${abi}.glibc.node`;
    const built = path.join(stage, 'prebuilds', 'linux-x64', name);
    const bad = tooNew(built);
    if (bad.length > 0) throw new Error(`${name} needs ${bad.join(', ')}: it would not load on RHEL 8 / Debian 10 (see native/portable.cc)`);
    const check =
      "const b = require(process.argv[1]); const sab = new SharedArrayBuffer(8);" +
      "if (b.futexWait(sab, 0, 1, 0) !== 1 || b.futexWake(sab, 0, 1) !== 0) throw new Error('futex round failed');";
    execFileSync(node, ['-e', check, built], { stdio: 'inherit' });
    fs.mkdirSync(OUT, { recursive: true });
    fs.copyFileSync(built, path.join(OUT, name));
    console.log(`prebuilds/linux-x64/${name}  Node ${VERSIONS[major]}  ${fs.statSync(built).size} bytes`);
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

const majors = process.argv.slice(2).length > 0 ? process.argv.slice(2) : Object.keys(VERSIONS);
if (process.platform !== 'linux' || process.arch !== 'x64') {
  console.error(`prebuild: makes linux-x64 prebuilds; this is ${process.platform}-${process.arch}`);
  process.exit(1);
}
for (const major of majors) prebuild(major);
