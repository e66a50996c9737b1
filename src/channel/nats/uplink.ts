/**
 * One process's connection to a NATS server (an "uplink"), shared by a listener and the links
 * it accepted, or owned by one connecting link; closed when its last user lets go.
 *
 * The official client (@nats-io/transport-node) is loaded on first use, so that a program
 * that never uses nats:// never loads it. Reconnection is off: a NATS connection that drops has
 * lost whatever was in flight, and a channel that silently carried on after a gap would break
 * its contract, so every link on a lost uplink ends with IPC_ERR_CLOSED instead.
 */
import type { ConnectionOptions, Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import * as fs from 'node:fs';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { armDeadline } from '../../deadline.js';
import { errnoError, errnoOf, IpcError, isIpcError } from '../../errors.js';
import { checkInteger, checkOptions } from '../../options.js';

type NatsModule = typeof import('@nats-io/transport-node');
let natsModule: NatsModule | undefined;

/** The NATS client, required on first use. */
function nats(): NatsModule {
  return (natsModule ??= require('@nats-io/transport-node') as NatsModule);
}

/** TLS for the connection to the NATS server: `true` (the system's CAs) or files. */
export interface NatsTlsOptions {
  /** PEM file of the CA that signed the server's certificate. */
  caFile?: string;
  /** PEM files of this client's certificate and key (servers that verify clients). */
  certFile?: string;
  keyFile?: string;
}

/** The nats:// options of `listen` and `connect` (both sides take the same ones; other transports reject them). */
export interface NatsOptions {
  /** nats://: the token the NATS server requires (`authorization { token }`). */
  token?: string;
  /** nats://: the user and password the NATS server requires (together). */
  user?: string;
  pass?: string;
  /** nats://: connect to the NATS server over TLS: `true` (the system's CAs) or PEM files. */
  tls?: true | NatsTlsOptions;
  /** nats://: ms between liveness messages to the peer (default 1000); a peer silent for 10 of its intervals is gone. */
  heartbeatInterval?: number;
}

export const natsOptionKeys = ['token', 'user', 'pass', 'tls', 'heartbeatInterval'] as const;

export interface ResolvedNatsOptions {
  client: Partial<ConnectionOptions>;
  heartbeat: number;
}

export const DEFAULT_HEARTBEAT_MS = 1000;
export const MAX_HEARTBEAT_MS = 2 ** 31 - 1;

function optionalString(value: unknown, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '') throw new TypeError(`${name} must be a non-empty string`);
  return value;
}

/** Checks the nats:// options (unknown keys of `tls` are rejected by name) and maps them to the client's. */
export function resolveNatsOptions(extra: Record<string, unknown>, where: string): ResolvedNatsOptions {
  const client: Partial<ConnectionOptions> = {};
  const token = optionalString(extra['token'], `${where}: token`);
  const user = optionalString(extra['user'], `${where}: user`);
  const pass = optionalString(extra['pass'], `${where}: pass`);
  if (token !== undefined && (user !== undefined || pass !== undefined)) throw new TypeError(`${where}: token and user/pass are exclusive`);
  if ((user === undefined) !== (pass === undefined)) throw new TypeError(`${where}: user and pass go together`);
  if (token !== undefined) client.token = token;
  if (user !== undefined) {
    client.user = user;
    client.pass = pass!;
  }
  const tls = extra['tls'];
  if (tls === true) client.tls = {};
  else if (tls !== undefined) {
    const t = checkOptions<NatsTlsOptions>(tls, ['caFile', 'certFile', 'keyFile'], `${where}: tls`);
    const caFile = optionalString(t.caFile, `${where}: tls.caFile`);
    const certFile = optionalString(t.certFile, `${where}: tls.certFile`);
    const keyFile = optionalString(t.keyFile, `${where}: tls.keyFile`);
    if ((certFile === undefined) !== (keyFile === undefined)) throw new TypeError(`${where}: tls.certFile and tls.keyFile go together`);
    // The client would only say "doesn't exist" later, without a code: check the files now.
    for (const [key, file] of [['caFile', caFile], ['certFile', certFile], ['keyFile', keyFile]] as const) {
      if (file === undefined) continue;
      try {
        fs.accessSync(file, fs.constants.R_OK);
      } catch (err) {
        throw errnoError(err, `${where}: tls.${key} '${file}'`, 'open');
      }
    }
    client.tls = { ...(caFile !== undefined ? { caFile } : {}), ...(certFile !== undefined ? { certFile, keyFile: keyFile! } : {}) };
  }
  const heartbeat =
    extra['heartbeatInterval'] === undefined
      ? DEFAULT_HEARTBEAT_MS
      : checkInteger(extra['heartbeatInterval'], `${where}: heartbeatInterval`, 10, MAX_HEARTBEAT_MS);
  return { client, heartbeat };
}

