/**
 * NatsLink: one connection of a nats:// channel, a Link (../link.ts) over two NATS subjects,
 * one per direction. Credit-based flow control with cumulative acknowledgements and
 * per-direction sequence numbers (the wire format is in wire.ts).
 *
 * Contract: what every Channel promises (ordered, each frame delivered once, memory bounded on
 * both sides), over a NATS server that may drop messages: a frame is either delivered or its
 * write fails with IPC_ERR_CLOSED, never lost silently. Specifically:
 *
 *   - Flow control. A receiver grants credit in bytes (chunk header included): the sender may
 *     have published at most `limit` bytes in total, and the receiver moves `limit` to
 *     `consumed + window` as the Channel takes what arrived. While the Channel is paused
 *     (readBufferBytes reached), what arrives under credit already granted waits here and the
 *     limit stays put, so the sender stops after at most one window: NATS never has to buffer
 *     more for a consumer than its windows, and never drops one as a slow consumer in normal
 *     operation. The window is max(readBufferBytes, 64 KiB).
 *   - Delivery. `done` of a write runs when the peer's link has acknowledged the frame's last
 *     chunk (CREDIT carries the count of chunks received), not when NATS took it: a NATS server
 *     that dies between the two cannot turn a resolved send into a lost message. Unacknowledged
 *     frames fail with IPC_ERR_CLOSED when the link ends (some of them may have arrived).
 *   - Gaps. Every chunk carries its sequence number and BEAT / END say how many chunks preceded
 *     them; NATS keeps one publisher's order, so a receiver that sees a number out of sequence,
 *     or a count that does not match, knows chunks were dropped: it ends the link with
 *     IPC_ERR_CLOSED and tells the peer (ABORT), and never delivers past the gap.
 *   - Liveness. Each side publishes BEAT every `heartbeat` ms with a reply subject: when the
 *     peer's subscription is gone (its process died, so its NATS connection closed), the server
 *     answers 503 (no responders) and the link ends with IPC_ERR_CLOSED. A peer that stays
 *     silent for ten of its own heartbeat intervals (a frozen process, a cut network) is taken
 *     for gone as well; there is no shared kernel to ask, so a timeout is what is left.
 *   - Close. close() waits (at most closeTimeout) until every frame written has been
 *     acknowledged, then publishes END and lets go of the subscription and the NATS connection.
 */
import { markAsUntransferable } from 'node:worker_threads';
import type { Msg, Subscription } from '@nats-io/transport-node';
import { armDeadline } from '../../deadline.js';
import { IpcError } from '../../errors.js';
import type { ResolvedChannelOptions } from '../channel.js';
import { FrameType } from '../framing.js';
import { DrainWaiters, type Link, type LinkHandler } from '../link.js';
import type { Uplink, UplinkUser } from './uplink.js';
import {
  ABORT,
  BEAT,
  CONTINUATION,
  CREDIT,
  DATA_HEADER_BYTES,
  decodeAbort,
  decodeChunk,
  decodeCount,
  decodeCredit,
  encodeAbort,
  encodeChunk,
  encodeCount,
  encodeCredit,
  END,
  isDataKind,
  type Chunk,
} from './wire.js';

/** The smallest receive window a side announces (and accepts from its peer). */
export const MIN_WINDOW_BYTES = 64 * 1024;
/** The largest NATS message a link publishes (chunk header included), below the server's max_payload. */
const MAX_CHUNK_BYTES = 256 * 1024;
/** A frame's next chunk waits for credit for at least this many of its bytes (or all of the rest). */
const MIN_PARTIAL_BYTES = 4096;
/** A peer silent for this many of its heartbeat intervals is taken for gone. */
export const SILENT_BEATS = 10;

const TWO_32 = 2 ** 32;
const now = (): number => performance.now();

