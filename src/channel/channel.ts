/**
 * Channel: one duplex, ordered, reliable message pipe between two processes, the same for
 * every transport (the transport only supplies a Link). Adds the codec, a bounded receive
 * buffer, request/reply with correlation ids, timeouts and aborts.
 *
 * Contract: messages arrive exactly once and in send order; `send` resolves once the frame
 * is in the OS's hands (it then survives this process exiting); memory is bounded on both
 * sides (sends wait for room; reading pauses when `readBufferBytes` are buffered).
 */
import { armDeadline, remaining } from '../deadline.js';
import { privateCopy } from '../os/copy.js';
import { abortError, closedError, IpcError, isIpcError } from '../errors.js';
import { checkInteger, checkTimeout, waitOptions } from '../options.js';
import { resolveCodec, type Codec, type CodecOption } from '../codec/index.js';
import { DEFAULT_MAX_MESSAGE_SIZE, FrameType, LIMIT_MAX_MESSAGE_SIZE } from './framing.js';
import { unwatched, type Link } from './link.js';

export interface ChannelOptions<T = unknown> {
  /** 'bytes' (default), 'json', 'structured', 'msgpack' or { encode, decode }. */
  codec?: CodecOption<T>;
  /** Largest payload sent or accepted, in bytes (default 16 MiB, at most 2^31 - 1). */
  maxMessageSize?: number;
  /** Incoming messages buffered before reading from the peer pauses (default 1 MiB). */
  readBufferBytes?: number;
  /** A frame that has started must progress within this many ms (default 30000). */
  frameTimeout?: number;
  /** close() waits this long at most for the peer to take our data (default 5000 ms). */
  closeTimeout?: number;
}

export interface SendOptions {
  timeout?: number;
  signal?: AbortSignal;
}
export type ReceiveOptions = SendOptions;
export type RequestOptions = SendOptions;

/** The resolved options every transport hands to its links and channels. */
export interface ResolvedChannelOptions {
  codec: Codec<any>;
  maxMessageSize: number;
  readBufferBytes: number;
  frameTimeout: number;
  closeTimeout: number;
}

export const channelOptionKeys = ['codec', 'maxMessageSize', 'readBufferBytes', 'frameTimeout', 'closeTimeout'] as const;

export function resolveChannelOptions(opts: ChannelOptions, where: string): ResolvedChannelOptions {
  const maxMessageSize =
    opts.maxMessageSize === undefined
      ? DEFAULT_MAX_MESSAGE_SIZE
      : checkInteger(opts.maxMessageSize, `${where}: maxMessageSize`, 1, LIMIT_MAX_MESSAGE_SIZE);
  const readBufferBytes =
    opts.readBufferBytes === undefined
      ? 1024 * 1024
      : checkInteger(opts.readBufferBytes, `${where}: readBufferBytes`, 1, Number.MAX_SAFE_INTEGER);
  const frameTimeout = opts.frameTimeout === undefined ? 30_000 : checkTimeout(opts.frameTimeout, `${where}: frameTimeout`);
  const closeTimeout = opts.closeTimeout === undefined ? 5_000 : checkTimeout(opts.closeTimeout, `${where}: closeTimeout`);
  return { codec: resolveCodec(opts.codec), maxMessageSize, readBufferBytes, frameTimeout, closeTimeout };
}

/** The error a `request` rejects with when the peer's handler threw. */
export class RemoteError extends Error {
  /** The `code` of the error the handler threw, if it had a string code. */
  readonly code: string | undefined;
  constructor(message: string, code: string | undefined) {
    super(`peer handler failed: ${message}`);
    this.code = code;
  }
  override get name(): string {
    return 'RemoteError';
  }
}

type Handler<T> = (message: T) => unknown;

interface Waiter<T> {
  resolve(value: T): void;
  reject(error: unknown): void;
}

interface QueuedSend {
  type: FrameType;
  id: number;
  payload: Uint8Array;
  /** Hands the frame to the link now; the send promise settles when the OS has it. */
  commit(): void;
  reject(error: unknown): void;
}

