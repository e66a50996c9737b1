/**
 * What the unix:// and tcp:// transports share: turning a node:net socket into a Link, a
 * connect with timeout and abort, and a Listener over a node:net server.
 */
import * as net from 'node:net';
import { armDeadline } from '../deadline.js';
import { abortError } from '../errors.js';
import type { ResolvedChannelOptions } from './channel.js';
import { StreamLink, type Link } from './link.js';
import { socketError, type ConnectContext, type Listener } from './transport.js';

export function socketLink(socket: net.Socket, options: ResolvedChannelOptions, what: string): Link {
  // Small frames must not wait for Nagle's algorithm (a no-op on unix sockets).
  socket.setNoDelay(true);
  return new StreamLink(socket, socket, {
    maxMessageSize: options.maxMessageSize,
    frameTimeout: options.frameTimeout,
    closeTimeout: options.closeTimeout,
    what,
  });
}

/** Connects a socket; IPC_ERR_NOT_FOUND when nothing listens, IPC_ERR_TIMEOUT / ABORTED. */
export function connectSocket(target: net.NetConnectOpts, what: string, context: ConnectContext): Promise<Link> {
  return new Promise<Link>((resolve, reject) => {
    const { signal, timeout } = context;
    if (signal?.aborted) return reject(abortError(`${what}: connect`, signal.reason));
    const socket = net.connect(target);
    const cleanup = () => {
      disarm();
      socket.off('error', onError);
      socket.off('connect', onConnect);
    };
    const fail = (error: unknown) => {
      cleanup();
      socket.on('error', () => {}); // destroy() may still report; it must not be unhandled
      socket.destroy();
      reject(error);
    };
    const onError = (err: Error) => fail(socketError(err, `${what}: connect`));
    const onConnect = () => {
      cleanup();
      resolve(socketLink(socket, context.options, what));
    };
    socket.once('error', onError);
    socket.once('connect', onConnect);
    const disarm = armDeadline(timeout, signal, `${what}: connect`, fail);
  });
}

/** Listens on `server` (already bound or about to be); resolves once listening. */
export function whenListening(server: net.Server, what: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (server.listening) return resolve();
    const onError = (err: Error) => {
      server.off('listening', onListening);
      reject(socketError(err, `${what}: listen`, true));
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
  });
}

export class NetListener implements Listener {
  readonly #server: net.Server;
  readonly #options: ResolvedChannelOptions;
  readonly #describe: (socket: net.Socket) => string;
  readonly address: string;
  #closing: Promise<void> | undefined;
  readonly #onClose: (() => void) | undefined;

  constructor(server: net.Server, address: string, options: ResolvedChannelOptions, describe: (socket: net.Socket) => string, onClose?: () => void) {
    this.#server = server;
    this.address = address;
    this.#options = options;
    this.#describe = describe;
    this.#onClose = onClose;
    // Accept errors (EMFILE...) must never be unhandled; the server keeps listening.
    server.on('error', () => {});
  }

  start(onLink: (link: Link) => void): void {
    this.#server.on('connection', (socket: net.Socket) => onLink(socketLink(socket, this.#options, this.#describe(socket))));
  }

  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      this.#server.close(() => {
        this.#onClose?.();
        resolve();
      });
    });
    return this.#closing;
  }
}