export interface NatsLinkSetup {
  uplink: Uplink;
  /** Our subscription on `inbox` (the peer -> us direction); its messages go to receive(). */
  subscription: Subscription;
  inbox: string;
  /** The subject we publish to (the us -> peer direction). */
  outbox: string;
  /** Our receive window in bytes, and our heartbeat interval in ms (as announced). */
  window: number;
  heartbeat: number;
  /** What the peer announced. */
  peerWindow: number;
  peerHeartbeat: number;
  options: ResolvedChannelOptions;
  what: string;
  /** Runs once the link has let go of its subscription (a listener forgets the connection id). */
  onReleased?: () => void;
}

interface OutFrame {
  type: FrameType;
  id: number;
  payload: Uint8Array;
  /** Bytes of the payload already published; -1 before the first chunk. */
  offset: number;
  done: (error?: Error | null) => void;
}

interface Unacked {
  /** The frame is delivered once the peer has received this many chunks. */
  last: number;
  done: (error?: Error | null) => void;
}

/** A FIFO over an array and a head index (shift in O(1); compacted once drained). */
class Fifo<T> {
  items: (T | undefined)[] = [];
  head = 0;
  get size(): number {
    return this.items.length - this.head;
  }
  peek(): T | undefined {
    return this.items[this.head];
  }
  push(item: T): void {
    this.items.push(item);
  }
  shift(): T | undefined {
    if (this.head === this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.head = 0;
    }
    return item;
  }
  takeAll(): T[] {
    const all = this.items.slice(this.head) as T[];
    this.items.length = 0;
    this.head = 0;
    return all;
  }
}

export class NatsLink implements Link, UplinkUser {
  readonly #uplink: Uplink;
  readonly #subscription: Subscription;
  readonly #inbox: string;
  readonly #outbox: string;
  readonly #window: number;
  readonly #heartbeat: number;
  readonly #silenceLimit: number;
  readonly #chunkBytes: number;
  readonly #minPartial: number;
  readonly #maxMessageSize: number;
  readonly #frameTimeout: number;
  readonly #closeTimeout: number;
  readonly #what: string;
  readonly #onReleased: (() => void) | undefined;

  #handler: LinkHandler | undefined;
  #timer: NodeJS.Timeout | undefined;
  #lastHeard = now();
  #ended = false;
  #endReason: IpcError | undefined;
  /** ended() is owed to the handler once the chunks held here have been delivered. */
  #endOwed = false;
  #closing: Promise<void> | undefined;
  #released: Promise<void> | undefined;

  // sending
  readonly #pending = new Fifo<OutFrame>();
  readonly #unacked = new Fifo<Unacked>();
  #sentChunks = 0;
  #sentBytes = 0;
  #ackedChunks = 0;
  #creditLimit: number;
  readonly #drainWaiters = new DrainWaiters();
  #flushWaiters: (() => void)[] = [];

  // receiving: checked on arrival (rx*), delivered when the Channel takes them
  #receivedChunks = 0;
  #receivedBytes = 0;
  #consumedBytes = 0;
  #grantedLimit: number;
  #creditSentFor = -1;
  #creditScheduled = false;
  #rxRemaining = 0;
  #rxId = 0;
  #rxTotal = 0;
  readonly #held = new Fifo<Chunk>();
  #paused = false;
  // a frame being reassembled from its chunks
  #asm: Uint8Array[] | undefined;
  #asmType = 0;
  #asmId = 0;
  #asmFilled = 0;
  #asmTotal = 0;
  #asmProgressAt = 0;

