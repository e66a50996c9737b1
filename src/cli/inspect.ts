/** `interprocess inspect NAME [--json]`: one object in full (header fields, kind details, users). */
import { IpcError } from '../errors.js';
import { validateName } from '../naming.js';
import { parseArgs, UsageError } from './args.js';
import { findObjects, pidAlive, type ObjectInfo } from './objects.js';

export const INSPECT_HELP =
  'usage: interprocess inspect NAME [--json]\n' +
  '  shows the shared-memory object NAME and/or the POSIX message queue NAME (two namespaces);\n' +
  '  --json prints the object, or an array when both exist';

export async function inspectCommand(argv: string[]): Promise<number> {
  const args = parseArgs(argv, [], ['json', 'help']);
  if (args.flags.has('help')) return void process.stdout.write(INSPECT_HELP + '\n'), 0;
  if (args.positionals.length !== 1) throw new UsageError('inspect takes exactly one NAME');
  const name = validateName(args.positionals[0]);
  const found = findObjects(name);
  if (found.length === 0) throw new IpcError('IPC_ERR_NOT_FOUND', `no interprocess object named '${name}'`);
  if (args.flags.has('json')) {
    process.stdout.write(JSON.stringify(found.length === 1 ? found[0] : found, null, 2) + '\n');
    return 0;
  }
  process.stdout.write(found.map(render).join('\n\n') + '\n');
  return 0;
}

function render(info: ObjectInfo): string {
  const lines = [
    `name        ${info.name}`,
    `kind        ${info.kind}`,
    `bytes       ${info.byteLength}`,
    `mode        ${info.mode < 0 ? 'unknown (no mqueue file system mounted)' : `0o${info.mode.toString(8)} (uid ${info.uid})`}`,
    `modified    ${info.modifiedAt}`,
  ];
  if (info.header !== undefined) {
    const h = info.header;
    lines.push(
      `header      magic 0x${h.magic.toString(16)}, kind ${h.kind}, version ${h.version}, state ${h.state}, byteLength ${h.byteLength}${h.valid ? '' : '  (INVALID)'}`,
      `created     ${new Date(h.createdAt).toISOString()} by pid ${h.creatorPid} (${pidAlive(h.creatorPid) ? 'a process with that pid is alive' : 'dead'})`,
    );
  }
  for (const [key, value] of Object.entries(info.details ?? {})) lines.push(`${key.padEnd(11)} ${typeof value === 'object' ? JSON.stringify(value) : String(value)}`);
  lines.push(`attached    ${info.attached.map((a) => `${a.pid} (${a.command})`).join(', ') || 'no process'}`);
  return lines.join('\n');
}
