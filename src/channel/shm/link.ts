/**
 * ShmLink: the Link (src/channel/link.ts) of one shm:// connection, over a send pump and a
 * receive pump (pump.ts) and the connection's state (layout.ts). It splits frames into records
 * and commits them in order, gathers the peer's records back into frames, watches the peer's
 * closed flag and lifeline, and ends the connection cleanly or with a coded error.
 *
 * Contract: every frame `write` accepted is committed whole and in order, or its `done` gets an
 * error; what the peer committed before it closed or died is delivered before the link ends.
 *
 * Sending: the first frame written in a turn of the event loop is committed at once (a request
 * or a reply leaves without delay); small frames written after it in the same turn are gathered
 * into a pack (record.ts), committed when it is full, before a larger frame, or at the end of
 * the turn (process.nextTick), as StreamLink corks a socket's writes. A stream of small
 * messages then costs one slot per packful. A frame's records are written straight into the
 * queue's slots (one copy); what does not fit waits in the outbox, copied only if the caller
 * may reuse its buffer, and only the part not yet committed.
 */
import { startTimer } from '../../deadline.js';
import { IpcError, isIpcError } from '../../errors.js';
import { privateCopy } from '../../os/copy.js';
import type { Lifeline } from '../../os/lifeline.js';
import type { Queue } from '../../queue/queue.js';
import type { SharedMemory } from '../../shm/shared-memory.js';
import type { ResolvedChannelOptions } from '../channel.js';
import type { FrameType } from '../framing.js';
import { DrainWaiters, type Link, type LinkHandler } from '../link.js';
import { C, CHECK_MS, CONNECTION_BYTES } from './layout.js';
import { NO_RECORD, Pump, RECEIVE_SPIN_MS, SEND_SPIN_MS } from './pump.js';
import { ENTRY_HEADER_BYTES, PACK_MAX_BYTES, Packer, Read, RecordKind, RecordReader } from './record.js';

/** The longest tight loop inside one turn of a receive spin (ms). */
const SYNC_SPIN_MS = 0.003;
/** Frames a receive pump delivers in one go before it lets the event loop run. */
const BATCH = 256;
const EMPTY = new Uint8Array(0);
/** #putRecords: the frame's last record is committed. */
const DONE = -1;

const now = (): number => performance.now();

/** A frame (or a sealed pack) accepted by write and not yet wholly committed. */
interface PendingFrame {
  /** The frame's type, or RecordKind.Pack. */
  kind: number;
  id: number;
  /** The frame's length. */
  total: number;
  /** The frame's bytes from `base` on (a frame partly committed keeps only its rest). */
  payload: Uint8Array;
  base: number;
  /** Bytes of the frame already committed (a frame split over several records). */
  offset: number;
  done: (error?: Error | null) => void;
}

