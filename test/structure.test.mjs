// The layering of src/: no import cycle between files, nor between folders. Folders stand on
// each other in one direction (os/ on the root modules, shm/ on os/, sync/ on shm/ ...), so a
// newcomer can read the code bottom up.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const src = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src');

function sources(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sources(full);
    return e.name.endsWith('.ts') ? [full] : [];
  });
}

/** file (relative to src) -> files it imports at run time (type-only imports do not count). */
function importGraph() {
  const graph = new Map();
  for (const file of sources(src)) {
    const text = fs.readFileSync(file, 'utf8');
    const deps = [];
    for (const m of text.matchAll(/^(?:import|export)\s+(type\s+)?[^'";]*?from\s+'(\.[^']+)'/gm)) {
      if (m[1]) continue;
      const target = path.resolve(path.dirname(file), m[2].replace(/\.js$/, '.ts'));
      deps.push(path.relative(src, target));
    }
    graph.set(path.relative(src, file), deps);
  }
  return graph;
}

function findCycle(graph) {
  const state = new Map();
  const stack = [];
  const visit = (node) => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === 'open') return [...stack.slice(stack.indexOf(next)), next];
      if (!state.has(next)) {
        const cycle = visit(next);
        if (cycle) return cycle;
      }
    }
    stack.pop();
    state.set(node, 'done');
    return undefined;
  };
  for (const node of graph.keys()) {
    if (!state.has(node)) {
      const cycle = visit(node);
      if (cycle) return cycle;
    }
  }
  return undefined;
}

test('no import cycle between files of src/', () => {
  assert.equal(findCycle(importGraph())?.join(' -> '), undefined);
});

test('no import cycle between folders of src/ (a root file is its own node)', () => {
  const folderOf = (file) => (file.includes(path.sep) ? file.split(path.sep)[0] + '/' : file);
  const folders = new Map();
  for (const [file, deps] of importGraph()) {
    const from = folderOf(file);
    const set = folders.get(from) ?? new Set();
    for (const dep of deps) if (folderOf(dep) !== from) set.add(folderOf(dep));
    folders.set(from, set);
  }
  const graph = new Map([...folders].map(([k, v]) => [k, [...v]]));
  assert.equal(findCycle(graph)?.join(' -> '), undefined);
});

// `export { X }` of an imported binding compiles to an accessor on the CommonJS exports object,
// which puts that object in dictionary mode: every read of the module's constants from a hot
// path (`layout_js_1.SLOT_SEQ`, several per queue message) then becomes a generic LoadIC call
// instead of an inlined load, measured at a fifth of a 64 B send + receive. Only the index
// files, read once at import, may re-export.
test('no module but an index file re-exports an imported binding (it would slow every read of its exports)', () => {
  const offenders = [];
  for (const file of sources(src)) {
    if (path.basename(file) === 'index.ts') continue;
    const text = fs.readFileSync(file, 'utf8');
    const imported = new Set();
    for (const m of text.matchAll(/^import\s+\{([^}]*)\}\s+from/gm)) {
      for (const part of m[1].split(',')) {
        const name = part.trim().replace(/^type\s+/, '').split(/\s+as\s+/).pop();
        if (name && !part.trim().startsWith('type ')) imported.add(name);
      }
    }
    for (const m of text.matchAll(/^export\s+\{([^}]*)\}(\s+from\s+'[^']+')?/gm)) {
      for (const part of m[1].split(',')) {
        const name = part.trim().split(/\s+as\s+/)[0];
        if (name && !name.startsWith('type ') && (m[2] !== undefined || imported.has(name))) offenders.push(`${path.relative(src, file)}: ${name}`);
      }
    }
  }
  assert.deepEqual(offenders, []);
});
