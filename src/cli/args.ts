/**
 * A small argument parser shared by the commands: `--flag`, `--key value`, `--key=value` and
 * positionals. Unknown flags are a usage error (exit 2), never silently ignored.
 */
export class UsageError extends Error {}

export interface Parsed {
  positionals: string[];
  flags: Map<string, string | true>;
}

export function parseArgs(argv: string[], valued: readonly string[], booleans: readonly string[]): Parsed {
  const positionals: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const key = arg.slice(2, eq < 0 ? undefined : eq);
    if (valued.includes(key)) {
      const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
      if (value === undefined) throw new UsageError(`--${key} needs a value`);
      flags.set(key, value);
    } else if (booleans.includes(key) && eq < 0) {
      flags.set(key, true);
    } else {
      throw new UsageError(`unknown option --${key}`);
    }
  }
  return { positionals, flags };
}

export function numberFlag(parsed: Parsed, key: string, { allowZero = false } = {}): number | undefined {
  const value = parsed.flags.get(key);
  if (value === undefined) return undefined;
  const n = Number(value);
  if (typeof value !== 'string' || value.trim() === '' || !Number.isFinite(n) || n < 0 || (n === 0 && !allowZero)) {
    throw new UsageError(`--${key} must be a ${allowZero ? 'non-negative' : 'positive'} number`);
  }
  return n;
}

/** Fixed-width text table. Columns whose every cell is a figure are right-aligned. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const figure = /^(?:[\d.,]+ ?(?:ns|µs|ms|s|B|KiB|MiB|GiB|k|M|x)?|-|)$/;
  const numeric = header.map((_, i) => i > 0 && rows.every((r) => figure.test(r[i] ?? '')));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
