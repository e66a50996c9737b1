export { Lease, Queue } from './queue.js';
export type {
  LeaseOptions,
  QueueCreateOptions,
  QueueHandleOptions,
  QueueOpenOptions,
  QueueStats,
  SyncLeaseOptions,
  SyncWaitOptions,
  TryLeaseOptions,
  WaitOptions,
  WaitStrategy,
} from './queue.js';
