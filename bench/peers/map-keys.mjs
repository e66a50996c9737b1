// The SharedMap benchmarks' data set, shared by both processes: KEY_COUNT keys like
// 'session:0000123' (15 bytes) and VALUE_BYTES-byte values.
export const KEY_COUNT = 10_000;
export const VALUE_BYTES = 64;
export const keyOf = (i) => `session:${String(i).padStart(7, '0')}`;
