// The whole public surface of `interprocess`: re-exports only.
export { IpcError, isIpcError } from './errors.js';
export type { ErrorCode, IpcErrorOptions } from './errors.js';
export { SharedMemory } from './shm/shared-memory.js';
export type { SharedMemoryCreateOptions, SharedMemoryOpenOptions } from './shm/shared-memory.js';
export { futex } from './sync/futex.js';
export type { WaitResult } from './sync/futex.js';
export { resolveCodec } from './codec/index.js';
export type { Codec, CodecName, CodecOption } from './codec/index.js';
export { Queue } from './queue/index.js';
export type {
  QueueCreateOptions,
  QueueHandleOptions,
  QueueOpenOptions,
  QueueStats,
  WaitOptions as QueueWaitOptions,
  SyncWaitOptions as QueueSyncWaitOptions,
  WaitStrategy as QueueWaitStrategy,
} from './queue/index.js';
