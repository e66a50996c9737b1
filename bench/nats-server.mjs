// A real nats-server for the nats:// tests and the bench: started on a free loopback port with
// a private configuration file, stopped by the caller (and killed at exit if it is still up).
// It lives in bench/ because the bench ships with the package (the tests import it from here).
// Debian's package `nats-server` provides it (.ci/run installs it); natsServerPath() is
// undefined without it, and the nats tests are then skipped with that reason.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const DIRS = [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/sbin', '/usr/local/sbin', '/usr/local/bin', '/usr/bin'];

/** The nats-server executable, or undefined when it is not installed. */
export const natsServerPath = DIRS.map((d) => path.join(d, 'nats-server')).find((p) => {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
});

export const NATS_MISSING = natsServerPath === undefined ? 'nats-server is not installed (apt-get install nats-server; .ci/run does)' : undefined;

const running = new Set();
let started = 0;
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * Starts nats-server listening on 127.0.0.1 at a port it picks, with `config` (nats-server
 * configuration syntax) added to its file. Resolves once it logs that it is ready, with
 *   port, address(subject), kill(signal) (resolves when it has exited), exited, log()
 */
export function startNatsServer({ config = '', readyMs = 10_000 } = {}) {
  if (natsServerPath === undefined) return Promise.reject(new Error(NATS_MISSING));
  const file = path.join(os.tmpdir(), `interprocess-nats-${process.pid}-${started++}-${Math.random().toString(36).slice(2, 8)}.conf`);
  fs.writeFileSync(file, `listen: 127.0.0.1:-1\n${config}\n`, { mode: 0o600 });
  const child = spawn(natsServerPath, ['-c', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  running.add(child);
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  exited.then(() => running.delete(child));
  let log = '';
  return new Promise((resolve, reject) => {
    let ready = false;
    const fail = (why) => {
      ready = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      fs.rmSync(file, { force: true });
      reject(new Error(`nats-server did not start: ${why}\n${log}`));
    };
    const timer = setTimeout(() => fail(`not ready within ${readyMs} ms`), readyMs);
    let port;
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text) => {
      if (log.length < 64 * 1024) log += text;
      port ??= Number(/Listening for client connections on [^\s]*:(\d+)/.exec(log)?.[1]) || undefined;
      if (port === undefined || !/Server is ready/.test(log) || ready) return;
      ready = true;
      clearTimeout(timer);
      // From now on the server must not keep this process alive: the exit hook stops it.
      child.unref();
      child.stderr.unref();
      fs.rmSync(file, { force: true }); // read at start; nothing of the run is left behind
      resolve({
        port,
        pid: child.pid,
        exited,
        address: (subject) => `nats://127.0.0.1:${port}/${subject}`,
        log: () => log,
        async kill(signal = 'SIGTERM') {
          if (child.exitCode === null && child.signalCode === null) {
            child.ref(); // wait for the exit with the event loop held open
            child.kill(signal);
          }
          await exited;
        },
      });
    });
    child.on('error', (err) => fail(err.message));
    exited.then(({ code, signal }) => {
      if (!ready) fail(`exited (code ${code}, signal ${signal})`);
    });
  });
}
