/**
 * A Link is what a transport gives the Channel: an ordered, reliable pipe of frames in both
 * directions with flow control. The Channel (codec, receive queue, request/reply, timeouts)
 * is written once against this interface; every transport is one file that produces Links.
 *
 * Byte-stream transports (unix, tcp, pipes, FIFOs) all use StreamLink below, which frames over
 * a Node Readable/Writable pair. A transport that is not a byte stream (a shared-memory queue
 * pair) implements Link directly and carries (type, id, payload) however it likes.
 */
import type { Readable, Writable } from 'node:stream';
import { startTimer } from '../deadline.js';
import { IpcError } from '../errors.js';
import { encodeFrame, FrameDecoder, HEADER_BYTES, type FrameType } from './framing.js';

/** A write's `done` for a sender that does not wait for it (trySend): a link need not track it. */
export function unwatched(): void {}

export interface LinkHandler {
  /** One complete frame from the peer. `payload` is owned by the receiver from now on. */
  frame(type: FrameType, id: number, payload: Uint8Array): void;
  /**
   * The link is finished and will deliver nothing more: `error` undefined means the peer
   * closed it cleanly; otherwise the reason (IPC_ERR_PROTOCOL, IPC_ERR_CLOSED with a cause).
   * Called at most once, never synchronously from start().
   */
  ended(error: IpcError | undefined): void;
}

export interface Link {
  /** Starts delivering frames to `handler`. Called once, right after the link is made. */
  start(handler: LinkHandler): void;
  /**
   * Commits one frame. `done` runs once: without an error when the frame has been handed to
   * the OS (it survives this process exiting), with one when it never will be. A `borrowed`
   * payload is the application's buffer, which it may change as soon as write returns: the
   * link must copy it (or be done with it) before returning; otherwise the link owns it.
   */
  write(type: FrameType, id: number, payload: Uint8Array, done: (error?: Error | null) => void, borrowed?: boolean): void;
  /** True while the link holds as much unsent data as it wants: wait for onceDrain. */
  readonly needsDrain: boolean;
  /** Runs `callback` once the link wants more data (or has ended). */
  onceDrain(callback: () => void): void;
  /** Stops / restarts delivering frames (receive-side flow control). */
  pause(): void;
  resume(): void;
  /** Graceful close: flushes what was written, tells the peer, releases the OS object. */
  close(): Promise<void>;
  /** Immediate teardown; committed frames not yet handed to the OS fail. */
  destroy(error?: IpcError): void;
}

/**
 * The callbacks of Link.onceDrain, for every Link: each runs once, on the next tick if the link
 * wants data already, else when the link next does (or ends) and calls run().
 */
export class DrainWaiters {
  #callbacks: (() => void)[] = [];

  /** Files `callback` (`needsDrain`: the link's state now); true if it is the only one waiting. */
  add(callback: () => void, needsDrain: boolean): boolean {
    if (!needsDrain) {
      process.nextTick(callback);
      return false;
    }
    this.#callbacks.push(callback);
    return this.#callbacks.length === 1;
  }

  /** Runs (and forgets) every waiting callback. */
  run(): void {
    const callbacks = this.#callbacks;
    if (callbacks.length === 0) return;
    this.#callbacks = [];
    for (const callback of callbacks) callback();
  }
}

interface InflightWrite {
  done: (error?: Error | null) => void;
}

export interface StreamLinkOptions {
  maxMessageSize: number;
  /** A frame that has started must progress within this many ms, else IPC_ERR_PROTOCOL. */
  frameTimeout: number;
  /** close() waits at most this long for the peer to take our data before destroying. */
  closeTimeout: number;
  /** For messages: 'unix socket /tmp/x'. */
  what: string;
}

/**
 * Frames over a Node Readable (incoming) and Writable (outgoing), which may be the same Duplex
 * (a socket) or two one-way streams (stdio, a FIFO pair). Every 'error' event is listened to,
 * so a dying peer can never surface as an unhandled 'error'.
 */
