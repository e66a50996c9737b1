/**
 * ShmLink: the Link (src/channel/link.ts) of one shm:// connection, over a send pump and a
 * receive pump (pump.ts) and the connection's state (layout.ts). It splits frames into records
 * and commits them in order, gathers the peer's records back into frames, watches the peer's
 * closed flag and lifeline, and ends the connection cleanly or with a coded error.
 *
 * Contract: every frame `write` accepted is committed whole and in order, or its `done` gets an
 * error; what the peer committed before it closed or died is delivered before the link ends.
 */
import { startTimer } from '../../deadline.js';
import { IpcError, isIpcError } from '../../errors.js';
import type { Lifeline } from '../../os/lifeline.js';
import type { Queue } from '../../queue/queue.js';
import type { SharedMemory } from '../../shm/shared-memory.js';
import type { ResolvedChannelOptions } from '../channel.js';
import type { FrameType } from '../framing.js';
import { DrainWaiters, type Link, type LinkHandler } from '../link.js';
import { C, CHECK_MS, CONNECTION_BYTES } from './layout.js';
import { NO_RECORD, Pump, RECEIVE_SPIN_MS, SEND_SPIN_MS } from './pump.js';
import { Read, RecordKind, RecordReader } from './record.js';

/** The longest tight loop inside one turn of a receive spin (ms). */
const SYNC_SPIN_MS = 0.003;
/** Frames a receive pump delivers in one go before it lets the event loop run. */
const BATCH = 256;
const EMPTY = new Uint8Array(0);
/** #putRecords: the frame's last record is committed. */
const DONE = -1;

const now = (): number => performance.now();

/** A frame accepted by write and not yet wholly committed. */
interface PendingFrame {
  type: number;
  id: number;
  payload: Uint8Array;
  /** Bytes of the payload already committed (a frame split over several records). */
  offset: number;
  done: (error?: Error | null) => void;
}

export interface LinkParts {
  /** Our queue to the peer, and the peer's queue to us. */
  out: Queue<Uint8Array>;
  in: Queue<Uint8Array>;
  /** The connection's state object, and its lifeline (our token in it, the peer's liveness). */
  conn: SharedMemory;
  lifeline: Lifeline;
  client: boolean;
  peerToken: number;
  options: ResolvedChannelOptions;
  what: string;
}

/** Links that still owe their peer a closed flag when this process exits. */
const liveLinks = new Set<ShmLink>();
let exitHooked = false;
function hookExit(link: ShmLink): void {
  liveLinks.add(link);
  if (exitHooked) return;
  exitHooked = true;
  process.on('exit', () => {
    for (const live of liveLinks) live.exitNow();
  });
}

export class ShmLink implements Link {
  readonly #out: Pump;
  readonly #in: Pump;
  readonly #reader: RecordReader;
  readonly #conn: SharedMemory;
  readonly #lifeline: Lifeline;
  readonly #state: Int32Array;
  readonly #myClosed: number;
  readonly #peerClosed: number;
  readonly #peerToken: number;
  readonly #closeTimeout: number;
  readonly #frameTimeout: number;
  readonly #what: string;

  #handler: LinkHandler | undefined;
  #ended = false;
  #endReason: IpcError | undefined;
  #released = false;
  #paused = false;
  #closing: Promise<void> | undefined;
  /** Set by the periodic check: the peer closed (reason undefined) or died; ends once drained. */
  #peerGone: { reason: IpcError | undefined } | undefined;
  #checkTimer: NodeJS.Timeout | undefined;
  /** Frames waiting for room, oldest first (from #outboxHead on). */
  readonly #outbox: PendingFrame[] = [];
  #outboxHead = 0;
  readonly #drainWaiters = new DrainWaiters();
  /** The reader's progress when the periodic check last saw it move, and when (frameTimeout). */
  #stallMark = -1;
  #stallSince = 0;

