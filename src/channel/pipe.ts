/**
 * Pipes: a channel over a child process's stdio or an extra file descriptor.
 *
 *   parent: const child = spawn(cmd, args, { stdio: ['inherit', 'inherit', 'inherit', 'pipe'] });
 *           const ch = childChannel(child);               // its first 'pipe' after stdio: fd 3
 *   child:  const ch = await connect('pipe://fd/3');
 *
 *   parent: const child = fork(file, { stdio: ['inherit', 'inherit', 'inherit', 'ipc', 'pipe'] });
 *           const ch = childChannel(child);               // fd 3 is fork's IPC channel: fd 4
 *   child:  const ch = await connect('pipe://fd/4');
 *
 * A child's descriptor N is entry N of the `stdio` array it was started with. Node creates each
 * 'pipe' entry as a Unix socket pair, so one descriptor carries both directions. `childChannel`
 * takes the child's first 'pipe' entry after stdin, stdout and stderr unless `fd` names one:
 * fork() puts its own IPC channel (Node's, which our frames must not share) at fd 3 by
 * default, so "fd 3" would be wrong for fork and right for spawn; the first pipe is right for
 * both. `pipe://stdio` (child side) reads fd 0 and writes fd 1, and
 * `childChannel(child, { fd: 'stdio' })` is its parent side; then nothing else may use the
 * child's stdin/stdout (console.log would corrupt the frames). `channelFromStreams` frames over
 * any Node Readable and Writable. A pipe has no listener: `listen('pipe://...')` is a TypeError.
 */