/** What a link or listener on an uplink is told when the connection fails under it. */
export interface UplinkUser {
  lost(error: IpcError): void;
  /** True if the user publishes or subscribes to `subject` (a permission error concerns it). */
  uses(subject: string): boolean;
}

/** A NATS client failure as a coded error. */
export function clientError(err: unknown, what: string): IpcError {
  if (isIpcError(err)) return err;
  const e = err as { name?: unknown; message?: unknown; cause?: unknown } | null;
  const name = typeof e?.name === 'string' ? e.name : '';
  const message = typeof e?.message === 'string' ? e.message : String(err);
  if (name === 'TimeoutError') return new IpcError('IPC_ERR_TIMEOUT', `${what}: the NATS server did not complete the handshake in time`, { cause: err });
  if (name === 'AuthorizationError' || name === 'UserAuthenticationExpiredError' || name === 'PermissionViolationError') {
    return new IpcError('IPC_ERR_PERMISSION', `${what}: the NATS server refused: ${message}`, { cause: err });
  }
  const os = errnoOf(e?.cause) !== undefined ? e!.cause : errnoOf(err) !== undefined ? err : undefined;
  if (os !== undefined) {
    const errno = errnoOf(os);
    if (errno === 'ENOTFOUND' || errno === 'EAI_AGAIN') {
      return new IpcError('IPC_ERR_NOT_FOUND', `${what}: the NATS server's host name does not resolve [${errno}]`, { cause: err, errno });
    }
    // connect(): ECONNREFUSED means that nothing listens there; other calls keep their meaning.
    const connecting = (os as { syscall?: unknown }).syscall === 'connect';
    const coded = errnoError(os, connecting ? what : `${what}: ${message}`, connecting ? 'connect' : undefined);
    if (isIpcError(coded)) return coded;
  }
  // Node's TLS errors carry codes such as SELF_SIGNED_CERT_IN_CHAIN, ERR_TLS_CERT_ALTNAME_INVALID.
  const tlsCode = [(e?.cause as { code?: unknown } | undefined)?.code, (err as { code?: unknown } | null)?.code].find(
    (c): c is string => typeof c === 'string' && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|TLS|SSL/.test(c),
  );
  if (tlsCode !== undefined) {
    return new IpcError('IPC_ERR_PERMISSION', `${what}: the NATS server's TLS certificate was not accepted (${tlsCode}): ${message} (pass tls: { caFile } for a private CA)`, { cause: err });
  }
  return new IpcError('IPC_ERR_SYSTEM', `${what}: the NATS client failed: ${message}`, { cause: err });
}

export class Uplink {
  readonly #nc: NatsConnection;
  /** 'NATS server 127.0.0.1:4222', for messages. */
  readonly what: string;
  /** The server's max_payload: the largest NATS message it takes. */
  readonly maxPayload: number;
  readonly #users = new Set<UplinkUser>();
  #closing: Promise<void> | undefined;
  #lost: IpcError | undefined;

