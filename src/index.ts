// The whole public surface of `interprocess`: re-exports only.
export { IpcError, isIpcError } from './errors.js';
export type { ErrorCode, IpcErrorOptions } from './errors.js';
export { SharedMemory } from './shm/shared-memory.js';
export type { SharedMemoryCreateOptions, SharedMemoryOpenOptions } from './shm/shared-memory.js';
export { futex } from './os/futex.js';
export type { WaitResult } from './os/futex.js';
export { resolveCodec } from './codec/index.js';
export type { Codec, CodecName, CodecOption } from './codec/index.js';
export { Mutex } from './sync/mutex.js';
export type { MutexOptions, MutexPlacedOptions, LockOptions, LockSyncOptions } from './sync/mutex.js';
export { Semaphore } from './sync/semaphore.js';
export type { SemaphoreOptions, SemaphorePlacedOptions, AcquireOptions, AcquireSyncOptions } from './sync/semaphore.js';
export { Condition } from './sync/condition.js';
export type { ConditionOptions, ConditionPlacedOptions, ConditionWaitOptions, ConditionWaitSyncOptions } from './sync/condition.js';
export { RWLock } from './sync/rwlock.js';
export type { RWLockOptions, RWLockPlacedOptions, RWLockWaitOptions, RWLockWaitSyncOptions } from './sync/rwlock.js';
export { Barrier } from './sync/barrier.js';
export type { BarrierOptions, BarrierPlacedOptions, BarrierWaitOptions, BarrierWaitSyncOptions } from './sync/barrier.js';
export { listen, connect, ChannelServer, Channel, RemoteError, channelFromStreams, childChannel } from './channel/index.js';
export type {
  ListenOptions,
  ConnectOptions,
  AcceptOptions,
  ChannelOptions,
  SendOptions,
  ReceiveOptions,
  RequestOptions,
  ChildChannelOptions,
  NatsOptions,
  NatsTlsOptions,
} from './channel/index.js';
export { MessageQueue } from './mq/message-queue.js';
export type {
  MessageQueueCreateOptions,
  MessageQueueOpenOptions,
  MessageQueueSendOptions,
  MessageQueueSendSyncOptions,
  MessageQueueReceiveOptions,
  MessageQueueReceiveSyncOptions,
  PrioritizedMessage,
} from './mq/message-queue.js';
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
export { SharedMap } from './map/index.js';
export type {
  Eviction as SharedMapEviction,
  SharedMapCreateOptions,
  SharedMapHandleOptions,
  SharedMapOpenOptions,
  SharedMapSetOptions,
  SharedMapUpdateOptions,
} from './map/index.js';
export { Topic, Subscriber } from './topic/index.js';
export type {
  TopicCreateOptions,
  TopicOpenOptions,
  TopicHandleOptions,
  TopicShapeOptions,
  TopicStats,
  SubscribeOptions,
  Overflow as TopicOverflow,
  WaitStrategy as TopicWaitStrategy,
  From as SubscribeFrom,
} from './topic/index.js';
