// Runs fixtures as another user (`setpriv --reuid=65534 ...`, as root), from any checkout. That
// user may not be able to read the checkout (a clone in a 0700 home or `mktemp -d` folder), nor
// the Node binary (an official build cached under /root): stageForOtherUser copies what the child
// needs, the package as installed (dist, package.json, the addon this checkout loads, its
// dependency msgpackr) and the fixtures, into a fresh world-readable folder, and Node itself
// when that user cannot run it where it is. The folder is removed when test `t` ends (without
// `t`, by the returned remove()).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..');
export const NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups'];

export function stageForOtherUser(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'interprocess-t-other-user-'));
  const remove = () => fs.rmSync(dir, { recursive: true, force: true });
  t?.after(remove);
  fs.chmodSync(dir, 0o755);
  const pkg = path.join(dir, 'node_modules', 'interprocess');
  const copy = (from, to) => {
    if (fs.existsSync(from)) fs.cpSync(from, to, { recursive: true });
  };
  copy(path.join(root, 'package.json'), path.join(pkg, 'package.json'));
  copy(path.join(root, 'dist'), path.join(pkg, 'dist'));
  copy(path.join(root, 'build', 'Release', 'interprocess.node'), path.join(pkg, 'build', 'Release', 'interprocess.node'));
  copy(path.join(root, 'prebuilds'), path.join(pkg, 'prebuilds'));
  copy(path.join(root, 'node_modules', 'msgpackr'), path.join(dir, 'node_modules', 'msgpackr'));
  copy(path.join(here, 'fixtures'), path.join(dir, 'fixtures'));
  let node = process.execPath;
  try {
    execFileSync('setpriv', [...NOBODY, node, '-e', '0'], { cwd: dir, stdio: 'ignore' });
  } catch {
    node = path.join(dir, 'node');
    fs.copyFileSync(process.execPath, node);
    fs.chmodSync(node, 0o755);
  }
  // Everything readable (and folders searchable) by others, whatever the umask was.
  const open = (p) => {
    const stat = fs.lstatSync(p);
    if (stat.isSymbolicLink()) return;
    fs.chmodSync(p, stat.mode | (stat.isDirectory() || stat.mode & 0o100 ? 0o055 : 0o044));
    if (stat.isDirectory()) for (const e of fs.readdirSync(p)) open(path.join(p, e));
  };
  open(dir);
  const env = { ...process.env };
  delete env.INTERPROCESS_NATIVE; // the staged package finds its own copy of the addon
  return {
    dir,
    /** The Node binary that user can run (startChild's execPath). */
    node,
    remove,
    /** Runs fixture FILE as the other user and returns its stdout. */
    run(file, args, options = {}) {
      return execFileSync('setpriv', [...NOBODY, node, path.join(dir, 'fixtures', file), ...args], { cwd: dir, env, encoding: 'utf8', ...options });
    },
  };
}
