#!/usr/bin/env bash
# The package as a user gets it (run by .ci/run after `npm run prebuilds`):
#   1. `npm pack`: the tarball holds the prebuilds, the bench workloads and no build leftovers;
#   2. for every supported Node: a fresh project installs the tarball with the compiler out of
#      reach (PATH without cc, g++, make, python3), nothing is compiled, and the library works
#      (scripts/smoke-installed.mjs); the CLI works there: ls, inspect, rm, gc, and a bench
#      (whose C references are then left out with a note);
#   3. on this machine's Node, with the compiler: `bench --quick --save` runs every mechanism and
#      writes only under the current directory; `--build-from-source` builds the addon at
#      install (the fallback when no prebuild matches);
#   4. when the package has arm64 prebuilds: each loaded by the official arm64 Node under
#      qemu-user, across processes (scripts/smoke-installed.mjs).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scratch=$(mktemp -d "${TMPDIR:-/tmp}/interprocess-package-XXXXXX")
trap 'rm -rf "$scratch"' EXIT

echo "== npm pack"
tarball=$(npm pack --silent --pack-destination "$scratch" | tail -n 1)
tarball="$scratch/$tarball"
listing=$(tar -tzf "$tarball")
for want in package/prebuilds/linux-x64/node.abi115.glibc.node package/prebuilds/linux-x64/node.abi127.glibc.node \
  package/prebuilds/linux-x64/node.abi137.glibc.node package/prebuilds/linux-x64/node.abi147.glibc.node \
  package/bench/trial.mjs package/bench/mechanisms/queue.mjs package/bench/native/futex_pingpong.c \
  package/dist/cjs/index.js package/binding.gyp package/native/futex.cc; do
  grep -qx "$want" <<<"$listing" || { echo "missing from the tarball: $want"; exit 1; }
done
if grep -E '^package/(build|test|node_modules|bench/results)/' <<<"$listing"; then echo "the tarball holds files it must not"; exit 1; fi
echo "$(basename "$tarball"): $(wc -l <<<"$listing") files, $(du -k "$tarball" | cut -f1) KiB"

# A PATH with Node and the few tools npm and its scripts need, and no compiler, make or python.
nocc="$scratch/nocc-bin"
mkdir -p "$nocc"
for tool in sh bash env cat ls rm mkdir cp mv chmod uname tr sed grep dirname basename readlink taskset; do
  p=$(command -v "$tool" || true)
  [ -n "$p" ] && ln -sf "$p" "$nocc/$tool"
done
npm_cli=$(readlink -f "$(command -v npm)")
npm_root=$(cd "$(dirname "$npm_cli")/.." && pwd)

install_and_run() { # $1 = folder with bin/node; $2 = label
  local nodebin=$1/bin label=$2 project="$scratch/project-$2"
  mkdir -p "$project"
  ( cd "$project"
    export PATH="$nodebin:$nocc"
    for missing in cc gcc g++ c++ make python3 python; do
      if command -v "$missing" >/dev/null; then echo "$missing is reachable: the check would prove nothing"; exit 1; fi
    done
    node "$npm_root/bin/npm-cli.js" init -y >/dev/null
    node "$npm_root/bin/npm-cli.js" install --no-audit --no-fund --foreground-scripts "$tarball" >install.log 2>&1 \
      || { cat install.log; echo "npm install of the tarball failed on Node $(node --version) without a compiler"; exit 1; }
    [ ! -e node_modules/interprocess/build ] || { cat install.log; echo "the install compiled something"; exit 1; }
    cp "$root/scripts/smoke-installed.mjs" .
    node smoke-installed.mjs
    npx=(node "$npm_root/bin/npx-cli.js" --no-install)
    out=$("${npx[@]}" interprocess ls --json)
    node -e 'JSON.parse(process.argv[1])' "$out"
    node -e "require('interprocess').SharedMemory.create('t-pkg-$$', { byteLength: 4096 }).close()"
    "${npx[@]}" interprocess inspect "t-pkg-$$" --json | grep -q '"byteLength": 4096' 
    "${npx[@]}" interprocess gc --prefix "t-pkg-$$" --min-age 0 --json | grep -q "t-pkg-$$"
    node -e "require('interprocess').SharedMemory.create('t-pkg-$$', { byteLength: 4096 }).close()"
    "${npx[@]}" interprocess rm "t-pkg-$$" >/dev/null
    "${npx[@]}" interprocess bench --only futex,queue-spin --sizes 64 --count 200 --no-html --json >bench.json 2>bench.log \
      || { cat bench.log; exit 1; }
    grep -q 'c-futex[a-z, -]*: left out, no C compiler' bench.log || { cat bench.log; echo "no note about the C references"; exit 1; }
    echo "ok  Node $(node --version): installed without a compiler from the prebuild, CLI ls/inspect/gc/rm/bench work"
  )
}

