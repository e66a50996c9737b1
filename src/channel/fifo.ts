/**
 * fifo:///absolute/path: named FIFOs, in the classic well-known-FIFO design (Stevens, UNIX
 * Network Programming vol. 2): many clients, one private FIFO pair per connection.
 *
 *   listen   creates the well-known FIFO `path` (mode 0o600) and reads connect requests on it.
 *   connect  creates its own pair `path.<token>.up` (client -> server) and `path.<token>.down`
 *            (server -> client), both 0o600, opens `down` for reading, and writes the request
 *            line "<token>\n" to `path` (one write under PIPE_BUF bytes, so requests of
 *            concurrent clients never interleave).
 *   server   opens `up` for reading and `down` for writing, and writes one HELLO byte on down.
 *   client   on HELLO opens `up` for writing and answers HELLO; both names are then unlinked
 *            (the descriptors stay), so a finished connection leaves no file behind.
 *
 * Until its peer has opened the other end, each side also holds a write descriptor on its own
 * read FIFO, because a FIFO without writers reads as end-of-file; it is dropped after the
 * handshake, so from then on end-of-file means the peer closed or died. A token is
 * `<pid>-<random>`; the server derives both paths from it and only opens FIFOs owned by its
 * own user. A stale well-known FIFO (no reader: opening it for writing fails with ENXIO) is
 * replaced; a live one is never taken (IPC_ERR_EXISTS).
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { armDeadline } from '../deadline.js';
import { abortError, errnoError, IpcError } from '../errors.js';
import { native } from '../os/native.js';
import { checkInteger } from '../options.js';
import type { ResolvedChannelOptions } from './channel.js';
import { StreamLink, type Link } from './link.js';
import { socketError, type Listener, type Transport } from './transport.js';

const { O_RDONLY, O_WRONLY, O_RDWR, O_NONBLOCK } = fs.constants;
const HELLO = 0x49; // 'I'
/** How long the server waits for a client that asked to connect to finish the handshake. */
const HANDSHAKE_MS = 10_000;
const TOKEN = /^[0-9]{1,10}-[0-9a-f]{16}$/;

function fifoPath(url: URL, address: string): string {
  if (url.host !== '') throw new TypeError(`'${address}': a fifo address is fifo:///absolute/path (three slashes)`);
  const p = decodeURIComponent(url.pathname);
  if (!p.startsWith('/') || p.length < 2) throw new TypeError(`'${address}': the FIFO path must be absolute`);
  return p;
}

function mkfifo(p: string, mode: number, what: string): void {
  try {
    native().mkfifo(p, mode);
  } catch (err) {
    throw errnoError(err, what, 'listen');
  }
}

function closeQuietly(fd: number | undefined): void {
  if (fd === undefined) return;
  try {
    fs.closeSync(fd);
  } catch {
    // already closed
  }
}

function unlinkQuietly(p: string): void {
  try {
    fs.unlinkSync(p);
  } catch {
    // already gone
  }
}

/** Opens a FIFO without blocking and checks it is a FIFO of ours (not planted by someone else). */
function openFifo(p: string, flags: number, what: string): number {
  let fd: number;
  try {
    fd = fs.openSync(p, flags | O_NONBLOCK | fs.constants.O_NOFOLLOW);
  } catch (err) {
    throw socketError(err, what);
  }
  const stat = fs.fstatSync(fd);
  if (!stat.isFIFO() || (process.getuid !== undefined && stat.uid !== process.getuid())) {
    fs.closeSync(fd);
    throw new IpcError('IPC_ERR_PERMISSION', `${what}: ${p} is not a FIFO owned by this user`);
  }
  return fd;
}

/**
 * Resolves when the first byte arrives on `socket` (and puts back what came after it); `step`
 * names the wait in a timeout or abort ("fifo /x: connect timed out after 5 ms").
 */
function awaitHello(socket: net.Socket, ms: number, signal: AbortSignal | undefined, what: string, step: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(`${what}: ${step}`, signal.reason));
    const cleanup = () => {
      disarm();
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
    };
    const onData = (chunk: Buffer) => {
      cleanup();
      socket.pause();
      if (chunk[0] !== HELLO) return reject(new IpcError('IPC_ERR_PROTOCOL', `${what}: bad handshake byte ${chunk[0]}`));
      if (chunk.length > 1) socket.unshift(chunk.subarray(1));
      resolve();
    };
    const onEnd = () => {
      cleanup();
      reject(new IpcError('IPC_ERR_CLOSED', `${what}: peer went away during the handshake`));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(socketError(err, what));
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onError);
    const disarm = armDeadline(ms, signal, `${what}: ${step}`, (error) => {
      cleanup();
      reject(error);
    });
  });
}

function link(input: net.Socket, output: net.Socket, options: ResolvedChannelOptions, what: string): Link {
  return new StreamLink(input, output, {
    maxMessageSize: options.maxMessageSize,
    frameTimeout: options.frameTimeout,
    closeTimeout: options.closeTimeout,
    what,
  });
}

function writeSocket(fd: number): net.Socket {
  const socket = new net.Socket({ fd, readable: false, writable: true, allowHalfOpen: true });
  socket.on('error', () => {}); // reported through the link once it exists
  return socket;
}

function readSocket(fd: number): net.Socket {
  return new net.Socket({ fd, readable: true, writable: false, allowHalfOpen: true });
}

async function clearStale(p: string, what: string): Promise<void> {
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw socketError(err, what);
  }
  if (!stat.isFIFO()) throw new IpcError('IPC_ERR_EXISTS', `${what}: ${p} exists and is not a FIFO; it was left alone`);
  let fd: number;
  try {
    fd = fs.openSync(p, O_WRONLY | O_NONBLOCK | fs.constants.O_NOFOLLOW);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENXIO') {
      unlinkQuietly(p); // no reader: a dead server's leftover
      return;
    }
    throw socketError(err, what);
  }
  fs.closeSync(fd);
  throw new IpcError('IPC_ERR_EXISTS', `${what}: a live server is reading ${p}`);
}