export class StreamLink implements Link {
  readonly #in: Readable;
  readonly #out: Writable;
  readonly #options: StreamLinkOptions;
  readonly #decoder: FrameDecoder;
  #handler: LinkHandler | undefined;
  #ended = false;
  #endReason: IpcError | undefined;
  #paused = false;
  #closing: Promise<void> | undefined;
  /** Cancels the pending stall check (set while one is armed). */
  #cancelStall: (() => void) | undefined;
  #progress = 0;
  #stallMark = 0;
  readonly #drainWaiters = new DrainWaiters();
  readonly #inflight = new Set<InflightWrite>();
  #corked = false;
  #writesThisTurn = 0;
  readonly #endTurn = () => {
    this.#writesThisTurn = 0;
    if (this.#corked) {
      this.#corked = false;
      this.#out.uncork();
    }
  };

  constructor(input: Readable, output: Writable, options: StreamLinkOptions) {
    this.#in = input;
    this.#out = output;
    this.#options = options;
    this.#decoder = new FrameDecoder(options.maxMessageSize, {
      frame: (type, id, payload) => this.#handler?.frame(type, id, payload),
    });
    const onError = (err: Error) => this.#finish(new IpcError('IPC_ERR_CLOSED', `${options.what}: connection failed: ${err.message}`, { cause: err }));
    input.on('error', onError);
    if ((output as unknown) !== input) output.on('error', onError);
    input.on('end', () => {
      if (this.#decoder.inFrame) {
        this.#finish(new IpcError('IPC_ERR_CLOSED', `${options.what}: peer closed the connection in the middle of a frame (the partial frame was discarded)`));
      } else {
        this.#finish(undefined);
      }
    });
    input.on('close', () => this.#finish(undefined));
    if ((output as unknown) !== input) output.on('close', () => this.#finish(undefined));
  }

  start(handler: LinkHandler): void {
    this.#handler = handler;
    this.#in.on('data', (chunk: Buffer) => this.#onData(chunk));
    // A transport may have paused the stream during its handshake.
    if (!this.#paused) this.#in.resume();
    if (this.#ended) {
      const reason = this.#endReason;
      process.nextTick(() => handler.ended(reason));
    }
  }

  #onData(chunk: Buffer): void {
    if (this.#ended) return;
    try {
      this.#decoder.push(chunk);
    } catch (err) {
      this.#finish(err as IpcError);
      this.destroy();
      return;
    }
    this.#progress++;
    if (this.#decoder.inFrame && this.#cancelStall === undefined && this.#options.frameTimeout !== Infinity) this.#armStall();
  }

  // A frame in progress must keep moving; checked lazily (one timer per stall period, only
  // while a frame is split across reads) so that whole-frame traffic costs no timer at all.
  #armStall(): void {
    this.#stallMark = this.#progress;
    // startTimer: a frameTimeout past 2^31 - 1 ms must wait, not fire at once.
    this.#cancelStall = startTimer(
      this.#options.frameTimeout,
      () => {
        this.#cancelStall = undefined;
        if (this.#ended || !this.#decoder.inFrame) return;
        if (this.#progress !== this.#stallMark || this.#paused) return this.#armStall();
        this.#finish(new IpcError('IPC_ERR_PROTOCOL', `${this.#options.what}: peer stalled in the middle of a frame for ${this.#options.frameTimeout} ms`));
        this.destroy();
      },
      true,
    );
  }

  #finish(reason: IpcError | undefined): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#endReason = reason;
    this.#cancelStall?.();
    // A failed connection will complete none of the writes still in flight.
    if (reason !== undefined) this.#failInflight();
    // Wake writers waiting for room: there will never be any, and they must learn it.
    this.#drainWaiters.run();
    const handler = this.#handler;
    if (handler !== undefined) process.nextTick(() => handler.ended(reason));
    // After a clean end from the peer, finish our side too so the descriptor is released.
    if (reason === undefined && this.#closing === undefined) void this.close();
  }

  write(type: FrameType, id: number, payload: Uint8Array, done: (error?: Error | null) => void, borrowed = false): void {
    const out = this.#out;
    if (this.#ended || out.writableEnded || out.destroyed) {
      process.nextTick(done, new IpcError('IPC_ERR_CLOSED', `${this.#options.what}: connection is closed`));
      return;
    }
    const parts = encodeFrame(type, id, payload, borrowed);
    // The first frame of a turn of the event loop goes straight out (latency); the ones that
    // follow it in the same turn are corked and leave together in one writev (throughput),
    // a high-water mark of them at a time: corked bytes are ours, not a backlog, and a stream
    // whose buffer reaches its mark says "full" (writableNeedDrain) until the next tick, even
    // once the writev has emptied it. So what is gathered goes out before it gets there.
    if (this.#writesThisTurn++ === 0) process.nextTick(this.#endTurn);
    else {
      const bytes = HEADER_BYTES + payload.byteLength; // the frame, in one part or two
      if (this.#corked && out.writableLength + bytes >= out.writableHighWaterMark) {
        this.#corked = false;
        out.uncork();
      }
      if (!this.#corked && out.writableLength + bytes < out.writableHighWaterMark) {
        this.#corked = true;
        out.cork();
      }
    }
    for (let i = 0; i < parts.length - 1; i++) out.write(parts[i]);
    // Node calls the callbacks of writes still queued or in flight when a stream is destroyed
    // with *no* error (onWriteComplete on a destroyed stream): a send would then resolve for
    // bytes that never left. So the link tracks its unfinished writes and fails them itself
    // when it tears the stream down; Node's late callback is then ignored.
    if (done === unwatched) {
      out.write(parts[parts.length - 1]);
    } else {
      const entry: InflightWrite = { done };
      this.#inflight.add(entry);
      out.write(parts[parts.length - 1], (error?: Error | null) => {
        if (!this.#inflight.delete(entry)) return;
        done(error);
      });
    }
  }

  #failInflight(): void {
    if (this.#inflight.size === 0) return;
    const error = this.#endReason !== undefined && this.#endReason.code === 'IPC_ERR_CLOSED'
      ? this.#endReason
      : new IpcError('IPC_ERR_CLOSED', `${this.#options.what}: connection closed before the message was written`, { cause: this.#endReason });
    const entries = [...this.#inflight];
    this.#inflight.clear();
    for (const entry of entries) entry.done(error);
  }

  get needsDrain(): boolean {
    return this.#out.writableNeedDrain && !this.#ended;
  }

  onceDrain(callback: () => void): void {
    if (this.#drainWaiters.add(callback, this.needsDrain)) this.#out.once('drain', () => this.#drainWaiters.run());
  }

  pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    this.#in.pause();
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#in.resume();
  }

  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#closing = new Promise<void>((resolve) => {
      const input = this.#in;
      const out = this.#out;
      // Keep reading (and dropping) while we flush: a socket closed with unread incoming data
      // is reset by TCP, which could destroy data we sent that the peer has not read yet.
      this.#paused = false;
      input.resume();
      const done = () => {
        cancelTimer();
        this.#failInflight(); // empty after 'finish'; not after a closeTimeout
        if (!input.destroyed) input.destroy();
        if (!out.destroyed) out.destroy();
        this.#finish(undefined);
        resolve();
      };
      // Any closeTimeout, Infinity included (a raw setTimeout would fire those after 1 ms).
      const cancelTimer = startTimer(this.#options.closeTimeout, done, true);
      if (out.destroyed) return done();
      // 'finish' = every byte handed to the OS; then the descriptor can go (the kernel keeps
      // delivering what it holds). end() on a socket also sends FIN so the peer sees the end.
      out.once('close', done);
      if (out.writableFinished) return done();
      out.once('finish', done);
      if (!out.writableEnded) out.end();
    });
    return this.#closing;
  }

  destroy(error?: IpcError): void {
    if (error !== undefined) this.#finish(error);
    this.#failInflight();
    if (!this.#in.destroyed) this.#in.destroy();
    if (!this.#out.destroyed) this.#out.destroy();
    this.#finish(undefined);
  }
}