type Done = (error?: Error | null) => void;

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
  /** The pack being gathered in this turn, the `done` of each frame in it, and the largest frame it takes. */
  readonly #packer: Packer;
  #packDones: Done[] = [];
  readonly #packMax: number;
  /** Frames written in this turn of the event loop (reset by #endTurn). */
  #writesThisTurn = 0;
  readonly #endTurn = (): void => {
    this.#writesThisTurn = 0;
    if (!this.#ended) this.#seal();
  };
  /** The reader's progress when the periodic check last saw it move, and when (frameTimeout). */
  #stallMark = -1;
  #stallSince = 0;

  constructor(parts: LinkParts) {
    this.#out = new Pump(parts.out, true, SEND_SPIN_MS, () => this.#sendPending());
    this.#in = new Pump(parts.in, false, RECEIVE_SPIN_MS, () => this.#receive());
    this.#packer = new Packer(Math.min(this.#out.chunkBytes, PACK_MAX_BYTES));
    // At least two frames to a pack; anything larger goes into records of its own.
    this.#packMax = (this.#packer.capacity >> 1) - ENTRY_HEADER_BYTES;
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

  write(type: FrameType, id: number, payload: Uint8Array, done: Done, borrowed = false): void {
    if (this.#ended || this.#closing !== undefined) {
      process.nextTick(done, this.#closedForWrites());
      return;
    }
    if (this.#peerGone !== undefined) {
      // Known to be gone (its closed flag, or its death) while we still deliver what it sent.
      process.nextTick(done, this.#closedForPeer());
      return;
    }
    const total = payload.byteLength;
    if (this.#writesThisTurn++ === 0) {
      process.nextTick(this.#endTurn);
    } else if (total <= this.#packMax) {
      // Not the first frame of this turn: into the pack (a copy), committed by the end of the turn.
      if (!this.#packer.fits(total)) this.#seal();
      this.#packer.add(type, id, payload);
      this.#packDones.push(done);
      return;
    }
    // Frames gathered before this one go first.
    this.#seal();
    if (this.#outboxHead !== this.#outbox.length) {
      this.#outbox.push({ kind: type, id, total, payload: borrowed ? privateCopy(payload) : payload, base: 0, offset: 0, done });
      this.#out.later();
      return;
    }
    let offset: number;
    try {
      offset = this.#putRecords(type, id, total, payload, 0, 0);
    } catch (err) {
      process.nextTick(done, err);
      return;
    } finally {
      this.#out.endBatch();
    }
    if (offset === DONE) return done();
    // The rest waits for room: in a copy if the caller may reuse its buffer.
    this.#outbox.push({ kind: type, id, total, payload: borrowed ? privateCopy(payload.subarray(offset)) : payload, base: borrowed ? offset : 0, offset, done });
    this.#out.later();
  }

  /**
   * Commits the records of a frame from `offset` on while there is room: DONE once the last one
   * is in, else the offset reached (the next record to commit). `payload` holds the frame's
   * bytes from `base` on. The caller ends the pump's batch.
   */
  #putRecords(kind: number, id: number, total: number, payload: Uint8Array, base: number, offset: number): number {
    const out = this.#out;
    for (;;) {
      const chunk = Math.min(total - offset, out.chunkBytes);
      if (!out.tryPut(offset === 0 ? kind : RecordKind.Continuation, id, total, payload, offset - base, chunk)) return offset;
      offset += chunk;
      if (offset >= total) return DONE;
    }
  }

  /**
   * Commits the pack gathered so far (one record), or queues it in the outbox behind the frames
   * already waiting there. Its frames' `done`s run once it is committed.
   */
  #seal(): void {
    const packer = this.#packer;
    if (packer.count === 0) return;
    const dones = this.#packDones;
    this.#packDones = [];
    if (this.#outboxHead === this.#outbox.length) {
      const body = packer.view();
      let put = false;
      try {
        put = this.#out.tryPut(RecordKind.Pack, 0, body.byteLength, body, 0, body.byteLength);
      } catch (err) {
        packer.reset();
        for (const done of dones) process.nextTick(done, err);
        return;
      } finally {
        this.#out.endBatch();
      }
      if (put) {
        packer.reset();
        for (const done of dones) done();
        return;
      }
    }
    const body = packer.take();
    this.#outbox.push({
      kind: RecordKind.Pack,
      id: 0,
      total: body.byteLength,
      payload: body,
      base: 0,
      offset: 0,
      done: (error) => {
        for (const done of dones) done(error);
      },
    });
    this.#out.later();
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
        const reached = this.#putRecords(head.kind, head.id, head.total, head.payload, head.base, head.offset);
        out.endBatch();
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
        const chunk = Math.min(head.total - head.offset, out.chunkBytes);
        out.sleep(
          (signal) => out.put(head.offset === 0 ? head.kind : RecordKind.Continuation, head.id, head.total, head.payload, head.offset - head.base, chunk, signal),
          () => {
            head.offset += chunk;
            if (head.offset >= head.total && this.#outbox[this.#outboxHead] === head) {
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
      out.endBatch();
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

  /** Fails every frame not yet committed: those waiting for room, then those of the pack. */
  #failOutbox(error: IpcError): void {
    const entries = this.#outbox.slice(this.#outboxHead);
    this.#outbox.length = 0;
    this.#outboxHead = 0;
    const dones = this.#packDones;
    this.#packDones = [];
    this.#packer.reset();
    for (const entry of entries) entry.done(error);
    for (const done of dones) done(error);
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
      // The rest of a pack whose delivery a pause interrupted comes first.
      if (reader.pending && (delivered = this.#deliverPack()) < 0) return;
      for (;;) {
        let read = input.tryTake(reader);
        if (read === NO_RECORD && delivered === 0 && this.#peerGone === undefined) {
          // Every microtask has run and nothing came: the application is waiting, most likely
          // for a reply that is on its way. Look again in a tight loop for a few µs (only the
          // other pumps of this thread wait meanwhile) before yielding.
          const t = now();
          const end = Math.min(input.spinDeadline(t, reader.inFrame), t + SYNC_SPIN_MS);
          for (let i = 1; (read = input.tryTake(reader)) === NO_RECORD; i++) if ((i & 15) === 0 && now() >= end) break;
        }
        if (read === NO_RECORD) break;
        input.paidOff();
        const n = this.#dispatch(read);
        if (n < 0) return;
        delivered += n;
        if (delivered >= BATCH) {
          // A busy channel must not starve the rest of the event loop.
          input.afterIo();
          return;
        }
      }
    } catch (err) {
      this.#finish(this.#failed('receiving', err));
      return;
    } finally {
      // Every record this loop released is known to a sender that sleeps for room.
      input.endBatch();
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
    if (t < input.spinDeadline(t, reader.inFrame)) return input.later();
    // The spin did not pay off (the peer is slow, idle, or shares our CPU and cannot run while
    // we spin): see spinBudget.
    input.sleep((signal) => input.take(reader, signal), this.#woken, this.#sleepFailed);
  }

  readonly #woken = (read: Read): void => {
    // Look again once the application has acted on it (never spin inside this microtask).
    if (this.#dispatch(read) >= 0) this.#in.later();
  };

  readonly #sleepFailed = (err: unknown): void => {
    if (this.#ended) return;
    if (isIpcError(err, 'IPC_ERR_ABORTED')) this.#receive();
    else this.#finish(this.#failed('receiving', err));
  };

  /**
   * Acts on what the reader found in the record just taken: the frames delivered (a pack may
   * hold many), or -1 once the link has ended or paused (stop taking records).
   */
  #dispatch(read: Read): number {
    const reader = this.#reader;
    if (read === Read.Frame) {
      this.#handler!.frame(reader.type as FrameType, reader.id, reader.take());
      if (this.#ended || this.#paused) return -1;
      if (!reader.pending) return 1;
      const more = this.#deliverPack();
      return more < 0 ? -1 : more + 1;
    }
    if (read === Read.End) {
      this.#finish(reader.inFrame ? this.#midFrame('closed the channel') : undefined);
      return -1;
    }
    if (read === Read.Bad) {
      this.#finish(new IpcError('IPC_ERR_PROTOCOL', `${this.#what}: malformed record from the peer: ${reader.error}`));
      return -1;
    }
    return 0;
  }

  /** Delivers the frames left in the pack being read: how many, or -1 if the link ended or paused. */
  #deliverPack(): number {
    const reader = this.#reader;
    const handler = this.#handler!;
    let n = 0;
    while (reader.pending) {
      reader.next();
      handler.frame(reader.type as FrameType, reader.id, reader.take());
      n++;
      if (this.#ended || this.#paused) return -1;
    }
    return n;
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
        this.#out.tryPut(RecordKind.End, 0, 0, EMPTY, 0, 0);
        this.#out.endBatch();
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
    // A pack gathered in this last turn still goes, if there is room.
    if (!this.#ended && this.#peerGone === undefined) this.#seal();
    this.#released = true;
    this.#tellPeer();
  }

  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#closing = (async () => {
      // The pack gathered in this turn is accepted: it is flushed with the rest.
      if (!this.#ended) this.#seal();
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
