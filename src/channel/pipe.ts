/**
 * Pipes: a channel over a child process's stdio or an extra file descriptor.
 *
 *   parent: const child = spawn(cmd, args, { stdio: ['inherit', 'inherit', 'inherit', 'pipe'] });
 *           const ch = childChannel(child);               // fd 3, both directions
 *   child:  const ch = await connect('pipe://fd/3');
 *
 * Node creates each 'pipe' stdio entry as a Unix socket pair, so one descriptor carries both
 * directions. `pipe://stdio` (child side) reads fd 0 and writes fd 1, and
 * `childChannel(child, { fd: 'stdio' })` is its parent side; then nothing else may use the
 * child's stdin/stdout (console.log would corrupt the frames). `channelFromStreams` frames over
 * any Node Readable and Writable. A pipe has no listener: `listen('pipe://...')` is a TypeError.
 */
import * as net from 'node:net';
import type { ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
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

/** A channel over any readable (incoming) and writable (outgoing) Node stream. */
export function channelFromStreams<T = unknown>(readable: Readable, writable: Writable, opts?: ChannelOptions<T>): Channel<T> {
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
  /** The child's descriptor: a number >= 3 whose stdio entry was 'pipe' (default 3), or 'stdio'. */
  fd?: number | 'stdio';
}

/** The parent's side of `connect('pipe://fd/N')` (or 'pipe://stdio') in a child process. */
export function childChannel<T = unknown>(child: ChildProcess, opts?: ChildChannelOptions<T>): Channel<T> {
  const o = checkOptions<ChildChannelOptions<T>>(opts, [...channelOptionKeys, 'fd'], 'childChannel');
  if (child === null || typeof child !== 'object' || !Array.isArray((child as ChildProcess).stdio)) {
    throw new TypeError('childChannel: expected a ChildProcess');
  }
  const fd = o.fd ?? 3;
  const options = resolveChannelOptions(o, 'childChannel');
  if (fd === 'stdio') {
    const { stdout, stdin } = child;
    if (stdout === null || stdin === null) throw new TypeError("childChannel: the child's stdin and stdout must be 'pipe'");
    const what = `pipe to child ${child.pid} stdio`;
    return channelFromLink<T>(streamLink(stdout, stdin, options, what), options, what);
  }
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 3) throw new TypeError("childChannel: fd must be an integer >= 3 or 'stdio'");
  const stream = child.stdio[fd] as unknown as (Readable & Writable) | null | undefined;
  if (stream === null || stream === undefined || typeof stream.write !== 'function' || typeof stream.on !== 'function') {
    throw new TypeError(`childChannel: the child's stdio[${fd}] must be 'pipe'`);
  }
  const what = `pipe to child ${child.pid} fd ${fd}`;
  return channelFromLink<T>(streamLink(stream, stream, options, what), options, what);
}
