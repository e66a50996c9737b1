// The SharedMap benchmarks' data set, shared by both processes: KEY_COUNT keys like
// 'session:0000123' (15 bytes) and VALUE_BYTES-byte values.
export const KEY_COUNT = 10_000;
export const VALUE_BYTES = 64;
// Built once, before any timed loop: building a key string (`padStart` and a template) costs
// about as much as a SharedMap get, so building it per operation measured the key, not the map.
// Every mechanism (SharedMap, Redis, lmdb, the cluster primary) gets the same prebuilt strings.
const KEYS = Array.from({ length: KEY_COUNT }, (_, i) => `session:${String(i).padStart(7, '0')}`);
export const keyOf = (i) => KEYS[i];
