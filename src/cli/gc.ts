/**
 * `interprocess gc [--prefix P] [--dry-run] [--min-age SECONDS] [--json]`: removes objects that no live
 * process uses. "Uses" is what the kernel says (a mapping or an open descriptor, see
 * objects.ts), so a live user is never missed; objects younger than --min-age (default 5 s)
 * are kept, because their creator may be between creating and mapping them.
 */
import { MessageQueue } from '../mq/message-queue.js';
import { SharedMemory } from '../shm/shared-memory.js';
import { numberFlag, parseArgs, UsageError } from './args.js';
import { listObjects } from './objects.js';

export const GC_HELP =
  'usage: interprocess gc [--prefix P] [--dry-run] [--min-age SECONDS] [--json]\n' +
  '  removes objects no live process maps or holds open; --prefix limits it to names starting with P';

export async function gcCommand(argv: string[]): Promise<number> {
  const args = parseArgs(argv, ['min-age', 'prefix'], ['json', 'dry-run', 'help']);
  if (args.flags.has('help')) return void process.stdout.write(GC_HELP + '\n'), 0;
  if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${args.positionals[0]}`);
  const minAgeMs = (args.flags.has('min-age') ? numberFlag(args, 'min-age', { allowZero: true })! : 5) * 1000;
  const dryRun = args.flags.has('dry-run');
  const prefix = String(args.flags.get('prefix') ?? '');
  const removed: string[] = [];
  const kept: { name: string; reason: string }[] = [];
  for (const o of listObjects()) {
    if (!o.name.startsWith(prefix)) continue;
    if (o.attached.length > 0) {
      kept.push({ name: o.name, reason: `in use by pid ${o.attached.map((a) => a.pid).join(', ')}` });
    } else if (Date.now() - Date.parse(o.modifiedAt) < minAgeMs) {
      kept.push({ name: o.name, reason: 'younger than --min-age' });
    } else {
      if (!dryRun) (o.namespace === 'mqueue' ? MessageQueue.remove : SharedMemory.remove)(o.name);
      removed.push(o.name);
    }
  }
  if (args.flags.has('json')) process.stdout.write(JSON.stringify({ dryRun, removed, kept }, null, 2) + '\n');
  else {
    for (const name of removed) process.stdout.write(`${dryRun ? 'would remove' : 'removed'} ${name}\n`);
    for (const k of kept) process.stdout.write(`kept ${k.name}: ${k.reason}\n`);
  }
  return 0;
}
