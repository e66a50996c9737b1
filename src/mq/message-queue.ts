/**
 * MessageQueue: the kernel's POSIX message queue (mq_open, mq_send, mq_receive), named like
 * every other object of the library (`/interprocess.<name>` in the mqueue namespace).
 *
 * Contract: bounded (maxMessages of at most maxMessageSize bytes), many senders and many
 * receivers in any processes; each message is received exactly once; higher priority first,
 * FIFO within a priority (the kernel's order); what a send resolved is in the kernel, so it
 * survives the sender's exit.
 *
 * How it waits:
 * - try*: one non-blocking system call on this object's O_NONBLOCK descriptor.
 * - async: try first; only on EAGAIN the descriptor is handed to the event loop (a uv_poll_t
 *   watching readable / writable), and when it fires the waiting operations of this object are
 *   retried in FIFO order. Losing a race to another process is just another EAGAIN and another
 *   wait. No thread and no timer loop. When no operation waits, the watch keeps no event loop
 *   alive (unref'd at once, stopped at its next event: see native/mq.cc).
 * - sync: mq_timedsend / mq_timedreceive with a CLOCK_REALTIME absolute deadline, on the same
 *   descriptor switched to blocking for the duration of the call (see native/mq.cc).
 *
 * A message is taken from the kernel only at the moment a waiter is served, so an aborted or
 * timed-out receive has taken nothing, and an aborted send has sent nothing.
 */
import { IpcError, abortError, closedError, otherOwnerError, timeoutError } from '../errors.js';
import { native, type MqApi } from '../os/native.js';
import { HOW_CODE, osName, validateName, type How } from '../naming.js';
import { checkBoolean, checkInteger, checkOptions, checkSignal, checkTimeout, waitOptions } from '../options.js';
import { armDeadline } from '../deadline.js';
import { decodeOrThrow, resolveCodec, type Codec, type CodecOption } from '../codec/index.js';
import { listQueues, mqError } from '../os/mqueue.js';

export interface MessageQueueCreateOptions<T = Uint8Array> {
  /** Capacity in messages (the kernel's mq_maxmsg); limited by /proc/sys/fs/mqueue/msg_max. */
  maxMessages: number;
  /** Largest message in bytes (mq_msgsize); limited by /proc/sys/fs/mqueue/msgsize_max. */
  maxMessageSize: number;
  /** Permission bits, 0o600 (owner only) by default, applied regardless of umask. */
  mode?: number;
  /** How messages become bytes; 'bytes' (Uint8Array in and out) by default. */
  codec?: CodecOption<T>;
}

export interface MessageQueueOpenOptions<T = Uint8Array> {
  codec?: CodecOption<T>;
  /**
   * Accept an existing queue owned by another user (default false: IPC_ERR_PERMISSION): its
   * owner can read, inject and drain messages, and change its mode.
   */
  allowOtherOwner?: boolean;
}

export interface MessageQueueSendOptions {
  /** 0 .. MessageQueue.maxPriority; higher is received first. Default 0. */
  priority?: number;
  /** ms to wait for room; IPC_ERR_TIMEOUT after it. Default: forever. */
  timeout?: number;
  signal?: AbortSignal;
}

export type MessageQueueSendSyncOptions = Omit<MessageQueueSendOptions, 'signal'>;

export interface MessageQueueReceiveOptions {
  /** ms to wait for a message; IPC_ERR_TIMEOUT after it. Default: forever. */
  timeout?: number;
  signal?: AbortSignal;
}

export type MessageQueueReceiveSyncOptions = Omit<MessageQueueReceiveOptions, 'signal'>;

/** A received message with the priority it was sent with. */
export interface PrioritizedMessage<T = Uint8Array> {
  message: T;
  priority: number;
}

const READABLE = 1;
const WRITABLE = 2;
const MAX_LONG = 2 ** 31 - 1;

