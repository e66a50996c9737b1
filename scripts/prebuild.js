#!/usr/bin/env node
// `npm run prebuilds [-- [--arch x64|arm64] MAJOR...]`: the prebuilt addons shipped inside the
// npm package, one per supported Node ABI, for linux-x64 glibc (and linux-arm64 glibc, cross-built
// with Debian's aarch64 toolchain and loaded under qemu-user): prebuilds/linux-<arch>/
// node.abi<N>.glibc.node, the names node-gyp-build (install) and src/os/native.ts (runtime) use.
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
function tooNew(file, objdump) {
  const out = execFileSync(objdump, ['-T', file], { encoding: 'utf8' });
  const bad = new Set();
  for (const [, lib, version] of out.matchAll(/\((GLIBC|GLIBCXX|CXXABI)_([\d.]+)\)/g)) {
    if (newerThan(version.split('.').map(Number), LIMITS[lib])) bad.add(`${lib}_${version}`);
  }
  return [...bad];
}

/** How to build and run for each architecture; arm64 is cross-built and run under qemu-user. */
const ARCHES = {
  x64: { objdump: 'objdump', run: [] },
  arm64: {
    objdump: 'aarch64-linux-gnu-objdump',
    env: { CC: 'aarch64-linux-gnu-gcc', CXX: 'aarch64-linux-gnu-g++', LINK: 'aarch64-linux-gnu-g++', AR: 'aarch64-linux-gnu-ar' },
    flags: ['--arch=arm64', '--strip-bin=aarch64-linux-gnu-strip'],
    run: ['qemu-aarch64', '-L', '/usr/aarch64-linux-gnu'],
    needs: ['aarch64-linux-gnu-g++', 'qemu-aarch64'],
  },
};

function prebuild(major, arch) {
  const how = ARCHES[arch];
  const host = nodeDir(major); // builds run on this machine's architecture
  const target = nodeDir(major, arch); // headers (and the binary that loads the result)
  const abi = execFileSync(path.join(host, 'bin', 'node'), ['-p', 'process.versions.modules'], { encoding: 'utf8' }).trim();
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'interprocess-prebuild-'));
  try {
    fs.copyFileSync(path.join(ROOT, 'binding.gyp'), path.join(stage, 'binding.gyp'));
    fs.cpSync(path.join(ROOT, 'native'), path.join(stage, 'native'), { recursive: true });
    const env = {
      ...process.env,
      ...how.env,
      PATH: `${path.join(host, 'bin')}${path.delimiter}${process.env.PATH}`,
      npm_config_nodedir: target,
      GYP_DEFINES: 'portable=1',
      PREBUILD_NODE_GYP: path.join(ROOT, 'node_modules', '.bin', 'node-gyp'),
    };
    const prebuildify = path.join(ROOT, 'node_modules', 'prebuildify', 'bin.js');
    const args = [prebuildify, '--napi=false', '--strip', '--tag-libc', `--target=node@${VERSIONS[major]}`, '--cwd', stage, '--out', stage, ...(how.flags ?? [])];
    execFileSync(path.join(host, 'bin', 'node'), args, { env, stdio: ['ignore', 'ignore', 'inherit'] });
    const name = `node.abi${abi}.glibc.node`;
    const built = path.join(stage, 'prebuilds', `linux-${arch}`, name);
    const bad = tooNew(built, how.objdump);
    if (bad.length > 0) throw new Error(`${name} needs ${bad.join(', ')}: it would not load on RHEL 8 / Debian 10 (see native/portable.cc)`);
    const check =
      "const b = require(process.argv[1]); const sab = new SharedArrayBuffer(8);" +
      "if (process.arch !== process.argv[2] || b.futexWait(sab, 0, 1, 0) !== 1 || b.futexWake(sab, 0, 1) !== 0) throw new Error('futex round failed');";
    const [runner, ...runnerArgs] = [...how.run, path.join(target, 'bin', 'node'), '-e', check, built, arch];
    execFileSync(runner, runnerArgs, { stdio: 'inherit' });
    const out = path.join(ROOT, 'prebuilds', `linux-${arch}`);
    fs.mkdirSync(out, { recursive: true });
    fs.copyFileSync(built, path.join(out, name));
    console.log(`prebuilds/linux-${arch}/${name}  Node ${VERSIONS[major]}  ${fs.statSync(built).size} bytes, loaded by its Node${how.run.length ? ' under qemu' : ''}`);
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

function have(command) {
  try {
    execFileSync(command, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

// npm run prebuilds [-- [--arch x64|arm64] MAJOR...]
const argv = process.argv.slice(2);
const archAt = argv.indexOf('--arch');
const arch = archAt >= 0 ? argv.splice(archAt, 2)[1] : 'x64';
const majors = argv.length > 0 ? argv : Object.keys(VERSIONS);
if (process.platform !== 'linux' || process.arch !== 'x64' || ARCHES[arch] === undefined) {
  console.error(`prebuild: builds on linux-x64 for x64 or arm64; this is ${process.platform}-${process.arch}, asked for ${arch}`);
  process.exit(1);
}
const missing = (ARCHES[arch].needs ?? []).filter((c) => !have(c));
if (missing.length > 0) {
  console.error(`prebuild: ${arch} needs ${missing.join(', ')} (Debian: g++-aarch64-linux-gnu, qemu-user)`);
  process.exit(1);
}
for (const major of majors) prebuild(major, arch);