  constructor(parts: LinkParts) {
    this.#out = new Pump(parts.out, SEND_SPIN_MS, () => this.#sendPending());
    this.#in = new Pump(parts.in, RECEIVE_SPIN_MS, () => this.#receive());
    this.#reader = new RecordReader(parts.options.maxMessageSize);
    this.#conn = parts.conn;
    this.#lifeline = parts.lifeline;
    this.#state = new Int32Array(parts.conn.buffer, 0, CONNECTION_BYTES >> 2);
    this.#myClosed = parts.client ? C.clientClosed : C.serverClosed;
    this.#peerClosed = parts.client ? C.serverClosed : C.clientClosed;
    this.#peerToken = parts.peerToken;
    this.#closeTimeout = parts.options.closeTimeout;
    this.#frameTimeout = parts.options.frameTimeout;
    this.#what = parts.what;
    hookExit(this);
  }

  start(handler: LinkHandler): void {
    this.#handler = handler;
    if (this.#ended) {
      const reason = this.#endReason;
      process.nextTick(() => handler.ended(reason));
      return;
    }
    this.#checkTimer = setInterval(() => this.#check(), CHECK_MS);
    this.#checkTimer.unref();
    this.#in.later();
  }

  // ---- sending ----

  write(type: FrameType, id: number, payload: Uint8Array, done: (error?: Error | null) => void, borrowed = false): void {
    if (this.#ended || this.#closing !== undefined) {
      process.nextTick(done, this.#closedForWrites());
      return;
    }
    if (this.#peerGone !== undefined) {
      // Known to be gone (its closed flag, or its death) while we still deliver what it sent.
      process.nextTick(done, this.#closedForPeer());
      return;
    }
    let offset = 0;
    if (this.#outboxHead === this.#outbox.length) {
      try {
        offset = this.#putRecords(type, id, payload, 0);
      } catch (err) {
        process.nextTick(done, err);
        return;
      }
      if (offset === DONE) return done();
    }
    // Some or none of it fits now: the rest waits here, in a copy if the caller may reuse it.
    this.#outbox.push({ type, id, payload: borrowed ? Buffer.from(payload) : payload, offset, done });
    this.#out.later();
  }

  /**
   * Commits the records of a frame's payload from `offset` on while there is room: DONE once
   * the last one is in, else the offset reached (the next record to commit).
   */
  #putRecords(type: number, id: number, payload: Uint8Array, offset: number): number {
    const out = this.#out;
    const total = payload.byteLength;
    for (;;) {
      const chunk = Math.min(total - offset, out.chunkBytes);
      if (!out.tryPut(type, id, payload, offset, chunk)) return offset;
      offset += chunk;
      if (offset >= total) return DONE;
    }
  }

  get needsDrain(): boolean {
    return this.#outbox.length !== this.#outboxHead && !this.#ended;
  }

  onceDrain(callback: () => void): void {
    this.#drainWaiters.add(callback, this.needsDrain);
  }

  /**
   * The send pump's work: commits the frames waiting for room, in order, as room appears;
   * retries after the application's microtasks (the peer may be in this thread), then sleeps
   * in the kernel until one record fits.
   */
  #sendPending(): void {
    const out = this.#out;
    if (out.sleeping) return;
    try {
      while (this.#outboxHead < this.#outbox.length && !this.#ended) {
        const head = this.#outbox[this.#outboxHead]!;
        const reached = this.#putRecords(head.type, head.id, head.payload, head.offset);
        if (reached === DONE) {
          this.#shiftOutbox();
          out.paidOff();
          head.done();
          continue;
        }
        head.offset = reached;
        const t = now();
        if (t < out.spinDeadline(t)) return out.later();
        // Sleep in the kernel until one record fits, and commit it then; spin less next time.
        const chunk = Math.min(head.payload.byteLength - head.offset, out.chunkBytes);
        out.sleep(
          (signal) => out.put(head.type, head.id, head.payload, head.offset, chunk, signal),
          () => {
            head.offset += chunk;
            if (head.offset >= head.payload.byteLength && this.#outbox[this.#outboxHead] === head) {
              this.#shiftOutbox();
              head.done();
            }
            this.#sendPending();
          },
          (err) => {
            // Woken for the peer's end or our teardown: the loop condition decides.
            if (this.#ended || isIpcError(err, 'IPC_ERR_ABORTED')) this.#sendPending();
            else this.#finish(this.#failed('sending', err));
          },
        );
        return;
      }
    } catch (err) {
      this.#finish(this.#failed('sending', err));
    }
    this.#drainWaiters.run();
  }

  #shiftOutbox(): void {
    this.#outbox[this.#outboxHead++] = undefined as unknown as PendingFrame;
    if (this.#outboxHead === this.#outbox.length) {
      this.#outbox.length = 0;
      this.#outboxHead = 0;
    }
  }