/** A FIFO with O(1) shift (Array#shift is O(n) once arrays grow). */
class Deque<T> {
  #items: (T | undefined)[] = [];
  #head = 0;
  get length(): number {
    return this.#items.length - this.#head;
  }
  push(item: T): void {
    this.#items.push(item);
  }
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
  remove(item: T): boolean {
    const i = this.#items.indexOf(item, this.#head);
    if (i < 0) return false;
    this.#items.splice(i, 1);
    return true;
  }
  drain(): T[] {
    const items = this.#items.slice(this.#head) as T[];
    this.#items = [];
    this.#head = 0;
    return items;
  }
}

const internal = Symbol('Channel.internal');

/** Wraps a Link in a Channel: for transports only (the public way is connect/listen). */
export function channelFromLink<T>(link: Link, options: ResolvedChannelOptions, what: string): Channel<T> {
  return new Channel<T>(internal, link, options, what);
}

/**
 * One end of a connection. `T` is what the codec carries (Uint8Array for 'bytes'; with a
 * serializing codec, the type you name, e.g. the union of requests and replies):
 * `request<Reply>` and `handle<Request>` narrow it per call.
 */
export class Channel<T = Uint8Array> implements AsyncIterable<T> {
  readonly #link: Link;
  readonly #codec: Codec<T>;
  readonly #maxMessageSize: number;
  readonly #readBufferBytes: number;
  readonly #what: string;

  /** Messages received and not yet taken, and the bytes each holds (side by side: no object per message). */
  readonly #inbox = new Deque<T>();
  readonly #inboxBytes = new Deque<number>();
  readonly #receivers = new Deque<Waiter<T>>();
  readonly #sendQueue = new Deque<QueuedSend>();
  #drainArmed = false;
  /** Bytes held for the application: buffered messages, queued and running requests. */
  #heldBytes = 0;
  #paused = false;

  readonly #requests = new Map<number, Waiter<T>>();
  #nextId = 1;
  #handler: Handler<T> | undefined;
  readonly #requestBacklog = new Deque<{ id: number; value: T; bytes: number }>();

  /** Set once: why receive/request fail from now on (after the inbox is drained). */
  #terminal: IpcError | undefined;
  #localClosed = false;
  #closing: Promise<void> | undefined;

  constructor(token: symbol, link: Link, options: ResolvedChannelOptions, what: string) {
    if (token !== internal) throw new TypeError('Channel cannot be constructed directly: use connect(), listen() or the pipe helpers');
    this.#link = link;
    this.#codec = options.codec;
    this.#maxMessageSize = options.maxMessageSize;
    this.#readBufferBytes = options.readBufferBytes;
    this.#what = what;
    link.start({
      frame: (type, id, payload) => this.#onFrame(type, id, payload),
      ended: (error) => this.#onEnded(error),
    });
  }

  /** The largest payload this side sends or accepts, in bytes. */
  get maxMessageSize(): number {
    return this.#maxMessageSize;
  }

  /** True once closed locally or by the peer (buffered messages may still be received). */
  get closed(): boolean {
    return this.#terminal !== undefined;
  }

  // ---- sending ----