  constructor(setup: NatsLinkSetup) {
    this.#uplink = setup.uplink;
    this.#subscription = setup.subscription;
    this.#inbox = setup.inbox;
    this.#outbox = setup.outbox;
    this.#window = setup.window;
    this.#heartbeat = setup.heartbeat;
    this.#silenceLimit = SILENT_BEATS * setup.peerHeartbeat;
    this.#chunkBytes = Math.min(setup.uplink.maxPayload, MAX_CHUNK_BYTES) - DATA_HEADER_BYTES;
    this.#minPartial = Math.min(MIN_PARTIAL_BYTES, this.#chunkBytes);
    this.#creditLimit = setup.peerWindow;
    this.#grantedLimit = setup.window;
    this.#maxMessageSize = setup.options.maxMessageSize;
    this.#frameTimeout = setup.options.frameTimeout;
    this.#closeTimeout = setup.options.closeTimeout;
    this.#what = setup.what;
    this.#onReleased = setup.onReleased;
    setup.uplink.attach(this);
  }

  start(handler: LinkHandler): void {
    this.#handler = handler;
    if (!this.#ended) {
      this.#timer = setInterval(() => this.#tick(), this.#heartbeat);
      this.#timer.unref();
    }
    // What arrived before start (and an end already known) goes out after start returns.
    process.nextTick(() => this.#deliverHeld());
  }

  // ---- UplinkUser ----

  lost(error: IpcError): void {
    this.#finish(error);
  }

  uses(subject: string): boolean {
    return subject === this.#inbox || subject === this.#outbox;
  }

  // ---- sending ----

  write(type: FrameType, id: number, payload: Uint8Array, done: (error?: Error | null) => void, borrowed = false): void {
    if (this.#ended || this.#closing !== undefined) {
      process.nextTick(done, this.#closedForWrites());
      return;
    }
    const frame: OutFrame = { type, id, payload, offset: -1, done };
    if (this.#pending.size === 0) {
      try {
        if (this.#publishFrom(frame)) return this.#unacked.push({ last: this.#sentChunks, done });
      } catch (err) {
        this.#fail(err as IpcError);
        process.nextTick(done, this.#closedForWrites());
        return;
      }
    }
    // It waits for credit: in a copy if the caller may reuse its buffer.
    if (borrowed) frame.payload = Buffer.from(payload);
    this.#pending.push(frame);
  }

  /** Publishes chunks of `frame` while credit allows; true once its last chunk is out. Throws a coded error. */
  #publishFrom(frame: OutFrame): boolean {
    const total = frame.payload.byteLength;
    for (;;) {
      const offset = frame.offset < 0 ? 0 : frame.offset;
      if (frame.offset >= 0 && offset >= total) return true;
      const rest = total - offset;
      const take = Math.min(rest, this.#chunkBytes, this.#creditLimit - this.#sentBytes - DATA_HEADER_BYTES);
      if (take < 0 || (take < rest && take < this.#minPartial)) return false;
      const kind = frame.offset < 0 ? frame.type : CONTINUATION;
      this.#uplink.publish(this.#outbox, encodeChunk(kind, frame.id, frame.payload, offset, take, this.#sentChunks));
      this.#sentChunks++;
      this.#sentBytes += DATA_HEADER_BYTES + take;
      frame.offset = offset + take;
    }
  }

  /** Publishes waiting frames, in order, as far as the credit goes. */
  #pump(): void {
    for (let frame = this.#pending.peek(); frame !== undefined && !this.#ended; frame = this.#pending.peek()) {
      let complete: boolean;
      try {
        complete = this.#publishFrom(frame);
      } catch (err) {
        return this.#fail(err as IpcError);
      }
      if (!complete) return;
      this.#pending.shift();
      this.#unacked.push({ last: this.#sentChunks, done: frame.done });
    }
    this.#drainWaiters.run();
  }

  get needsDrain(): boolean {
    return this.#pending.size > 0 && !this.#ended;
  }

  onceDrain(callback: () => void): void {
    this.#drainWaiters.add(callback, this.needsDrain);
  }

  #onCredit(data: Uint8Array): void {
    const credit = decodeCredit(data);
    if (credit === null) return this.#protocol('a malformed credit message');
    const delta = (credit.received - (this.#ackedChunks % TWO_32) + TWO_32) % TWO_32;
    if (this.#ackedChunks + delta > this.#sentChunks) return this.#protocol('an acknowledgement of chunks never sent');
    this.#ackedChunks += delta;
    for (let entry = this.#unacked.peek(); entry !== undefined && entry.last <= this.#ackedChunks; entry = this.#unacked.peek()) {
      this.#unacked.shift();
      entry.done();
    }
    if (credit.limit > this.#creditLimit) {
      this.#creditLimit = credit.limit;
      this.#pump();
    }
    if (this.#pending.size === 0 && this.#unacked.size === 0) this.#runFlushWaiters();
  }

  #runFlushWaiters(): void {
    const waiters = this.#flushWaiters;
    this.#flushWaiters = [];
    for (const callback of waiters) callback();
  }

  #closedForWrites(): IpcError {
    const reason = this.#endReason;
    if (reason !== undefined && reason.code === 'IPC_ERR_CLOSED') return reason;
    return new IpcError('IPC_ERR_CLOSED', `${this.#what}: connection is closed`, reason !== undefined ? { cause: reason } : undefined);
  }

  // ---- receiving ----

  /** One NATS message on our subject. */
  receive(msg: Msg): void {
    if (this.#ended) return;
    this.#lastHeard = now();
    // Only the server adds headers, and only to say that nobody listens on the peer's subject.
    if (msg.headers !== undefined) {
      if (msg.headers.code === 503) {
        return this.#finish(new IpcError('IPC_ERR_CLOSED', `${this.#what}: the peer is gone (nothing listens on its subject any more: its process or its NATS connection ended)`));
      }
      return this.#protocol(`a message with headers (status ${msg.headers.code})`);
    }
    const data = msg.data;
    const kind = data.byteLength > 0 ? data[0]! : -1;
    if (isDataKind(kind)) return this.#onChunk(data);
    if (kind === CREDIT) return this.#onCredit(data);
    if (kind === BEAT || kind === END) {
      const sent = decodeCount(data);
      if (sent === null) return this.#protocol('a malformed count');
      if (sent !== this.#receivedChunks % TWO_32) return this.#gap(sent);
      if (kind === BEAT) return;
      if (this.#rxRemaining > 0) {
        return this.#finish(new IpcError('IPC_ERR_CLOSED', `${this.#what}: the peer closed the connection in the middle of a frame (the partial frame was discarded)`));
      }
      return this.#finish(undefined);
    }
    if (kind === ABORT) return this.#finish(new IpcError('IPC_ERR_CLOSED', `${this.#what}: the peer ended the connection: ${decodeAbort(data)}`));
    this.#protocol(`a message of unknown kind ${kind}`);
  }

  /** A data chunk: checked (sequence, credit, framing) on arrival, before it is acknowledged. */
  #onChunk(data: Uint8Array): void {
    const chunk = decodeChunk(data);
    if (chunk === null) return this.#protocol('a data message shorter than its header');
    if (chunk.seq !== this.#receivedChunks % TWO_32) return this.#gap(chunk.seq, true);
    this.#receivedBytes += chunk.cost;
    if (this.#receivedBytes > this.#grantedLimit) return this.#protocol('more data than the credit it was granted');
    const length = chunk.bytes.byteLength;
    if (chunk.kind === CONTINUATION) {
      if (this.#rxRemaining === 0) return this.#protocol('a continuation without a frame in progress');
      if (chunk.id !== this.#rxId || chunk.total !== this.#rxTotal || length === 0 || length > this.#rxRemaining) {
        return this.#protocol('a continuation that does not fit its frame');
      }
      this.#rxRemaining -= length;
    } else {
      if (this.#rxRemaining > 0) return this.#protocol('a new frame began before the previous one was complete');
      if (chunk.total > this.#maxMessageSize) return this.#protocol(`a ${chunk.total}-byte frame, over maxMessageSize (${this.#maxMessageSize})`);
      if ((chunk.kind === FrameType.Message) !== (chunk.id === 0)) {
        return this.#protocol(chunk.kind === FrameType.Message ? 'a message frame with a correlation id' : `a type-${chunk.kind} frame without a correlation id`);
      }
      if (length > chunk.total) return this.#protocol('a chunk longer than its frame');
      this.#rxRemaining = chunk.total - length;
      this.#rxId = chunk.id;
      this.#rxTotal = chunk.total;
    }
    this.#receivedChunks++;
    this.#scheduleCredit();
    if (!this.#paused && this.#handler !== undefined && this.#held.size === 0) this.#consume(chunk);
    else this.#held.push(chunk);
  }

  /** Hands a checked chunk to the Channel (a whole frame) or to the reassembly. */
  #consume(chunk: Chunk): void {
    this.#consumedBytes += chunk.cost;
    const bytes = chunk.bytes;
    if (chunk.kind !== CONTINUATION) {
      if (bytes.byteLength === chunk.total) {
        // A Buffer view, as every transport hands out (the client gives plain Uint8Arrays). The
        // client may read several messages into one buffer: then a transfer of this one must not
        // detach the others (see FrameDecoder in ../framing.ts).
        if (bytes.buffer.byteLength > chunk.cost) markAsUntransferable(bytes.buffer);
        return this.#handler!.frame(chunk.kind as FrameType, chunk.id, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      }
      this.#asm = [bytes];
      this.#asmType = chunk.kind;
      this.#asmId = chunk.id;
      this.#asmTotal = chunk.total;
      this.#asmFilled = bytes.byteLength;
      this.#asmProgressAt = now();
      return;
    }
    const parts = this.#asm!;
    parts.push(bytes);
    this.#asmFilled += bytes.byteLength;
    this.#asmProgressAt = now();
    if (this.#asmFilled < this.#asmTotal) return;
    this.#asm = undefined;
    this.#handler!.frame(this.#asmType as FrameType, this.#asmId, Buffer.concat(parts, this.#asmTotal));
  }

  /** Delivers what waits here while the Channel is not paused; then the end, if it is owed. */
  #deliverHeld(): void {
    if (this.#handler === undefined) return;
    const before = this.#consumedBytes;
    while (!this.#paused && this.#held.size > 0) this.#consume(this.#held.shift()!);
    if (this.#consumedBytes !== before) this.#scheduleCredit();
    if (this.#ended && this.#held.size === 0) this.#reportEnd();
  }

  #reportEnd(): void {
    if (!this.#endOwed) return;
    this.#endOwed = false;
    const handler = this.#handler!;
    const reason = this.#endReason;
    process.nextTick(() => handler.ended(reason));
  }

  /** One CREDIT per turn of the event loop: acknowledges what arrived, grants what was taken. */
  #scheduleCredit(): void {
    if (this.#creditScheduled || this.#ended) return;
    this.#creditScheduled = true;
    process.nextTick(() => {
      this.#creditScheduled = false;
      if (!this.#ended) this.#sendCredit();
    });
  }

  /** Publishes a CREDIT if there is anything new to acknowledge or grant. */
  #sendCredit(): void {
    const limit = Math.max(this.#grantedLimit, this.#consumedBytes + this.#window);
    if (this.#creditSentFor === this.#receivedChunks && limit === this.#grantedLimit) return;
    try {
      this.#uplink.publish(this.#outbox, encodeCredit(this.#receivedChunks, limit));
    } catch (err) {
      return this.#fail(err as IpcError);
    }
    this.#creditSentFor = this.#receivedChunks;
    this.#grantedLimit = limit;
  }

  /** The last words: acknowledges what arrived (the peer's sends resolve), then END. */
  #sendEnd(): void {
    this.#sendCredit();
    try {
      this.#uplink.publish(this.#outbox, encodeCount(END, this.#sentChunks));
    } catch {
      // the uplink is gone: nothing more can reach the peer
    }
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#asmProgressAt = now(); // a frame does not stall while we would not take it
    this.#deliverHeld();
  }

  // ---- liveness ----

  #tick(): void {
    if (this.#ended) return;
    const t = now();
    if (t - this.#lastHeard > this.#silenceLimit) {
      return this.#fail(new IpcError('IPC_ERR_CLOSED', `${this.#what}: no word from the peer for ${Math.round(t - this.#lastHeard)} ms (it is frozen or gone, or the network is cut)`));
    }
    if (this.#asm !== undefined && !this.#paused && t - this.#asmProgressAt > this.#frameTimeout) {
      return this.#protocol(`a frame stalled in the middle for ${this.#frameTimeout} ms`);
    }
    try {
      this.#uplink.publish(this.#outbox, encodeCount(BEAT, this.#sentChunks), this.#inbox);
    } catch (err) {
      this.#fail(err as IpcError);
    }
  }

  // ---- ending ----

  #gap(seen: number, chunk = false): void {
    this.#fail(
      new IpcError(
        'IPC_ERR_CLOSED',
        `${this.#what}: messages were lost in transit (expected chunk #${this.#receivedChunks % TWO_32}, ${chunk ? 'got' : 'the peer had sent'} #${seen}): the NATS server dropped them, so the connection is closed`,
      ),
    );
  }

  #protocol(why: string): void {
    this.#fail(new IpcError('IPC_ERR_PROTOCOL', `${this.#what}: the peer sent ${why}`));
  }

  /** Ends with `error` and tells the peer why (best effort). */
  #fail(error: IpcError): void {
    if (this.#ended) return;
    try {
      this.#uplink.publish(this.#outbox, encodeAbort(error.message));
    } catch {
      // the uplink is gone: the peer learns from its own side
    }
    this.#finish(error);
  }

  #finish(reason: IpcError | undefined): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#endReason = reason;
    this.#endOwed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    const error = this.#closedForWrites();
    for (const frame of this.#pending.takeAll()) frame.done(error);
    for (const entry of this.#unacked.takeAll()) entry.done(error);
    this.#drainWaiters.run();
    this.#runFlushWaiters();
    this.#release();
    // What was received and acknowledged is delivered before the end.
    if (this.#handler !== undefined && this.#held.size === 0) this.#reportEnd();
  }

  #release(): Promise<void> {
    this.#released ??= (() => {
      try {
        this.#subscription.unsubscribe();
      } catch {
        // the connection is already closed
      }
      this.#onReleased?.();
      return this.#uplink.detach(this, this.#closeTimeout);
    })();
    return this.#released;
  }

  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#closing = (async () => {
      if (!this.#ended && (this.#pending.size > 0 || this.#unacked.size > 0)) {
        const flushed = await new Promise<boolean>((resolve) => {
          const disarm = armDeadline(this.#closeTimeout, undefined, `${this.#what}: close`, () => resolve(false));
          this.#flushWaiters.push(() => {
            disarm();
            resolve(true);
          });
        });
        if (!flushed && !this.#ended) {
          // What the peer did not acknowledge in time is reported as not sent (some of it may
          // still arrive: it was published, and END follows it).
          const error = new IpcError('IPC_ERR_CLOSED', `${this.#what}: the peer did not take the message within closeTimeout (${this.#closeTimeout} ms)`);
          for (const frame of this.#pending.takeAll()) frame.done(error);
          for (const entry of this.#unacked.takeAll()) entry.done(error);
        }
      }
      if (!this.#ended) {
        this.#sendEnd();
        this.#finish(undefined);
      }
      // END has reached the NATS server before close() resolves (the process may exit next).
      await this.#release();
    })();
    return this.#closing;
  }

  destroy(error?: IpcError): void {
    if (this.#ended) return;
    if (error !== undefined) return this.#fail(error);
    this.#sendEnd();
    this.#finish(undefined);
  }
}
