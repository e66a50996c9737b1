/*
 * What every C reference needs (included by the .c files of bench/native, each built on its own by
 * runCReference in bench/util.mjs): pinning to a core, a monotonic clock shared by processes,
 * and the comparison for sorting latency samples.
 */
#ifndef INTERPROCESS_BENCH_COMMON_H
#define INTERPROCESS_BENCH_COMMON_H

#include <sched.h>
#include <stdint.h>
#include <time.h>

/* Pins the calling thread to `cpu` (-1: leaves it where it is). */
static void pin(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
}

/* CLOCK_MONOTONIC in nanoseconds: the same clock in every process. */
static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* qsort's comparison for uint64_t samples. */
static int cmp(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

#endif
