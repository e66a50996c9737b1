/**
 * nats://host[:port]/subject: the same Channel between processes on any hosts that reach one
 * NATS server (or cluster). Port 4222 when omitted; the subject is one or more tokens of
 * [A-Za-z0-9_-] separated by dots, at most 200 characters.
 *
 * Handshake (subjects and messages in wire.ts): a listener holds a queue subscription on S and
 * first checks that no other listener answers a PROBE there (IPC_ERR_EXISTS). A client
 * subscribes to S.c.<id>, then publishes HELLO on S with that reply subject; the server (one
 * member of the queue group) subscribes to S.s.<id> and then answers WELCOME on S.c.<id>, so
 * that each side listens before the other can send. No server: the NATS server itself answers
 * 503 (no responders) and connect fails with IPC_ERR_NOT_FOUND at once.
 *
 * Credentials and TLS (options token, user + pass, tls) go to the NATS client unchanged;
 * credentials in the address itself are refused, because addresses end up in messages.
 */
import type { Msg, Subscription } from '@nats-io/transport-node';
import { randomBytes } from 'node:crypto';
import { armDeadline, remaining } from '../../deadline.js';
import { IpcError, isIpcError } from '../../errors.js';
import type { ResolvedChannelOptions } from '../channel.js';
import type { Link } from '../link.js';
import type { Listener, Transport } from '../transport.js';
import { MIN_WINDOW_BYTES, NatsLink } from './link.js';
import { MAX_HEARTBEAT_MS, natsOptionKeys, openUplink, resolveNatsOptions, type Endpoint, type ResolvedNatsOptions, type Uplink, type UplinkUser } from './uplink.js';
import {
  decodeJson,
  encodeCount,
  encodeJson,
  END,
  HELLO,
  HERE,
  ID_PATTERN,
  positiveField,
  PROBE,
  REFUSE,
  VERSION,
  WELCOME,
} from './wire.js';

export type { NatsOptions, NatsTlsOptions } from './uplink.js';

const DEFAULT_PORT = 4222;
const MAX_SUBJECT_CHARS = 200;
const SUBJECT = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
/** The queue group of listeners: a HELLO reaches exactly one of them. */
const QUEUE_GROUP = 'interprocess';
/** How long listen waits for a PROBE answer when something (not a listener) subscribes to S. */
const PROBE_MS = 250;
/** How long a failed connect waits for its END to reach the server before closing. */
const HANDSHAKE_FLUSH_MS = 1000;
/** A NATS server must carry at least this much per message (handshake and some payload). */
const MIN_MAX_PAYLOAD = 1024;

interface NatsAddress {
  endpoint: Endpoint;
  subject: string;
  /** The address without anything optional left out: nats://host:port/subject. */
  address: string;
}

function parseNatsAddress(url: URL, address: string): NatsAddress {
  const usage = `a nats address is nats://host[:port]/subject`;
  if (url.username !== '' || url.password !== '') {
    throw new TypeError(`'${address}': credentials do not go in the address (it appears in messages): use the token, user and pass options`);
  }
  if (url.search !== '' || url.hash !== '') throw new TypeError(`'${address}': ${usage}, with nothing after the subject`);
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  if (host === '') throw new TypeError(`'${address}': ${usage} (the host is missing)`);
  const port = url.port === '' ? DEFAULT_PORT : Number(url.port);
  if (port === 0) throw new TypeError(`'${address}': a NATS server cannot be on port 0`);
  let subject: string;
  try {
    subject = decodeURIComponent(url.pathname.slice(1));
  } catch {
    throw new TypeError(`'${address}': ${usage}`);
  }
  if (!SUBJECT.test(subject) || subject.length > MAX_SUBJECT_CHARS) {
    throw new TypeError(`'${address}': ${usage}, the subject being dot-separated tokens of letters, digits, '_' and '-' (at most ${MAX_SUBJECT_CHARS} characters, no wildcards)`);
  }
  const hostPart = host.includes(':') ? `[${host}]` : host;
  return { endpoint: { host, port }, subject, address: `nats://${hostPart}:${port}/${subject}` };
}