interface Receiver {
  withPriority: boolean;
  resolve(value: unknown): void;
  reject(err: unknown): void;
  done(): void;
}

interface Sender {
  bytes: Uint8Array;
  priority: number;
  resolve(): void;
  reject(err: unknown): void;
  done(): void;
}

// One native state per thread. `waiting` holds the queues that have a live event-loop watch,
// which also keeps a queue with pending operations from being garbage-collected; an idle,
// unreachable queue is closed by the finalizer instead of leaking its descriptor.
let api: MqApi | undefined;
const priorityOut = new Uint32Array(1);
const waiting = new Map<number, (events: number, status: number) => void>();
const finalizer = new FinalizationRegistry<number>((id) => api?.close(id));

function mq(): MqApi {
  if (api === undefined) api = native().mqInit((id, events, status) => waiting.get(id)?.(events, status), priorityOut);
  return api;
}

const token = Symbol('MessageQueue');

export class MessageQueue<T = Uint8Array> {
  readonly name: string;
  /** Capacity in messages, as the kernel has it. */
  readonly maxMessages: number;
  /** Largest message in bytes, as the kernel has it. */
  readonly maxMessageSize: number;
  /** True when this call created the queue. */
  readonly created: boolean;
  #id: number | undefined;
  #codec: Codec<T>;
  #scratch: Uint8Array | undefined;
  #receivers = new Set<Receiver>();
  #senders = new Set<Sender>();
  #events = 0;
  #what: string;

  /** @internal use create / open / openOrCreate */
  constructor(
    key: symbol,
    name: string,
    opened: { id: number; created: boolean; maxMessages: number; maxMessageSize: number },
    codec: Codec<T>,
  ) {
    if (key !== token) throw new TypeError('use MessageQueue.create, open or openOrCreate');
    this.name = name;
    this.maxMessages = opened.maxMessages;
    this.maxMessageSize = opened.maxMessageSize;
    this.created = opened.created;
    this.#id = opened.id;
    this.#codec = codec;
    this.#what = `message queue '${name}'`;
    finalizer.register(this, opened.id, this);
  }

  /** Creates `name` (O_CREAT|O_EXCL); IPC_ERR_EXISTS if it exists. */
  static create<T = Uint8Array>(name: string, options: MessageQueueCreateOptions<T>): MessageQueue<T> {
    const opts = checkOptions<MessageQueueCreateOptions<T>>(options, ['maxMessages', 'maxMessageSize', 'mode', 'codec'], 'MessageQueue.create');
    return openQueue<T>(name, 'create', createArgs(opts, 'MessageQueue.create'), opts.codec);
  }

  /** Opens an existing `name`; IPC_ERR_NOT_FOUND if it is missing. Sizes come from the kernel. */
  static open<T = Uint8Array>(name: string, options?: MessageQueueOpenOptions<T>): MessageQueue<T> {
    const opts = checkOptions<MessageQueueOpenOptions<T>>(options, ['codec', 'allowOtherOwner'], 'MessageQueue.open');
    return openQueue<T>(name, 'open', undefined, opts.codec, checkBoolean(opts.allowOtherOwner, 'MessageQueue.open: allowOtherOwner'));
  }

  /**
   * Opens `name`, creating it if it is missing. An existing queue must have the same
   * maxMessages and maxMessageSize, or IPC_ERR_INCOMPATIBLE.
   */
  static openOrCreate<T = Uint8Array>(name: string, options: MessageQueueCreateOptions<T> & Pick<MessageQueueOpenOptions<T>, 'allowOtherOwner'>): MessageQueue<T> {
    const opts = checkOptions<MessageQueueCreateOptions<T> & Pick<MessageQueueOpenOptions<T>, 'allowOtherOwner'>>(
      options,
      ['maxMessages', 'maxMessageSize', 'mode', 'codec', 'allowOtherOwner'],
      'MessageQueue.openOrCreate',
    );
    const allowOtherOwner = checkBoolean(opts.allowOtherOwner, 'MessageQueue.openOrCreate: allowOtherOwner');
    return openQueue<T>(name, 'openOrCreate', createArgs(opts, 'MessageQueue.openOrCreate'), opts.codec, allowOtherOwner);
  }

