/** `interprocess ls [--json]`: this library's live objects, who has them open, and how full they are. */
import { parseArgs, table, UsageError } from './args.js';
import { listObjects, type ObjectInfo } from './objects.js';

export const LS_HELP = 'usage: interprocess ls [--json]';

export function summary(o: ObjectInfo): string {
  const d = o.details;
  if (d === undefined) return o.header !== undefined && !o.header.valid ? 'INVALID header' : '';
  if (typeof d['depth'] === 'number' && typeof d['capacity'] === 'number') return `depth ${d['depth']}/${d['capacity']}`;
  return Object.entries(d)
    .filter(([, v]) => typeof v !== 'object')
    .slice(0, 3)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
}

export async function lsCommand(argv: string[]): Promise<number> {
  const args = parseArgs(argv, [], ['json', 'help']);
  if (args.flags.has('help')) return void process.stdout.write(LS_HELP + '\n'), 0;
  if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${args.positionals[0]}`);
  const objects = listObjects();
  if (args.flags.has('json')) {
    process.stdout.write(JSON.stringify(objects, null, 2) + '\n');
    return 0;
  }
  if (objects.length === 0) {
    process.stdout.write('no interprocess objects\n');
    return 0;
  }
  process.stdout.write(
    table(
      ['kind', 'name', 'bytes', 'state', 'attached (pid command, all alive)'],
      objects.map((o) => [o.kind, o.name, String(o.byteLength), summary(o), o.attached.map((a) => `${a.pid} ${a.command}`).join(', ') || 'none']),
    ) + '\n',
  );
  return 0;
}
