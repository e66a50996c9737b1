/**
 * listen / connect by address, and the server object. The transport is chosen by the
 * address's scheme from `transports`; a new transport is a module exporting a Transport (a
 * file, or a folder like shm/) plus one registerTransport line here.
 */
import type { BytesCodec, SerializingCodec } from '../codec/index.js';
import { armDeadline } from '../deadline.js';
import { abortError, closedError, isIpcError } from '../errors.js';
import { checkOptions, checkSignal, checkTimeout, waitOptions } from '../options.js';
import {
  channelFromLink,
  channelOptionKeys,
  resolveChannelOptions,
  type Channel,
  type ChannelOptions,
  type ResolvedChannelOptions,
} from './channel.js';
import { fifoTransport } from './fifo.js';
import type { Link } from './link.js';
import { natsTransport, type NatsOptions } from './nats/index.js';
import { pipeTransport } from './pipe.js';
import { shmTransport } from './shm/index.js';
import { tcpTransport } from './tcp.js';
import { parseAddress, type Listener, type Transport } from './transport.js';
import { unixTransport } from './unix.js';

const transports = new Map<string, Transport>();

/** Adds a transport for `scheme://` addresses (used by the library's own transports). */
export function registerTransport(transport: Transport): void {
  transports.set(`${transport.scheme}:`, transport);
}

registerTransport(unixTransport);
registerTransport(tcpTransport);
registerTransport(pipeTransport);
registerTransport(fifoTransport);
registerTransport(shmTransport);
registerTransport(natsTransport);

function transportFor(url: URL, address: string, where: string): Transport {
  const transport = transports.get(url.protocol);
  if (transport === undefined) {
    const known = [...transports.keys()].map((s) => `${s}//`).join(', ');
    throw new TypeError(`${where}: unknown transport '${url.protocol}' in '${address}' (known: ${known})`);
  }
  return transport;
}

/** Options of listen: the channel options, the transport's own (mode, queue geometry), and nats://'s (NatsOptions). */
export interface ListenOptions<T = unknown> extends ChannelOptions<T>, NatsOptions {
  /** unix:// and fifo://: mode of the socket file or FIFO; shm://: of the shared-memory objects (default 0o600). */
  mode?: number;
  /** shm://: slots per direction of each connection's queues, a power of two (default 128). */
  queueCapacity?: number;
  /** shm://: message bytes one slot carries (default 8192); a larger message spans several slots. */
  queueChunkBytes?: number;
  /**
   * shm://: take over a dead server's accept point even if another user owns it (default false:
   * IPC_ERR_PERMISSION), and accept connections whose objects another user created.
   */
  allowOtherOwner?: boolean;
}

/** Options of connect: the channel options, the attempt's timeout and signal, and nats://'s (NatsOptions). */
export interface ConnectOptions<T = unknown> extends ChannelOptions<T>, NatsOptions {
  /** Give up connecting after this many ms: IPC_ERR_TIMEOUT. */
  timeout?: number;
  signal?: AbortSignal;
  /**
   * shm://: connect to an accept point that another user owns (default false:
   * IPC_ERR_PERMISSION). That user's server then sees everything sent on the connection.
   */
  allowOtherOwner?: boolean;
}

export interface AcceptOptions {
  timeout?: number;
  signal?: AbortSignal;
}

interface AcceptWaiter<T> {
  resolve(channel: Channel<T>): void;
  reject(error: unknown): void;
}

const serverToken = Symbol('ChannelServer.internal');

/**
 * A listening server: yields one Channel per connection (`for await`, or `accept()`), in
 * arrival order. Closing the server stops accepting and releases the address; channels
 * already handed out stay open, those not yet accepted are closed.
 */
export class ChannelServer<T = Uint8Array> implements AsyncIterable<Channel<T>> {
  readonly #listener: Listener;
  readonly #options: ResolvedChannelOptions;
  readonly #backlog: Channel<T>[] = [];
  readonly #waiters: AcceptWaiter<T>[] = [];
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(token: symbol, listener: Listener, options: ResolvedChannelOptions) {
    if (token !== serverToken) throw new TypeError('ChannelServer cannot be constructed directly: use listen()');
    this.#listener = listener;
    this.#options = options;
    // A listener that fails after the fact (nats://: the broker connection is lost) closes the server.
    listener.start((link) => this.#onLink(link), () => void this.close());
  }

  /** The address clients connect to (with the real port for tcp://host:0). */
  get address(): string {
    return this.#listener.address;
  }

  #onLink(link: Link): void {
    if (this.#closed) {
      link.destroy();
      return;
    }
    const channel = channelFromLink<T>(link, this.#options, `channel from ${this.address}`);
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) waiter.resolve(channel);
    else this.#backlog.push(channel);
  }

