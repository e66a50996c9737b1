// Shared by the queue's multi-process tests (not a test file itself).
import { SharedMemory } from 'interprocess';
import { uniqueName } from './helpers.mjs';

/** A unique name whose object the test removes at the end. */
export function named(t, tag) {
  const name = uniqueName(tag);
  t.after(() => SharedMemory.remove(name));
  return name;
}

/** A timer: for the length of a fault being injected (a stop), never to wait for a state. */
export const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves when `check()` holds, re-checking on a short timer (a state wait, not a sleep for timing). */
export async function poll(check) {
  while (!check()) await delay(5);
}
