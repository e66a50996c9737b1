/**
 * The one lifecycle of the sync primitives (Mutex, Semaphore, Condition, RWLock, Barrier).
 *
 * A primitive describes itself once, as a Factory: its layout (placement.ts), the options it
 * adds to the common ones, what creating needs from them, and the core that runs its algorithm
 * on the body's words. The Factory does the rest alike for all: create / open / openOrCreate by
 * name (a segment of its own) and createAt / openAt / openOrCreateAt inside memory the caller
 * owns, every option checked by name. Each class keeps its static methods (the documented API)
 * as one-line calls into its Factory, and extends SyncPrimitive, which owns the handle: name,
 * created, closed, close() and [Symbol.dispose].
 *
 * Methods reach the core through live(this), which throws IPC_ERR_CLOSED once the handle is
 * closed: a closed handle holds no core at all.
 */
import { closedError } from '../errors.js';
import type { How } from '../naming.js';
import type { SharedMemory } from '../shm/shared-memory.js';
import { namedOptions } from '../shm/segment.js';
import { attachAt, attachNamed, placedOptions, type Attached, type SyncLayout } from './placement.js';
import { SpinPolicy } from './wait.js';

/** What a primitive's operations work on. */
export interface Core {
  /** The body's int32 words. */
  readonly i32: Int32Array;
  /** For messages: `mutex 'orders'`, `semaphore at byte 64`. */
  readonly what: string;
  /** How this handle's blocking calls spin before they park (wait.ts). */
  readonly spin: SpinPolicy;
  /** Gives up what the core holds for this handle (its lifeline on the memory); called once, by close(). */
  close?(): void;
}

/** The plain core: the body's words (for primitives whose state is all in shared memory). */
export function bodyWords(at: Attached, layout: { bodyBytes: number }): Core {
  return { i32: new Int32Array(at.buffer, at.base, layout.bodyBytes / 4), what: at.what, spin: new SpinPolicy() };
}

const constructing = Symbol('SyncPrimitive');
let coreOf: (handle: SyncPrimitive<Core>) => Core;

/** The handle of a sync primitive: what every one of them does alike once it is open. */
export abstract class SyncPrimitive<C extends Core = Core> {
  /** The name, for a named object; undefined for one placed in shared memory. */
  readonly name: string | undefined;
  /** True when this call created it (false when it opened an existing one). */
  readonly created: boolean;
  #core: C | undefined;
  #shm: SharedMemory | undefined;
  readonly #what: string;

  static {
    coreOf = (handle) => {
      if (handle.#core === undefined) throw closedError(handle.#what);
      return handle.#core;
    };
  }

  /** @internal use the static create, open, openOrCreate, createAt, openAt or openOrCreateAt */
  constructor(key: symbol, name: string | undefined, at: Attached, core: C) {
    if (key !== constructing) {
      throw new TypeError(`use ${new.target.name}.create, open, openOrCreate, createAt, openAt or openOrCreateAt`);
    }
    this.name = name;
    this.created = at.created;
    this.#shm = at.shm;
    this.#what = at.what;
    this.#core = core;
  }

  get closed(): boolean {
    return this.#core === undefined;
  }

  /**
   * Idempotent. Releases nothing by itself: a lock this thread holds stays held while the thread
   * has another handle open on the same memory, and closing the last one abandons it (the next
   * locker recovers it with IPC_ERR_OWNER_DEAD); taken permits stay taken. This handle stops
   * working (IPC_ERR_CLOSED), and its own segment, if it has one, is unmapped once nothing else
   * uses it.
   */
  close(): void {
    const core = this.#core;
    if (core === undefined) return;
    this.#core = undefined;
    core.close?.();
    this.#shm?.close();
    this.#shm = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** The core of an open handle; IPC_ERR_CLOSED once it is closed. */
export function live<C extends Core>(handle: SyncPrimitive<C>): C {
  return coreOf(handle) as C;
}

/** How one primitive is made; see Factory. */
export interface PrimitiveSpec<T, C extends Core, P> {
  /** The class's name, as in `Mutex.create` (messages say `mutex 'orders'`). */
  kindName: string;
  layout: SyncLayout<P>;
  /** The primitive's own option keys for `how`, besides mode / initTimeout. */
  options: (how: How) => readonly string[];
  /** What creating needs, from the checked options (TypeError / RangeError naming the option). */
  params: (options: Record<string, unknown>, how: How, where: string) => P;
  /** The core of a new handle on the attached body. */
  core: (at: Attached) => C;
  /** The class; its constructor is SyncPrimitive's. */
  type: new (key: symbol, name: string | undefined, at: Attached, core: C) => T;
}

/** The named and placed factories of one primitive. */
export class Factory<T, C extends Core, P> {
  readonly #spec: PrimitiveSpec<T, C, P>;

  constructor(spec: PrimitiveSpec<T, C, P>) {
    this.#spec = spec;
  }

  /** X.create / X.open / X.openOrCreate: the primitive in a segment of its own. */
  named(name: string, how: How, options: unknown): T {
    const spec = this.#spec;
    const where = `${spec.kindName}.${how}`;
    const opts = namedOptions<Record<string, unknown>>(options, spec.options(how), where);
    const at = attachNamed(name, how, spec.kindName, spec.layout, spec.params(opts, how, where), opts);
    return new spec.type(constructing, name, at, this.#core(at));
  }

  /** X.createAt / X.openAt / X.openOrCreateAt: the primitive at a byte offset of memory the caller owns. */
  placed(memory: unknown, byteOffset: unknown, how: How, options: unknown): T {
    const spec = this.#spec;
    const where = `${spec.kindName}.${how}At`;
    const opts = placedOptions(options, spec.options(how), where);
    const at = attachAt(memory, byteOffset, how, spec.kindName, spec.layout, spec.params(opts, how, where), opts, where);
    return new spec.type(constructing, undefined, at, this.#core(at));
  }

  /** The core of a new handle; if it cannot be made (no lifeline), the segment is let go. */
  #core(at: Attached): C {
    try {
      return this.#spec.core(at);
    } catch (err) {
      at.shm?.close();
      throw err;
    }
  }
}

/** For primitives without options of their own. */
export const NO_OPTIONS = (): readonly string[] => [];
export const NO_PARAMS = (): void => undefined;