import * as net from 'node:net';
import type { ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import type { BytesCodec, SerializingCodec } from '../codec/index.js';
import { checkOptions } from '../options.js';
import { channelFromLink, channelOptionKeys, resolveChannelOptions, type Channel, type ChannelOptions, type ResolvedChannelOptions } from './channel.js';
import { StreamLink, type Link } from './link.js';
import { socketError, type Transport } from './transport.js';

function streamLink(input: Readable, output: Writable, options: ResolvedChannelOptions, what: string): Link {
  return new StreamLink(input, output, {
    maxMessageSize: options.maxMessageSize,
    frameTimeout: options.frameTimeout,
    closeTimeout: options.closeTimeout,
    what,
  });
}

function socketOnFd(fd: number, readable: boolean, writable: boolean, what: string): net.Socket {
  try {
    return new net.Socket({ fd, readable, writable, allowHalfOpen: true });
  } catch (err) {
    throw socketError(err, `${what}: fd ${fd} is not a pipe or socket`);
  }
}

export const pipeTransport: Transport = {
  scheme: 'pipe',
  listenKeys: [],

  async connect(url, address, { options }) {
    const where = decodeURIComponent(`${url.host}${url.pathname}`);
    if (where === 'stdio') {
      const input = socketOnFd(0, true, false, address);
      const output = socketOnFd(1, false, true, address);
      return streamLink(input, output, options, 'pipe stdio');
    }
    const match = /^fd\/(\d{1,9})$/.exec(where);
    if (match === null) throw new TypeError(`'${address}': a pipe address is pipe://fd/N or pipe://stdio`);
    const fd = Number(match[1]);
    if (fd <= 2) throw new TypeError(`'${address}': use pipe://stdio for fds 0 and 1`);
    const socket = socketOnFd(fd, true, true, address);
    return streamLink(socket, socket, options, `pipe fd ${fd}`);
  },
};

/** A channel over any readable (incoming) and writable (outgoing) Node stream; the codec decides the message type. */
export function channelFromStreams(readable: Readable, writable: Writable, opts?: ChannelOptions<Uint8Array> & BytesCodec): Channel<Uint8Array>;
export function channelFromStreams<T = unknown>(readable: Readable, writable: Writable, opts: ChannelOptions<T> & SerializingCodec<T>): Channel<T>;
export function channelFromStreams<T>(readable: Readable, writable: Writable, opts?: ChannelOptions<T>): Channel<T> {
  const o = checkOptions<ChannelOptions<T>>(opts, channelOptionKeys, 'channelFromStreams');
  if (readable === null || typeof readable !== 'object' || typeof (readable as Readable).on !== 'function') {
    throw new TypeError('channelFromStreams: readable must be a Readable stream');
  }
  if (writable === null || typeof writable !== 'object' || typeof (writable as Writable).write !== 'function') {
    throw new TypeError('channelFromStreams: writable must be a Writable stream');
  }
  const options = resolveChannelOptions(o, 'channelFromStreams');
  return channelFromLink<T>(streamLink(readable, writable, options, 'stream channel'), options, 'stream channel');
}

export interface ChildChannelOptions<T = unknown> extends ChannelOptions<T> {
  /**
   * The child's descriptor: a number >= 3 whose stdio entry was 'pipe', or 'stdio' (its stdin
   * and stdout). Default: the first 'pipe' entry after stdio (fd 3 for spawn with
   * `[..., 'pipe']`, fd 4 for fork with `[..., 'ipc', 'pipe']`).
   */
  fd?: number | 'stdio';
}

const NO_PIPE =
  "childChannel: the child has no 'pipe' descriptor after stdin, stdout and stderr. Start it with one, e.g. " +
  "spawn(cmd, args, { stdio: ['inherit', 'inherit', 'inherit', 'pipe'] }) with connect('pipe://fd/3') in the child, or " +
  "fork(file, { stdio: ['inherit', 'inherit', 'inherit', 'ipc', 'pipe'] }) with connect('pipe://fd/4'); or pass { fd: 'stdio' }";

/** A stdio entry that is a stream in both directions (a 'pipe'), or undefined. */
function pipeAt(child: ChildProcess, fd: number): (Readable & Writable) | undefined {
  const stream = child.stdio[fd] as unknown as (Readable & Writable) | null | undefined;
  if (stream === null || stream === undefined || typeof stream.write !== 'function' || typeof stream.on !== 'function') return undefined;
  return stream;
}

/** The parent's side of `connect('pipe://fd/N')` (or 'pipe://stdio') in a child process; the codec decides the message type. */
export function childChannel(child: ChildProcess, opts?: ChildChannelOptions<Uint8Array> & BytesCodec): Channel<Uint8Array>;
export function childChannel<T = unknown>(child: ChildProcess, opts: ChildChannelOptions<T> & SerializingCodec<T>): Channel<T>;
export function childChannel<T>(child: ChildProcess, opts?: ChildChannelOptions<T>): Channel<T> {
  const o = checkOptions<ChildChannelOptions<T>>(opts, [...channelOptionKeys, 'fd'], 'childChannel');
  if (child === null || typeof child !== 'object' || !Array.isArray((child as ChildProcess).stdio)) {
    throw new TypeError('childChannel: expected a ChildProcess');
  }
  const options = resolveChannelOptions(o, 'childChannel');
  let fd = o.fd;
  if (fd === undefined) {
    for (let k = 3; k < child.stdio.length && fd === undefined; k++) if (pipeAt(child, k) !== undefined) fd = k;
    if (fd === undefined) throw new TypeError(NO_PIPE);
  }
  if (fd === 'stdio') {
    const { stdout, stdin } = child;
    if (stdout === null || stdin === null) throw new TypeError("childChannel: the child's stdin and stdout must be 'pipe'");
    const what = `pipe to child ${child.pid} stdio`;
    return channelFromLink<T>(streamLink(stdout, stdin, options, what), options, what);
  }
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 3) throw new TypeError("childChannel: fd must be an integer >= 3 or 'stdio'");
  const stream = pipeAt(child, fd);
  if (stream === undefined) throw new TypeError(`childChannel: the child's stdio[${fd}] must be 'pipe' (fork's 'ipc' entry is Node's own channel)`);
  const what = `pipe to child ${child.pid} fd ${fd}`;
  return channelFromLink<T>(streamLink(stream, stream, options, what), options, what);
}