  /** Sends one message; resolves when it has been handed to the OS. */
  send(message: T, opts?: SendOptions): Promise<void> {
    let payload: Uint8Array;
    let timeout: number;
    let signal: AbortSignal | undefined;
    try {
      ({ timeout, signal } = this.#waitOptions(opts, 'send'));
      payload = this.#encode(message, 'send');
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#sendFrame(FrameType.Message, 0, payload, payload === message, timeout, signal, 'send');
  }

  /**
   * Sends without waiting for room: true if the message was committed to the link, false if
   * the link is full (nothing sent). Throws IPC_ERR_CLOSED / IPC_ERR_MESSAGE_TOO_LARGE.
   * A committed message is delivered unless the connection fails; use close() (which
   * flushes) before exiting.
   */
  trySend(message: T): boolean {
    if (this.#terminal !== undefined) throw this.#sendClosedError();
    const payload = this.#encode(message, 'trySend');
    if (this.#sendQueue.length > 0 || this.#link.needsDrain) return false;
    this.#link.write(FrameType.Message, 0, payload, unwatched, payload === message);
    return true;
  }

  #encode(message: unknown, what: string): Uint8Array {
    const payload = this.#codec.encode(message as T);
    if (payload.byteLength > this.#maxMessageSize) {
      throw new IpcError(
        'IPC_ERR_MESSAGE_TOO_LARGE',
        `${this.#what}: ${what}: a ${payload.byteLength}-byte message is over maxMessageSize (${this.#maxMessageSize})`,
      );
    }
    return payload;
  }

  #waitOptions(opts: SendOptions | undefined, where: string): { timeout: number; signal: AbortSignal | undefined } {
    return waitOptions(opts, `${this.#what}: ${where}`, true);
  }

  #sendClosedError(): IpcError {
    if (this.#localClosed || this.#terminal === undefined || this.#terminal.code === 'IPC_ERR_CLOSED') {
      return this.#terminal ?? closedError(this.#what);
    }
    return new IpcError('IPC_ERR_CLOSED', `${this.#what} is closed: ${this.#terminal.message}`, { cause: this.#terminal });
  }

  /**
   * `borrowed`: the payload is the application's own buffer (codec 'bytes'), which it may
   * reuse as soon as send() returns; it is copied before it is kept.
   */
  #sendFrame(
    type: FrameType,
    id: number,
    payload: Uint8Array,
    borrowed: boolean,
    timeout: number,
    signal: AbortSignal | undefined,
    what: string,
  ): Promise<void> {
    if (this.#terminal !== undefined) return Promise.reject(this.#sendClosedError());
    if (signal?.aborted) return Promise.reject(abortError(`${this.#what}: ${what}`, signal.reason));
    if (this.#sendQueue.length === 0 && !this.#link.needsDrain) {
      return this.#commit(type, id, payload, borrowed, timeout, signal, what);
    }
    if (borrowed) payload = privateCopy(payload); // it waits in our queue: take a copy now (large ones pooled)
    // No room: wait in line. A timeout or abort here means nothing was sent.
    return new Promise<void>((resolve, reject) => {
      const started = performance.now();
      const entry: QueuedSend = {
        type,
        id,
        payload,
        commit: () => {
          disarm();
          this.#commit(type, id, payload, false, remaining(timeout, started), signal, what).then(resolve, reject);
        },
        reject: (error) => {
          disarm();
          reject(error);
        },
      };
      this.#sendQueue.push(entry);
      const disarm = armDeadline(timeout, signal, `${this.#what}: ${what} (waiting for the peer to take data)`, (error) => {
        this.#sendQueue.remove(entry);
        reject(error);
      });
      this.#armDrain();
    });
  }

  /** Hands a frame to the link; resolves when the OS has it. */
  #commit(
    type: FrameType,
    id: number,
    payload: Uint8Array,
    borrowed: boolean,
    timeout: number,
    signal: AbortSignal | undefined,
    what: string,
  ): Promise<void> {
    if (timeout === Infinity && signal === undefined) {
      return new Promise<void>((resolve, reject) => {
        this.#link.write(type, id, payload, (error) => (error ? reject(this.#writeError(error)) : resolve()), borrowed);
      });
    }
    // The frame is committed: it cannot be taken back halfway without breaking the stream, so
    // a timeout or abort from here on reports that it may still arrive.
    return new Promise<void>((resolve, reject) => {
      const disarm = armDeadline(timeout, signal, `${this.#what}: ${what} (the message was already being written and may still be delivered)`, reject);
      this.#link.write(
        type,
        id,
        payload,
        (error) => {
          disarm();
          if (error) reject(this.#writeError(error));
          else resolve();
        },
        borrowed,
      );
    });
  }

  #writeError(error: Error): IpcError {
    if (this.#terminal !== undefined) return this.#sendClosedError();
    if (isIpcError(error, 'IPC_ERR_CLOSED')) return error;
    return new IpcError('IPC_ERR_CLOSED', `${this.#what}: connection closed before the message was written`, { cause: error });
  }

  #armDrain(): void {
    if (this.#drainArmed) return;
    this.#drainArmed = true;
    this.#link.onceDrain(() => {
      this.#drainArmed = false;
      this.#flushSendQueue();
    });
  }

