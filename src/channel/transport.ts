/**
 * The transport registry: an address's scheme picks the transport (`unix://`, `tcp://`,
 * `fifo://`, `pipe://`, `shm://`, `nats://`). A transport is a module exporting a `Transport`
 * (one file, like unix.ts, or a folder, like shm/ and nats/); adding one is that module plus
 * one `registerTransport(...)` line in index.ts of this folder.
 *
 * Writing a transport:
 *   - `connect` resolves with a Link; `listen` with a Listener whose `start(onLink)` hands
 *     over one Link per accepted connection and whose `close()` releases the address.
 *   - A Link carries (type, id, payload) frames (see framing.ts for the types). Byte streams
 *     use StreamLink (link.ts) over framing.ts; a transport that is not a byte stream carries
 *     frames its own way (shm/ puts them in shared-memory queue records, nats/ in NATS messages). Either way it must
 *     enforce `options.maxMessageSize` on what it accepts from the peer, call `done` of every
 *     write exactly once (error = not delivered), copy a `borrowed` payload before write()
 *     returns if it keeps it, report the peer's end or death through `ended` (never
 *     synchronously from start), and honour pause/resume.
 *   - Time limits (`timeout`, `signal`, `frameTimeout`, `closeTimeout`) go through
 *     src/deadline.ts (armDeadline, startTimer), never a raw setTimeout: a delay over
 *     2^31 - 1 ms must wait, not fire at once.
 *   - Add the scheme to `transports` and `channelPair` in test/channel-common.mjs: the
 *     conformance suite then runs against it unchanged.
 */
import { errnoError, IpcError } from '../errors.js';
import type { Link } from './link.js';
import type { ResolvedChannelOptions } from './channel.js';

export interface ListenContext {
  options: ResolvedChannelOptions;
  /** Transport-specific listen options (only the keys in `listenKeys`). */
  extra: Record<string, unknown>;
}

export interface ConnectContext {
  options: ResolvedChannelOptions;
  /** Remaining time for the connection attempt (Infinity = none). */
  timeout: number;
  signal: AbortSignal | undefined;
  /** Transport-specific connect options (only the keys in `connectKeys`). */
  extra: Record<string, unknown>;
}

/** A transport-level server: hands each accepted connection over as a Link. */
export interface Listener {
  /** The address clients use (with the real port when tcp port 0 was asked). */
  readonly address: string;
  /**
   * `onFailed`: for transports whose listening can fail after the fact (a lost connection to a
   * message broker): the server then closes, and its accept() rejects with IPC_ERR_CLOSED.
   */
  start(onLink: (link: Link) => void, onFailed?: (error: IpcError) => void): void;
  /** Stops accepting and releases the address (unlinks a socket file). */
  close(): Promise<void>;
}

export interface Transport {
  readonly scheme: string;
  /** Option keys `listen` accepts for this transport beyond the channel options. */
  readonly listenKeys: readonly string[];
  /** Option keys `connect` accepts for this transport beyond the channel options (none if absent). */
  readonly connectKeys?: readonly string[];
  listen?(url: URL, address: string, context: ListenContext): Promise<Listener>;
  connect(url: URL, address: string, context: ConnectContext): Promise<Link>;
}

/** Parses an address into its URL; bad addresses are TypeErrors. */
export function parseAddress(address: unknown, where: string): URL {
  if (typeof address !== 'string') throw new TypeError(`${where}: address must be a string like 'unix:///tmp/app.sock' or 'tcp://127.0.0.1:7000'`);
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    throw new TypeError(`${where}: '${address}' is not an address (expected e.g. 'unix:///tmp/app.sock' or 'tcp://127.0.0.1:7000')`);
  }
  return url;
}

/**
 * A Node socket/fs failure as a coded IpcError, through the one errno table (errnoError in
 * errors.ts). `listening`: the error came from creating an address (ENOENT then means a
 * missing directory, not a missing server). Unlike errnoError, a failure without an errno
 * (Node's ERR_INVALID_FD_TYPE for a descriptor that is not a socket) is IPC_ERR_SYSTEM rather
 * than passed through: every failure of a transport call is coded.
 */
export function socketError(err: unknown, what: string, listening = false): IpcError {
  const coded = errnoError(err, what, listening ? 'listen' : 'connect');
  if (coded instanceof IpcError) return coded;
  return new IpcError('IPC_ERR_SYSTEM', `${what}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}