function newId(): string {
  return randomBytes(12).toString('hex');
}

function checkMaxPayload(uplink: Uplink, what: string): void {
  if (uplink.maxPayload < MIN_MAX_PAYLOAD) {
    throw new IpcError('IPC_ERR_INCOMPATIBLE', `${what}: the ${uplink.what} takes messages of at most ${uplink.maxPayload} bytes (max_payload); a channel needs ${MIN_MAX_PAYLOAD}`);
  }
}

/** The side's receive window: readBufferBytes, at least MIN_WINDOW_BYTES. */
function windowOf(options: ResolvedChannelOptions): number {
  return Math.min(Math.max(options.readBufferBytes, MIN_WINDOW_BYTES), Number.MAX_SAFE_INTEGER);
}

/** What a peer announced in HELLO / WELCOME: its window and heartbeat. */
function peerTerms(body: Record<string, unknown>, what: string): { window: number; heartbeat: number } {
  if (body['v'] !== VERSION) throw new IpcError('IPC_ERR_INCOMPATIBLE', `${what}: the peer speaks protocol version ${String(body['v'])}, this side ${VERSION}`);
  const window = positiveField(body, 'window', Number.MAX_SAFE_INTEGER, what);
  if (window < MIN_WINDOW_BYTES) throw new IpcError('IPC_ERR_PROTOCOL', `${what}: the peer announced a ${window}-byte window (at least ${MIN_WINDOW_BYTES})`);
  return { window, heartbeat: positiveField(body, 'heartbeat', MAX_HEARTBEAT_MS, what) };
}

/** Asks whether a listener already answers on `subject`: IPC_ERR_EXISTS if one does. */
function probe(uplink: Uplink, subject: string, what: string): Promise<void> {
  const inbox = `${subject}.p.${newId()}`;
  return new Promise<void>((resolve, reject) => {
    let sub: Subscription | undefined;
    let settled = false;
    const user: UplinkUser = { lost: (error) => finish(error), uses: (s) => s === inbox || s === subject };
    const finish = (error?: IpcError): void => {
      if (settled) return;
      settled = true;
      disarm();
      sub?.unsubscribe();
      void uplink.detach(user, 0);
      if (error === undefined) resolve();
      else reject(error);
    };
    // Silence: something that is not a listener subscribes to the subject (a monitor): go on.
    const disarm = armDeadline(PROBE_MS, undefined, `${what}: probe`, () => finish());
    uplink.attach(user);
    try {
      sub = uplink.subscribe(inbox, (msg) => {
        if (msg.headers?.code === 503) finish();
        else if (msg.data[0] === HERE) finish(new IpcError('IPC_ERR_EXISTS', `${what}: a server already listens on subject '${subject}'`));
      });
      uplink.publish(subject, Buffer.of(PROBE), inbox);
    } catch (err) {
      finish(err as IpcError);
    }
  });
}

class NatsListener implements Listener, UplinkUser {
  readonly address: string;
  readonly #uplink: Uplink;
  readonly #subject: string;
  readonly #options: ResolvedChannelOptions;
  readonly #heartbeat: number;
  readonly #ids = new Set<string>();
  #subscription: Subscription | undefined;
  #onLink: ((link: Link) => void) | undefined;
  #onFailed: ((error: IpcError) => void) | undefined;
  readonly #early: Link[] = [];
  #closing: Promise<void> | undefined;

  constructor(uplink: Uplink, parsed: NatsAddress, options: ResolvedChannelOptions, nats: ResolvedNatsOptions) {
    this.#uplink = uplink;
    this.address = parsed.address;
    this.#subject = parsed.subject;
    this.#options = options;
    this.#heartbeat = nats.heartbeat;
    uplink.attach(this);
    this.#subscription = uplink.subscribe(this.#subject, (msg) => this.#onAcceptPoint(msg), QUEUE_GROUP);
  }