  #flushSendQueue(): void {
    if (this.#terminal !== undefined && !this.#localClosed) {
      for (const entry of this.#sendQueue.drain()) entry.reject(this.#sendClosedError());
      return;
    }
    while (this.#sendQueue.length > 0 && !this.#link.needsDrain) this.#sendQueue.shift()!.commit();
    if (this.#sendQueue.length > 0) this.#armDrain();
  }

  // ---- receiving ----

  /** Resolves with the next message; IPC_ERR_CLOSED once the channel is closed and drained. */
  receive(opts?: ReceiveOptions): Promise<T> {
    // The common call, with a message waiting and no options, has nothing to check.
    if (opts === undefined && this.#inbox.length > 0) return Promise.resolve(this.#take());
    let timeout: number;
    let signal: AbortSignal | undefined;
    try {
      ({ timeout, signal } = this.#waitOptions(opts, 'receive'));
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#inbox.length > 0) return Promise.resolve(this.#take());
    if (this.#terminal !== undefined) return Promise.reject(this.#terminal);
    if (signal?.aborted) return Promise.reject(abortError(`${this.#what}: receive`, signal.reason));
    return this.#wait<T>((w) => this.#receivers.push(w), (w) => this.#receivers.remove(w), timeout, signal, 'receive');
  }

  /** A message already received and buffered, or undefined; throws once closed and drained. */
  tryReceive(): T | undefined {
    if (this.#inbox.length > 0) return this.#take();
    if (this.#terminal !== undefined) throw this.#terminal;
    return undefined;
  }

  /**
   * Resolves with 1 to `max` messages in order: those already buffered, else the next one to
   * arrive and whatever arrived with it. One promise for a batch instead of one per message:
   * the promise is most of what a 64 B message costs a receiver (bench/channel-floor.mjs).
   * IPC_ERR_CLOSED once the channel is closed and drained, as receive().
   */
  receiveMany(max: number, opts?: ReceiveOptions): Promise<T[]> {
    try {
      checkInteger(max, `${this.#what}: receiveMany: max`, 1, 2 ** 31);
    } catch (err) {
      return Promise.reject(err);
    }
    if (opts === undefined && this.#inbox.length > 0) return Promise.resolve(this.#takeUpTo(max, []));
    return this.receive(opts).then((first) => this.#takeUpTo(max, [first]));
  }

  /** Up to `max` messages already received and buffered ([] if none); throws once closed and drained. */
  tryReceiveMany(max: number): T[] {
    checkInteger(max, `${this.#what}: tryReceiveMany: max`, 1, 2 ** 31);
    if (this.#inbox.length === 0 && this.#terminal !== undefined) throw this.#terminal;
    return this.#takeUpTo(max, []);
  }

  /** Appends buffered messages to `out` until it holds `max` or the inbox is empty. */
  #takeUpTo(max: number, out: T[]): T[] {
    while (out.length < max && this.#inbox.length > 0) out.push(this.#take());
    return out;
  }

  #take(): T {
    const value = this.#inbox.shift() as T;
    this.#release(this.#inboxBytes.shift()!);
    return value;
  }

  /** A promise settled through a Waiter that `enlist` files; `withdraw` takes it back on timeout/abort. */
  #wait<V>(enlist: (waiter: Waiter<V>) => void, withdraw: (waiter: Waiter<V>) => void, timeout: number, signal: AbortSignal | undefined, what: string): Promise<V> {
    if (timeout === Infinity && signal === undefined) {
      // The common case costs one promise and one small object: nothing to clean up.
      return new Promise<V>((resolve, reject) => enlist({ resolve, reject }));
    }
    return new Promise<V>((resolve, reject) => {
      const waiter: Waiter<V> = {
        resolve: (value) => {
          disarm();
          resolve(value);
        },
        reject: (error) => {
          disarm();
          reject(error);
        },
      };
      enlist(waiter);
      const disarm = armDeadline(timeout, signal, `${this.#what}: ${what}`, (error) => {
        withdraw(waiter);
        reject(error);
      });
    });
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      let message: T;
      try {
        message = await this.receive();
      } catch (err) {
        if (isIpcError(err, 'IPC_ERR_CLOSED')) return;
        throw err;
      }
      yield message;
    }
  }

  // ---- request / reply ----

  /**
   * Sends `message` as a request and resolves with the peer handler's reply. `Reply` names
   * which of the channel's types the reply is (`ch.request<Answer>(question)`); the codec
   * decides what it can be, so on a bytes channel it is a Uint8Array.
   */
  request<Reply extends T = T>(message: T, opts?: RequestOptions): Promise<Reply> {
    let timeout: number;
    let signal: AbortSignal | undefined;
    let payload: Uint8Array;
    try {
      ({ timeout, signal } = this.#waitOptions(opts, 'request'));
      payload = this.#encode(message, 'request');
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#terminal !== undefined) return Promise.reject(this.#terminal);
    if (signal?.aborted) return Promise.reject(abortError(`${this.#what}: request`, signal.reason));
    let id = this.#nextId;
    while (this.#requests.has(id)) id = id === 0xffffffff ? 1 : id + 1;
    this.#nextId = id === 0xffffffff ? 1 : id + 1;
    const reply = this.#wait<Reply>(
      (waiter) => this.#requests.set(id, waiter as Waiter<T>),
      () => this.#requests.delete(id),
      timeout,
      signal,
      'request',
    );
    this.#sendFrame(FrameType.Request, id, payload, payload === message, Infinity, undefined, 'request').catch((error) => {
      const waiter = this.#requests.get(id);
      if (waiter === undefined) return;
      this.#requests.delete(id);
      waiter.reject(error);
    });
    return reply;
  }

  /**
   * Answers the peer's requests with `handler` (sync or async). Its return value is the reply;
   * if it throws, the requester's promise rejects with a RemoteError carrying the message and
   * code. Requests that arrive before a handler is set wait for it. `handle(null)` stops.
   */
  handle<Request extends T = T>(handler: Handler<Request> | null): void {
    if (handler !== null && typeof handler !== 'function') throw new TypeError(`${this.#what}: handle() takes a function or null`);
    this.#handler = (handler ?? undefined) as Handler<T> | undefined;
    while (this.#handler !== undefined && this.#requestBacklog.length > 0) {
      const request = this.#requestBacklog.shift()!;
      this.#runHandler(request.id, request.value, request.bytes);
    }
  }

  #runHandler(id: number, value: T, bytes: number): void {
    const handler = this.#handler!;
    new Promise<unknown>((resolve) => resolve(handler(value)))
      .then(
        (reply) => {
          let payload: Uint8Array;
          try {
            payload = this.#encode(reply, 'reply');
          } catch (err) {
            return this.#sendFailure(id, err);
          }
          return this.#sendFrame(FrameType.Reply, id, payload, payload === reply, Infinity, undefined, 'reply');
        },
        (err) => this.#sendFailure(id, err),
      )
      // A reply that cannot be sent has nowhere to go: the connection is gone, and the
      // requester learns that from its own side.
      .catch(noop)
      .finally(() => this.#release(bytes));
  }

  #sendFailure(id: number, err: unknown): Promise<void> {
    const error = err as { message?: unknown; code?: unknown } | null;
    const text = JSON.stringify({
      message: typeof error?.message === 'string' ? error.message : String(err),
      code: typeof error?.code === 'string' ? error.code : undefined,
    });
    let payload: Uint8Array = Buffer.from(text, 'utf8');
    if (payload.byteLength > this.#maxMessageSize) payload = Buffer.from('{"message":"(error message too large)"}').subarray(0, this.#maxMessageSize);
    return this.#sendFrame(FrameType.Failure, id, payload, false, Infinity, undefined, 'reply');
  }

  // ---- incoming frames ----

  #onFrame(type: FrameType, id: number, payload: Uint8Array): void {
    if (this.#terminal !== undefined) return;
    const bytes = payload.byteLength;
    if (type === FrameType.Failure) {
      const waiter = this.#requests.get(id);
      let failure: { message?: unknown; code?: unknown };
      try {
        failure = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, bytes).toString('utf8'));
      } catch (cause) {
        return this.#protocolError(new IpcError('IPC_ERR_PROTOCOL', `${this.#what}: peer sent a malformed failure reply`, { cause }));
      }
      if (waiter === undefined) return; // the request timed out or was aborted: drop the late answer
      this.#requests.delete(id);
      waiter.reject(new RemoteError(String(failure?.message), typeof failure?.code === 'string' ? failure.code : undefined));
      return;
    }
    let value: T;
    try {
      value = this.#codec.decode(payload);
    } catch (cause) {
      return this.#protocolError(
        new IpcError('IPC_ERR_PROTOCOL', `${this.#what}: codec '${this.#codec.name}' could not decode a ${bytes}-byte message`, { cause }),
      );
    }
    if (type === FrameType.Message) {
      const receiver = this.#receivers.shift();
      if (receiver !== undefined) return receiver.resolve(value);
      this.#inbox.push(value);
      this.#inboxBytes.push(bytes);
      this.#hold(bytes);
    } else if (type === FrameType.Reply) {
      const waiter = this.#requests.get(id);
      if (waiter === undefined) return;
      this.#requests.delete(id);
      waiter.resolve(value);
    } else {
      this.#hold(bytes);
      if (this.#handler !== undefined) this.#runHandler(id, value, bytes);
      else this.#requestBacklog.push({ id, value, bytes });
    }
  }

  #hold(bytes: number): void {
    this.#heldBytes += bytes;
    if (!this.#paused && this.#heldBytes >= this.#readBufferBytes) {
      this.#paused = true;
      this.#link.pause();
    }
  }

  #release(bytes: number): void {
    this.#heldBytes -= bytes;
    if (this.#paused && this.#heldBytes <= this.#readBufferBytes / 2) {
      this.#paused = false;
      this.#link.resume();
    }
  }

  #protocolError(error: IpcError): void {
    this.#onEnded(error);
    this.#link.destroy(error);
  }

  #onEnded(error: IpcError | undefined): void {
    if (this.#terminal !== undefined) return;
    this.#terminal = error ?? new IpcError('IPC_ERR_CLOSED', `${this.#what}: the peer closed the channel`);
    this.#failPending();
  }

  #failPending(): void {
    const terminal = this.#terminal!;
    if (this.#inbox.length === 0) for (const waiter of this.#receivers.drain()) waiter.reject(terminal);
    for (const waiter of this.#requests.values()) waiter.reject(terminal);
    this.#requests.clear();
    this.#requestBacklog.drain();
    if (!this.#localClosed) for (const entry of this.#sendQueue.drain()) entry.reject(this.#sendClosedError());
  }

  // ---- closing ----

  /**
   * Closes the channel: sends already accepted are flushed to the peer (bounded by
   * closeTimeout), then the connection ends. Pending receives and requests reject with
   * IPC_ERR_CLOSED, as does every later call. Idempotent; never rejects.
   */
  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#localClosed = true;
    const wasOpen = this.#terminal === undefined;
    this.#terminal = closedError(this.#what);
    // Local close drops what was received but not yet taken.
    this.#inbox.drain();
    for (const bytes of this.#inboxBytes.drain()) this.#heldBytes -= bytes;
    this.#failPending();
    // Sends waiting for room were accepted by send(): commit them now so they are flushed.
    for (const entry of this.#sendQueue.drain()) entry.commit();
    this.#closing = wasOpen ? this.#link.close() : this.#link.close().catch(noop);
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  [Symbol.dispose](): void {
    void this.close();
  }
}

function noop(): void {}
