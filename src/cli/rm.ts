/**
 * `interprocess rm NAME... [--json]`: removes objects by name, from both namespaces (shared
 * memory and POSIX message queues). Processes using them keep their memory.
 */
import { IpcError } from '../errors.js';
import { MessageQueue } from '../mq/message-queue.js';
import { SharedMemory } from '../shm/shared-memory.js';
import { parseArgs, UsageError } from './args.js';

export const RM_HELP = 'usage: interprocess rm NAME... [--json]';

export async function rmCommand(argv: string[]): Promise<number> {
  const args = parseArgs(argv, [], ['json', 'help']);
  if (args.flags.has('help')) return void process.stdout.write(RM_HELP + '\n'), 0;
  if (args.positionals.length === 0) throw new UsageError('rm needs at least one NAME');
  const removed: string[] = [];
  const missing: string[] = [];
  for (const name of args.positionals) {
    // Both calls must run: a name can exist in each namespace.
    const shm = SharedMemory.remove(name);
    const mq = MessageQueue.remove(name);
    (shm || mq ? removed : missing).push(name);
  }
  if (args.flags.has('json')) process.stdout.write(JSON.stringify({ removed, missing }) + '\n');
  else for (const name of removed) process.stdout.write(`removed ${name}\n`);
  if (missing.length > 0) throw new IpcError('IPC_ERR_NOT_FOUND', `no interprocess object named ${missing.map((n) => `'${n}'`).join(', ')}`);
  return 0;
}