  /** The next connection's channel; IPC_ERR_CLOSED once the server is closed. */
  accept(opts?: AcceptOptions): Promise<Channel<T>> {
    let timeout: number;
    let signal: AbortSignal | undefined;
    try {
      ({ timeout, signal } = waitOptions(opts, 'accept', true));
    } catch (err) {
      return Promise.reject(err);
    }
    const ready = this.#backlog.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    if (this.#closed) return Promise.reject(closedError(`server ${this.address}`));
    if (signal?.aborted) return Promise.reject(abortError('accept', signal.reason));
    return new Promise<Channel<T>>((resolve, reject) => {
      const waiter: AcceptWaiter<T> = {
        resolve: (channel) => {
          disarm();
          resolve(channel);
        },
        reject: (error) => {
          disarm();
          reject(error);
        },
      };
      this.#waiters.push(waiter);
      const disarm = armDeadline(timeout, signal, 'accept', (error) => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(error);
      });
    });
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Channel<T>> {
    for (;;) {
      let channel: Channel<T>;
      try {
        channel = await this.accept();
      } catch (err) {
        if (isIpcError(err, 'IPC_ERR_CLOSED')) return;
        throw err;
      }
      yield channel;
    }
  }

  /** Stops listening and releases the address. Idempotent; never rejects. */
  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#closed = true;
    const error = closedError(`server ${this.address}`);
    for (const waiter of this.#waiters.splice(0)) waiter.reject(error);
    const unaccepted = this.#backlog.splice(0).map((channel) => channel.close());
    this.#closing = Promise.all([this.#listener.close(), ...unaccepted]).then(() => undefined);
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Listens on `address` (unix:///path, tcp://host:port, fifo:///path, shm://name,
 * nats://host:port/subject). The codec decides the message type of its channels: Uint8Array
 * without one (or with 'bytes'), the type you name with a serializing codec
 * (`listen<Job>(address, { codec: 'json' })`).
 */
export function listen(address: string, opts?: ListenOptions<Uint8Array> & BytesCodec): Promise<ChannelServer<Uint8Array>>;
export function listen<T = unknown>(address: string, opts: ListenOptions<T> & SerializingCodec<T>): Promise<ChannelServer<T>>;
export async function listen<T>(address: string, opts?: ListenOptions<T>): Promise<ChannelServer<T>> {
  const url = parseAddress(address, 'listen');
  const transport = transportFor(url, address, 'listen');
  const o = checkOptions<ListenOptions<T>>(opts, [...channelOptionKeys, ...transport.listenKeys], `listen(${address})`);
  if (transport.listen === undefined) throw new TypeError(`listen: '${url.protocol}//' addresses cannot listen (connect to them instead)`);
  const options = resolveChannelOptions(o, `listen(${address})`);
  const extra: Record<string, unknown> = {};
  for (const key of transport.listenKeys) extra[key] = (o as Record<string, unknown>)[key];
  const listener = await transport.listen(url, address, { options, extra });
  return new ChannelServer<T>(serverToken, listener, options);
}

/**
 * Connects to `address` (unix:///path, tcp://host:port, fifo:///path, shm://name, pipe://fd/N,
 * pipe://stdio, nats://host:port/subject). The codec decides the message type, as for listen.
 */
export function connect(address: string, opts?: ConnectOptions<Uint8Array> & BytesCodec): Promise<Channel<Uint8Array>>;
export function connect<T = unknown>(address: string, opts: ConnectOptions<T> & SerializingCodec<T>): Promise<Channel<T>>;
export async function connect<T>(address: string, opts?: ConnectOptions<T>): Promise<Channel<T>> {
  const url = parseAddress(address, 'connect');
  const transport = transportFor(url, address, 'connect');
  const connectKeys = transport.connectKeys ?? [];
  const o = checkOptions<ConnectOptions<T>>(opts, [...channelOptionKeys, 'timeout', 'signal', ...connectKeys], `connect(${address})`);
  const options = resolveChannelOptions(o, `connect(${address})`);
  const timeout = checkTimeout(o.timeout, 'connect');
  const signal = checkSignal(o.signal, 'connect');
  const extra: Record<string, unknown> = {};
  for (const key of connectKeys) extra[key] = (o as Record<string, unknown>)[key];
  const link = await transport.connect(url, address, { options, timeout, signal, extra });
  return channelFromLink<T>(link, options, `channel to ${address}`);
}

export { Channel, RemoteError, channelFromLink, resolveChannelOptions } from './channel.js';
export type { ChannelOptions, SendOptions, ReceiveOptions, RequestOptions, ResolvedChannelOptions } from './channel.js';
export { channelFromStreams, childChannel } from './pipe.js';
export type { ChildChannelOptions } from './pipe.js';
export type { Link, LinkHandler } from './link.js';
export type { Transport, Listener } from './transport.js';
export type { NatsOptions, NatsTlsOptions } from './nats/index.js';