  /** Removes the name (mq_unlink). Open descriptors keep working until closed. True if it existed. */
  static remove(name: string): boolean {
    const os = osName(name);
    try {
      return native().mqUnlink(os);
    } catch (err) {
      throw mqError(err, `message queue '${name}'`);
    }
  }

  /** Whether `name` exists (also when this process is not allowed to open it). */
  static exists(name: string): boolean {
    const os = osName(name);
    try {
      return native().mqExists(os);
    } catch (err) {
      throw mqError(err, `message queue '${name}'`);
    }
  }

  /**
   * Names of this library's queues. Needs an mqueue file system mounted somewhere (normally
   * /dev/mqueue): the kernel offers no other listing. Without one it throws IPC_ERR_SYSTEM
   * saying so.
   */
  static list(): string[] {
    return listQueues();
  }

  /** The highest priority this system accepts (sysconf(_SC_MQ_PRIO_MAX) - 1; 32767 on Linux). */
  static get maxPriority(): number {
    return native().mqPrioMax - 1;
  }

  /** Messages in the queue now (mq_curmsgs). */
  get messageCount(): number {
    return this.#attributes().messageCount;
  }

  get closed(): boolean {
    return this.#id === undefined;
  }

  // --- send -----------------------------------------------------------------------------------

  /** Sends if there is room now; false when the queue is full. Never blocks. */
  trySend(message: T, options?: { priority?: number }): boolean {
    const opts = checkOptions<MessageQueueSendOptions>(options, ['priority'], 'MessageQueue.trySend');
    const priority = checkPriority(opts.priority, 'MessageQueue.trySend');
    const bytes = this.#encode(message);
    const id = this.#open();
    // Sends of this object already waiting go first (FIFO per sender).
    if (this.#senders.size > 0) return false;
    return this.#trySend(id, bytes, priority);
  }

  /** Sends, waiting for room. Resolves once the message is in the kernel's queue. */
  send(message: T, options?: MessageQueueSendOptions): Promise<void> {
    try {
      const opts = checkOptions<MessageQueueSendOptions>(options, ['priority', 'timeout', 'signal'], 'MessageQueue.send');
      const priority = checkPriority(opts.priority, 'MessageQueue.send');
      const timeout = checkTimeout(opts.timeout, 'MessageQueue.send');
      const signal = checkSignal(opts.signal, 'MessageQueue.send');
      const bytes = this.#encode(message);
      const id = this.#open();
      if (signal?.aborted) return Promise.reject(abortError(`${this.#what}: send`, signal.reason));
      if (this.#senders.size === 0 && this.#trySend(id, bytes, priority)) return Promise.resolve();
      if (timeout === 0) return Promise.reject(timeoutError(`${this.#what}: send`, timeout));
      return new Promise<void>((resolve, reject) => {
        const sender: Sender = {
          // A snapshot: the caller may reuse its buffer (and codecs such as msgpackr reuse theirs)
          // before the message can actually be sent.
          bytes: bytes.slice(),
          priority,
          resolve: () => {
            sender.done();
            resolve();
          },
          reject: (err) => {
            sender.done();
            reject(err);
          },
          done: () => {},
        };
        this.#enqueue(this.#senders, sender, timeout, signal, 'send');
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Sends, blocking this thread until there is room (or `timeout` ms). Sends of this object
   * that are still waiting on the event loop are sent first, in order.
   */
  sendSync(message: T, options?: MessageQueueSendSyncOptions): void {
    const opts = checkOptions<MessageQueueSendSyncOptions>(options, ['priority', 'timeout'], 'MessageQueue.sendSync');
    const priority = checkPriority(opts.priority, 'MessageQueue.sendSync');
    const timeout = checkTimeout(opts.timeout, 'MessageQueue.sendSync');
    const bytes = this.#encode(message);
    const id = this.#open();
    const deadline = timeout === Infinity ? Infinity : performance.now() + timeout;
    const left = (): number => (deadline === Infinity ? Infinity : Math.max(0, deadline - performance.now()));
    for (const sender of this.#senders) {
      if (!this.#sendSync(id, sender.bytes, sender.priority, left())) {
        throw timeoutError(`${this.#what}: sendSync`, timeout);
      }
      sender.resolve();
    }
    this.#watch();
    if (!this.#sendSync(id, bytes, priority, left())) throw timeoutError(`${this.#what}: sendSync`, timeout);
  }

  // --- receive --------------------------------------------------------------------------------

  /** The next message, or undefined when the queue is empty. Never blocks. */
  tryReceive(): T | undefined {
    return this.#tryReceive(false) as T | undefined;
  }

  /** Like tryReceive, with the message's priority. */
  tryReceiveWithPriority(): PrioritizedMessage<T> | undefined {
    return this.#tryReceive(true) as PrioritizedMessage<T> | undefined;
  }

  /** The next message (highest priority first), waiting for one. */
  receive(options?: MessageQueueReceiveOptions): Promise<T> {
    return this.#receive(options, false, 'receive') as Promise<T>;
  }

  /** Like receive, with the message's priority. */
  receiveWithPriority(options?: MessageQueueReceiveOptions): Promise<PrioritizedMessage<T>> {
    return this.#receive(options, true, 'receiveWithPriority') as Promise<PrioritizedMessage<T>>;
  }

  /** The next message, blocking this thread until one comes (or `timeout` ms). */
  receiveSync(options?: MessageQueueReceiveSyncOptions): T {
    return this.#receiveSync(options, false, 'receiveSync') as T;
  }

  /** Like receiveSync, with the message's priority. */
  receiveWithPrioritySync(options?: MessageQueueReceiveSyncOptions): PrioritizedMessage<T> {
    return this.#receiveSync(options, true, 'receiveWithPrioritySync') as PrioritizedMessage<T>;
  }

  /** Receives until the queue is closed (by this process). */
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for (;;) {
      try {
        yield await this.receive();
      } catch (err) {
        if (err instanceof IpcError && err.code === 'IPC_ERR_CLOSED') return;
        throw err;
      }
    }
  }

  /**
   * Idempotent. Closes this process's descriptor; the queue itself stays until `remove`.
   * Operations still waiting reject with IPC_ERR_CLOSED (and took or sent nothing).
   */
  close(): void {
    const id = this.#id;
    if (id === undefined) return;
    this.#id = undefined;
    waiting.delete(id);
    finalizer.unregister(this);
    mq().close(id);
    const err = closedError(this.#what);
    for (const r of this.#receivers) r.reject(err);
    for (const s of this.#senders) s.reject(err);
    this.#scratch = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  // --- internals ------------------------------------------------------------------------------

  #open(): number {
    if (this.#id === undefined) throw closedError(this.#what);
    return this.#id;
  }

  #attributes() {
    const id = this.#open();
    try {
      return mq().attributes(id);
    } catch (err) {
      throw mqError(err, this.#what);
    }
  }

  #encode(message: T): Uint8Array {
    const bytes = this.#codec.encode(message);
    if (bytes.byteLength > this.maxMessageSize) {
      throw new IpcError(
        'IPC_ERR_MESSAGE_TOO_LARGE',
        `${this.#what}: a ${bytes.byteLength}-byte message is larger than maxMessageSize ${this.maxMessageSize}; nothing was sent`,
      );
    }
    return bytes;
  }

  #buffer(): Uint8Array {
    // Sized from the kernel's mq_msgsize: mq_receive refuses a smaller buffer.
    return (this.#scratch ??= new Uint8Array(this.maxMessageSize));
  }

  #trySend(id: number, bytes: Uint8Array, priority: number): boolean {
    try {
      return mq().trySend(id, bytes, priority);
    } catch (err) {
      throw mqError(err, this.#what);
    }
  }

  #sendSync(id: number, bytes: Uint8Array, priority: number, timeout: number): boolean {
    try {
      return mq().sendSync(id, bytes, priority, timeout);
    } catch (err) {
      throw mqError(err, this.#what);
    }
  }

  /** Turns the `length` bytes just received into the caller's value. */
  #deliver(length: number, withPriority: boolean): unknown {
    const priority = priorityOut[0]!;
    const view = this.#buffer().subarray(0, length);
    // 'bytes' hands out the view itself, so it must be a private copy of the scratch buffer.
    const message = this.#codec.name === 'bytes' ? view.slice() : decodeOrThrow(this.#codec, view, this.#what);
    return withPriority ? { message, priority } : message;
  }

  #tryReceive(withPriority: boolean): unknown {
    const id = this.#open();
    let length: number;
    try {
      length = mq().tryReceive(id, this.#buffer());
    } catch (err) {
      throw mqError(err, this.#what);
    }
    return length < 0 ? undefined : this.#deliver(length, withPriority);
  }

  #receive(options: unknown, withPriority: boolean, where: string): Promise<unknown> {
    try {
      const { timeout, signal } = waitOptions(options, `MessageQueue.${where}`, true);
      this.#open();
      if (signal?.aborted) return Promise.reject(abortError(`${this.#what}: ${where}`, signal.reason));
      // Receivers of this object already waiting are served first.
      if (this.#receivers.size === 0) {
        const value = this.#tryReceive(withPriority);
        if (value !== undefined) return Promise.resolve(value);
      }
      if (timeout === 0) return Promise.reject(timeoutError(`${this.#what}: ${where}`, timeout));
      return new Promise((resolve, reject) => {
        const receiver: Receiver = {
          withPriority,
          resolve: (value) => {
            receiver.done();
            resolve(value);
          },
          reject: (err) => {
            receiver.done();
            reject(err);
          },
          done: () => {},
        };
        this.#enqueue(this.#receivers, receiver, timeout, signal, where);
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  #receiveSync(options: unknown, withPriority: boolean, where: string): unknown {
    const { timeout } = waitOptions(options, `MessageQueue.${where}`, false);
    const id = this.#open();
    let length: number;
    try {
      length = mq().receiveSync(id, this.#buffer(), timeout);
    } catch (err) {
      throw mqError(err, this.#what);
    }
    if (length < 0) throw timeoutError(`${this.#what}: ${where}`, timeout);
    return this.#deliver(length, withPriority);
  }

  /** Parks a waiter until the event loop reports the descriptor ready, a timeout, or an abort. */
  #enqueue<W extends Receiver | Sender>(set: Set<W>, waiter: W, timeout: number, signal: AbortSignal | undefined, where: string): void {
    let disarm = (): void => {};
    waiter.done = () => {
      set.delete(waiter);
      disarm();
      this.#watch();
    };
    set.add(waiter);
    disarm = armDeadline(timeout, signal, `${this.#what}: ${where}`, (err) => waiter.reject(err));
    this.#watch();
  }

  /** Watches readable while receivers wait and writable while senders wait; nothing otherwise. */
  #watch(): void {
    const id = this.#id;
    if (id === undefined) return;
    const events = (this.#receivers.size > 0 ? READABLE : 0) | (this.#senders.size > 0 ? WRITABLE : 0);
    if (events === this.#events) return;
    this.#events = events;
    mq().watch(id, events);
    if (events === 0) waiting.delete(id);
    else if (!waiting.has(id)) waiting.set(id, (_events, status) => this.#ready(status));
  }

  /** The descriptor is ready: retry the waiters in FIFO order. */
  #ready(status: number): void {
    const id = this.#id;
    if (id === undefined) return;
    if (status < 0) {
      // The event loop could not watch the descriptor (libuv stopped the handle): fail the
      // waiters instead of leaving them hanging. They took and sent nothing.
      this.#events = 0;
      waiting.delete(id);
      const err = new IpcError('IPC_ERR_SYSTEM', `${this.#what}: the event loop failed to watch the queue (libuv status ${status})`);
      for (const r of this.#receivers) r.reject(err);
      for (const s of this.#senders) s.reject(err);
      return;
    }
    for (const receiver of this.#receivers) {
      let value: unknown;
      try {
        value = this.#tryReceive(receiver.withPriority);
      } catch (err) {
        receiver.reject(err);
        continue;
      }
      if (value === undefined) break;
      receiver.resolve(value);
      if (this.#id === undefined) return;
    }
    for (const sender of this.#senders) {
      let sent: boolean;
      try {
        sent = this.#trySend(id, sender.bytes, sender.priority);
      } catch (err) {
        sender.reject(err);
        continue;
      }
      if (!sent) break;
      sender.resolve();
      if (this.#id === undefined) return;
    }
  }
}

function checkPriority(priority: unknown, where: string): number {
  if (priority === undefined) return 0;
  return checkInteger(priority, `${where}: priority`, 0, native().mqPrioMax - 1);
}

function createArgs(opts: Partial<MessageQueueCreateOptions<any>>, where: string): { maxMessages: number; maxMessageSize: number; mode: number } {
  if (opts.maxMessages === undefined) throw new TypeError(`${where}: option 'maxMessages' is required`);
  if (opts.maxMessageSize === undefined) throw new TypeError(`${where}: option 'maxMessageSize' is required`);
  return {
    maxMessages: checkInteger(opts.maxMessages, `${where}: maxMessages`, 1, MAX_LONG),
    maxMessageSize: checkInteger(opts.maxMessageSize, `${where}: maxMessageSize`, 1, MAX_LONG),
    mode: opts.mode === undefined ? 0o600 : checkInteger(opts.mode, `${where}: mode`, 0, 0o777),
  };
}

function openQueue<T>(
  name: string,
  how: How,
  create: { maxMessages: number; maxMessageSize: number; mode: number } | undefined,
  codecOption: unknown,
  allowOtherOwner = false,
): MessageQueue<T> {
  validateName(name);
  const codec = resolveCodec<T>(codecOption);
  const os = osName(name);
  const what = `message queue '${name}'`;
  let opened;
  try {
    opened = mq().open(os, HOW_CODE[how], create?.mode ?? 0, create?.maxMessages ?? 0, create?.maxMessageSize ?? 0);
  } catch (err) {
    throw mqError(err, what, how === 'open' ? undefined : create);
  }
  if (!opened.created && !allowOtherOwner) {
    // fstat of the descriptor we hold: exactly the queue we would use, whatever the name is now.
    let uid: number;
    try {
      uid = mq().attributes(opened.id).uid;
    } catch (err) {
      mq().close(opened.id);
      throw mqError(err, what);
    }
    if (uid !== process.geteuid!()) {
      mq().close(opened.id);
      throw otherOwnerError(what, uid);
    }
  }
  if (how === 'openOrCreate' && !opened.created && create !== undefined) {
    if (opened.maxMessages !== create.maxMessages || opened.maxMessageSize !== create.maxMessageSize) {
      mq().close(opened.id);
      throw new IpcError(
        'IPC_ERR_INCOMPATIBLE',
        `${what}: exists with maxMessages ${opened.maxMessages} and maxMessageSize ${opened.maxMessageSize}, ` +
          `expected ${create.maxMessages} and ${create.maxMessageSize}`,
      );
    }
  }
  return new MessageQueue<T>(token, name, opened, codec);
}
