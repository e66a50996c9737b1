export { Queue } from './queue.js';
export type { QueueCreateOptions, QueueHandleOptions, QueueOpenOptions, QueueStats, WaitOptions, SyncWaitOptions, WaitStrategy } from './queue.js';