for major in $(node scripts/nodes.js majors); do
  echo "== Node $major: install the tarball without a compiler"
  install_and_run "$(node scripts/nodes.js dir "$major")" "node$major"
done

echo "== bench --quick --save from the installed package, with a compiler (C references built on demand)"
( cd "$scratch/project-node$(node -p 'process.versions.node.split(".")[0]')"
  npx --no-install interprocess bench --quick --save --json >bench-quick.json 2>bench-quick.log || { cat bench-quick.log; exit 1; }
  node -e '
    const r = JSON.parse(require("fs").readFileSync("bench-quick.json", "utf8"));
    const failed = r.results.filter((x) => x.error);
    if (failed.length) throw new Error("failed trials: " + failed.map((x) => x.id + ": " + x.error).join("; "));
    for (const id of ["c-futex", "queue-spin", "queue-async-fallback", "futex-waitAsync-fallback"])
      if (!r.results.some((x) => x.id === id)) throw new Error("no result for " + id);
    console.log("ok  bench --quick: " + r.results.length + " trials, async waits: " + r.machine.futexAsync);'
  ls interprocess-bench-*-quick.json interprocess-bench.html >/dev/null
  if find node_modules/interprocess -newer bench-quick.json -type f | grep -q .; then echo "bench wrote into node_modules"; exit 1; fi
  echo "ok  --save and the HTML report are under the current directory"
)

echo "== --build-from-source: the install builds the addon when asked (the fallback without a prebuild)"
( mkdir -p "$scratch/project-source" && cd "$scratch/project-source" && npm init -y >/dev/null
  npm install --no-audit --no-fund --build-from-source "$tarball" >install.log 2>&1 || { cat install.log; exit 1; }
  [ -f node_modules/interprocess/build/Release/interprocess.node ] || { cat install.log; echo "nothing was built"; exit 1; }
  cp "$root/scripts/smoke-installed.mjs" . && node smoke-installed.mjs | tail -n 1
)
if grep -q '^package/prebuilds/linux-arm64/' <<<"$listing"; then
  # No arm64 machine here: the official arm64 Node runs under qemu-user, and so do the children
  # it forks (through a wrapper: the kernel cannot exec an arm64 binary by itself).
  echo "== arm64: the library from the package, across processes, under qemu-user"
  mkdir -p "$scratch/project-arm64" && cd "$scratch/project-arm64" && npm init -y >/dev/null
  npm install --ignore-scripts --no-audit --no-fund "$tarball" >install.log 2>&1 || { cat install.log; exit 1; }
  cp "$root/scripts/smoke-installed.mjs" .
  for major in $(node "$root/scripts/nodes.js" majors); do
    abi=$("$(node "$root/scripts/nodes.js" dir "$major")/bin/node" -p process.versions.modules)
    grep -qx "package/prebuilds/linux-arm64/node.abi$abi.glibc.node" <<<"$listing" || { echo "no arm64 prebuild for Node $major"; exit 1; }
    printf '#!/bin/sh\nexec qemu-aarch64 -L /usr/aarch64-linux-gnu %s/bin/node "$@"\n' "$(node "$root/scripts/nodes.js" dir "$major" arm64)" >qnode
    chmod +x qnode
    INTERPROCESS_SMOKE_EXEC="$PWD/qnode" ./qnode smoke-installed.mjs | tail -n 1 | grep "smoke ok on Node v$major.* linux-arm64"
  done
  cd "$root"
fi
echo "package check: passed"