  constructor(nc: NatsConnection, what: string) {
    this.#nc = nc;
    this.what = what;
    this.maxPayload = nc.info?.max_payload ?? 0;
    void nc.closed().then((err) => this.#onClosed(err));
    this.#watch().catch(() => {}); // ends with the connection
  }

  /** The server reports permission errors on the connection, not on the publish: route them. */
  async #watch(): Promise<void> {
    for await (const status of this.#nc.status()) {
      if (status.type !== 'error') continue;
      const error = status.error as { name?: string; subject?: string; message?: string };
      if (error.name !== 'PermissionViolationError' || typeof error.subject !== 'string') continue;
      const coded = new IpcError('IPC_ERR_PERMISSION', `${this.what}: ${error.message ?? 'permissions violation'}`, { cause: error });
      for (const user of [...this.#users]) if (user.uses(error.subject)) user.lost(coded);
    }
  }

  #onClosed(err: void | Error): void {
    if (this.#closing !== undefined && err === undefined) return; // we closed it
    this.#lost = new IpcError('IPC_ERR_CLOSED', `lost the connection to the ${this.what}${err ? `: ${err.message}` : ''}`, err ? { cause: err } : undefined);
    for (const user of [...this.#users]) user.lost(this.#lost);
  }

  /** Why the uplink can no longer be used, if it cannot. */
  get failure(): IpcError | undefined {
    return this.#lost ?? (this.#nc.isClosed() ? new IpcError('IPC_ERR_CLOSED', `the connection to the ${this.what} is closed`) : undefined);
  }

  /** Publishes one message (the client keeps a reference until it has written it). */
  publish(subject: string, data: Uint8Array, reply?: string): void {
    const failure = this.failure;
    if (failure !== undefined) throw failure;
    try {
      if (reply === undefined) this.#nc.publish(subject, data);
      else this.#nc.publish(subject, data, { reply });
    } catch (err) {
      throw new IpcError('IPC_ERR_CLOSED', `${this.what}: publishing failed: ${(err as Error).message}`, { cause: err });
    }
  }

  subscribe(subject: string, onMessage: (msg: Msg) => void, queue?: string): Subscription {
    const failure = this.failure;
    if (failure !== undefined) throw failure;
    return this.#nc.subscribe(subject, { callback: (err, msg) => (err === null ? onMessage(msg) : undefined), ...(queue !== undefined ? { queue } : {}) });
  }

  /** Resolves once the server has processed everything published so far (or `ms` passed, or the connection ended). */
  flush(ms: number): Promise<void> {
    if (this.failure !== undefined) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const disarm = armDeadline(ms, undefined, `${this.what}: flush`, () => resolve());
      const done = (): void => {
        disarm();
        resolve();
      };
      // A connection that closes meanwhile never answers the flush's PING.
      Promise.race([this.#nc.flush(), this.#nc.closed()]).then(done, done);
    });
  }

  attach(user: UplinkUser): void {
    this.#users.add(user);
  }

  /**
   * A user is done: resolves once what it published has reached the server (bounded by
   * `flushMs`); the last user's detach then closes the connection.
   */
  detach(user: UplinkUser, flushMs: number): Promise<void> {
    this.#users.delete(user);
    const flushed = flushMs > 0 ? this.flush(flushMs) : Promise.resolve();
    if (this.#users.size > 0) return flushed;
    this.#closing ??= flushed.then(() => this.#nc.close().catch(() => {}));
    return this.#closing;
  }
}

export interface Endpoint {
  host: string;
  port: number;
}

/**
 * Connects to the NATS server at `endpoint`. IPC_ERR_NOT_FOUND when nothing listens there,
 * IPC_ERR_PERMISSION when it refuses the credentials, IPC_ERR_TIMEOUT / IPC_ERR_ABORTED from
 * `timeout` and `signal` (the client's own handshake limit, 20 s, applies when there is none).
 */
export function openUplink(endpoint: Endpoint, options: ResolvedNatsOptions, timeout: number, signal: AbortSignal | undefined, what: string): Promise<Uplink> {
  const hostPort = `${endpoint.host.includes(':') ? `[${endpoint.host}]` : endpoint.host}:${endpoint.port}`;
  const serverWhat = `NATS server ${hostPort}`;
  return new Promise<Uplink>((resolve, reject) => {
    let settled = false;
    const disarm = armDeadline(timeout, signal, `${what}: connecting to the ${serverWhat}`, (error) => {
      settled = true;
      reject(error);
    });
    if (settled) return;
    let connecting: Promise<NatsConnection>;
    try {
      const client = { ...options.client };
      // The client checks a certificate against "localhost" when the address is an IP: check it
      // against the host of the address instead.
      if (client.tls) client.tls = { ...client.tls, checkServerIdentity: (_name: string, cert: PeerCertificate) => checkServerIdentity(endpoint.host, cert) } as typeof client.tls;
      connecting = nats().connect({
        ...client,
        servers: hostPort,
        name: 'interprocess',
        reconnect: false,
        maxReconnectAttempts: 0,
        ignoreClusterUpdates: true,
        ...(timeout !== Infinity ? { timeout: Math.max(1, Math.ceil(timeout)) } : {}),
      });
    } catch (err) {
      disarm();
      reject(clientError(err, what));
      return;
    }
    connecting.then(
      (nc) => {
        // Given up in the meantime: this connection has no user.
        if (settled) return void nc.close().catch(() => {});
        settled = true;
        disarm();
        resolve(new Uplink(nc, serverWhat));
      },
      (err: unknown) => {
        if (settled) return;
        settled = true;
        disarm();
        reject(clientError(err, `${what}: ${serverWhat}`));
      },
    );
  });
}