  start(onLink: (link: Link) => void, onFailed?: (error: IpcError) => void): void {
    this.#onLink = onLink;
    this.#onFailed = onFailed;
    for (const link of this.#early.splice(0)) onLink(link);
  }

  lost(error: IpcError): void {
    if (this.#closing !== undefined) return;
    this.#onFailed?.(error);
  }

  uses(subject: string): boolean {
    return subject === this.#subject;
  }

  #onAcceptPoint(msg: Msg): void {
    if (this.#closing !== undefined || msg.headers !== undefined) return;
    const kind = msg.data[0];
    try {
      if (kind === PROBE && msg.reply) this.#uplink.publish(msg.reply, Buffer.of(HERE));
      else if (kind === HELLO) this.#accept(msg);
      // Anything else on the subject is someone else's traffic: not ours to judge.
    } catch {
      // the uplink failed: lost() tells the server
    }
  }

  #accept(msg: Msg): void {
    const reply = msg.reply;
    if (!reply) return;
    const what = this.address;
    let terms: { window: number; heartbeat: number };
    let id: string;
    try {
      const body = decodeJson(msg.data, `${what}: HELLO`);
      id = typeof body['id'] === 'string' ? body['id'] : '';
      if (!ID_PATTERN.test(id) || reply !== `${this.#subject}.c.${id}`) throw new IpcError('IPC_ERR_PROTOCOL', `${what}: a HELLO with a bad connection id`);
      if (this.#ids.has(id)) throw new IpcError('IPC_ERR_PROTOCOL', `${what}: a HELLO for a connection that exists`);
      terms = peerTerms(body, `${what}: HELLO`);
    } catch (err) {
      const error = err as IpcError;
      this.#uplink.publish(reply, encodeJson(REFUSE, { code: isIpcError(error) ? error.code : 'IPC_ERR_PROTOCOL', message: error.message }));
      return;
    }
    const inbox = `${this.#subject}.s.${id}`;
    let link: NatsLink | undefined;
    const subscription = this.#uplink.subscribe(inbox, (m) => link?.receive(m));
    link = new NatsLink({
      uplink: this.#uplink,
      subscription,
      inbox,
      outbox: reply,
      window: windowOf(this.#options),
      heartbeat: this.#heartbeat,
      peerWindow: terms.window,
      peerHeartbeat: terms.heartbeat,
      options: this.#options,
      what: `${what} <- ${id.slice(0, 8)}`,
      onReleased: () => this.#ids.delete(id),
    });
    this.#ids.add(id);
    // The subscription is registered (same connection, in order) before the client can read this.
    this.#uplink.publish(reply, encodeJson(WELCOME, { v: VERSION, window: windowOf(this.#options), heartbeat: this.#heartbeat }));
    if (this.#onLink !== undefined) this.#onLink(link);
    else this.#early.push(link);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      try {
        this.#subscription?.unsubscribe();
      } catch {
        // the connection is already closed
      }
      this.#subscription = undefined;
      await this.#uplink.detach(this, this.#options.closeTimeout);
    })();
    return this.#closing;
  }
}

/** The client side of the handshake; resolves with the connection's link. */
function handshake(uplink: Uplink, parsed: NatsAddress, options: ResolvedChannelOptions, nats: ResolvedNatsOptions, timeout: number, signal: AbortSignal | undefined): Promise<Link> {
  const id = newId();
  const subject = parsed.subject;
  const inbox = `${subject}.c.${id}`;
  const outbox = `${subject}.s.${id}`;
  const what = parsed.address;
  return new Promise<Link>((resolve, reject) => {
    let route: (msg: Msg) => void = () => {};
    let subscription: Subscription | undefined;
    let done = false;
    const user: UplinkUser = { lost: (error) => giveUp(error), uses: (s) => s === inbox || s === outbox || s === subject };
    const giveUp = (error: IpcError): void => {
      if (done) return;
      done = true;
      disarm();
      route = () => {};
      try {
        subscription?.unsubscribe();
        // A server may have accepted just now: tell it that this connection ends here.
        uplink.publish(outbox, encodeCount(END, 0));
      } catch {
        // the uplink is gone
      }
      void uplink.detach(user, 0);
      reject(error);
    };
    const disarm = armDeadline(timeout, signal, `connect(${parsed.address})`, giveUp);
    if (done) return;
    uplink.attach(user);
    route = (msg) => {
      if (msg.headers?.code === 503) return giveUp(new IpcError('IPC_ERR_NOT_FOUND', `${what}: no server listens on subject '${subject}'`));
      try {
        const kind = msg.data[0];
        if (kind === REFUSE) {
          const body = decodeJson(msg.data, `${what}: REFUSE`);
          const code = body['code'] === 'IPC_ERR_INCOMPATIBLE' ? 'IPC_ERR_INCOMPATIBLE' : 'IPC_ERR_PROTOCOL';
          return giveUp(new IpcError(code, `${what}: the server refused the connection: ${String(body['message'])}`));
        }
        if (kind !== WELCOME) return giveUp(new IpcError('IPC_ERR_PROTOCOL', `${what}: something other than a server answered on subject '${subject}'`));
        const terms = peerTerms(decodeJson(msg.data, `${what}: WELCOME`), `${what}: WELCOME`);
        const link = new NatsLink({
          uplink,
          subscription: subscription!,
          inbox,
          outbox,
          window: windowOf(options),
          heartbeat: nats.heartbeat,
          peerWindow: terms.window,
          peerHeartbeat: terms.heartbeat,
          options,
          what,
        });
        // From here on the subscription's messages are the link's (it holds them until start).
        route = (m) => link.receive(m);
        done = true;
        disarm();
        void uplink.detach(user, 0);
        resolve(link);
      } catch (err) {
        giveUp(err as IpcError);
      }
    };
    try {
      subscription = uplink.subscribe(inbox, (msg) => route(msg));
      uplink.publish(subject, encodeJson(HELLO, { v: VERSION, id, window: windowOf(options), heartbeat: nats.heartbeat }), inbox);
    } catch (err) {
      giveUp(err as IpcError);
    }
  });
}

export const natsTransport: Transport = {
  scheme: 'nats',
  listenKeys: natsOptionKeys,
  connectKeys: natsOptionKeys,

  async listen(url, address, { options, extra }) {
    const parsed = parseNatsAddress(url, address);
    const nats = resolveNatsOptions(extra, `listen(${address})`);
    const what = `listen(${parsed.address})`;
    const uplink = await openUplink(parsed.endpoint, nats, Infinity, undefined, what);
    const holder: UplinkUser = { lost: () => {}, uses: () => false };
    uplink.attach(holder); // keeps the connection open through the probe
    try {
      checkMaxPayload(uplink, what);
      await probe(uplink, parsed.subject, what);
      const listener = new NatsListener(uplink, parsed, options, nats);
      // Resolve once the NATS server has our subscription: a client that connects as soon as
      // listen resolved must find the listener, not a "no responders" (IPC_ERR_NOT_FOUND).
      await uplink.flush(PROBE_MS);
      return listener;
    } finally {
      void uplink.detach(holder, 0);
    }
  },

  async connect(url, address, { options, timeout, signal, extra }) {
    const parsed = parseNatsAddress(url, address);
    const nats = resolveNatsOptions(extra, `connect(${address})`);
    const started = performance.now();
    const what = `connect(${parsed.address})`;
    const uplink = await openUplink(parsed.endpoint, nats, timeout, signal, what);
    const holder: UplinkUser = { lost: () => {}, uses: () => false };
    uplink.attach(holder);
    let link: Link | undefined;
    try {
      checkMaxPayload(uplink, what);
      link = await handshake(uplink, parsed, options, nats, remaining(timeout, started), signal);
      return link;
    } finally {
      // Failed: the last word to a server that may have accepted (END) goes out before the close.
      void uplink.detach(holder, link === undefined ? HANDSHAKE_FLUSH_MS : 0);
    }
  },
};