class FifoListener implements Listener {
  readonly address: string;
  readonly #path: string;
  readonly #requests: net.Socket;
  readonly #options: ResolvedChannelOptions;
  #closing: Promise<void> | undefined;
  #pending = '';

  constructor(address: string, p: string, requests: net.Socket, options: ResolvedChannelOptions) {
    this.address = address;
    this.#path = p;
    this.#requests = requests;
    this.#options = options;
    requests.on('error', () => {});
  }

  start(onLink: (link: Link) => void): void {
    this.#requests.setEncoding('latin1');
    this.#requests.on('data', (text: string) => {
      this.#pending += text;
      let newline: number;
      while ((newline = this.#pending.indexOf('\n')) >= 0) {
        const token = this.#pending.slice(0, newline);
        this.#pending = this.#pending.slice(newline + 1);
        if (TOKEN.test(token)) this.#accept(token).then(onLink, () => {}); // a client that gave up
      }
      // Garbage without newlines must not grow without bound.
      if (this.#pending.length > 256) this.#pending = '';
    });
  }

  async #accept(token: string): Promise<Link> {
    const up = `${this.#path}.${token}.up`;
    const down = `${this.#path}.${token}.down`;
    const what = `fifo ${this.#path} <- ${token}`;
    let upFd: number | undefined;
    let holdFd: number | undefined;
    let downFd: number | undefined;
    try {
      upFd = openFifo(up, O_RDONLY, what);
      holdFd = openFifo(up, O_WRONLY, what);
      downFd = openFifo(down, O_WRONLY, what); // ENXIO if the client no longer reads
    } catch (err) {
      closeQuietly(upFd);
      closeQuietly(holdFd);
      closeQuietly(downFd);
      throw err;
    }
    const input = readSocket(upFd);
    const output = writeSocket(downFd);
    try {
      output.write(Buffer.of(HELLO));
      await awaitHello(input, HANDSHAKE_MS, undefined, what, 'handshake');
    } catch (err) {
      input.destroy();
      output.destroy();
      throw err;
    } finally {
      closeQuietly(holdFd);
      unlinkQuietly(up);
      unlinkQuietly(down);
    }
    return link(input, output, this.#options, what);
  }

  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      unlinkQuietly(this.#path);
      this.#requests.destroy();
      resolve();
    });
    return this.#closing;
  }
}

export const fifoTransport: Transport = {
  scheme: 'fifo',
  listenKeys: ['mode'],

  async listen(url, address, { options, extra }) {
    const p = fifoPath(url, address);
    const mode = extra['mode'] === undefined ? 0o600 : checkInteger(extra['mode'], 'listen: mode', 0, 0o777);
    const what = `listen on ${address}`;
    await clearStale(p, what);
    mkfifo(p, mode, what);
    let fd: number;
    try {
      // Read-write: the server is then also a writer, so the FIFO never reads as end-of-file
      // between clients, and a prober opening it for writing finds a reader (live).
      fd = openFifo(p, O_RDWR, what);
    } catch (err) {
      unlinkQuietly(p);
      throw err;
    }
    return new FifoListener(address, p, readSocket(fd), options);
  },

  async connect(url, address, { options, timeout, signal }) {
    const p = fifoPath(url, address);
    const what = `fifo ${p}`;
    if (signal?.aborted) throw abortError(`${what}: connect`, signal.reason);
    const token = `${process.pid}-${randomBytes(8).toString('hex')}`;
    const up = `${p}.${token}.up`;
    const down = `${p}.${token}.down`;
    if (Buffer.byteLength(path.basename(up)) > 255) throw new IpcError('IPC_ERR_INVALID_NAME', `${what}: name too long`);
    let downFd: number | undefined;
    let holdFd: number | undefined;
    let upFd: number | undefined;
    let input: net.Socket | undefined;
    let output: net.Socket | undefined;
    try {
      mkfifo(up, 0o600, what);
      mkfifo(down, 0o600, what);
      downFd = openFifo(down, O_RDONLY, what);
      holdFd = openFifo(down, O_WRONLY, what);
      let requestFd: number;
      try {
        requestFd = fs.openSync(p, O_WRONLY | O_NONBLOCK | fs.constants.O_NOFOLLOW);
      } catch (err) {
        throw socketError(err, `${what}: connect`);
      }
      try {
        if (!fs.fstatSync(requestFd).isFIFO()) throw new IpcError('IPC_ERR_NOT_FOUND', `${what}: not a FIFO`);
        fs.writeSync(requestFd, `${token}\n`); // < PIPE_BUF: atomic, never interleaved
      } catch (err) {
        throw err instanceof IpcError ? err : socketError(err, `${what}: connect`);
      } finally {
        fs.closeSync(requestFd);
      }
      input = readSocket(downFd);
      downFd = undefined; // owned by the socket now
      await awaitHello(input, timeout === Infinity ? HANDSHAKE_MS : timeout, signal, what, 'connect');
      upFd = openFifo(up, O_WRONLY, what);
      output = writeSocket(upFd);
      upFd = undefined;
      output.write(Buffer.of(HELLO));
      return link(input, output, options, what);
    } catch (err) {
      input?.destroy();
      output?.destroy();
      closeQuietly(downFd);
      closeQuietly(upFd);
      throw err;
    } finally {
      closeQuietly(holdFd);
      unlinkQuietly(up);
      unlinkQuietly(down);
    }
  },
};
