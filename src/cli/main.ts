/**
 * The `interprocess` command. Exit codes: 0 success, 1 the command failed (an IPC_ERR_* code
 * is printed), 2 usage error. Each command lives in its own file.
 */
import { IpcError } from '../errors.js';
import { UsageError } from './args.js';
import { benchCommand, BENCH_HELP } from './bench.js';
import { gcCommand } from './gc.js';
import { inspectCommand } from './inspect.js';
import { lsCommand } from './ls.js';
import { rmCommand } from './rm.js';

const HELP = `usage: interprocess <command> [options]

commands:
  bench     compare every IPC mechanism on this machine (latency and throughput)
  ls        list this library's objects: kind, size, fill, attached processes
  inspect   show one object in full: inspect NAME
  rm        remove objects by name: rm NAME...
  gc        remove objects that no live process uses

Run 'interprocess <command> --help' for a command's options.
Exit codes: 0 success, 1 failure (the IPC_ERR_* code is printed), 2 usage error.`;

const commands: Record<string, (argv: string[]) => Promise<number>> = {
  bench: benchCommand,
  ls: lsCommand,
  inspect: inspectCommand,
  rm: rmCommand,
  gc: gcCommand,
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === 'help') {
    process.stdout.write(HELP + '\n');
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (command === undefined) {
    process.stderr.write(`interprocess: unknown command '${name}'\n\n${HELP}\n`);
    return 2;
  }
  try {
    return await command(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`interprocess ${name}: ${err.message}\n${name === 'bench' ? BENCH_HELP + '\n' : `run 'interprocess ${name} --help'\n`}`);
      return 2;
    }
    if (err instanceof IpcError) {
      process.stderr.write(`interprocess ${name}: ${err.message}\n`); // the message ends with the code
      return 1;
    }
    throw err;
  }
}
