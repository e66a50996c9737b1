/**
 * The shm:// transport: a pair of shared-memory queues per connection (layout.ts draws the
 * objects and states the protocol; record.ts the records; pump.ts one direction; link.ts a
 * connection; listen.ts and connect.ts the two sides of the handshake).
 */
import type { Transport } from '../transport.js';
import { connectShm } from './connect.js';
import { listenShm } from './listen.js';

export { describeShmChannel } from './layout.js';

export const shmTransport: Transport = {
  scheme: 'shm',
  listenKeys: ['mode', 'queueCapacity', 'queueChunkBytes', 'allowOtherOwner'],
  connectKeys: ['allowOtherOwner'],
  listen(url, address, { options, extra }) {
    return listenShm(url, address, options, extra);
  },
  connect(url, address, { options, timeout, signal, extra }) {
    return connectShm(url, address, options, timeout, signal, extra);
  },
};