  #failOutbox(error: IpcError): void {
    const entries = this.#outbox.slice(this.#outboxHead);
    this.#outbox.length = 0;
    this.#outboxHead = 0;
    for (const entry of entries) entry.done(error);
  }

  #closedForWrites(): IpcError {
    const reason = this.#endReason;
    if (reason !== undefined && reason.code === 'IPC_ERR_CLOSED') return reason;
    return new IpcError('IPC_ERR_CLOSED', `${this.#what}: connection is closed`, reason !== undefined ? { cause: reason } : undefined);
  }

  #failed(doing: string, err: unknown): IpcError {
    return new IpcError('IPC_ERR_CLOSED', `${this.#what}: ${doing} failed: ${(err as Error).message}`, { cause: err });
  }

  // ---- receiving ----

  /**
   * The receive pump's work: delivers records as they come. While the queue is empty it looks
   * again after the application's microtasks have run (a reply is usually a few awaits away
   * and must not wait for a spin to end), for up to RECEIVE_SPIN_MS (see spinBudget in
   * pump.ts), then sleeps in the kernel (no CPU while idle).
   */
  #receive(): void {
    const input = this.#in;
    if (this.#ended || this.#paused || input.sleeping) return;
    const reader = this.#reader;
    let delivered = 0;
    try {
      for (;;) {
        let read = input.tryTake(reader);
        if (read === NO_RECORD && delivered === 0 && this.#peerGone === undefined) {
          // Every microtask has run and nothing came: the application is waiting, most likely
          // for a reply that is on its way. Look again in a tight loop for a few µs (only the
          // other pumps of this thread wait meanwhile) before yielding.
          const t = now();
          const end = Math.min(input.spinDeadline(t), t + SYNC_SPIN_MS);
          for (let i = 1; (read = input.tryTake(reader)) === NO_RECORD; i++) if ((i & 15) === 0 && now() >= end) break;
        }
        if (read === NO_RECORD) break;
        input.paidOff();
        this.#dispatch(read);
        if (this.#ended || this.#paused) return;
        if (++delivered === BATCH) {
          // A busy channel must not starve the rest of the event loop.
          input.afterIo();
          return;
        }
      }
    } catch (err) {
      this.#finish(this.#failed('receiving', err));
      return;
    }
    const gone = this.#peerGone;
    if (gone !== undefined) {
      // The peer's flag (or its death) came after its last commit, and the queue is empty
      // now: nothing more will ever arrive.
      this.#finish(reader.inFrame ? (gone.reason ?? this.#midFrame('closed the channel')) : gone.reason);
      return;
    }
    // After a delivery, let the application act on it first (the spin's clock starts after).
    // Without one, a spin was started above: keep looking until it ends.
    if (delivered !== 0) return input.later();
    const t = now();
    if (t < input.spinDeadline(t)) return input.later();
    // The spin did not pay off (the peer is slow, idle, or shares our CPU and cannot run while
    // we spin): see spinBudget.
    input.sleep((signal) => input.take(reader, signal), this.#woken, this.#sleepFailed);
  }

  readonly #woken = (read: Read): void => {
    this.#dispatch(read);
    // Look again once the application has acted on it (never spin inside this microtask).
    if (!this.#ended && !this.#paused) this.#in.later();
  };

  readonly #sleepFailed = (err: unknown): void => {
    if (this.#ended) return;
    if (isIpcError(err, 'IPC_ERR_ABORTED')) this.#receive();
    else this.#finish(this.#failed('receiving', err));
  };

  /** Acts on what the reader found in the record just taken. */
  #dispatch(read: Read): void {
    const reader = this.#reader;
    if (read === Read.Frame) {
      this.#handler!.frame(reader.type as FrameType, reader.id, reader.take());
    } else if (read === Read.End) {
      this.#finish(reader.inFrame ? this.#midFrame('closed the channel') : undefined);
    } else if (read === Read.Bad) {
      this.#finish(new IpcError('IPC_ERR_PROTOCOL', `${this.#what}: malformed record from the peer: ${reader.error}`));
    }
  }

  #midFrame(what: string): IpcError {
    return new IpcError('IPC_ERR_CLOSED', `${this.#what}: the peer ${what} in the middle of a frame (the partial frame was discarded)`);
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    if (!this.#ended) this.#in.later();
  }

  // ---- the peer's liveness ----

  #check(): void {
    if (this.#ended || this.#peerGone !== undefined) return;
    const reader = this.#reader;
    if (reader.inFrame && this.#frameTimeout !== Infinity) {
      // A frame that has started must keep moving (frameTimeout), unless we stopped taking it.
      const t = now();
      if (reader.progress !== this.#stallMark || this.#paused) {
        this.#stallMark = reader.progress;
        this.#stallSince = t;
      } else if (t - this.#stallSince >= this.#frameTimeout) {
        this.#finish(new IpcError('IPC_ERR_PROTOCOL', `${this.#what}: the peer stalled in the middle of a frame for ${this.#frameTimeout} ms`));
        return;
      }
    }
    let alive = true;
    try {
      alive = this.#lifeline.isAlive(this.#peerToken);
    } catch {
      // the kernel could not be asked this time: ask again at the next check
    }
    if (Atomics.load(this.#state, this.#peerClosed) !== 0) {
      this.#peerGone = { reason: undefined };
    } else if (!alive) {
      this.#peerGone = {
        reason: new IpcError('IPC_ERR_CLOSED', `${this.#what}: the peer process died (or exited) without closing the channel`),
      };
    } else {
      return;
    }
    // The peer will never take what is still waiting for room.
    this.#failOutbox(this.#closedForPeer());
    this.#out.wake();
    this.#in.wake();
    this.#drainWaiters.run();
  }

  #closedForPeer(): IpcError {
    return new IpcError('IPC_ERR_CLOSED', `${this.#what}: the peer is gone; the message was not sent`, { cause: this.#peerGone?.reason });
  }

  // ---- ending ----

  /** The link is over: fail what is unsent, tell the handler, tell the peer, unmap. */
  #finish(reason: IpcError | undefined): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#endReason = reason;
    this.#failOutbox(this.#closedForWrites());
    this.#drainWaiters.run();
    const handler = this.#handler;
    if (handler !== undefined) process.nextTick(() => handler.ended(reason));
    this.#release();
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    liveLinks.delete(this);
    if (this.#checkTimer !== undefined) clearInterval(this.#checkTimer);
    this.#tellPeer();
    // Closing the queue handles rejects a pump's pending sleep with IPC_ERR_CLOSED.
    this.#out.close();
    this.#in.close();
    // After the closed flag: a peer that finds our token dead has already seen the flag.
    this.#lifeline.close();
    this.#conn.close();
  }

  /** An end record if there is room (prompt), and the closed flag in any case (robust). */
  #tellPeer(): void {
    if (this.#peerGone === undefined) {
      try {
        this.#out.tryPut(RecordKind.End, 0, EMPTY, 0, 0);
      } catch {
        // no room or no queue: the flag below still tells
      }
    }
    // seq-cst store after our last commit: a peer that reads 1 and then finds the queue empty
    // has everything we sent (pairs with the Atomics.load in #check).
    Atomics.store(this.#state, this.#myClosed, 1);
  }

  /** From the process 'exit' hook: tell the peer we are gone (nothing async runs any more). */
  exitNow(): void {
    if (this.#released) return;
    this.#released = true;
    this.#tellPeer();
  }

  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#closing = (async () => {
      if (!this.#ended && this.needsDrain) {
        // Flush what was accepted, within closeTimeout (of any length: startTimer chains).
        let cancel: (() => void) | undefined;
        await new Promise<void>((resolve) => {
          this.#drainWaiters.add(resolve, true);
          cancel = startTimer(this.#closeTimeout, resolve);
        });
        cancel?.();
      }
      this.#finish(undefined);
    })();
    return this.#closing;
  }

  destroy(error?: IpcError): void {
    this.#finish(error);
  }
}
