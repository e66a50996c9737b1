/**
 * Kind-specific details for `ls` and `inspect` (queue depth, lock owner...). Each library
 * object kind that has something to show registers a reader here; it receives a validated
 * object's buffer and must only read.
 */
type Describer = (buffer: SharedArrayBuffer, version: number) => Record<string, unknown>;

const describers = new Map<number, Describer>();

export function describeKind(kind: number, version: number, buffer: SharedArrayBuffer): Record<string, unknown> | undefined {
  const describer = describers.get(kind);
  if (describer === undefined) return undefined;
  try {
    return describer(buffer, version);
  } catch (err) {
    return { error: (err as Error).message };
  }
}
