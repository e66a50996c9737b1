/**
 * unix:///absolute/path: a Unix domain stream socket.
 *
 * The socket file is created with mode 0o600 (the `mode` listen option changes it): the
 * process umask is narrowed while bind() runs, so the file is never wider than asked, then
 * chmod sets the exact mode. (In a worker thread, where the umask cannot be changed, the file
 * is chmod-ed right after bind.) An existing file at the path is replaced only if it is a
 * socket that refuses connections (a dead server's leftover); a live server's socket, or any
 * file that is not a socket, is never touched: IPC_ERR_EXISTS.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import { dirname } from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { IpcError } from '../errors.js';
import { checkInteger } from '../options.js';
import { connectSocket, NetListener, whenListening } from './socket.js';
import { socketError, type Transport } from './transport.js';

/** Linux limit for sun_path, including the terminating NUL. */
const MAX_PATH_BYTES = 107;

function socketPath(url: URL, address: string): string {
  if (url.host !== '') throw new TypeError(`'${address}': a unix address is unix:///absolute/path (three slashes)`);
  const path = decodeURIComponent(url.pathname);
  if (!path.startsWith('/') || path.length < 2) throw new TypeError(`'${address}': the socket path must be absolute`);
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) {
    throw new IpcError('IPC_ERR_INVALID_NAME', `'${address}': socket paths are limited to ${MAX_PATH_BYTES} bytes on Linux`);
  }
  return path;
}

/** Is a server accepting on `path`? false only for a definite ECONNREFUSED (dead server). */
function probe(path: string, what: string): Promise<boolean> {
  return new Promise<boolean>((resolve, reject) => {
    const socket = net.connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      socket.destroy();
      if (err.code === 'ECONNREFUSED') resolve(false);
      else if (err.code === 'ENOENT') resolve(false);
      else reject(socketError(err, what));
    });
  });
}

async function clearStale(path: string, what: string): Promise<void> {
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw socketError(err, what);
    // bind() would report a missing directory as EACCES through Node: say what it is.
    try {
      fs.statSync(dirname(path));
    } catch (dirErr) {
      throw socketError(dirErr, what, true);
    }
    return;
  }
  if (!stat.isSocket()) throw new IpcError('IPC_ERR_EXISTS', `${what}: ${path} exists and is not a socket; it was left alone`);
  if (await probe(path, what)) throw new IpcError('IPC_ERR_EXISTS', `${what}: a live server is listening on ${path}`);
  try {
    fs.unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw socketError(err, what);
  }
}

export const unixTransport: Transport = {
  scheme: 'unix',
  listenKeys: ['mode'],

  async listen(url, address, { options, extra }) {
    const path = socketPath(url, address);
    const mode = extra['mode'] === undefined ? 0o600 : checkInteger(extra['mode'], 'listen: mode', 0, 0o777);
    const what = `unix socket ${path}`;
    await clearStale(path, `listen on ${address}`);
    const server = net.createServer({ allowHalfOpen: false });
    const listening = whenListening(server, what);
    // bind() happens synchronously inside listen(); the umask decides the file's first mode.
    const oldMask = isMainThread ? process.umask(0o177) : undefined;
    try {
      server.listen({ path, exclusive: true });
    } finally {
      if (oldMask !== undefined) process.umask(oldMask);
    }
    await listening;
    try {
      fs.chmodSync(path, mode);
    } catch (err) {
      server.close();
      throw socketError(err, what);
    }
    return new NetListener(server, address, options, () => what);
  },

  connect(url, address, context) {
    const path = socketPath(url, address);
    return connectSocket({ path }, `unix socket ${path}`, context);
  },
};
